"""`rmapbench ab`: A/B runs of the same cases, alternating the sides so drift
(a busy host, a warming cache) hits both, then a comparison of B against A
(compare.py, verdict.py).

Two kernels:   rmapbench ab --kernel A --kernel B [--rounds R] -o SET -- TEST ARGS
    boots A, B, A, B, ... (one boot per side and round).
Two settings:  rmapbench ab [--kernel K] --set NAME=VALUE [--set ...] -o SET -- TEST ARGS
    side B gets the test option --NAME-with-dashes VALUE, side A the default;
    both run in one boot per round, A then B in odd rounds, B then A in even.

Each side's samples are pooled over its rounds. Exit status: 0, 1 a test
failed, 2 bad usage, 3 a guest failed, 5 no kernel, 6 a significant
regression beyond --max-regression PCT.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from rmapbench.analysis import compare, resultset
from rmapbench.analysis.cli import (
    RAW,
    Parser,
    UsageError,
    add_verbose,
    guarded,
    integer,
    replay_journals,
)
from rmapbench.analysis.verdict import Thresholds
from rmapbench.guest import batch, config
from rmapbench.guest.kernel import KernelImage
from rmapbench.ksft.status import EXIT_FAILED, EXIT_KERNEL

SIDES = ("A", "B")


MAX_ROUNDS = 1000


def parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        try:
            batch.option_flag(name)
        except UsageError as e:
            raise UsageError(f"--set {item}: {e}") from None
        if not eq or not value:
            raise UsageError(f"--set {item}: give NAME=VALUE")
        if name in out:  # which one would side B get?
            raise UsageError(f"--set {name} given twice")
        out[name] = value
    return out


def side_args(base: list[str], sets: dict[str, str]) -> list[str]:
    extra = [x for k, v in sets.items() for x in (batch.option_flag(k), v)]
    return [*base, *extra]


def plan(
    kernels: dict[str, KernelImage],
    args: dict[str, list[str]],
    programs: batch.Selection,
    rounds: int,
    one_boot_per_round: bool,
) -> tuple[list[batch.Boot], list[dict[str, Any]]]:
    """The boots in order and the index's point entries."""
    boots: list[batch.Boot] = []
    entries: list[dict[str, Any]] = []
    for r in range(1, rounds + 1):
        order = SIDES if (r % 2 or not one_boot_per_round) else SIDES[::-1]
        for side in order:
            if one_boot_per_round and boots and side != order[0]:
                boot = boots[-1]
            else:
                boot = batch.Boot(kernels[side])
                boots.append(boot)
            directory = f"r{r}-{side}"
            for prog in programs.of(args[side]):
                boot.jobs.append(batch.Job(directory, prog, args[side]))
            entries.append(
                {
                    "dir": directory,
                    "side": side,
                    "round": r,
                    "args": args[side],
                    "boot": len(boots) - 1,
                }
            )
    return boots, entries


def main(argv: list[str]) -> int:
    return guarded("rmapbench ab", lambda: _main(argv), argv)


@dataclass
class Plan:
    """An ab command line, parsed and checked."""

    ns: argparse.Namespace
    thresholds: Thresholds
    sets: dict[str, str]
    guest: config.GuestOptions
    specs: list[str]
    programs: batch.Selection
    base_args: list[str]
    args: dict[str, list[str]]  # each side's test options


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="rmapbench ab", description=__doc__, formatter_class=RAW)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="side B's test option --NAME-with-dashes VALUE (repeatable)",
    )
    p.add_argument(
        "--rounds", type=integer(1, MAX_ROUNDS), default=2, help="rounds of A and B (default 2)"
    )
    batch.add_guest_options(p, "twice: the two sides; once with --set: both (default 6.12)")
    compare.add_decision_options(p)
    add_verbose(p)
    p.add_argument("test", nargs="*", metavar="-- TEST ARGS")
    return p


def check(argv: list[str]) -> Plan:
    """The command line parsed and checked, both sides' test options
    included, with nothing set up, fetched or booted; UsageError."""
    p = _parser()
    cut = argv.index("--") if "--" in argv else len(argv)
    ns = p.parse_args(argv[:cut])
    rest = ns.test + argv[cut + 1 :]
    try:
        t = compare.thresholds(ns)
        sets = parse_sets(ns.set)
        if sets and len(ns.kernel) > 1:
            raise UsageError("give two --kernel or --set NAME=VALUE, not both")
        if not sets and len(ns.kernel) != 2:
            raise UsageError("give --kernel twice (A and B) or --set NAME=VALUE")
        if ns.rounds < 1:
            raise UsageError("--rounds must be at least 1")
        g = batch.guest_options(ns)
        specs = [str(k) for k in g.kernels]
        programs, base_args = batch.split_test_args(rest)
        args = {"A": base_args, "B": side_args(base_args, sets)}
        for side in SIDES:
            batch.check_test_args(programs.of(args[side]), args[side])
        if ns.output.exists():
            raise UsageError(f"{ns.output} exists; give a new directory")
    except UsageError as e:
        p.error(str(e))
    return Plan(ns, t, sets, g, specs, programs, base_args, args)


def _main(argv: list[str]) -> int:
    checked = check(argv)
    ns, t, sets, g = checked.ns, checked.thresholds, checked.sets, checked.guest
    specs, programs, base_args, args = (
        checked.specs, checked.programs, checked.base_args, checked.args)
    replay_journals("rmapbench ab")
    images = batch.resolve_kernels("ab", g.kernels)
    if images is None:
        return EXIT_KERNEL
    kernels = {"A": images[0], "B": images[-1]}
    boots, entries = plan(kernels, args, programs, ns.rounds, one_boot_per_round=bool(sets))
    index = resultset.base_index("ab", ["rmapbench", "ab", *argv])
    index.update(
        programs=list(dict.fromkeys(j.program.stem for b in boots for j in b.jobs)),
        test_args=base_args,
        rounds=ns.rounds,
        sides={
            s: {
                "kernel": {"spec": specs[0 if s == "A" else -1], "release": kernels[s].release},
                "set": sets if s == "B" else {},
                "args": args[s],
            }
            for s in SIDES
        },
        guest={"nodes": g.nodes, "cpus": g.cpus, "memory": g.memory},
        jobs=ns.jobs,
        boots=[],
    )
    with resultset.building(ns.output) as tmp:
        batch.run_boots(
            "ab", boots, tmp, g, entries, index, lambda n: f"console-{n}.log", ns.jobs
        )
        resultset.write_index(tmp, index)
    base, new = compare.sides_of([str(ns.output)])
    rows = compare.compare_sides(base, new, compare.metrics_of(ns), t)
    status = compare.finish(rows, base, new, ns, t)
    print(f"\nresult set in {ns.output}", file=sys.stderr)
    failed = batch.report_failed("ab", boots)
    return status or (EXIT_FAILED if failed else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
