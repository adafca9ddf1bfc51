"""eBPF instruction encoding (Documentation/bpf/standardization/
instruction-set.rst): 8 bytes each, little-endian on x86-64 -
opcode, dst_reg (low nibble) and src_reg (high nibble), a signed 16-bit
offset and a signed 32-bit immediate. A 64-bit immediate load takes two
slots. Only what the programs in programs.py use."""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Instruction classes.
LD, LDX, ST, STX, ALU64, JMP = 0x00, 0x01, 0x02, 0x03, 0x07, 0x05
# Sizes and modes of loads and stores.
W, B, DW = 0x00, 0x10, 0x18
IMM, MEM, ATOMIC = 0x00, 0x60, 0xC0
# ALU operations; source: K the immediate, X a register.
ADD, SUB, AND, MOV = 0x00, 0x10, 0x50, 0xB0
K, X = 0x00, 0x08
# Jumps.
JA, JEQ, JNE, CALL, EXIT = 0x00, 0x10, 0x50, 0x80, 0x90

PSEUDO_MAP_FD = 1  # src_reg of a 64-bit immediate load: imm is a map's fd
FP = 10  # the read-only frame pointer; the stack lies below it (512 bytes)


@dataclass(frozen=True)
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


def assemble(insns: list[Insn]) -> bytes:
    return b"".join(i.encode() for i in insns)


def decode(blob: bytes) -> list[Insn]:
    """The inverse of assemble(), for tests and the verifier log's context."""
    out = []
    for code, regs, off, imm in struct.iter_unpack("<BBhi", blob):
        out.append(Insn(code, regs & 0xF, regs >> 4, off, imm))
    return out


def mov_reg(dst: int, src: int) -> Insn:
    return Insn(ALU64 | MOV | X, dst, src)


def mov_imm(dst: int, imm: int) -> Insn:
    return Insn(ALU64 | MOV | K, dst, 0, 0, imm)


def add_imm(dst: int, imm: int) -> Insn:
    return Insn(ALU64 | ADD | K, dst, 0, 0, imm)


def sub_reg(dst: int, src: int) -> Insn:
    return Insn(ALU64 | SUB | X, dst, src)


def and_imm(dst: int, imm: int) -> Insn:
    return Insn(ALU64 | AND | K, dst, 0, 0, imm)


def load(dst: int, src: int, off: int, size: int = DW) -> Insn:
    """dst = *(size *)(src + off)"""
    return Insn(LDX | MEM | size, dst, src, off)


def store(dst: int, off: int, src: int, size: int = DW) -> Insn:
    """*(size *)(dst + off) = src"""
    return Insn(STX | MEM | size, dst, src, off)


def store_imm(dst: int, off: int, imm: int, size: int = DW) -> Insn:
    """*(size *)(dst + off) = imm"""
    return Insn(ST | MEM | size, dst, 0, off, imm)


def atomic_add(dst: int, off: int, src: int) -> Insn:
    """lock *(u64 *)(dst + off) += src (no fetch)."""
    return Insn(STX | ATOMIC | DW, dst, src, off, ADD)


def load_map_fd(dst: int, fd: int) -> list[Insn]:
    """dst = the map `fd` names (the verifier turns the fd into the map's
    address): the two-slot 64-bit immediate load."""
    return [Insn(LD | IMM | DW, dst, PSEUDO_MAP_FD, 0, fd), Insn(0)]


def jump_imm(op: int, dst: int, imm: int, off: int) -> Insn:
    """if dst <op> imm: skip `off` instructions."""
    return Insn(JMP | op | K, dst, 0, off, imm)


def jump(off: int) -> Insn:
    return Insn(JMP | JA, 0, 0, off)


def call(helper: int) -> Insn:
    return Insn(JMP | CALL, 0, 0, 0, helper)


def exit_() -> Insn:
    return Insn(JMP | EXIT)


class Assembler:
    """Instructions with named jump targets, resolved by assemble(): a
    jump's offset counts the slots between it and its target (a 64-bit
    immediate load is two)."""

    def __init__(self) -> None:
        self.insns: list[Insn] = []
        self._labels: dict[str, int] = {}
        self._jumps: list[tuple[int, str]] = []  # (index, label)

    def emit(self, *insns: Insn | list[Insn]) -> None:
        for i in insns:
            self.insns.extend(i if isinstance(i, list) else [i])

    def label(self, name: str) -> None:
        if name in self._labels:
            raise ValueError(f"label {name} defined twice")
        self._labels[name] = len(self.insns)

    def jump_if(self, op: int, reg: int, imm: int, target: str) -> None:
        self._jumps.append((len(self.insns), target))
        self.insns.append(jump_imm(op, reg, imm, 0))

    def goto(self, target: str) -> None:
        self._jumps.append((len(self.insns), target))
        self.insns.append(jump(0))

    def assemble(self) -> list[Insn]:
        out = list(self.insns)
        for index, target in self._jumps:
            if target not in self._labels:
                raise ValueError(f"jump to undefined label {target}")
            j = out[index]
            out[index] = Insn(j.code, j.dst, j.src, self._labels[target] - index - 1, j.imm)
        return out
