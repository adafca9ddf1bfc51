"""The option set every test program accepts, so one option line drives the
whole suite. An option a case does not use is reported in that case's
diagnostics rather than refused; a malformed or unknown option is a
UsageError (one line on stderr, exit status 2, before anything is set up).

What a case makes of the shared options (its default --pages and --procs,
which case-specific options it uses) is its CasePolicy, declared by its
scenario; parse() is told the case and the policies of every case."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmapbench.ksft import cli, workloads
from rmapbench.ksft.cli import Parser, UsageError
from rmapbench.ksft.status import EXIT_USAGE

__all__ = ["EXIT_USAGE", "CasePolicy", "Options", "UsageError", "not_applicable", "parse"]

BACKENDS = ("auto", "tracepoint", "fprobe", "kprobe", "fgraph", "bpf", "syscall", "all")
# --bystander kinds (rmapbench/bench/bystander/, docs/bystanders.md).
BYSTANDERS = ("mprotect", "munmap", "fork")
# --tracepoint-form: which of the proposed rmap tracepoint forms the
# tracepoint backend uses when a kernel carries both (tracing/tracepoint.py).
TRACEPOINT_FORMS = ("auto", "v4", "start-end")
TRIGGERS = ("auto", "migrate", "damon", "msync", "pageout", "soft-offline", "split")
# 20000 is the upstream benchmark's region, the --pages of a case that does
# not say otherwise.
PAGES_DEFAULT = 20000


@dataclass
class Options:
    pages: int = PAGES_DEFAULT
    split: int = 2
    samples: int = 30
    warmup: int | None = None  # None: bench/warmup.py's rule (2, or 1 after a long firing)
    backend: str = "auto"
    tracepoint_form: str = "auto"
    max_p99_ms: float | None = None
    results: Path | None = None
    merge_timeout: float = 300.0
    workdir: Path | None = None
    buffer_kb: int = 8192
    verbose: bool = False
    case: list[str] = field(default_factory=list)  # --case: empty selects every case
    max_page_sharing: int | None = None  # None: leave KSM's value as it is
    merge_across_nodes: int | None = None
    procs: int | None = None  # None: the case's own default (CasePolicy.procs)
    fork_width: int = 2
    fork_depth: int = 2
    trigger: str = "auto"
    allow_destructive: bool = False
    count_visits: bool = False
    probe_all_walks: bool = False  # probe every walk function, not only the case's page type's
    precision: float | None = None  # --precision PCT: stop once the median is that precise
    min_samples: int | None = None  # with --precision (ksft/precision.py's defaults)
    max_samples: int | None = None
    bystander: list[str] = field(default_factory=list)  # --bystander kinds, in order
    workload: str | None = None  # --workload NAME[:real], already expanded
    # Options given on the command line (dest names), for "does not apply".
    given: set[str] = field(default_factory=set)


# Options that only some cases use (dest names): a case that does not use
# one reports it in its diagnostics as not applying.
KSM_OPTIONS = frozenset({"merge_timeout", "max_page_sharing", "merge_across_nodes"})
FORK_OPTIONS = frozenset({"fork_width", "fork_depth"})
CASE_SPECIFIC = KSM_OPTIONS | FORK_OPTIONS | {"workdir", "procs"}


@dataclass(frozen=True)
class CasePolicy:
    """What one case makes of the shared option set."""

    pages: int = PAGES_DEFAULT  # --pages when not given
    procs: int | None = None  # --procs when not given, for a case that uses it
    uses: frozenset[str] = frozenset()  # the CASE_SPECIFIC options it uses

    def __post_init__(self) -> None:
        unknown = self.uses - CASE_SPECIFIC
        if unknown:
            raise ValueError(f"not case-specific options: {sorted(unknown)}")
        if ("procs" in self.uses) != (self.procs is not None):
            raise ValueError("a case that uses --procs has a default for it, and only then")

    @property
    def ksm(self) -> bool:
        """The case merges with KSM, so KSM's knobs apply to it."""
        return "max_page_sharing" in self.uses

    def procs_for(self, opts: Options) -> int:
        """--procs, or this case's default."""
        if opts.procs is not None:
            return opts.procs
        assert self.procs is not None, "procs_for() of a case that uses no --procs"
        return self.procs


# Upper bounds: every process is a forked Python interpreter.
MAX_PROCS = 512
# benchmarks/scale.py raises the cap for its runs (in the guest only),
# never beyond MAX_PROCS_RAISED: max_procs().
MAX_PROCS_ENV = "RMAPBENCH_MAX_PROCS"
MAX_PROCS_RAISED = 65536
MAX_FORK_WIDTH = 64
MAX_FORK_DEPTH = 8


