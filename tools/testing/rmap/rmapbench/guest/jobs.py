"""--jobs: several guests at once, each on its own host CPUs: the front
door's cases dealt out over them, their TAP merged in case order; and the
pool that runs the boots of a sweep or an ab set N at a time."""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

from rmapbench.guest.bytecode import SUITE_DIR
from rmapbench.ksft.cli import UsageError, refuse

T = TypeVar("T")

log = logging.getLogger(__name__)

# -- --jobs: several guests at once -------------------------------------------

TITLE = re.compile(r"^(ok|not ok) (\d+) (selftests: \S+: (\S+).*)$")


@dataclass(frozen=True)
class Slot:
    """One guest of a parallel run: the host CPUs it is pinned to and the
    programs it runs, in the suite's order."""

    cpus: tuple[int, ...]
    programs: tuple[Path, ...]


def host_cpus_per_guest(accel: str, guest_cpus: int) -> int:
    """Host CPUs one guest keeps busy: TCG runs every vCPU on one thread
    (qemu.accel_args: thread=single), KVM one thread per vCPU."""
    return guest_cpus if accel == "kvm" else 1


def cpu_sets(
    jobs: int, per_guest: int, available: Sequence[int] | None = None
) -> list[tuple[int, ...]]:
    """`jobs` disjoint sets of `per_guest` host CPUs out of `available`
    (default: this process's affinity), lowest first. UsageError, one line
    naming what the host has, when it has too few."""
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if jobs * per_guest > len(cpus):
        raise UsageError(
            f"--jobs {jobs} needs {jobs * per_guest} host CPUs ({per_guest} per guest); "
            f"this host has {len(cpus)} ({','.join(map(str, cpus))})"
        )
    return [tuple(cpus[i * per_guest : (i + 1) * per_guest]) for i in range(jobs)]


def plan(
    programs: Sequence[Path], jobs: int, per_guest: int, available: Sequence[int] | None = None
) -> list[Slot]:
    """Up to `jobs` guests, each on its own `per_guest` host CPUs
    (cpu_sets()), the programs dealt out in turn so each guest keeps the
    suite's order. UsageError when the host has too few CPUs."""
    sets = cpu_sets(jobs, per_guest, available)
    n = min(jobs, len(programs)) or 1
    return [Slot(sets[i], tuple(programs[i::n])) for i in range(n)]


def blocks(tap: str) -> dict[str, list[str]]:
    """A kselftest runner's output cut into its programs' blocks (from
    `# timeout set to` to the program's result line), keyed by program."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in tap.splitlines():
        if line.startswith("TAP version") or re.fullmatch(r"1\.\.\d+", line):
            continue
        current.append(line)
        m = TITLE.match(line)
        if m:
            out[m.group(4)] = current
            current = []
    return out


def merge(order: Sequence[Path], outputs: Sequence[str]) -> str:
    """One TAP stream, the programs in `order` and numbered as one serial
    runner would have numbered them."""
    found: dict[str, list[str]] = {}
    for text in outputs:
        found.update(blocks(text))
    lines = ["TAP version 13", f"1..{len(order)}"]
    for n, prog in enumerate(order, 1):
        block = found.get(prog.name)
        if block is None:
            lines.append(f"not ok {n} selftests: rmap: {prog.name} # no result from its guest")
            continue
        *body, last = block
        m = TITLE.match(last)
        assert m is not None
        lines += [*body, f"{m.group(1)} {n} {m.group(3)}"]
    return "\n".join(lines) + "\n"


class NotStarted(Exception):
    """A task run_pool() did not start because an earlier one had failed."""


def run_pool(
    sets: Sequence[Sequence[int]],
    tasks: Sequence[Callable[[], T]],
    stop_on_error: bool = False,
) -> list[T | BaseException]:
    """Every task, up to len(sets) at once: one worker thread per CPU set,
    pinned to it, each taking the next task in order until none is left.
    Returns each task's result (or the exception it raised) in the tasks'
    order. With stop_on_error, a task that raised keeps the ones not yet
    started from starting (their result: NotStarted); running ones finish.
    The workers are daemon threads: an interrupted caller does not wait for
    them, and their QEMU processes die with this one (PR_SET_PDEATHSIG)."""
    results: list[T | BaseException] = [NotStarted() for _ in tasks]
    lock = threading.Lock()
    queue = list(range(len(tasks)))[::-1]
    failed = False

    def worker(cpus: Sequence[int]) -> None:
        nonlocal failed
        os.sched_setaffinity(0, cpus)
        while True:
            with lock:
                if not queue or (failed and stop_on_error):
                    return
                i = queue.pop()
            try:
                results[i] = tasks[i]()
            except BaseException as e:  # handed to the caller
                results[i] = e
                with lock:
                    failed = True

    threads = [
        threading.Thread(target=worker, args=(cpus,), daemon=True)
        for cpus in sets[: max(1, len(tasks))]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def run_parallel(
    slots: Sequence[Slot],
    run_one: Callable[[Slot, int, TextIO], int],
    order: Sequence[Path],
    out: TextIO,
) -> list[int | BaseException]:
    """run_one(slot, index, stream) for every slot at once, each in a
    thread pinned to its CPUs; then their TAP merged in `order` onto out.
    Returns each slot's status (or the exception it raised)."""
    streams = [io.StringIO() for _ in slots]

    def task(i: int) -> Callable[[], int]:
        return lambda: run_one(slots[i], i, streams[i])

    results = run_pool([s.cpus for s in slots], [task(i) for i in range(len(slots))])
    out.write(merge(order, [s.getvalue() for s in streams]))
    out.flush()
    return results


