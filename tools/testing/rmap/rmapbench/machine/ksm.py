"""KSM: merge a region, prove it merged, stop ksmd, and clean up after.

ksmd is stopped (run=0) while walks are measured: a running ksmd takes
references on KSM pages while it scans, so migration of a KSM page fails its
refcount check and retries. run=0 keeps merged pages merged. run=2 is never
written: it unmerges every process's pages, not only ours.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rmapbench.ksft import phases
from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal, read_knob

log = logging.getLogger(__name__)

KSM = Path("/sys/kernel/mm/ksm")
# Fast scanning while we merge: ksmd sleeps 0 ms and scans this many pages
# per batch. Restored with everything else.
MERGE_PAGES_TO_SCAN = 10000
POLL_SECONDS = 0.05
# Knobs that shape the stable tree; KSM refuses to change them (EBUSY) while
# KSM pages exist. See ksm_knobs.py.
STRUCTURAL = ("max_page_sharing", "merge_across_nodes")


class MergeError(RuntimeError):
    """KSM did not merge the region in time."""


def available() -> bool:
    return (KSM / "run").exists()


def advisor_problem(root: Path = KSM) -> str | None:
    """Why ksmd cannot be made to scan fast here, or None: with KSM's
    advisor on (advisor_mode "none [scan-time]") ksmd sets pages_to_scan
    itself and mm/ksm.c refuses every write to it with EINVAL. The
    advisor is the administrator's choice, left as it is."""
    path = root / "advisor_mode"
    if not path.exists():  # kernels before the advisor
        return None
    mode = read_knob(path)
    if mode == "none":
        return None
    return f"KSM advisor_mode is {mode}: pages_to_scan is the advisor's ({path})"


def counter(name: str) -> int:
    return int(read_knob(KSM / name))


def process_merged_pages(pid: int) -> int | None:
    """Pages of this process that KSM merged (Linux 6.1+), or None."""
    try:
        return int(Path(f"/proc/{pid}/ksm_merging_pages").read_text())
    except (OSError, ValueError):
        return None


@dataclass
class MergeResult:
    seconds: float
    full_scans: int
    pages_shared: int
    pages_sharing: int
    max_page_sharing: int
    merge_across_nodes: int | None
    stable_node_dups: int
    process_merged: int | None
    # Other processes with mergeable memory when ksmd started: it merges
    # theirs too, and their pages stay merged after run is put back to 0.
    other_mergeable: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _start_fast_scanning(journal: Journal) -> None:
    journal.set(KSM / "sleep_millisecs", 0)
    pages = max(MERGE_PAGES_TO_SCAN, int(journal.original(KSM / "pages_to_scan")))
    journal.set(KSM / "pages_to_scan", pages)
    journal.set(KSM / "run", 1)


def _wait_full_scans(n: int, deadline: float) -> int:
    start = counter("full_scans")
    while counter("full_scans") < start + n:
        if time.monotonic() > deadline:
            raise MergeError(f"ksmd finished {counter('full_scans') - start} of {n} full scans")
        time.sleep(POLL_SECONDS)
    return counter("full_scans")


def merge(
    journal: Journal,
    target_addr: int,
    expected: int,
    timeout: float,
    pids: list[int] | None = None,
) -> MergeResult:
    """Run ksmd until the target page (in this process) is a KSM page and the
    merged page count of every process in pids (default: this one) has
    stopped growing for a whole scan, then stop ksmd. expected is the count
    at which a process is done without waiting for a further scan. Its
    time is the program's `merge` phase (ksft/phases.py)."""
    with phases.span("merge"):
        t0 = time.monotonic()
        deadline = t0 + timeout
        pid = os.getpid()
        pids = pids or [pid]
        others = other_mergeable(set(pids))
        if others:
            log.warning(
                "ksm: %d other processes have mergeable memory; ksmd merges theirs too while "
                "this case runs, and it stays merged: %s",
                len(others),
                ", ".join(f"{o['pid']} ({o['comm']})" for o in others[:8]),
            )
        _start_fast_scanning(journal)
        # The first full scan only fills the unstable tree; merging into stable
        # nodes needs a second one. Then settle: unchanged counts across a scan.
        _wait_full_scans(2, deadline)
        last: dict[int, int | None] = {}
        while True:
            merged = {p: process_merged_pages(p) for p in pids}
            settled = all(m is None or m == last.get(p) or m >= expected for p, m in merged.items())
            if settled and mm.page_info(pid, target_addr).page_type == "ksm":
                break
            if time.monotonic() > deadline:
                info = mm.page_info(pid, target_addr)
                counts = ", ".join(f"{m}" for m in merged.values())
                raise MergeError(
                    f"target page not merged after {timeout:g}s (type {info.page_type}, "
                    f"pages merged per process: {counts} of {expected})"
                )
            last = merged
            _wait_full_scans(1, deadline)
        journal.set(KSM / "run", 0)
        return MergeResult(
            seconds=round(time.monotonic() - t0, 3),
            full_scans=counter("full_scans"),
            pages_shared=counter("pages_shared"),
            pages_sharing=counter("pages_sharing"),
            max_page_sharing=counter("max_page_sharing"),
            merge_across_nodes=(
                counter("merge_across_nodes") if (KSM / "merge_across_nodes").exists() else None
            ),
            stable_node_dups=counter("stable_node_dups")
            if (KSM / "stable_node_dups").exists()
            else 0,
            process_merged=process_merged_pages(pid),
            other_mergeable=others,
        )


