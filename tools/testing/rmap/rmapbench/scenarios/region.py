"""The upstream benchmark's three cases: one region of N identical pages,
split into many VMAs, backed by KSM-merged, plain anonymous or file pages.

Splitting with mprotect(PROT_READ) on every K-th page keeps ONE anon_vma
(or one file's i_mmap) with one anon_vma_chain per VMA. rmap_walk_anon()
searches the interval tree at the page's own offset, so it barely notices
the split; rmap_walk_ksm() searches each sharer's anon_vma over the whole
address range and visits every VMA, which is the cost the suite exposes.
"""

from __future__ import annotations

import errno
import os
import re
import types
from pathlib import Path
from typing import Any, ClassVar

from rmapbench.ksft.options import KSM_OPTIONS, CasePolicy
from rmapbench.machine import ksm, maps, mm, thp
from rmapbench.machine.knobs import read_knob
from rmapbench.scenarios.base import NO_MEMORY, Scenario, SkipScenario

FILL_BYTE = 0xAA
MAX_MAP_COUNT = "/proc/sys/vm/max_map_count"
TMPFS_LIKE = {"tmpfs", "ramfs", "hugetlbfs", "devtmpfs"}


def expected_vmas(pages: int, split: int) -> int:
    """VMAs after mprotect(PROT_READ) of every split-th page: the number of
    runs of equal protection."""
    if split <= 1:
        return 1
    # Page i is read-only when i % split == 0: the protection changes
    # between pages i-1 and i where i % split is 0 or 1 (0 < i < pages).
    return 1 + len(range(split, pages, split)) + len(range(1, pages, split))


NO_SPACE = "not enough space for the test file"
NO_SHARED_MAPPING = "the test file cannot be mapped shared"


def file_slack(length: int) -> int:
    """Room a file of length bytes needs beyond its data: its extent tree
    and the journal's share, generously (1/64 and a MiB)."""
    return length // 64 + (1 << 20)


