"""Memory-management system calls through ctypes.

Python's mmap module cannot mprotect part of a mapping, hands out MAP_SHARED
(shmem) memory for anonymous maps by default and hides the mapping's address,
so the scenarios map, protect, advise and migrate memory through libc here.
Only x86-64 syscall numbers are needed: the suite runs on x86-64 guests.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_FIXED = 0x10
MAP_FAILED = ctypes.c_void_p(-1).value

MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_COLLAPSE = 25
MADV_SOFT_OFFLINE = 101

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2

MS_SYNC = 4

MPOL_MF_MOVE_ALL = 1 << 2

_SYSCALLS = {"x86_64": {"move_pages": 279}}

# /proc/kpageflags bits (include/uapi/linux/kernel-page-flags.h).
KPF_DIRTY = 4
KPF_LRU = 5
KPF_ANON = 12
KPF_COMPOUND_HEAD = 15
KPF_COMPOUND_TAIL = 16
KPF_HUGE = 17
KPF_KSM = 21
KPF_THP = 22

_PM_PRESENT = 1 << 63
_PM_PFN_MASK = (1 << 55) - 1


def load_libc() -> ctypes.CDLL:
    """The C library, by glibc's soname; ctypes.util.find_library() only
    when that fails: it runs `ldconfig -p` in a subprocess (about 90 ms a
    program under TCG) to find that same name."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes import util

        return ctypes.CDLL(util.find_library("c"), use_errno=True)


_libc = load_libc()
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_void_p,
]


class MMError(OSError):
    """A memory-management call failed; the message names the call."""


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise MMError(err, f"{what}: {os.strerror(err)}")


def mmap(
    length: int, prot: int, flags: int, fd: int = -1, offset: int = 0, addr: int = 0
) -> int:
    """mmap(2); addr is a hint, or the place with MAP_FIXED."""
    addr = _libc.mmap(addr or None, length, prot, flags, fd, offset)
    if addr is None or addr == MAP_FAILED:
        err = ctypes.get_errno()
        raise MMError(err, f"mmap of {length} bytes: {os.strerror(err)}")
    return int(addr)


def munmap(addr: int, length: int) -> None:
    _check(_libc.munmap(addr, length), "munmap")


