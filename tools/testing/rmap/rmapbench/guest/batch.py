"""Running test programs in a guest for sweep and ab: many runs (jobs) in
one boot, each writing its results into its own subdirectory of the result
set; the host parses marker lines to follow progress. With --jobs N, up to
N boots at once, each guest pinned to its own host CPUs (guest/jobs.py).

The guest runs only the test programs (the host's Python over 9p); all
statistics stay on the host.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import re
import shlex
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmapbench.bench import cases, program
from rmapbench.guest import config, jobs, vm
from rmapbench.guest import kernel as kernel_mod
from rmapbench.guest.progress import Progress
from rmapbench.ksft import runner
from rmapbench.ksft.cli import UsageError, integer, new_dir, refuse
from rmapbench.ksft.status import EXIT_GUEST

SUITE_DIR = Path(__file__).resolve().parent.parent.parent
MARKER = "rmapbench-job"
NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass
class Job:
    directory: str  # subdirectory of the result set
    program: Path
    args: list[str]
    status: int | None = None


@dataclass
class Boot:
    """One guest boot running some jobs (all of them for a sweep)."""

    kernel: kernel_mod.KernelImage
    jobs: list[Job] = field(default_factory=list)


def program_paths(spec: str) -> list[Path]:
    """ksm, rmap_ksm, rmap_ksm.py, ksm-procs or a comma-separated list of them."""
    out = []
    for name in spec.split(","):
        stem = name.removesuffix(".py").replace("-", "_")
        stem = stem if stem.startswith("rmap_") else f"rmap_{stem}"
        path = SUITE_DIR / f"{stem}.py"
        if not path.is_file():
            raise UsageError(f"no test program {path.name} for {name!r}")
        out.append(path)
    return out


@dataclass(frozen=True)
class Selection:
    """The programs a run of TEST ARGS runs: the cases its options select
    (every case, or those --case or --workload choose), among those named
    when some are. A --vary or --set can change those options per point or
    side, so each run's programs come from its own options (of()); a
    program a run's options leave out would SKIP and write nothing, so a
    run that selects none of those named is refused (UsageError)."""

    named: tuple[Path, ...] | None = None

    def of(self, args: Sequence[str]) -> list[Path]:
        selected = cases.selection(list(args), env={})
        if selected is not None and cases.error(selected):
            raise UsageError(str(cases.error(selected)))
        if self.named is None:
            return cases.programs(selected)
        chosen = cases.among(list(self.named), selected)
        if not chosen:
            assert selected is not None  # nothing selected runs every program
            raise UsageError(cases.none_among(selected))
        return chosen


def split_test_args(
    rest: Sequence[str], env: Mapping[str, str] | None = None
) -> tuple[Selection, list[str]]:
    """TEST ARGS after --: an optional program list, then options for it.
    The options start with $RMAP_ARGS, as a program's own command line
    does (those after -- win): the guest's command starts with an empty
    environment, so they are passed, and recorded with each run's."""
    args = [a for a in rest]
    if args[:1] == ["--"]:
        args = args[1:]
    env = os.environ if env is None else env
    try:
        suite = shlex.split(env.get("RMAP_ARGS", ""))
    except ValueError as e:
        raise UsageError(f"RMAP_ARGS: {e}") from None
    if args and not args[0].startswith("-"):
        return Selection(tuple(program_paths(args[0]))), suite + args[1:]
    args = suite + args
    chosen = Selection()
    chosen.of(args)  # an unknown --case is refused here, once
    return chosen, args


def option_flag(name: str) -> str:
    """A varied or set NAME (max_page_sharing) as the option --max-page-sharing."""
    if not NAME.fullmatch(name):
        raise UsageError(f"bad parameter name {name!r} (lower case, digits, underscores)")
    return "--" + name.replace("_", "-")


