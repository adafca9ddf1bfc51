"""damon: DAMON's physical-address monitoring of exactly the target's frame.

kdamond samples every region once per sampling interval: it clears the
accessed bits of the frame's mappings (damon_folio_mkold -> rmap_walk), sleeps
for the interval, then looks for a young mapping (damon_folio_young ->
rmap_walk, which stops at the first young one). So every pass walks the
target twice, in kdamond's context: the probe follows kdamond's pid, not ours.
KSM and file folios are walked only when folio_trylock() succeeds.

kdamond's sleeps are the only moments no walk is in flight, and its
voluntary context switches (/proc/PID/status) count them. Before each
firing, untimed, we wait for kdamond to go to sleep and clear the trace
buffer during that sleep (a walk in flight across the clear would be
paired wrongly); the firing then lasts until kdamond goes to sleep again.
So every window holds exactly one whole young walk (the end of one pass)
and one whole mkold walk (the start of the next), and nothing else of
kdamond's. Its timed cost is the window's length. Our verify() reads the
page between firings, making its mappings young again; a young walk that
finds a young mapping stops there. So the wait is for the second sleep
after verify(): the mkold walk before that sleep began after verify()
ended, and the young walk in the window sees every mapping old: a whole
walk. DAMON never
moves or unmaps the page; when something else moved it, the region is
re-pointed at the new frame (a "commit" to the running kdamond) before the
next firing.

Everything is created through the sysfs interface (admin/kdamonds) and
undone by the journal: kdamond turned off, then nr_kdamonds back to 0, which
removes the contexts, targets and regions.
"""

from __future__ import annotations

import gzip
import os
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from rmapbench.machine import mm
from rmapbench.machine.knobs import Journal, Undo, read_knob
from rmapbench.triggers.base import LEAVES, Firing, Trigger, TriggerUnavailable

ADMIN = Path("/sys/kernel/mm/damon/admin")
KDAMONDS = ADMIN / "kdamonds"

# The sleep between mkold and young: long enough for user space to clear
# the buffer (before a firing) and read it (after) while kdamond sleeps,
# short enough to keep a firing quick. Sampling and aggregation intervals
# are equal, so every pass ends an aggregation.
SAMPLE_US = 100_000
# The operations update interval: paddr has nothing to update.
UPDATE_US = 1_000_000
# Regions cannot be smaller than a page; the floor DAMON accepts is 3.
MIN_REGIONS = 3
SLEEPS_PER_FIRING = 1
ALIGN_SLEEPS = 2
ALIGN_TRIES = 5
FIRING_TIMEOUT_S = 60.0
POLL_S = 0.001


def _write(path: Path, value: str | int) -> None:
    try:
        path.write_text(f"{value}\n")
    except OSError as e:
        raise TriggerUnavailable(f"DAMON refused {value} in {path.name}") from e


def voluntary_switches(pid: int) -> int:
    return task_status(pid)[1]


def task_status(pid: int) -> tuple[str, int]:
    """(state letter, voluntary context switches) of a task."""
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    state = re.search(r"^State:\s*(\S)", text, re.M)
    switches = re.search(r"^voluntary_ctxt_switches:\s*(\d+)", text, re.M)
    if not state or not switches:
        raise RuntimeError(f"no state or voluntary_ctxt_switches for pid {pid}")
    return state.group(1), int(switches.group(1))


def kernel_configs() -> tuple[Path, ...]:
    return Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")


def kernel_config_lacks(option: str, paths: tuple[Path, ...] | None = None) -> bool:
    """True when the running kernel's config is readable (/proc/config.gz,
    /boot/config-RELEASE) and does not set option; False when unknown (a
    config.gz that does not decompress is no config). The paddr operations
    are also checked in sysfs (avail_operations) once the context exists."""
    for path in paths or kernel_configs():
        try:
            raw = path.read_bytes()
            if path.suffix == ".gz":
                raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error):  # BadGzipFile is an OSError
            continue
        text = raw.decode(errors="replace")
        return f"\n{option}=y" not in text and f"\n{option}=m" not in text
    return False


