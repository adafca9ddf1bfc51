"""The front door behind run_tests.sh: run the suite on this machine when
it can measure rmap walks, or in a QEMU guest with a stock kernel, and print
the kselftest TAP followed by a summary table.

Exit status: the suite's (0 all passed or skipped, 1 a test failed),
2 bad usage, 3 the guest failed (panic, timeout, no result), 5 no kernel.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rmapbench.bench import program
from rmapbench.guest import config, jobs
from rmapbench.ksft import results, runner, summary
from rmapbench.ksft.cli import (
    Parser,
    UsageError,
    add_verbose,
    guarded,
    integer,
    out_dir,
    refuse,
    replay_journals,
    shown,
)
from rmapbench.ksft.status import EXIT_GUEST, EXIT_KERNEL
from rmapbench.machine import mm
from rmapbench.tracing import tracefs

SUITE_DIR = Path(__file__).resolve().parents[2]  # tools/testing/rmap
DEFAULT_TIMEOUT = 3600  # seconds, as the collection's settings file has it



def parser() -> argparse.ArgumentParser:
    p = Parser(prog="run_tests.sh", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--vm", action="store_true", help="run in a QEMU guest even if this machine could measure"
    )
    config.add_arguments(
        p,
        kernels="image",
        timeout=DEFAULT_TIMEOUT,
        timeout_help="seconds for the whole guest run, and per test program "
        "($kselftest_override_timeout when set)",
    )
    p.add_argument(
        "--results",
        type=out_dir(),
        metavar="DIR",
        help="keep JSON, LAVA and SQUAD results (and the guest console log) in DIR",
    )
    p.add_argument(
        "--case",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this case (repeatable); the same as --case after --",
    )
    add_verbose(p)
    p.add_argument(
        "--jobs",
        type=integer(),
        default=1,
        metavar="N",
        help="run the cases in up to N guests at once, each pinned to its own host CPUs "
        "(default 1)",
    )
    p.add_argument("test_args", nargs=argparse.REMAINDER, help="-- options for every test program")
    p.set_defaults(timeout=None)  # check(): $kselftest_override_timeout, else 3600
    return p


def why_not_here() -> str | None:
    """Why this machine cannot time rmap walks, or None if it can."""
    if os.geteuid() != 0:
        return "not root"
    if len(mm.online_nodes()) < 2:
        return "fewer than two NUMA nodes"
    root = tracefs.find_tracefs()
    if root is None:
        return "no writable tracefs"
    if not tracefs.probe_kinds(root) and not (root / "events/rmap").is_dir():
        return "no fprobe, kprobe or rmap tracepoint support in this kernel"
    return None


def _programs(test_args: list[str]) -> list[Path]:
    """The programs of the cases --case selects (all without --case)."""
    return program.selected_programs(test_args)


def run_here(test_args: list[str], timeout: int) -> int:
    return runner.run(_programs(test_args), test_args, timeout)


def guest_env(programs: list[Path]) -> dict[str, str]:
    """What of this environment the suite's programs read, for the guest,
    whose command starts with an empty environment: $RMAP_ARGS and each
    program's $KSELFTEST_<PROG>_ARGS, when set (check() has checked them)."""
    names = ["RMAP_ARGS", *(runner.env_args_name(p.name) for p in programs)]
    return {n: os.environ[n] for n in names if n in os.environ}


class GuestFailed(Exception):
    """The guest gave no exit status; its console log is worth keeping."""


def run_guest(g: config.GuestOptions, test_args: list[str], share: Path) -> int:
    """The suite's status in a guest; EXIT_KERNEL, or GuestFailed (after
    its one line on stderr) when the guest failed."""
    from rmapbench.guest import kernel as kernel_mod
    from rmapbench.guest import vm

    try:
        image = g.kernel.fetch()
    except (kernel_mod.KernelError, OSError) as e:
        return refuse("run_tests.sh", e, EXIT_KERNEL)
    argv = [
        sys.executable,
        "-m",
        "rmapbench.ksft.runner",
        "--timeout",
        str(int(g.timeout)),
        *[str(p) for p in _programs(test_args)],
        "--",
        *test_args,
    ]
    try:
        result = vm.run_in_guest(
            image,
            argv,
            nodes=g.nodes,
            cpus=g.cpus,
            memory=g.memory,
            accel=g.accel,
            timeout=g.timeout + 120,
            share_dir=share,
            cwd=SUITE_DIR,  # the programs' relative paths, as make run_tests has them
            env=guest_env(_programs(test_args)),
            console_log=share / "console.log",
        )
    except vm.GuestError as e:
        print(f"run_tests.sh: error: {e}", file=sys.stderr)
        raise GuestFailed from e
    print(
        f"# guest: kernel {image.release}, {result.accel}, boot {result.boot_seconds:.1f} s, "
        f"total {result.total_seconds:.1f} s",
        file=sys.stderr,
    )
    return result.status


def main(argv: list[str] | None = None) -> int:
    return guarded("run_tests.sh", lambda: _main(argv), argv)


@dataclass(frozen=True)
class Invocation:
    """A command line of the front door, parsed and checked."""

    ns: argparse.Namespace
    test_args: list[str]  # the options of every program (--case included)
    guest: config.GuestOptions


