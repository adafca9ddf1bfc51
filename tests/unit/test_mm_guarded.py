"""mm.mmap_guarded() on this machine's kernel: an anonymous mapping placed
beside another with the same flags is merged into it (the control), and the
guarded one stays a VMA of its own with a neighbour of the same flags next
to its guard; munmap_guarded() leaves nothing of it. A region merged into an
interpreter arena is what failed the anon case on a kernel without THP
(`expected 1000 VMAs after the split, /proc/self/maps has 999`): there no
MADV_NOHUGEPAGE changes its flags afterwards."""

from __future__ import annotations

import errno
import os

import pytest

from rmapbench.machine import mm

PAGE = mm.PAGE_SIZE
RW = mm.PROT_READ | mm.PROT_WRITE
ANON = mm.MAP_PRIVATE | mm.MAP_ANONYMOUS
MAP_FIXED_NOREPLACE = 0x100000


def vmas() -> list[tuple[int, int, str]]:
    out = []
    with open(f"/proc/{os.getpid()}/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            out.append((lo, hi, perms))
    return out


def vma_at(addr: int) -> tuple[int, int, str]:
    (found,) = [v for v in vmas() if v[0] <= addr < v[1]]
    return found


def test_an_unguarded_neighbour_is_merged() -> None:
    base = mm.mmap(4 * PAGE, mm.PROT_NONE, ANON | mm.MAP_NORESERVE)
    try:
        mm.mmap(2 * PAGE, RW, ANON | mm.MAP_FIXED, addr=base)
        mm.fill(base, 2 * PAGE, 1)  # the first has its anon_vma before the second comes
        mm.mmap(2 * PAGE, RW, ANON | mm.MAP_FIXED, addr=base + 2 * PAGE)
        lo, hi, _ = vma_at(base + 2 * PAGE)
        # One VMA holds both (and maybe more: a neighbour below joins too).
        assert lo <= base and hi >= base + 4 * PAGE
    finally:
        mm.munmap(base, 4 * PAGE)


def test_a_guarded_mapping_is_its_own_vma_and_leaves_nothing() -> None:
    length = 8 * PAGE
    addr = mm.mmap_guarded(length, RW, ANON)
    neighbour = 0
    try:
        mm.fill(addr, length, 1)
        assert vma_at(addr) == (addr, addr + length, "rw-p")
        assert vma_at(addr - PAGE)[2] == vma_at(addr + length)[2] == "---p"
        # A mapping with the region's flags right above the upper guard,
        # where the interpreter's next arena could land.
        try:
            neighbour = mm.mmap(2 * PAGE, RW, ANON | MAP_FIXED_NOREPLACE,
                                addr=addr + length + PAGE)
        except mm.MMError:
            neighbour = 0  # the place is taken: the guards above still hold
        assert vma_at(addr) == (addr, addr + length, "rw-p")
    finally:
        mm.munmap_guarded(addr, length)
        if neighbour:
            mm.munmap(neighbour, 2 * PAGE)
    assert not [v for v in vmas() if v[0] < addr + length + PAGE and v[1] > addr - PAGE]


def test_a_refused_mapping_leaves_no_reservation() -> None:
    before = vmas()
    with pytest.raises(mm.MMError) as e:
        mm.mmap_guarded(PAGE, RW, mm.MAP_SHARED, fd=-1)  # shared, of no file
    assert e.value.errno in (errno.EBADF, errno.EINVAL)
    # The interpreter may map an arena meanwhile: no reservation is left.
    assert not [v for v in set(vmas()) - set(before) if v[2] == "---p"]