def check_test_args(programs: list[Path], args: list[str]) -> None:
    """Refuse, before any boot, options the test programs would refuse."""
    refused = UsageError("--results is set per run; do not give it in TEST ARGS")
    for prog in programs:  # the kselftest runner's, which sweep and ab are not
        name = runner.env_args_name(prog.name)
        if os.environ.get(name, "").strip():
            raise UsageError(
                f"{name} is set: sweep and ab do not pass it to {prog.name}; "
                "give its options after -- or in RMAP_ARGS"
            )
    if "--results" in args or any(a.startswith("--results=") for a in args):
        raise refused
    # The args start with $RMAP_ARGS (split_test_args() puts it first, a
    # point's or side's options come after), as the guest's programs get
    # them: checked without it and with the variable still set, as a
    # program reads it, so a refusal of the variable's own says so.
    try:
        suite = shlex.split(os.environ.get("RMAP_ARGS", ""))
    except ValueError:
        suite = []  # split_test_args() has refused it
    assert args[: len(suite)] == suite, "split_test_args() puts $RMAP_ARGS first"
    program.check_programs(programs, args[len(suite) :])
    if program.gives(args, "results"):  # abbreviated: --res DIR
        raise refused
    workdir = program.value_of(args, "workdir")
    problem = vm.workdir_problem(workdir) if isinstance(workdir, Path) else None
    if problem:  # each run's share is made at its boot: only /tmp
        raise UsageError(problem)


def add_guest_options(
    p: argparse.ArgumentParser, kernel_help: str, output_required: bool = True
) -> None:
    """The guest options (--kernel IMAGE|SERIES, repeatable) and -o SET."""
    config.add_arguments(
        p, kernels="images", kernel_help=kernel_help, timeout=3600,
        timeout_help="seconds per guest boot",
    )  # fmt: skip
    p.add_argument(
        "-o",
        "--output",
        type=new_dir(),
        required=output_required,
        metavar="DIR",
        help="the result set to create (must not exist)",
    )
    p.add_argument(
        "--jobs",
        type=integer(1),
        default=1,
        metavar="N",
        help="up to N guests at once, each pinned to its own host CPUs (default 1)",
    )


def guest_options(ns: argparse.Namespace) -> config.GuestOptions:
    """The guest options parsed, each kernel checked, --jobs within what
    the host has; UsageError."""
    try:
        g = config.from_namespace(ns)
        for spec in g.kernels:
            spec.check()
    except ValueError as e:
        raise UsageError(str(e)) from None
    problem = g.host_problem()
    if problem:
        raise UsageError(problem)
    cpu_sets(g, ns.jobs)
    return g


def cpu_sets(g: config.GuestOptions, n: int) -> list[tuple[int, ...]]:
    """The host CPUs of each of n guests at once; UsageError when the host
    has too few."""
    return jobs.cpu_sets(n, jobs.host_cpus_per_guest(g.accel, g.cpus))


def boots_per_kernel(n_jobs: int, kernels: int, points: int) -> int:
    """How many boots a sweep gives each kernel so that n_jobs guests have
    work: one without --jobs, never more than the points."""
    return max(1, min(points, math.ceil(n_jobs / kernels)))


def script(jobs: Sequence[Job], share: Path, first: int = 0) -> str:
    """The shell script one boot runs: each job in turn, its TAP kept in
    its directory, a marker line with its exit status after it."""
    py = shlex.quote(sys.executable)
    lines = ["set -u", f"cd {shlex.quote(str(SUITE_DIR))} || exit 125"]
    for i, job in enumerate(jobs, first):
        out = share / job.directory
        argv = [str(job.program), *job.args, "--results", str(out)]
        tap = shlex.quote(str(out / f"{job.program.stem}.tap"))
        lines.append(f'{py} {shlex.join(argv)} > {tap} 2>&1; echo "{MARKER} {i} $?"')
    return "\n".join(lines) + "\n"


class MarkerStream(io.StringIO):
    """Receives the guest command's output; calls back on each marker line."""

    def __init__(self, on_job: Callable[[int, int], None]) -> None:
        super().__init__()
        self.on_job = on_job
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            parts = line.split()
            if len(parts) == 3 and parts[0] == MARKER and all(p.isdigit() for p in parts[1:]):
                self.on_job(int(parts[1]), int(parts[2]))
        return len(text)


def resolve_kernels(
    command: str, specs: Sequence[config.KernelSpec]
) -> list[kernel_mod.KernelImage] | None:
    """Every kernel, fetched once; None (after one line on stderr) when one
    cannot be had: the command then exits with EXIT_KERNEL."""
    try:
        return [spec.fetch() for spec in specs]
    except (kernel_mod.KernelError, OSError) as e:
        refuse(f"rmapbench {command}", e)
        return None