def check(argv: list[str] | None) -> Invocation:
    """The command line parsed and checked, every option and cross-option
    constraint, with nothing set up or started; UsageError otherwise."""
    ns = parser().parse_args(argv)
    # As the kselftest runner takes it, when --timeout is not given: the
    # guest's runner is given --timeout, so it would not see the variable.
    override = runner.override_timeout()
    if ns.timeout is None:
        ns.timeout = override or DEFAULT_TIMEOUT
    test_args = [a for a in ns.test_args if a != "--"] if ns.test_args else []
    test_args = [arg for name in ns.case for arg in ("--case", name)] + test_args
    if "--results" in test_args:
        raise UsageError("give --results before --, to run_tests.sh itself")
    # The test options (and $RMAP_ARGS) are checked here, before a guest is
    # booted, as each selected program will check them: an unknown --case
    # or a malformed option is exit status 2 now.
    programs = program.selected_programs(test_args)
    runner.check_options(programs, test_args)  # as the runner will give them
    if program.gives(test_args, "results"):  # --results=DIR, --res DIR
        raise UsageError("give --results before --, to run_tests.sh itself")
    _refuse_results_from_env(programs)
    _refuse_earlier_results(ns.results)
    try:
        g = config.from_namespace(ns)
    except ValueError as e:
        raise UsageError(str(e)) from None
    # Once --cpus is known to be in range: what the guests need of the host.
    if ns.jobs != 1:  # refused before a boot, like any bad option
        jobs.plan(_programs(test_args), ns.jobs, jobs.host_cpus_per_guest(g.accel, g.cpus))
    return Invocation(ns, test_args, g)


def _refuse_results_from_env(programs: list[Path]) -> None:
    """--results in $RMAP_ARGS or a program's $KSELFTEST_<PROG>_ARGS would
    be overridden without a word by the directory the front door gives
    every program (the last --results wins), so the results would not be
    where they were asked for."""
    names = ["RMAP_ARGS", *(runner.env_args_name(p.name) for p in programs)]
    for name in names:
        try:
            args = shlex.split(os.environ.get(name, ""))
        except ValueError:
            continue  # check_options() has refused it already
        if program.gives(args, "results"):
            raise UsageError(f"{name}: give --results to run_tests.sh itself, not in {name}")


def _refuse_earlier_results(directory: Path | None) -> None:
    """A --results directory that holds an earlier run's result files: the
    table after this run, and summary or compare later, would take them
    for this run's (of another kernel or other cases, say) without a word."""
    if directory is None:
        return
    try:
        earlier = sorted(p.name for p in directory.iterdir() if results.is_result_file(p.name))
    except OSError:
        return  # absent (made later), or refused as --results by its type
    if earlier:
        more = f" and {len(earlier) - 1} more" if len(earlier) > 1 else ""
        raise UsageError(
            f"--results {shown(str(directory))}: holds an earlier run's results "
            f"({earlier[0]}{more}); give a new or empty directory"
        )


def _refuse_guest_workdir(
    programs: list[Path], test_args: list[str], share: Path | None
) -> None:
    """A --workdir the guest cannot write into, refused before the boot
    (the program would refuse it in the guest: a failed test, exit 1)."""
    from rmapbench.guest import vm

    suite_args = shlex.split(os.environ.get("RMAP_ARGS", ""))  # check() split it
    for prog in programs:
        workdir = program.value_of(suite_args + runner.env_args(prog.name) + test_args, "workdir")
        problem = vm.workdir_problem(workdir, share) if isinstance(workdir, Path) else None
        if problem:
            raise UsageError(problem)


def _main(argv: list[str] | None) -> int:
    checked = check(argv)
    ns, test_args, g = checked.ns, checked.test_args, checked.guest
    replay_journals("run_tests.sh")
    keep = ns.results is not None
    reason = None if ns.vm else why_not_here()
    if ns.vm or reason:  # before anything is made: a usage error leaves nothing behind
        _refuse_guest_workdir(_programs(test_args), test_args, ns.results)
        problem = g.host_problem()
        if problem:
            raise UsageError(problem)
    share = ns.results.resolve() if keep else Path(tempfile.mkdtemp(prefix="rmapbench-results-"))
    try:
        share.mkdir(parents=True, exist_ok=True)
        args = [*test_args, "--results", str(share)]
        if ns.vm or reason:
            if reason:
                print(
                    f"run_tests.sh: this machine cannot measure rmap walks ({reason}); "
                    "running in a QEMU guest",
                    file=sys.stderr,
                )
            try:
                if ns.jobs > 1:
                    progs = _programs(test_args)
                    status = jobs.run_suite(g, progs, args, share, ns.jobs, env=guest_env(progs))
                    if status == EXIT_GUEST:
                        raise GuestFailed
                else:
                    status = run_guest(g, args, share)
            except GuestFailed:
                # The error names share/console.log: keep it (and what came back).
                keep = True
                return EXIT_GUEST
        else:
            status = run_here(args, int(g.timeout))
        sys.stdout.flush()
        # Its own run's results, partial ones flagged in the table.
        docs = results.load_results(share, keep_partial=True)
        if docs:
            print("\n" + summary.full(docs))
        if keep and any(share.iterdir()):  # not when no guest could be booted
            print(f"\nresults in {share}", file=sys.stderr)
        return status
    finally:
        if not keep:
            shutil.rmtree(share, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
