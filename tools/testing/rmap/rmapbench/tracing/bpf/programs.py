"""The fentry and fexit programs, hand-assembled.

A fentry/fexit program runs from the function's BPF trampoline
(arch/x86/net/bpf_jit_comp.c arch_prepare_bpf_trampoline()): the call at
the function's first instruction (its __fentry__ site, patched by ftrace)
goes to the trampoline, which saves the argument registers in its frame,
runs each fentry program (between __bpf_prog_enter() and
__bpf_prog_exit(): RCU read lock, migrate_disable, the recursion check),
calls the function's body, saves its return value, runs each fexit
program the same way, and returns to the caller. The programs' context is
that frame's array of u64 arguments (the return value after them).

What lies between the two clock reads is therefore the end of the fentry
program (one store), the trampoline between its programs and the body,
the body, and the trampoline up to the fexit program's first helper call.
So the entry program finds or inserts the task's slot first and reads the
clock last, and the exit program reads the clock first; everything else
(finding the start, reading the arguments, rwc->rmap_one, the ring
buffer) comes after the interval.

The slot is keyed by the task (bpf_get_current_pid_tgid(): tgid << 32 |
pid), not the CPU: a walk can sleep (anon_vma/i_mmap rwsem, cond_resched)
and resume on another CPU. One hash map of slots per function, like the
fprobe pairing's stack per (pid, function). The exit program zeroes the
slot it consumed, so an exit without a fresh entry (a walk already
running when the programs were attached) is counted, not paired.

Only the followed tasks are timed: the entry program looks the thread id
up in the follow map (filled by the backend's follow(), the tasks whose
walks the trigger causes) before it takes a slot, so other tasks' walks
(kswapd, kcompactd, another process's NUMA balancing) cost one lookup,
outside any timed window, and neither reach the ring buffer nor count as
lost. The exit program's matched path is unchanged; on its unmatched path
it counts only followed tasks. The key is the low half of the stored
pid_tgid, read in place: the thread id on the little-endian machines
syscall.NR_BPF knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from rmapbench.tracing.bpf import insn
from rmapbench.tracing.bpf.insn import FP, JEQ, JNE, Assembler, Insn, W
from rmapbench.tracing.bpf.records import RECORD_SIZE, Field

# Helpers (the kernel's enum bpf_func_id).
MAP_LOOKUP, MAP_UPDATE, KTIME_GET_NS, GET_CURRENT_PID_TGID, RINGBUF_OUTPUT = 1, 2, 5, 14, 130
RB_NO_WAKEUP = 1  # bpf_ringbuf_output(): no irq_work to wake a reader; this one polls

# counters map slots
DROPPED, UNMATCHED = 0, 1
COUNTERS = 2

# Stack layout of the exit program: the record, then the key below it.
_REC = -RECORD_SIZE - 8  # the record at fp-64 .. fp-8
_KEY = -8  # the task's key (pid_tgid)
_IDX = _REC - 8  # a counters index (u32)


@dataclass(frozen=True)
class Maps:
    start: int  # hash: pid_tgid -> the entry's clock read (0: consumed)
    ringbuf: int  # records (records.py) out to user space
    counters: int  # array of u64: DROPPED, UNMATCHED
    follow: int  # hash: thread id (u32) -> 1, the tasks whose walks count


@dataclass(frozen=True)
class Shape:
    """What the exit program reads of the function's arguments (after the
    interval): the folio; `rwc` (struct rmap_walk_control *) gives
    rwc->rmap_one at `rmap_one_offset`; `locked`, of rmap_walk_anon/file.
    Each at its argument's position (tracing/walkfuncs.py: rwc is the
    fifth of __rmap_walk_file's six). A calibration function reads none of
    them (records.py keeps the fields 0)."""

    index: int  # the function's number in the records
    folio: bool = True
    rwc: bool = True
    locked: bool = False
    rmap_one_offset: int = 16
    folio_arg: int = 0
    rwc_arg: int = 1
    locked_arg: int = 2


def entry(maps: Maps) -> list[Insn]:
    a = Assembler()
    a.emit(insn.call(GET_CURRENT_PID_TGID), insn.store(FP, _KEY, 0))
    _lookup(a, maps.follow, _KEY)  # the thread id: the key's low half
    a.jump_if(JEQ, 0, 0, "out")
    _lookup(a, maps.start, _KEY)
    a.jump_if(JNE, 0, 0, "have")
    # First walk of this task: insert its slot, then find it.
    a.emit(insn.store_imm(FP, _KEY - 8, 0))
    a.emit(insn.load_map_fd(1, maps.start), insn.mov_reg(2, FP), insn.add_imm(2, _KEY))
    a.emit(insn.mov_reg(3, FP), insn.add_imm(3, _KEY - 8), insn.mov_imm(4, 0))
    a.emit(insn.call(MAP_UPDATE))
    _lookup(a, maps.start, _KEY)
    a.jump_if(JEQ, 0, 0, "out")
    a.label("have")
    # The clock last, kept with one store.
    a.emit(insn.mov_reg(6, 0), insn.call(KTIME_GET_NS), insn.store(6, 0, 0))
    a.label("out")
    a.emit(insn.mov_imm(0, 0), insn.exit_())
    return a.assemble()


def exit_(maps: Maps, shape: Shape) -> list[Insn]:
    a = Assembler()
    # The clock first; r6 = ctx, r7 = end.
    a.emit(insn.mov_reg(6, 1), insn.call(KTIME_GET_NS), insn.mov_reg(7, 0))
    a.emit(insn.call(GET_CURRENT_PID_TGID), insn.store(FP, _KEY, 0))
    a.emit(insn.store(FP, _rec(Field.PID), 0))
    _lookup(a, maps.start, _KEY)
    a.jump_if(JEQ, 0, 0, "unmatched")
    a.emit(insn.load(1, 0, 0))
    a.jump_if(JEQ, 1, 0, "unmatched")
    a.emit(insn.store_imm(0, 0, 0))  # consumed
    a.emit(insn.mov_reg(2, 7), insn.sub_reg(2, 1))
    a.emit(insn.store(FP, _rec(Field.END), 7), insn.store(FP, _rec(Field.DURATION), 2))
    a.emit(insn.store_imm(FP, _rec(Field.FUNCTION), shape.index))
    if shape.folio:
        a.emit(insn.load(1, 6, 8 * shape.folio_arg), insn.store(FP, _rec(Field.FOLIO), 1))
    else:
        a.emit(insn.store_imm(FP, _rec(Field.FOLIO), 0))
    if shape.rwc:
        # A BTF pointer's dereference: the JIT makes it a load that reads
        # 0 instead of faulting (BPF_PROBE_MEM).
        a.emit(insn.load(1, 6, 8 * shape.rwc_arg), insn.load(1, 1, shape.rmap_one_offset))
        a.emit(insn.store(FP, _rec(Field.RMAP_ONE), 1))
    else:
        a.emit(insn.store_imm(FP, _rec(Field.RMAP_ONE), 0))
    if shape.locked:
        # A bool in a saved 64-bit register: only its low byte is defined.
        a.emit(insn.load(1, 6, 8 * shape.locked_arg), insn.and_imm(1, 0xFF))
        a.emit(insn.store(FP, _rec(Field.LOCKED), 1))
    else:
        a.emit(insn.store_imm(FP, _rec(Field.LOCKED), 0))
    a.emit(insn.load_map_fd(1, maps.ringbuf), insn.mov_reg(2, FP), insn.add_imm(2, _REC))
    a.emit(insn.mov_imm(3, RECORD_SIZE), insn.mov_imm(4, RB_NO_WAKEUP))
    a.emit(insn.call(RINGBUF_OUTPUT))
    a.jump_if(JEQ, 0, 0, "out")
    _count(a, maps.counters, DROPPED)
    a.goto("out")
    a.label("unmatched")
    _lookup(a, maps.follow, _KEY)  # another task's walk is none of ours
    a.jump_if(JEQ, 0, 0, "out")
    _count(a, maps.counters, UNMATCHED)
    a.label("out")
    a.emit(insn.mov_imm(0, 0), insn.exit_())
    return a.assemble()


def _rec(f: Field) -> int:
    return _REC + 8 * f


def _lookup(a: Assembler, map_fd: int, key: int) -> None:
    """r0 = bpf_map_lookup_elem(map, fp + key)"""
    a.emit(insn.load_map_fd(1, map_fd), insn.mov_reg(2, FP), insn.add_imm(2, key))
    a.emit(insn.call(MAP_LOOKUP))


def _count(a: Assembler, map_fd: int, slot: int) -> None:
    """counters[slot] += 1 (atomically: walks run on every CPU)."""
    a.emit(insn.store_imm(FP, _IDX, slot, W))
    _lookup(a, map_fd, _IDX)
    skip = f"nocount{len(a.insns)}"
    a.jump_if(JEQ, 0, 0, skip)
    a.emit(insn.mov_imm(1, 1), insn.atomic_add(0, 0, 1))
    a.label(skip)