# Upper bounds of the sizes: far beyond any machine the suite runs on, so a
# typo (an extra 0 or two) is refused before anything is set up.
MAX_PAGES = 4_000_000  # 16 GiB of 4 KiB pages
MAX_SAMPLES = 100_000
MAX_BUFFER_KB = 4 * 1024 * 1024  # per CPU
MAX_PAGE_SHARING = 1 << 30
MAX_SECONDS = 7 * 24 * 3600.0
MAX_P99_MS = MAX_SECONDS * 1000


def _positive(kind: type[int] | type[float], minimum: float, maximum: float | None = None) -> Any:
    """An integer or a finite number from minimum to maximum (ksft.cli)."""
    if kind is int:
        return cli.integer(int(minimum), None if maximum is None else int(maximum))
    return cli.number(minimum, maximum)


def build_parser(
    prog: str, cases: Mapping[str, CasePolicy], description: str = ""
) -> argparse.ArgumentParser:
    """The parser; its --help names each case's own defaults."""
    p = Parser(prog=prog, description=description)
    d = Options()

    def used_by(dest: str) -> str:
        return ", ".join(c for c, pol in cases.items() if dest in pol.uses)

    p.add_argument(
        "--case",
        action="append",
        metavar="NAME",
        help="run only this case (repeatable; default: all); a program whose case "
        "is not selected reports SKIP and exits 4",
    )
    p.add_argument(
        "--pages",
        type=_positive(int, 1, MAX_PAGES),
        metavar="N",
        help=f"pages of identical content in the region (default {d.pages}"
        + "".join(f"; {c} {pol.pages}" for c, pol in cases.items() if pol.pages != d.pages)
        + ")",
    )
    p.add_argument(
        "--split",
        type=_positive(int, 1, MAX_PAGES),
        metavar="K",
        help="mprotect(PROT_READ) every K-th page to split the region into VMAs; "
        f"1 = no split (default {d.split})",
    )
    p.add_argument(
        "--samples",
        type=_positive(int, 1, MAX_SAMPLES),
        metavar="S",
        help=f"measured migrations of the target page (default {d.samples})",
    )
    p.add_argument(
        "--warmup",
        type=_positive(int, 0, MAX_SAMPLES),
        metavar="W",
        help="migrations before measuring (default 2, or 1 when the first took 50 ms or more)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="how walks are timed; auto picks the most precise available, "
        "all runs the case once per available backend and compares them",
    )
    p.add_argument(
        "--tracepoint-form",
        choices=TRACEPOINT_FORMS,
        help="which proposed rmap tracepoint the tracepoint backend uses: v4 (rmap_walk "
        "with duration_ns), start-end (rmap_walk_start/_end, v5-v7) or auto (v4 when "
        "the kernel has it; default)",
    )
    p.add_argument(
        "--max-p99-ms",
        type=_positive(float, 0.0, MAX_P99_MS),
        metavar="X",
        help="fail the case when the target-walk p99 exceeds X ms",
    )
    p.add_argument(
        "--results",
        type=cli.any_path(),
        metavar="DIR",
        help="write JSON, LAVA result.txt and SQUAD metrics into DIR",
    )
    p.add_argument(
        "--merge-timeout",
        type=_positive(float, 1.0, MAX_SECONDS),
        metavar="SEC",
        help=f"{used_by('merge_timeout')}: give up waiting for KSM to merge after SEC "
        f"(default {d.merge_timeout:g})",
    )
    p.add_argument(
        "--workdir",
        type=cli.any_path(),
        metavar="DIR",
        help=f"{used_by('workdir')}: directory on a real (non-tmpfs) filesystem for the test file "
        "(default $TMPDIR or /tmp)",
    )
    p.add_argument(
        "--max-page-sharing",
        type=_positive(int, 2, MAX_PAGE_SHARING),
        metavar="N",
        help=f"{used_by('max_page_sharing')}: set KSM's max_page_sharing (sharers per "
        "stable node) while merging; only possible while no KSM pages exist "
        "(default: as it is)",
    )
    p.add_argument(
        "--merge-across-nodes",
        type=cli.integer(),
        choices=(0, 1),
        help=f"{used_by('merge_across_nodes')}: set KSM's merge_across_nodes (0: one "
        "stable tree per NUMA node) while merging (default: as it is)",
    )
    p.add_argument(
        "--buffer-kb",
        type=_positive(int, 64, MAX_BUFFER_KB),
        metavar="KB",
        help=f"per-CPU ring buffer of the private trace instance (default {d.buffer_kb})",
    )
    p.add_argument(
        "--procs",
        type=_positive(int, 1),
        metavar="P",
        help=f"{used_by('procs')}: processes mapping the target, the test's own included "
        "(default "
        + ", ".join(f"{c} {pol.procs}" for c, pol in cases.items() if pol.procs is not None)
        + f"; at most {MAX_PROCS})",
    )
    p.add_argument(
        "--fork-width",
        type=_positive(int, 1),
        metavar="W",
        help=f"{used_by('fork_width')}: children per process of the fork tree "
        f"(default {d.fork_width})",
    )
    p.add_argument(
        "--fork-depth",
        type=_positive(int, 1),
        metavar="D",
        help=f"{used_by('fork_depth')}: levels of the fork tree (default {d.fork_depth}); "
        f"the tree has W + W^2 + ... + W^D processes below the test, at most {MAX_PROCS}",
    )
    p.add_argument(
        "--trigger",
        choices=TRIGGERS,
        help="what makes the kernel walk the target (docs/triggers.md); auto: "
        "migrate with two NUMA nodes, else the best harmless one for the case",
    )
    p.add_argument(
        "--allow-destructive",
        action="store_true",
        help="allow triggers that harm the machine (soft-offline retires frames)",
    )
    p.add_argument(
        "--probe-all-walks",
        action="store_true",
        help="probe rmap_walk_ksm, rmap_walk_anon and rmap_walk_file whatever the case "
        "(default: only the walk function of the target's page type; docs/backends.md)",
    )
    p.add_argument(
        "--count-visits",
        action="store_true",
        help="after the timed samples, a few untimed triggers counting the interval-tree "
        "visits of each walk and how many were skipped",
    )
    p.add_argument(
        "--precision",
        type=_positive(float, 0.01),
        metavar="PCT",
        help="sample until the 95%% confidence interval of the walk median is within "
        "+/-PCT%% of it (instead of a fixed --samples), between --min-samples and --max-samples",
    )
    p.add_argument(
        "--min-samples",
        type=_positive(int, 1, MAX_SAMPLES),
        metavar="N",
        help="with --precision: measured samples before the first check (default 10)",
    )
    p.add_argument(
        "--max-samples",
        type=_positive(int, 1, MAX_SAMPLES),
        metavar="N",
        help="with --precision: stop after N measured samples however wide the interval "
        "(default 300)",
    )
    p.add_argument(
        "--bystander",
        type=_kinds,
        metavar="KIND[,KIND...]",
        help="while the samples run (and for as many operations without them), a "
        f"separate task repeats one operation needing the walk's lock for writing: "
        f"{', '.join(BYSTANDERS)} (docs/bystanders.md)",
    )
    p.add_argument(
        "--workload",
        metavar="NAME[:real]",
        help="a named model of a real system: its case, parameters and bystanders "
        f"({', '.join(workloads.WORKLOADS)}; docs/bystanders.md)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log every knob and tracefs write")
    return p


