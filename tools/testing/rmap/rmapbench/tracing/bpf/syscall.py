"""The bpf(2) commands the backend uses, through ctypes (include/uapi/
linux/bpf.h: union bpf_attr, 144 bytes in 6.12; a shorter attr is
accepted, the kernel zero-fills the rest, and every field this module
sets exists since 5.5). Each object is a file descriptor: the kernel
frees a map, program or link when its last fd closes, which a process's
exit does whatever killed it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct

NR_BPF = {"x86_64": 321, "aarch64": 280}

# Commands.
MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, PROG_LOAD = 0, 1, 2, 3, 5
RAW_TRACEPOINT_OPEN = 17
# Map, program and attach types.
MAP_HASH, MAP_ARRAY, MAP_RINGBUF = 1, 2, 27
PROG_TRACING = 26
TRACE_FENTRY, TRACE_FEXIT = 24, 25

ATTR_SIZE = 144
LOG_SIZE = 1 << 20


class BpfError(OSError):
    """A bpf(2) command failed; `log` holds the verifier's log for a load."""

    def __init__(self, what: str, err: int, log: str = "") -> None:
        super().__init__(err, os.strerror(err))
        self.what = what
        self.log = log

    def __str__(self) -> str:
        return f"{self.what}: {self.strerror}"

    def last_log_line(self) -> str:
        lines = [ln for ln in self.log.splitlines() if ln.strip()]
        # The verifier ends with a "processed N insns" summary after the
        # refusal when it got that far; the refusal is the line before.
        for ln in reversed(lines):
            if not ln.startswith(("processed ", "verification time")):
                return ln
        return ""


_libc: ctypes.CDLL | None = None


def _syscall() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    nr = NR_BPF.get(os.uname().machine)
    if nr is None:
        raise BpfError(what, errno.ENOSYS)
    ret = int(_syscall().syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr,
                                 ctypes.c_uint(len(attr))))  # fmt: skip
    if ret < 0:
        raise BpfError(what, ctypes.get_errno())
    return ret


def _attr(*fields: tuple[int, str, int | bytes]) -> ctypes.Array[ctypes.c_char]:
    """An attr with (offset, struct format, value) fields; zero elsewhere."""
    buf = ctypes.create_string_buffer(ATTR_SIZE)
    for off, fmt, value in fields:
        struct.pack_into("<" + fmt, buf, off, value)
    return buf


def _name(name: str) -> bytes:
    """An object's name: up to 15 characters, NUL-terminated."""
    return name[:15].encode()


def _addr(obj: ctypes.Array[ctypes.c_char] | None) -> int:
    return ctypes.addressof(obj) if obj is not None else 0


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
               name: str) -> int:  # fmt: skip
    attr = _attr((0, "I", map_type), (4, "I", key_size), (8, "I", value_size),
                 (12, "I", max_entries), (28, "16s", _name(name)))  # fmt: skip
    return bpf(MAP_CREATE, attr, f"map {name}")


def map_lookup(fd: int, key: bytes, value_size: int) -> bytes:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    bpf(MAP_LOOKUP_ELEM, _attr((0, "I", fd), (8, "Q", _addr(k)), (16, "Q", _addr(v))), "lookup")
    return v.raw


def map_update(fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    bpf(MAP_UPDATE_ELEM, _attr((0, "I", fd), (8, "Q", _addr(k)), (16, "Q", _addr(v))), "update")


def map_delete(fd: int, key: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    bpf(MAP_DELETE_ELEM, _attr((0, "I", fd), (8, "Q", _addr(k))), "delete")


def prog_load(insns: bytes, attach_type: int, btf_id: int, name: str, what: str) -> int:
    """Load a BPF_PROG_TYPE_TRACING program for fentry/fexit on the vmlinux
    function with BTF id `btf_id` (attach_btf_obj_fd 0: vmlinux). Tried
    without a log first (the verifier's log costs time); on a refusal
    again with one, whose text the error carries."""
    license = ctypes.create_string_buffer(b"GPL")
    code = ctypes.create_string_buffer(insns, len(insns))

    def attempt(log: ctypes.Array[ctypes.c_char] | None) -> int:
        attr = _attr(
            (0, "I", PROG_TRACING), (4, "I", len(insns) // 8), (8, "Q", _addr(code)),
            (16, "Q", _addr(license)), (24, "I", 1 if log is not None else 0),
            (28, "I", len(log) if log is not None else 0), (32, "Q", _addr(log)),
            (48, "16s", _name(name)), (68, "I", attach_type), (108, "I", btf_id),
        )  # fmt: skip
        return bpf(PROG_LOAD, attr, what)

    try:
        return attempt(None)
    except BpfError as e:
        if e.errno not in (errno.EACCES, errno.EINVAL, errno.EPERM):
            raise
    log = ctypes.create_string_buffer(LOG_SIZE)
    try:
        return attempt(log)
    except BpfError as e:
        raise BpfError(e.what, e.errno or errno.EINVAL,
                       log.value.decode(errors="replace")) from None  # fmt: skip


def attach(prog_fd: int, name: str) -> int:
    """Attach a fentry/fexit program at the function it was loaded for:
    BPF_RAW_TRACEPOINT_OPEN with no name makes a tracing link (5.5+); the
    program is detached when the link's fd closes."""
    return bpf(RAW_TRACEPOINT_OPEN, _attr((0, "Q", 0), (8, "I", prog_fd)), f"attach {name}")


def close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