def run_suite(
    g: Any, programs: Sequence[Path], test_args: Sequence[str], share: Path, jobs: int,
    out: TextIO | None = None, env: dict[str, str] | None = None,
) -> int:  # fmt: skip
    """The front door's --jobs: the programs over up to `jobs` guests at
    once (guest options g, a config.GuestOptions), every result into
    `share` (console.log, console-1.log, ... one per guest) and one TAP
    stream in case order; env: variables for the guests' runners. The
    suite's status, EXIT_GUEST when a guest gave none, EXIT_KERNEL when the
    kernel could not be fetched."""
    import sys

    from rmapbench.guest import kernel as kernel_mod
    from rmapbench.guest import vm
    from rmapbench.ksft.status import EXIT_GUEST, EXIT_KERNEL

    out = out or sys.stdout
    slots = plan(programs, jobs, host_cpus_per_guest(g.accel, g.cpus))
    try:
        image = g.kernel.fetch()
    except (kernel_mod.KernelError, OSError) as e:
        return refuse("run_tests.sh", e, EXIT_KERNEL)

    def one(slot: Slot, i: int, stream: TextIO) -> int:
        argv = [sys.executable, "-m", "rmapbench.ksft.runner", "--timeout", str(int(g.timeout)),
                *[str(p) for p in slot.programs], "--", *test_args]  # fmt: skip
        log_name = "console.log" if i == 0 else f"console-{i}.log"
        result = vm.run_in_guest(
            image, argv, nodes=g.nodes, cpus=g.cpus, memory=g.memory, accel=g.accel,
            timeout=g.timeout + 120, share_dir=share, cwd=SUITE_DIR, env=env,
            console_log=share / log_name, stream=stream,
        )  # fmt: skip
        print(
            f"# guest {i + 1}/{len(slots)} (host CPUs {','.join(map(str, slot.cpus))}): "
            f"kernel {image.release}, {result.accel}, boot {result.boot_seconds:.1f} s, "
            f"total {result.total_seconds:.1f} s",
            file=sys.stderr,
        )
        return result.status

    statuses = run_parallel(slots, one, programs, out)
    worst = 0
    for st in statuses:
        if isinstance(st, BaseException):
            print(f"run_tests.sh: error: {st}", file=sys.stderr)
            worst = EXIT_GUEST
        elif st and worst != EXIT_GUEST:
            worst = max(worst, st)
    return worst