def run_boot(
    boot: Boot,
    share: Path,
    g: config.GuestOptions,
    log_name: str,
    first: int,
    on_job: Callable[[int, int], None],
) -> vm.GuestResult:
    """Boot once and run the boot's jobs; raises vm.GuestError."""
    for job in boot.jobs:
        (share / job.directory).mkdir(parents=True, exist_ok=True)

    def record(i: int, status: int) -> None:
        boot.jobs[i - first].status = status
        on_job(i, status)

    return vm.run_in_guest(
        boot.kernel,
        ["sh", "-c", script(boot.jobs, share, first)],
        nodes=g.nodes,
        cpus=g.cpus,
        memory=g.memory,
        accel=g.accel,
        timeout=g.timeout,
        share_dir=share,
        cwd=SUITE_DIR,  # always visible in the guest; script() cds there too
        console_log=share / log_name,
        stream=MarkerStream(record),
    )


def run_boots(
    command: str,
    boots: Sequence[Boot],
    share: Path,
    g: config.GuestOptions,
    entries: list[dict[str, Any]],
    index: dict[str, Any],
    log_name: Callable[[int], str],
    n_jobs: int = 1,
) -> None:
    """Boot each of `boots` into `share` (a result set being built): in
    turn, or with n_jobs > 1 up to n_jobs at once, each guest pinned to its
    own host CPUs; with progress on a terminal. Record each boot in
    index["boots"] (in the boots' order) and each point's program statuses
    in its entry, then index["points"]. A guest that fails ends the
    command with EXIT_GUEST, naming the partial set (with n_jobs > 1 once
    the guests still running have finished; no further boot starts)."""
    all_jobs = [j for b in boots for j in b.jobs]
    firsts = [sum(len(b.jobs) for b in boots[:n]) for n in range(len(boots))]
    progress = Progress(len(all_jobs), "runs")
    lock = threading.Lock()

    def step(i: int, rc: int) -> None:
        with lock:
            progress.step(all_jobs[i].directory)

    def task(n: int) -> Callable[[], vm.GuestResult]:
        def boot_n() -> vm.GuestResult:
            with lock:
                progress.start(f"boot {n + 1}/{len(boots)}: {boots[n].kernel.release}")
            return run_boot(boots[n], share, g, log_name(n), firsts[n], step)

        return boot_n

    tasks = [task(n) for n in range(len(boots))]
    results: list[vm.GuestResult | BaseException] = []
    if n_jobs > 1 and len(boots) > 1:
        sets = cpu_sets(g, min(n_jobs, len(boots)))
        results = jobs.run_pool(sets, tasks, stop_on_error=True)
    else:
        for t in tasks:  # in this thread: vm's signal handling needs the main one
            try:
                results.append(t())
            except vm.GuestError as e:
                results.append(e)
                break
    progress.finish()
    for res in results:
        if isinstance(res, vm.GuestError):
            print(
                f"rmapbench {command}: error: {res}; partial results in {share}", file=sys.stderr
            )
            raise SystemExit(EXIT_GUEST) from None
        if isinstance(res, BaseException):
            raise res
    for boot, res in zip(boots, results, strict=True):
        assert isinstance(res, vm.GuestResult)
        index["boots"].append(
            {
                "kernel": boot.kernel.release,
                "accel": res.accel,
                "boot_seconds": round(res.boot_seconds, 1),
                "total_seconds": round(res.total_seconds, 1),
                "status": res.status,
            }
        )
    for entry in entries:
        entry["status"] = {
            j.program.stem: j.status for j in all_jobs if j.directory == entry["dir"]
        }
    index["points"] = entries


def report_failed(command: str, boots: Sequence[Boot]) -> bool:
    """Name every run that neither passed nor skipped; True if any."""
    failed = [j for b in boots for j in b.jobs if j.status not in (0, 4)]
    for j in failed:
        print(
            f"rmapbench {command}: {j.directory}/{j.program.stem} exited {j.status}",
            file=sys.stderr,
        )
    return bool(failed)
