"""BTF type ids of the probed functions, read from /sys/kernel/btf/vmlinux
(CONFIG_DEBUG_INFO_BTF; format in Documentation/bpf/btf.rst).

A fentry/fexit program is loaded for one function, named by the BTF id of
its BTF_KIND_FUNC (attach_btf_id); the verifier then knows its arguments'
types from the FUNC_PROTO it points to. The file is a 24-byte header, a
type section and a string section. A type's id is its position in the
type section (the first is 1), and types have variable lengths (a header
of three u32 - name offset, info with the kind and vlen, size or type -
then kind-specific data), so finding an id means stepping over every
type before it: ~127,000 of them in 5.5 MB for a 6.12 kernel. That step
is the one loop here, over the section viewed as u32 words, with a table
of each kind's extra words; it stops once everything asked for is found.
The names are looked up first, in the string section, as byte strings
(BTF strings are deduplicated, so each has one offset), so the loop
compares integers only. Under TCG that pass took 0.25-0.7 s, paid by
every program that arms the backend; within a guest boot the result is
kept in $RMAPBENCH_CACHE_DIR (the guest's scratch /tmp, gone with the
guest: tracing/bootcache.py) under the running kernel's release and build
and the file's size, and the next program reads it there (cached_lookup()).
Without the variable nothing is stored.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rmapbench.tracing import bootcache

VMLINUX = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type/str off+len

KIND_STRUCT, KIND_FUNC = 4, 12
# Extra u32 words after a type's 12-byte header, by kind: a fixed count,
# and a count per vlen (include/uapi/linux/btf.h). Kinds 0-19 (6.12 has
# up to BTF_KIND_ENUM64 = 19).
_FIXED = (0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0)
_PER_VLEN = (0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3)


class BTFError(Exception):
    """The BTF cannot be read or lacks what was asked for; one line."""


@dataclass
class Found:
    funcs: dict[str, int] = field(default_factory=dict)  # function -> BTF id of its FUNC
    # struct -> member -> byte offset (bitfields left out)
    members: dict[str, dict[str, int]] = field(default_factory=dict)
    types: int = 0  # types stepped over


def parse(data: bytes, funcs: Sequence[str], structs: Sequence[str] = ()) -> Found:
    """The FUNC ids of `funcs` and the member offsets of `structs` that the
    BTF in `data` has (the missing ones are absent from the result).
    BTFError when `data` is not BTF as the kernel checks it (a header of
    its length, sections inside the file, NUL-bounded strings) or a type
    it steps over runs past its section or names a string past its own."""
    if len(data) < HEADER.size:
        raise BTFError("BTF shorter than its header")
    magic, version, _, hdr_len, type_off, type_len, str_off, str_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BTFError(f"not little-endian BTF (magic {magic:#x})")
    if version != 1:
        raise BTFError(f"BTF version {version}, not 1")
    if hdr_len < HEADER.size:
        raise BTFError(f"BTF header of {hdr_len} bytes, less than its fields")
    t0, s0 = hdr_len + type_off, hdr_len + str_off
    if t0 + type_len > len(data) or s0 + str_len > len(data) or type_len % 4:
        raise BTFError("BTF sections outside the file")
    strings = data[s0 : s0 + str_len]
    if strings and (strings[0] or strings[-1]):
        raise BTFError("BTF strings not NUL-bounded")
    wanted_f = _offsets(strings, funcs)
    wanted_s = _offsets(strings, structs)
    words = memoryview(data)[t0 : t0 + type_len].cast("I")
    found = Found()
    left = len(wanted_f) + len(wanted_s)
    fixed, per = _FIXED, _PER_VLEN
    i, tid, n = 0, 1, len(words)
    while i < n and left:
        if i + 3 > n:
            raise BTFError(f"BTF type {tid} cut short")
        name, info = words[i], words[i + 1]
        kind = (info >> 24) & 0x1F
        if kind >= len(fixed):
            raise BTFError(f"BTF type {tid} has unknown kind {kind}")
        end = i + 3 + fixed[kind] + per[kind] * (info & 0xFFFF)
        if end > n:
            raise BTFError(f"BTF type {tid} runs past the type section")
        if name in wanted_f and kind == KIND_FUNC:
            found.funcs[wanted_f.pop(name)] = tid
            left -= 1
        elif name in wanted_s and kind == KIND_STRUCT:
            found.members[wanted_s.pop(name)] = _members(words, i, info, strings)
            left -= 1
        i = end
        tid += 1
    found.types = tid - 1
    return found


def _offsets(strings: bytes, names: Sequence[str]) -> dict[int, str]:
    """String-section offset -> name, for the names present."""
    out = {}
    for name in names:
        at = strings.find(b"\0" + name.encode() + b"\0")
        if at >= 0:
            out[at + 1] = name
    return out


def _members(words: memoryview, i: int, info: int, strings: bytes) -> dict[str, int]:
    """A struct's members (name_off, type, offset: bits, or with the kind
    flag set bit 0-23 the offset and 24-31 a bitfield's size)."""
    kind_flag = info >> 31
    out = {}
    for m in range(info & 0xFFFF):
        name_off, _, offset = words[i + 3 + 3 * m : i + 6 + 3 * m]
        bits = offset & 0xFFFFFF if kind_flag else offset
        size = offset >> 24 if kind_flag else 0
        if bits % 8 or size:
            continue
        if name_off >= len(strings):
            raise BTFError(f"a member's name at {name_off}, past the BTF strings")
        end = strings.index(b"\0", name_off)  # found: the section ends with one
        out[strings[name_off:end].decode(errors="replace")] = bits // 8
    return out