def help_refusal(prog: str, argv: list[str], own_line: bool) -> str | None:
    """Why a program may not print its help here, or None: asked for in
    $RMAP_ARGS (wherever the program runs, it would run nothing and exit
    0), or in argv that a front door passes on (not own_line)."""
    try:
        suite = shlex.split(os.environ.get("RMAP_ARGS", ""))
    except ValueError:
        suite = []  # parse() says what is wrong with it
    see = f"see ./{prog} --help (docs/options.md)"
    def parser() -> argparse.ArgumentParser:
        return build_parser(prog, {})

    if cli.asks_help(parser, suite):
        return f"RMAP_ARGS: --help there runs nothing; {see}"
    if not own_line and cli.asks_help(parser, argv):
        return f"--help among a program's options runs nothing; {see}"
    return None


def parse(
    prog: str, argv: list[str], case: str, cases: Mapping[str, CasePolicy], description: str = ""
) -> Options:
    """Options of one case from $RMAP_ARGS (the suite-wide line) followed by
    argv; cases holds the policy of every case. Raises UsageError."""
    parser = build_parser(prog, cases, description)
    try:
        suite_args = shlex.split(os.environ.get("RMAP_ARGS", ""))
    except ValueError as e:  # unbalanced quotes: one line and exit 2, not a traceback
        raise UsageError(f"RMAP_ARGS: {e}") from None
    ns = parser.parse_args(suite_args + list(argv))
    if ns.workload is not None:  # its options first: those given explicitly win
        try:
            expanded = workloads.expand(ns.workload, stopping_rule=ns.precision is not None)
        except ValueError as e:
            raise UsageError(f"--workload: {e}") from None
        ns = parser.parse_args(expanded + suite_args + list(argv))
    opts = Options()
    for key, value in vars(ns).items():
        if value is not None and value is not False:
            setattr(opts, key, value)
            opts.given.add(key)
    if "pages" not in opts.given:
        opts.pages = cases[case].pages
    problem = unknown_cases(opts.case, list(cases))
    if problem:
        raise UsageError(problem)
    if opts.split > opts.pages:
        raise UsageError(f"--split {opts.split} is larger than --pages {opts.pages}")
    _check_processes(opts)
    _check_precision(opts)
    return opts