def mmap_guarded(length: int, prot: int, flags: int, fd: int = -1) -> int:
    """mmap(2) of length bytes between two PROT_NONE guard pages; returns
    the mapping's address, the guards are the pages just below and above.

    An anonymous mapping placed next to another with the same flags is
    merged into it (vma_merge() at mmap time), and then shares that
    neighbour's VMA and anon_vma: the interpreter's arenas are such
    neighbours. Without a later madvise() that changes the flags (THP's
    MADV_NOHUGEPAGE, KSM's MADV_MERGEABLE) the region is not one VMA of
    its own, and where it is split back out it keeps the neighbour's
    anon_vma: a layout that changes from run to run. The guards differ in
    their protection, so nothing merges across them. The reservation takes
    no commit charge (MAP_NORESERVE, PROT_NONE); the mapping replaces its
    middle with MAP_FIXED."""
    span = length + 2 * PAGE_SIZE
    base = mmap(span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
    try:
        return mmap(length, prot, flags | MAP_FIXED, fd, addr=base + PAGE_SIZE)
    except MMError:
        munmap(base, span)
        raise


def munmap_guarded(addr: int, length: int) -> None:
    """Unmap what mmap_guarded() made at addr, guards included (whatever of
    the middle was already unmapped or moved away)."""
    munmap(addr - PAGE_SIZE, length + 2 * PAGE_SIZE)


def mremap(old: int, old_len: int, new_len: int, flags: int, new: int = 0) -> int:
    """mremap(2); returns the new address. With MREMAP_FIXED the range at
    `new` is unmapped first, like MAP_FIXED."""
    addr = _libc.mremap(old, old_len, new_len, flags, new)
    if addr is None or addr == MAP_FAILED:
        err = ctypes.get_errno()
        raise MMError(err, f"mremap of {old:#x} to {new:#x}: {os.strerror(err)}")
    return int(addr)


def mprotect(addr: int, length: int, prot: int) -> None:
    # Called once per VMA of a split region: the message is only made on
    # failure (20,000 formats cost 0.1 s under TCG).
    if _libc.mprotect(addr, length, prot) != 0:
        _check(-1, f"mprotect at {addr:#x}")


def madvise(addr: int, length: int, advice: int) -> None:
    _check(_libc.madvise(addr, length, advice), f"madvise({advice}) at {addr:#x}")


def msync(addr: int, length: int, flags: int) -> None:
    _check(_libc.msync(addr, length, flags), f"msync at {addr:#x}")


def fill(addr: int, length: int, byte: int) -> None:
    """Write every byte of the range, faulting each page in."""
    ctypes.memset(addr, byte, length)


def write_bytes(addr: int, data: bytes) -> None:
    ctypes.memmove(addr, data, len(data))


def read_bytes(addr: int, length: int) -> bytes:
    return ctypes.string_at(addr, length)


def move_pages(pid: int, addrs: list[int], nodes: list[int] | None, flags: int) -> list[int]:
    """move_pages(2); returns the per-page status (node or -errno).

    With nodes=None the kernel only reports where each page is.
    """
    arch = os.uname().machine  # platform.machine(), without importing platform
    nr = _SYSCALLS.get(arch, {}).get("move_pages")
    if nr is None:
        raise MMError(errno.ENOSYS, f"move_pages: no syscall number for {arch}")
    count = len(addrs)
    pages = (ctypes.c_void_p * count)(*addrs)
    status = (ctypes.c_int * count)(*([-1] * count))
    node_arr = (ctypes.c_int * count)(*nodes) if nodes is not None else None
    ret = _libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_int(pid),
        ctypes.c_ulong(count),
        pages,
        node_arr,
        status,
        ctypes.c_int(flags),
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise MMError(err, f"move_pages: {os.strerror(err)}")
    return list(status)


@dataclass(frozen=True)
class PageInfo:
    """What pagemap and kpageflags say about one virtual page."""

    present: bool
    pfn: int
    flags: int
    mapcount: int = 0

    def has(self, bit: int) -> bool:
        return bool(self.flags >> bit & 1)

    @property
    def page_type(self) -> str:
        """ksm, anon or file, the way rmap_walk dispatches on folio->mapping.

        Some kernels (6.12 among them) report KPF_KSM for every anonymous
        page: they test `mapping & PAGE_MAPPING_KSM` for non-zero instead of
        equal. A KSM page is also mapped more than once, which tells them
        apart; callers that must be sure compare PFNs as well."""
        if self.has(KPF_ANON):
            return "ksm" if self.has(KPF_KSM) and self.mapcount > 1 else "anon"
        return "file"


def page_info(pid: int, addr: int) -> PageInfo:
    """Look a page up in /proc/PID/pagemap and /proc/kpageflags (root only:
    without CAP_SYS_ADMIN the kernel zeroes the PFN)."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(addr // PAGE_SIZE * 8)
        (entry,) = struct.unpack("<Q", f.read(8))
    present = bool(entry & _PM_PRESENT)
    pfn = entry & _PM_PFN_MASK if present else 0
    flags = count = 0
    if present and pfn:
        flags = _read_u64("/proc/kpageflags", pfn)
        count = _read_u64("/proc/kpagecount", pfn)
    return PageInfo(present=present, pfn=pfn, flags=flags, mapcount=count)


def pfn(pid: int, addr: int) -> int:
    """The PFN of one page (0 when not present): page_info()'s pfn, from
    the pagemap alone, without the two reads of the page's flags and count
    (a sampling loop asks twice per firing)."""
    return pfns_at(pid, addr, [0])[0]


def pfns(pid: int, addr: int, pages: int) -> list[int]:
    """PFNs of `pages` consecutive pages (0 where not present), one read."""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(addr // PAGE_SIZE * 8)
        raw = f.read(pages * 8)
    return [e & _PM_PFN_MASK if e & _PM_PRESENT else 0 for e in struct.unpack(f"<{pages}Q", raw)]


def pfns_at(pid: int, addr: int, indices: Sequence[int]) -> list[int]:
    """PFNs of the pages at these indices from addr (0 where not present),
    in their order: the span from the first to the last in one read when it
    is at most 64 entries per page asked for, else one 8-byte read each. The
    same answer as pfns() for those pages, without reading a whole region's
    entries to check a few of them."""
    if not indices:
        return []
    lo, hi = min(indices), max(indices)
    base = addr // PAGE_SIZE
    fd = os.open(f"/proc/{pid}/pagemap", os.O_RDONLY)
    try:
        if hi - lo + 1 <= 64 * len(indices):
            n = hi - lo + 1
            span = struct.unpack(f"<{n}Q", os.pread(fd, n * 8, (base + lo) * 8))
            entries = [span[i - lo] for i in indices]
        else:
            entries = [struct.unpack("<Q", os.pread(fd, 8, (base + i) * 8))[0] for i in indices]
    finally:
        os.close(fd)
    return [e & _PM_PFN_MASK if e & _PM_PRESENT else 0 for e in entries]


PAGEMAP = "/proc/self/pagemap"
KPAGEFLAGS = "/proc/kpageflags"
KPAGECOUNT = "/proc/kpagecount"


def page_lookup_problem(addr: int | None = None, pagemap: str = PAGEMAP,
                        kpageflags: str = KPAGEFLAGS, kpagecount: str = KPAGECOUNT
                        ) -> str | None:  # fmt: skip
    """Why page_info() cannot tell what backs a page here, or None: the
    three files are missing without CONFIG_PROC_PAGE_MONITOR, and a root
    without CAP_SYS_ADMIN in the initial user namespace (a container's)
    reads every PFN of the pagemap as 0, which page_info() would take for
    "not a page" and every check after it for a file page. Looks up a
    page of its own, written first (or the page at `addr` of `pagemap`)."""
    region = 0
    if addr is None:
        region = addr = mmap(PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
        fill(addr, PAGE_SIZE, 1)
    try:
        try:
            entry = _read_u64(pagemap, addr // PAGE_SIZE)
        except (OSError, struct.error) as e:
            return f"{pagemap}: {_why(e)}"
        if not entry & _PM_PRESENT:
            return f"{pagemap} shows a page just written as not present"
        pfn = entry & _PM_PFN_MASK
        if not pfn:
            return (f"{pagemap} hides page frame numbers (it shows them to CAP_SYS_ADMIN "
                    "in the initial user namespace only)")  # fmt: skip
        for path in (kpageflags, kpagecount):
            try:
                _read_u64(path, pfn)
            except (OSError, struct.error) as e:
                return f"{path}: {_why(e)}"
        return None
    finally:
        if region:
            munmap(region, PAGE_SIZE)


def _why(e: OSError | struct.error) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return "shorter than the entry looked up"


def _read_u64(path: str, index: int) -> int:
    with open(path, "rb") as f:
        f.seek(index * 8)
        (value,) = struct.unpack("<Q", f.read(8))
    return int(value)


def meminfo_kb(field: str) -> int | None:
    """A /proc/meminfo field in kB (MemAvailable, SwapTotal, ...); None
    when this kernel has no such line."""
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name == field:
                return int(rest.split()[0])
    return None


def page_node(addr: int) -> int:
    """The NUMA node the calling process's page at addr sits on."""
    (status,) = move_pages(0, [addr], None, 0)
    if status < 0:
        raise MMError(-status, f"page at {addr:#x} has no node: {os.strerror(-status)}")
    return status


def online_nodes() -> list[int]:
    """NUMA nodes that have memory, from sysfs (one node on non-NUMA kernels)."""
    try:
        with open("/sys/devices/system/node/has_memory") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return [0]
    return parse_cpulist(text)


def parse_cpulist(text: str) -> list[int]:
    """Parse the kernel's list format ("0-2,5")."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def stamp_pages(addr: int, pages: int, first: int = 1) -> None:
    """Write each page's number (first, first + 1, ...) into its first 8
    bytes, so that pages of one region differ from each other."""
    for i in range(pages):
        ctypes.c_uint64.from_address(addr + i * PAGE_SIZE).value = first + i