def cached_lookup(funcs: Sequence[str], structs: Sequence[str] = (),
                  path: Path = VMLINUX) -> Found:  # fmt: skip
    """lookup(), kept for the rest of the boot where the guest runner gave
    a cache directory (tracing/bootcache.py)."""
    if bootcache.directory() is None:
        return lookup(funcs, structs, path)
    u = os.uname()
    try:
        size = path.stat().st_size
    except OSError:
        return lookup(funcs, structs, path)  # says why, in one line
    key = [u.release, u.version, str(path), size, list(funcs), list(structs)]
    stored = _stored(bootcache.load("btf", key))
    if stored is not None:
        return stored
    found = lookup(funcs, structs, path)
    bootcache.store("btf", key, {"funcs": found.funcs, "members": found.members,
                                 "types": found.types})  # fmt: skip
    return found


def _stored(data: object) -> Found | None:
    """A stored lookup, if it is one: ids within the types stepped over,
    offsets that are numbers (a file of the right key but another shape
    is looked up again, never trusted)."""
    if not isinstance(data, dict) or set(data) != {"funcs", "members", "types"}:
        return None
    funcs, members, types = data["funcs"], data["members"], data["types"]
    if type(types) is not int or not _counts(funcs, 1, types) or not isinstance(members, dict):
        return None
    if not all(isinstance(k, str) and _counts(v, 0, 1 << 32) for k, v in members.items()):
        return None
    return Found(dict(funcs), {k: dict(v) for k, v in members.items()}, types)


def _counts(d: object, low: int, high: int) -> bool:
    """A dict of str -> int within [low, high] (bool is no int here)."""
    return isinstance(d, dict) and all(
        isinstance(k, str) and type(v) is int and low <= v <= high for k, v in d.items()
    )


def lookup(funcs: Sequence[str], structs: Sequence[str] = (), path: Path = VMLINUX) -> Found:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BTFError(f"no {path} (CONFIG_DEBUG_INFO_BTF)") from None
    except OSError as e:
        raise BTFError(f"cannot read {path}: {e.strerror}") from None
    return parse(data, funcs, structs)