class DamonTrigger(Trigger):
    name = "damon"
    effect = LEAVES
    cost_name = "sampling window"
    expected_callers = ("damon_folio_young", "damon_folio_mkold")
    # The window opens while kdamond sleeps, but on a loaded machine the
    # clear can come late, after a walk has begun.
    walks_inside_cost = False

    def __init__(self) -> None:
        self.kdamond = KDAMONDS / "0"
        self.ctx = self.kdamond / "contexts" / "0"
        self.region = self.ctx / "targets" / "0" / "regions" / "0"
        self.pid = 0
        self.pfn = 0
        self.misaligned = 0  # clears that came after kdamond woke up

    def check(self) -> None:
        if not KDAMONDS.is_dir():
            raise TriggerUnavailable("no DAMON sysfs interface")
        if kernel_config_lacks("CONFIG_DAMON_PADDR"):
            raise TriggerUnavailable("no DAMON paddr")
        if int(read_knob(KDAMONDS / "nr_kdamonds")) != 0:
            raise TriggerUnavailable("DAMON in use")

    def prepare(self, addr: int, journal: Journal) -> None:
        journal.set(KDAMONDS / "nr_kdamonds", 1)
        _write(self.kdamond / "contexts" / "nr_contexts", 1)
        avail = self.ctx / "avail_operations"
        if avail.exists() and "paddr" not in avail.read_text().split():
            raise TriggerUnavailable("no DAMON paddr")
        _write(self.ctx / "operations", "paddr")
        attrs = self.ctx / "monitoring_attrs"
        _write(attrs / "intervals" / "sample_us", SAMPLE_US)
        _write(attrs / "intervals" / "aggr_us", SAMPLE_US)
        _write(attrs / "intervals" / "update_us", UPDATE_US)
        _write(attrs / "nr_regions" / "min", MIN_REGIONS)
        _write(attrs / "nr_regions" / "max", MIN_REGIONS)
        _write(self.ctx / "targets" / "nr_targets", 1)
        _write(self.ctx / "targets" / "0" / "regions" / "nr_regions", 1)
        self._point(self._pfn(addr))
        # Undone before nr_kdamonds goes back to 0; only a running kdamond
        # can be turned off, so a stale "off" that finds none is no error.
        with journal.change(Undo("try-write", str(self.kdamond / "state"), "off")):
            _write(self.kdamond / "state", "on")
        self.pid = int(read_knob(self.kdamond / "pid"))
        if self.pid <= 0:
            raise RuntimeError("kdamond did not start")

    @staticmethod
    def _pfn(addr: int) -> int:
        info = mm.page_info(os.getpid(), addr)
        if not info.present:
            mm.read_bytes(addr, 1)
            info = mm.page_info(os.getpid(), addr)
        return info.pfn

    def _point(self, pfn: int) -> None:
        start = pfn * mm.PAGE_SIZE
        # Written end first when moving up, start first when moving down, so
        # the pair is never start >= end (checked when committed).
        if start >= self.pfn * mm.PAGE_SIZE:
            _write(self.region / "end", start + mm.PAGE_SIZE)
            _write(self.region / "start", start)
        else:
            _write(self.region / "start", start)
            _write(self.region / "end", start + mm.PAGE_SIZE)
        self.pfn = pfn

    def ready(self, addr: int) -> None:
        pfn = self._pfn(addr)
        if pfn != self.pfn:
            self._point(pfn)
            _write(self.kdamond / "state", "commit")
        # damon_get_folio() skips a folio that is not on the LRU. One just
        # migrated or faulted in may still sit in this CPU's lru_add batch;
        # madvise(MADV_COLD) drains that batch first (lru_add_drain), and
        # on our own page only deactivates it.
        if not mm.page_info(os.getpid(), addr).has(mm.KPF_LRU):
            page = addr - addr % mm.PAGE_SIZE
            mm.madvise(page, mm.PAGE_SIZE, mm.MADV_COLD)

    def _sleeps_since(self, start: int, count: int) -> bool:
        """Wait until kdamond has gone to sleep `count` times since its
        voluntary switch count was `start`; False on timeout."""
        deadline = time.monotonic() + FIRING_TIMEOUT_S
        while time.monotonic() < deadline:
            if voluntary_switches(self.pid) >= start + count:
                return True
            time.sleep(POLL_S)
        return False

    def align(self, clear: Callable[[], None]) -> None:
        count = ALIGN_SLEEPS
        for _ in range(ALIGN_TRIES):
            if not self._sleeps_since(voluntary_switches(self.pid), count):
                break
            _, asleep_at = task_status(self.pid)
            clear()
            # Still in that same sleep (not running, no switch since): no
            # walk began before the clear. Else (a slow clear on a loaded
            # machine) wait for the next sleep and clear again.
            state, switches = task_status(self.pid)
            if state != "R" and switches == asleep_at:
                return
            self.misaligned += 1
            count = 1
        clear()

    def pids(self) -> list[int]:
        return [self.pid]

    def describe(self) -> dict[str, object]:
        return {
            **super().describe(),
            "operations": "paddr",
            "sample_us": SAMPLE_US,
            "aggr_us": SAMPLE_US,
            "kdamond_pid": self.pid,
            "sleeps_per_firing": SLEEPS_PER_FIRING,
            "late_clears": self.misaligned,
        }

    def summary(self) -> str:
        return f"damon paddr on the target's frame, sample/aggr {SAMPLE_US // 1000} ms"

    def fire(self, addr: int) -> Firing:
        t0 = time.perf_counter_ns()
        done = self._sleeps_since(voluntary_switches(self.pid), SLEEPS_PER_FIRING)
        return Firing(time.perf_counter_ns() - t0, done=done)