def parse_ksm_stat(text: str) -> dict[str, str]:
    """/proc/PID/ksm_stat: "ksm_rmap_items 12" lines (6.1; ksm_merging_pages
    and ksm_process_profit 6.4, ksm_zero_pages 6.10), and since 6.14
    "ksm_merge_any: yes" and "ksm_mergeable: no", whose names end in a
    colon: the keys come without it."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(" ")
        if sep:
            out[key.removesuffix(":")] = value.strip()
    return out


def _ksm_stat(pid: int, proc: Path) -> dict[str, str]:
    try:
        return parse_ksm_stat((proc / str(pid) / "ksm_stat").read_text(errors="replace"))
    except OSError:
        return {}


def _has_mergeable_vma(pid: int, proc: Path) -> bool:
    """A VMA with VM_MERGEABLE (smaps VmFlags `mg`): MADV_MERGEABLE, or
    prctl(PR_SET_MEMORY_MERGE). Read as bytes: another process may map
    a file whose name is not UTF-8, which smaps shows as it is."""
    try:
        with open(proc / str(pid) / "smaps", "rb") as f:
            return any(ln.startswith(b"VmFlags:") and b" mg" in ln for ln in f)
    except OSError:  # gone, or a kernel thread
        return False


def other_mergeable(exclude: set[int], proc: Path = Path("/proc")) -> list[dict[str, object]]:
    """Processes other than `exclude` (and this one) whose memory ksmd would
    merge: pid, comm, and ksm_stat's merging pages and merge_any where the
    kernel has them. Never writes anything (never run=2, which unmerges
    every process's pages)."""
    found: list[dict[str, object]] = []
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == me or pid in exclude:
            continue
        stat = _ksm_stat(pid, proc)
        merge_any = stat.get("ksm_merge_any") == "yes"
        # 6.14+ says whether a VMA is VM_MERGEABLE; before, smaps tells.
        if "ksm_mergeable" in stat:
            mergeable = stat["ksm_mergeable"] == "yes"
        else:
            mergeable = _has_mergeable_vma(pid, proc)
        if not (merge_any or mergeable):
            continue
        try:
            # A task may name itself with any bytes (PR_SET_NAME).
            comm = (entry / "comm").read_text(errors="replace").strip()
        except OSError:
            continue
        item: dict[str, object] = {"pid": pid, "comm": comm}
        if "ksm_merging_pages" in stat:
            item["ksm_merging_pages"] = int(stat["ksm_merging_pages"])
        if merge_any:
            item["merge_any"] = True
        found.append(item)
    return found


def rmap_items_total() -> int:
    """KSM's rmap_items over the whole machine: pages_volatile is defined as
    rmap_items minus the other three counters."""
    names = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")
    return sum(counter(n) for n in names if (KSM / n).exists())


def rmap_items(pid: int) -> int | None:
    """KSM's rmap_items for this process (/proc/PID/ksm_stat, 6.1+), or None."""
    try:
        return int(parse_ksm_stat(Path(f"/proc/{pid}/ksm_stat").read_text())["ksm_rmap_items"])
    except (OSError, KeyError, ValueError):
        return None


def drain(journal: Journal, timeout: float = 30.0, baseline: int | None = None) -> None:
    """After our region is unmapped, let ksmd scan once more so it drops our
    rmap_items and stable nodes; the journal then puts run back. Without
    this, run=0 would leave our leftovers counted in pages_sharing.

    Done when this process has no rmap_items left. Once no mergeable memory
    is left ksmd goes idle, so counting full scans alone could wait forever
    for a scan that never starts.

    A structural knob we changed (max_page_sharing, merge_across_nodes) can
    only be restored once our KSM pages are gone (ksm_pages_shared back to
    0), so then we wait even if ksmd was running before.

    With baseline (rmap_items_total() before the scenario built anything),
    also wait for the rmap_items of children that have exited: an exited mm
    keeps its rmap_items until ksmd's cursor reaches it, which takes at most
    two full scans; its /proc/PID is gone by then, so the machine-wide count
    going back to the baseline is what shows it. Its time is the
    program's `drain` phase (ksft/phases.py)."""
    with phases.span("drain"):
        was_running = journal.original(KSM / "run") == "1"
        if was_running and not knobs_to_restore(journal):
            return  # ksmd goes on scanning by itself once run=1 is restored
        pid = os.getpid()
        scans = counter("full_scans")
        _start_fast_scanning(journal)
        deadline = time.monotonic() + timeout
        while True:
            left = rmap_items(pid)
            mine = left == 0 or (left is None and counter("full_scans") > scans)
            others = (
                baseline is None
                or rmap_items_total() <= baseline
                or counter("full_scans") >= scans + 2
            )
            if mine and others:
                break
            if time.monotonic() > deadline:
                log.warning(
                    "ksmd did not finish cleaning up: %s rmap_items left here, %d in all",
                    left,
                    rmap_items_total(),
                )
                break
            time.sleep(POLL_SECONDS)
        if not was_running:
            journal.set(KSM / "run", 0)


def knobs_to_restore(journal: Journal) -> bool:
    """Whether a structural knob of ours awaits restoring."""
    return any(
        (KSM / name).exists() and journal.original(KSM / name) != read_knob(KSM / name)
        for name in STRUCTURAL
    )
