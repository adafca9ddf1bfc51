"""The option set every test program accepts, so one option line drives the
whole suite. An option a case does not use is reported in that case's
diagnostics rather than refused; a malformed or unknown option is an error
(one line on stderr, exit status 2, before anything is set up)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from rmapbench.ksft.status import EXIT_USAGE

BACKENDS = ("auto", "tracepoint", "fprobe", "kprobe", "fgraph", "syscall", "all")
TRIGGERS = ("auto", "migrate", "damon", "msync", "pageout", "soft-offline", "split")


@dataclass
class Options:
    pages: int = 20000
    split: int = 2
    samples: int = 30
    warmup: int = 2
    backend: str = "auto"
    max_p99_ms: float | None = None
    results: Path | None = None
    merge_timeout: float = 300.0
    workdir: Path | None = None
    buffer_kb: int = 8192
    verbose: bool = False
    case: list[str] = field(default_factory=list)  # --case: empty selects every case
    max_page_sharing: int | None = None  # None: leave KSM's value as it is
    merge_across_nodes: int | None = None
    procs: int | None = None  # None: the case's own default (see PROCS_DEFAULT)
    fork_width: int = 2
    fork_depth: int = 2
    trigger: str = "auto"
    allow_destructive: bool = False
    count_visits: bool = False
    # Options given on the command line (dest names), for "does not apply".
    given: set[str] = field(default_factory=set)


# Every case whose target is a KSM page.
KSM_CASES = {"ksm", "ksm-procs", "ksm-fork", "ksm-mremap"}

# Options that only some cases use: dest -> cases that use it.
CASE_SPECIFIC = {
    "merge_timeout": KSM_CASES,
    "workdir": {"file", "file-mappers"},
    "max_page_sharing": KSM_CASES,
    "merge_across_nodes": KSM_CASES,
    "procs": {"ksm-procs", "file-mappers", "shmem"},
    "fork_width": {"ksm-fork", "anon-fork"},
    "fork_depth": {"ksm-fork", "anon-fork"},
}

# Processes mapping the target (the test's own counts) when --procs is not
# given; file-mappers defaults to more, as a shared library page has.
PROCS_DEFAULT = 8
PROCS_DEFAULT_BY_CASE = {"file-mappers": 32}
# --pages when not given. 20000 is the upstream benchmark's region; the
# multi-process cases multiply it (every process holds or maps the region,
# and a KSM walk after a fork visits every child's VMAs too), so their
# defaults keep a default run in minutes under TCG.
PAGES_DEFAULT_BY_CASE = {
    "ksm-procs": 2000,
    "ksm-fork": 1000,
    "anon-fork": 2000,
    "file-mappers": 1000,
    "shmem": 2000,
}
# Upper bounds: every process is a forked Python interpreter.
MAX_PROCS = 512
MAX_FORK_WIDTH = 64
MAX_FORK_DEPTH = 8


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, no usage dump: CI logs show exactly what was wrong.
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _positive(kind: type[int] | type[float], minimum: float) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser(prog: str, description: str = "") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description)
    d = Options()
    p.add_argument(
        "--case",
        action="append",
        metavar="NAME",
        help="run only this case (repeatable; default: all); a program whose case "
        "is not selected reports SKIP and exits 0",
    )
    p.add_argument(
        "--pages",
        type=_positive(int, 1),
        metavar="N",
        help=f"pages of identical content in the region (default {d.pages}; "
        + ", ".join(f"{c} {n}" for c, n in PAGES_DEFAULT_BY_CASE.items())
        + ")",
    )
    p.add_argument(
        "--split",
        type=_positive(int, 1),
        metavar="K",
        help="mprotect(PROT_READ) every K-th page to split the region into VMAs; "
        f"1 = no split (default {d.split})",
    )
    p.add_argument(
        "--samples",
        type=_positive(int, 1),
        metavar="S",
        help=f"measured migrations of the target page (default {d.samples})",
    )
    p.add_argument(
        "--warmup",
        type=_positive(int, 0),
        metavar="W",
        help=f"migrations before measuring (default {d.warmup})",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="how walks are timed; auto picks the most precise available, "
        "all runs the case once per available backend and compares them",
    )
    p.add_argument(
        "--max-p99-ms",
        type=_positive(float, 0.0),
        metavar="X",
        help="fail the case when the target-walk p99 exceeds X ms",
    )
    p.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        help="write JSON, LAVA result.txt and SQUAD metrics into DIR",
    )
    p.add_argument(
        "--merge-timeout",
        type=_positive(float, 1.0),
        metavar="SEC",
        help=f"ksm: give up waiting for KSM to merge after SEC (default {d.merge_timeout:g})",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="file: directory on a real (non-tmpfs) filesystem for the test file "
        "(default $TMPDIR or /tmp)",
    )
    p.add_argument(
        "--max-page-sharing",
        type=_positive(int, 2),
        metavar="N",
        help="ksm cases: set KSM's max_page_sharing (sharers per stable node) while "
        "merging; only possible while no KSM pages exist (default: as it is)",
    )
    p.add_argument(
        "--merge-across-nodes",
        type=int,
        choices=(0, 1),
        help="ksm cases: set KSM's merge_across_nodes (0: one stable tree per NUMA node) "
        "while merging (default: as it is)",
    )
    p.add_argument(
        "--buffer-kb",
        type=_positive(int, 64),
        metavar="KB",
        help=f"per-CPU ring buffer of the private trace instance (default {d.buffer_kb})",
    )
    p.add_argument(
        "--procs",
        type=_positive(int, 1),
        metavar="P",
        help="ksm-procs, file-mappers, shmem: processes mapping the target, the test's "
        f"own included (default {PROCS_DEFAULT}; file-mappers "
        f"{PROCS_DEFAULT_BY_CASE['file-mappers']}; at most {MAX_PROCS})",
    )
    p.add_argument(
        "--fork-width",
        type=_positive(int, 1),
        metavar="W",
        help=f"ksm-fork, anon-fork: children per process of the fork tree (default {d.fork_width})",
    )
    p.add_argument(
        "--fork-depth",
        type=_positive(int, 1),
        metavar="D",
        help=f"ksm-fork, anon-fork: levels of the fork tree (default {d.fork_depth}); "
        f"the tree has W + W^2 + ... + W^D processes below the test, at most {MAX_PROCS}",
    )
    p.add_argument(
        "--trigger",
        choices=TRIGGERS,
        help="what makes the kernel walk the target (README, Triggers); auto: "
        "migrate with two NUMA nodes, else the best harmless one for the case",
    )
    p.add_argument(
        "--allow-destructive",
        action="store_true",
        help="allow triggers that harm the machine (soft-offline retires frames)",
    )
    p.add_argument(
        "--count-visits",
        action="store_true",
        help="after the timed samples, a few untimed triggers counting the interval-tree "
        "visits of each walk and how many were skipped",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every knob and tracefs write")
    return p


def parse(prog: str, argv: list[str], description: str = "") -> Options:
    """Options from $RMAP_ARGS (the suite-wide line) followed by argv."""
    parser = build_parser(prog, description)
    try:
        suite_args = shlex.split(os.environ.get("RMAP_ARGS", ""))
    except ValueError as e:  # unbalanced quotes: one line and exit 2, not a traceback
        parser.error(f"RMAP_ARGS: {e}")
    ns = parser.parse_args(suite_args + list(argv))
    opts = Options()
    for key, value in vars(ns).items():
        if value is not None and value is not False:
            setattr(opts, key, value)
            opts.given.add(key)
    if "pages" not in opts.given:
        opts.pages = PAGES_DEFAULT_BY_CASE.get(_case_of(prog), opts.pages)
    if opts.case:
        from rmapbench.bench import cases  # the registry imports the scenarios, which import us

        problem = cases.error(opts.case)
        if problem:
            parser.error(problem)
    if opts.split > opts.pages:
        build_parser(prog).error(f"--split {opts.split} is larger than --pages {opts.pages}")
    _check_processes(prog, opts)
    return opts


def _case_of(prog: str) -> str:
    """rmap_ksm_fork.py -> ksm-fork."""
    return Path(prog).name.removesuffix(".py").removeprefix("rmap_").replace("_", "-")


def procs_for(opts: Options, case: str) -> int:
    """--procs, or the case's default."""
    if opts.procs is not None:
        return opts.procs
    return PROCS_DEFAULT_BY_CASE.get(case, PROCS_DEFAULT)


def _check_processes(prog: str, opts: Options) -> None:
    if opts.procs is not None and opts.procs > MAX_PROCS:
        build_parser(prog).error(f"--procs {opts.procs} is more than {MAX_PROCS}")
    if opts.fork_width > MAX_FORK_WIDTH:
        build_parser(prog).error(f"--fork-width {opts.fork_width} is more than {MAX_FORK_WIDTH}")
    if opts.fork_depth > MAX_FORK_DEPTH:
        build_parser(prog).error(f"--fork-depth {opts.fork_depth} is more than {MAX_FORK_DEPTH}")
    tree = sum(opts.fork_width**d for d in range(1, opts.fork_depth + 1))
    if tree > MAX_PROCS:
        build_parser(prog).error(
            f"--fork-width {opts.fork_width} --fork-depth {opts.fork_depth} make a tree of "
            f"{tree} processes, more than {MAX_PROCS}"
        )


def not_applicable(opts: Options, case: str) -> list[str]:
    """Options given on the command line that this case does not use."""
    return sorted(
        "--" + dest.replace("_", "-")
        for dest, cases in CASE_SPECIFIC.items()
        if dest in opts.given and case not in cases
    )