def free_bytes(path: Path) -> int:
    """Bytes free at path for anyone, as df's "Avail": the blocks a
    filesystem reserves for root are left to the system's own daemons."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _no_space(directory: Path, need: int, free: int) -> str:
    return (
        f"{directory} has {free / 2**20:.1f} MiB free, the test file needs "
        f"{need / 2**20:.1f} MiB (--pages, or --workdir elsewhere)"
    )


def _tempfile() -> types.ModuleType:
    """tempfile, imported by the one case that needs it (the file case):
    with its own imports it costs the others about 0.1 s under TCG."""
    import tempfile

    return tempfile


MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = re.compile(rb"\\([0-7]{3})")


def unmangle(field: bytes) -> bytes:
    """A mountinfo field as it is: the kernel writes a space, tab, newline
    and backslash of a path as \\040, \\011, \\012 and \\134 (every other byte,
    UTF-8 or not, as it is)."""
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field)


def fs_type(path: Path, mountinfo: str = MOUNTINFO) -> str:
    """Filesystem type of the mount holding path (longest mount point)."""
    real = os.fsencode(os.path.realpath(path))
    best, kind = b"", b"unknown"
    with open(mountinfo, "rb") as f:
        for line in f:
            pre, _, post = line.partition(b" - ")
            mount_point = unmangle(pre.split()[4])
            inside = real == mount_point or real.startswith(mount_point.rstrip(b"/") + b"/")
            if inside and len(mount_point) >= len(best):
                best, kind = mount_point, unmangle(post.split()[0])
    return os.fsdecode(kind)


class RegionScenario(Scenario):
    """N pages of identical content, THP off, split into VMAs."""

    flags: ClassVar[int] = mm.MAP_PRIVATE | mm.MAP_ANONYMOUS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.addr = 0
        self.length = self.opts.pages * mm.PAGE_SIZE
        self.sharers: list[int] = []

    def params(self) -> dict[str, Any]:
        return {"pages": self.opts.pages, "split": self.opts.split}

    def footprint(self) -> int:
        # Every page is written before anything is merged or shared.
        return self.length

    def target_index(self) -> int:
        # Page 1 stays writable for any split >= 2; page 0 when there is one.
        return 1 if self.opts.pages > 1 else 0

    def _raise_map_count(self, needed: int) -> None:
        in_use = len(maps.read_lines(os.getpid()))
        limit = int(read_knob(MAX_MAP_COUNT))
        if in_use + needed + 1000 > limit:
            self.journal.set(MAX_MAP_COUNT, in_use + needed + 1000)

    def _map(self, fd: int = -1) -> None:
        try:
            # Its own VMA whatever lies beside it (mm.mmap_guarded() says why).
            self.addr = mm.mmap_guarded(self.length, mm.PROT_READ | mm.PROT_WRITE, self.flags, fd)
        except mm.MMError as e:
            # Past what MemAvailable allowed (the preflight): the commit
            # limit under vm.overcommit_memory=2, or RLIMIT_AS.
            if e.errno != errno.ENOMEM:
                raise
            raise SkipScenario(
                NO_MEMORY,
                f"mmap() of the {self.length / 2**20:.0f} MiB region: {os.strerror(e.errno)} "
                "(the commit limit of vm.overcommit_memory=2, or RLIMIT_AS)",
            ) from e
        # THP would turn the region into a few huge folios and the later
        # mprotect splits would run extra rmap_walk_locked walks. A kernel
        # without THP (Debian's PREEMPT_RT one) has none to keep off, and
        # refuses the advice with EINVAL.
        if thp.available():
            mm.madvise(self.addr, self.length, mm.MADV_NOHUGEPAGE)
        mm.fill(self.addr, self.length, FILL_BYTE)

    def _split(self) -> None:
        vmas = expected_vmas(self.opts.pages, self.opts.split)
        self._raise_map_count(vmas)
        if self.opts.split > 1:
            for i in range(0, self.opts.pages, self.opts.split):
                mm.mprotect(self.addr + i * mm.PAGE_SIZE, mm.PAGE_SIZE, mm.PROT_READ)
        found = maps.count_in(os.getpid(), self.addr, self.addr + self.length)
        self.setup["vmas_expected"] = vmas
        self.setup["vmas"] = found
        if found != vmas:
            raise RuntimeError(f"expected {vmas} VMAs after the split, /proc/self/maps has {found}")

    def target(self) -> int:
        return self.addr + self.target_index() * mm.PAGE_SIZE

    def _record_sharers(self) -> None:
        """The region's pages that map the target's frame (one, or all the
        pages KSM merged into it). verify() checks each of them."""
        pfns = mm.pfns(os.getpid(), self.addr, self.opts.pages)
        target = pfns[self.target_index()]
        self.sharers = [i for i, pfn in enumerate(pfns) if pfn == target]
        self.setup["target_sharers_here"] = len(self.sharers)

    def verify(self) -> list[str]:
        pid = os.getpid()
        # A trigger that unmaps (pageout) leaves the target not present:
        # fault it back in (a read: content unchanged) so its frame, the one
        # every sharer must map, is known.
        mm.read_bytes(self.target(), 1)
        # Only the pagemap entries of the target and its sharers: reading
        # the whole region's cost 50 ms a sample at 20,000 pages under TCG.
        expected, *found = mm.pfns_at(pid, self.addr, [self.target_index(), *self.sharers])
        problems = []
        for i, pfn in zip(self.sharers, found, strict=True):
            if pfn != expected:
                problems.append(
                    f"pid {pid} address {self.addr + i * mm.PAGE_SIZE:#x} maps frame {pfn:#x}, "
                    f"the target is on {expected:#x}"
                )
        # Every mapping of one frame sees the same bytes: one read of the
        # target's frame is the content of every sharer on it.
        if mm.read_bytes(self.target(), mm.PAGE_SIZE) != bytes([FILL_BYTE]) * mm.PAGE_SIZE:
            problems.append(
                f"pid {pid} address {self.target():#x} frame {expected:#x}: content changed"
            )
        return problems

    def _check_type(self) -> None:
        info = mm.page_info(os.getpid(), self.target())
        self.setup["target_page_type"] = info.page_type
        self.setup["target_mapcount"] = info.mapcount
        if info.page_type != self.page_type:
            raise RuntimeError(
                f"target page is {info.page_type}, expected {self.page_type} (pfn {info.pfn:#x})"
            )

    def teardown(self) -> None:
        if self.addr:
            mm.munmap_guarded(self.addr, self.length)
            self.addr = 0


class AnonScenario(RegionScenario):
    name = "anon"
    page_type = "anon"
    backing = "anon"
    target_mapped_once = True

    def build(self) -> int:
        self._map()
        self._split()
        self._check_type()
        self._record_sharers()
        return self.target()


class KsmScenario(RegionScenario):
    name = "ksm"
    page_type = "ksm"
    backing = "ksm"
    policy = CasePolicy(uses=KSM_OPTIONS)
    target_mapped_once = False

    def preflight(self) -> None:
        if not ksm.available():
            raise SkipScenario("KSM not available")

    def build(self) -> int:
        self._map()
        mm.madvise(self.addr, self.length, mm.MADV_MERGEABLE)
        self._split()
        result = ksm.merge(self.journal, self.target(), self.opts.pages, self.opts.merge_timeout)
        self.setup["ksm"] = result.as_dict()
        self._check_type()
        self._check_shared()
        return self.target()

    def _check_shared(self) -> None:
        """A merged page is one frame behind many virtual pages of ours."""
        self._record_sharers()
        if len(self.sharers) < 2:
            raise RuntimeError("the target's frame is not shared within the region")

    def teardown(self) -> None:
        had_region = bool(self.addr)
        super().teardown()
        if had_region:
            ksm.drain(self.journal)


class FileScenario(RegionScenario):
    name = "file"
    page_type = "file"
    backing = "file"
    policy = CasePolicy(uses=frozenset({"workdir"}))
    target_mapped_once = True
    flags = mm.MAP_SHARED

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fd = -1
        self.path: str | None = None
        self.directory = self.opts.workdir or Path(_tempfile().gettempdir())

    def preflight(self) -> None:
        kind = fs_type(self.directory)
        self.setup["filesystem"] = kind
        if kind in TMPFS_LIKE:
            # shmem pages would be measured, not a real filesystem's page
            # cache; a wrong answer is worse than none.
            raise SkipScenario(
                "no real filesystem for the test file", f"{self.directory} is on {kind}"
            )
        need, free = self.length + file_slack(self.length), free_bytes(self.directory)
        if free < need:
            raise SkipScenario(NO_SPACE, _no_space(self.directory, need, free))

    def build(self) -> int:
        self.fd, self.path = _tempfile().mkstemp(prefix="rmapbench-", dir=self.directory)
        # The blocks are allocated now: a filesystem that fills up between
        # the preflight and here fails this call with ENOSPC, where the
        # memset below would get SIGBUS from the fault's page_mkwrite and
        # kill the program before it restores anything. On a filesystem
        # with fallocate (ext4, xfs, btrfs) page cache and mappings are as
        # ftruncate() would leave them: unwritten extents, read as zeros,
        # no page cached. Elsewhere glibc writes a zero into every block,
        # which caches pages the memset then dirties: the same end state.
        try:
            os.posix_fallocate(self.fd, 0, self.length)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            need = self.length + file_slack(self.length)
            raise SkipScenario(
                NO_SPACE, _no_space(self.directory, need, free_bytes(self.directory))
            ) from e
        try:
            self._map(self.fd)
        except mm.MMError as e:
            # A filesystem without shared writable mappings (9p without a
            # cache, some FUSE ones) refuses the mmap() itself: there is no
            # page cache to walk.
            if self.addr or e.errno not in (errno.EINVAL, errno.ENODEV, errno.EOPNOTSUPP):
                raise
            raise SkipScenario(
                NO_SHARED_MAPPING,
                f"{self.directory} ({self.setup.get('filesystem')}) refuses "
                f"mmap(MAP_SHARED, PROT_WRITE): {os.strerror(e.errno)}",
            ) from e
        # Clean pages migrate without waiting on writeback.
        os.fsync(self.fd)
        self._split()
        self._check_type()
        self._record_sharers()
        return self.target()

    def teardown(self) -> None:
        super().teardown()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.path:
            os.unlink(self.path)
            self.path = None