def _check_precision(opts: Options) -> None:
    if opts.precision is None:
        for name in ("min_samples", "max_samples"):
            if getattr(opts, name) is not None:
                raise UsageError(f"--{name.replace('_', '-')} needs --precision")
        return
    low, high = opts.min_samples or 10, opts.max_samples or 300
    if low > high:
        raise UsageError(f"--min-samples {low} is more than --max-samples {high}")
    if opts.backend == "all":
        raise UsageError("--precision does not combine with --backend all")
    if "samples" in opts.given:  # it would be ignored: say so
        raise UsageError(
            "--samples does not combine with --precision (which samples between "
            "--min-samples and --max-samples)"
        )


def _kinds(text: str) -> list[str]:
    kinds = [k for k in text.split(",") if k]
    bad = [k for k in kinds if k not in BYSTANDERS]
    if bad or not kinds or len(set(kinds)) != len(kinds):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a comma-separated list of distinct kinds of {', '.join(BYSTANDERS)}"
        )
    return kinds


def unknown_cases(selected: list[str], known: list[str]) -> str | None:
    """The one-line complaint about --case names that are not cases, or None."""
    bad = [n for n in selected if n not in known]
    if not bad:
        return None
    return f"unknown case {', '.join(map(repr, bad))} in --case (known: {', '.join(known)})"


def max_procs() -> int:
    """The cap of --procs and of the fork tree: MAX_PROCS, or higher as
    $RMAPBENCH_MAX_PROCS asks. UsageError naming the variable for a value
    that is not a count up to MAX_PROCS_RAISED (read each time: never
    silently ignored)."""
    text = os.environ.get(MAX_PROCS_ENV, "")
    if not text:
        return MAX_PROCS
    try:
        raised = cli.integer(0, MAX_PROCS_RAISED)(text)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"{MAX_PROCS_ENV}: {e}") from None
    return max(MAX_PROCS, raised)


def _check_processes(opts: Options) -> None:
    most = max_procs()
    if opts.procs is not None and opts.procs > most:
        raise UsageError(f"--procs {opts.procs} is more than {most}")
    if opts.fork_width > MAX_FORK_WIDTH:
        raise UsageError(f"--fork-width {opts.fork_width} is more than {MAX_FORK_WIDTH}")
    if opts.fork_depth > MAX_FORK_DEPTH:
        raise UsageError(f"--fork-depth {opts.fork_depth} is more than {MAX_FORK_DEPTH}")
    tree = sum(opts.fork_width**d for d in range(1, opts.fork_depth + 1))
    if tree > most:
        raise UsageError(
            f"--fork-width {opts.fork_width} --fork-depth {opts.fork_depth} make a tree of "
            f"{tree} processes, more than {most}"
        )


def path_problem(opts: Options) -> str | None:
    """Why --results or --workdir cannot be used on this machine, or None.
    Checked by the program itself (where the test runs: a guest sees other
    directories than the host that checked the rest of the options)."""
    if opts.results is not None:
        problem = cli.path_checked(cli.writable_dir_problem, opts.results)
        if problem:
            return f"--results: {problem}"
    if opts.workdir is not None:
        problem = cli.path_checked(_workdir_problem, opts.workdir)
        if problem:
            return f"--workdir: {problem}"
    return None


def _workdir_problem(workdir: Path) -> str | None:
    if workdir.is_dir():
        return cli.writable_dir_problem(workdir)
    if not workdir.exists():
        return f"{workdir}: no such directory"
    return f"{workdir} is not a directory"


def not_applicable(opts: Options, policy: CasePolicy) -> list[str]:
    """Options given on the command line that this case does not use."""
    return sorted(
        "--" + dest.replace("_", "-") for dest in opts.given & CASE_SPECIFIC - policy.uses
    )
