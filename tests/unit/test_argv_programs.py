"""Property-based tests of the test programs' command line (ksft/options.py,
bench/program.py): whatever the argv, check() either returns options whose
every value lies in its documented range (docs/options.md) and that meet
every cross-option constraint, or refuses it with one line that names the
option; the program then exits 2 with exactly that line and no traceback.

Safety: an argv is only ever handed to check(), which parses and returns;
program.main() - which would go on to set up and run the case - is called
only with an argv check() has just refused, so it refuses the same way
before anything is set up. test_bad_inputs.py and test_options.py hold
the hand-written table of cases; these generate around it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmapbench.bench import cases, program
from rmapbench.ksft import options
from rmapbench.ksft.cli import UsageError, integer, one_line
from rmapbench.ksft.options import Options
from rmapbench.ksft.status import EXIT_USAGE
from rmapbench.machine import knobs

SETTINGS = settings(derandomize=True, max_examples=50, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                    ) -> None:
    """No suite-wide options from the environment; a private journal
    directory, should a refusal ever come too late."""
    monkeypatch.delenv("RMAP_ARGS", raising=False)
    monkeypatch.delenv("RMAPBENCH_MAX_PROCS", raising=False)
    monkeypatch.setattr(knobs, "JOURNAL_DIR", tmp_path_factory.mktemp("journal"))


# -- the documented ranges ------------------------------------------------------


@dataclass(frozen=True)
class Numeric:
    """An option taking a number, with the range docs/options.md gives it,
    the case to give it to and options that keep the others out of the way."""

    dest: str
    kind: type
    lo: float
    hi: float | None
    case: str = "ksm"
    extra: tuple[str, ...] = ()


NUMERIC: dict[str, Numeric] = {
    "--pages": Numeric("pages", int, 1, options.MAX_PAGES, extra=("--split", "1")),
    "--split": Numeric("split", int, 1, options.MAX_PAGES, extra=("--pages", "4000000")),
    "--samples": Numeric("samples", int, 1, options.MAX_SAMPLES),
    "--warmup": Numeric("warmup", int, 0, options.MAX_SAMPLES),
    "--max-p99-ms": Numeric("max_p99_ms", float, 0.0, options.MAX_P99_MS),
    "--merge-timeout": Numeric("merge_timeout", float, 1.0, options.MAX_SECONDS),
    "--max-page-sharing": Numeric("max_page_sharing", int, 2, options.MAX_PAGE_SHARING),
    "--merge-across-nodes": Numeric("merge_across_nodes", int, 0, 1),
    "--buffer-kb": Numeric("buffer_kb", int, 64, options.MAX_BUFFER_KB),
    "--procs": Numeric("procs", int, 1, options.MAX_PROCS, case="shmem"),
    "--fork-width": Numeric("fork_width", int, 1, options.MAX_FORK_WIDTH, case="ksm-fork",
                            extra=("--fork-depth", "1")),
    "--fork-depth": Numeric("fork_depth", int, 1, options.MAX_FORK_DEPTH, case="ksm-fork",
                            extra=("--fork-width", "1")),
    "--precision": Numeric("precision", float, 0.01, None),
    # Sample counts like --samples, whatever the other's value.
    "--min-samples": Numeric("min_samples", int, 1, options.MAX_SAMPLES,
                             extra=("--precision", "5", "--max-samples", "100000")),
    "--max-samples": Numeric("max_samples", int, 1, options.MAX_SAMPLES,
                             extra=("--precision", "5", "--min-samples", "1")),
}


# -- generated values -------------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
# Text no number parser should take, or only some would: empty, blanks, the
# IEEE specials, a number too long for int(), an undecodable argv byte
# (os.fsdecode's surrogate), a no-break space, full-width digits.
ODD = ["", " ", "\t", "nan", "NaN", "inf", "-inf", "+inf", "infinity", "1e400", "-1e400",
       "0x10", "0o17", "0b1", "1e3", "1.5", ".5", "5.", "1_000", "_1", "1__0", "--1", "+-1",
       "9" * 5000, "-" + "9" * 5000, "\udcff", "5\udcff", "1\u00a0", "\uff11\uff12",
       "\u0663", "\u216b", "\u00b2", "0" * 50 + "7", "7 7", "1,5", "\n5"]


def number_texts(lo: float, hi: float | None) -> st.SearchStrategy[str]:
    """Texts of numbers near the bounds and far off, in every spelling."""
    top = 10**9 if hi is None else int(hi)
    near = st.one_of(
        st.integers(int(lo) - 3, int(lo) + 3),
        st.integers(top - 3, top + 3),
        st.integers(int(lo), top),
        st.integers(-(10**30), 10**30),
    )

    def spellings(n: int) -> st.SearchStrategy[str]:
        return st.sampled_from([
            str(n), f"+{n}", f" {n} ", f"{n:_}", hex(n), oct(n), f"{n}.0", f"{n}e0",
            f"{n / 3:.6g}", str(n).translate(ARABIC_INDIC), f"{n}\t", f"0{n}",
        ])

    floats = st.floats(allow_nan=True, allow_infinity=True).map(repr)
    return st.one_of(near.flatmap(spellings), st.sampled_from(ODD), floats,
                     st.text(max_size=6))


def plain_decimal(text: str) -> int | None:
    """The value of the spelling every parser must take (optional sign,
    ASCII digits, blanks around), None for any other (or too long to
    matter: beyond every range)."""
    if len(text) > 100 or not re.fullmatch(r"\s*[+-]?[0-9]+\s*", text, re.ASCII):
        return None
    return int(text)


def in_range(value: float, lo: float, hi: float | None) -> bool:
    return lo <= value <= (math.inf if hi is None else hi)


# -- helpers ------------------------------------------------------------------------


def check(case: str, argv: list[str]) -> Options | str:
    """The options check() gives, or the message of its UsageError. A
    SystemExit or any other exception is a bug: it propagates."""
    try:
        return program.check(case, argv)
    except UsageError as e:
        return str(e)


@contextlib.contextmanager
def stderr() -> Iterator[io.StringIO]:
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(
            io.StringIO()) as out:
        yield err
    assert out.getvalue() == "", out.getvalue()


def assert_refused_by_program(case: str, argv: list[str], message: str) -> None:
    """program.main() on an argv check() refused: exit 2, the one line."""
    name = cases.program(case).removesuffix(".py")
    with stderr() as err:
        rc = program.main(name, case, argv)
    text = err.getvalue()
    assert rc == EXIT_USAGE, text
    assert text.count("\n") == 1 and text.endswith("\n"), text
    assert text == one_line(f"{name}.py: error: {message}") + "\n", text
    assert "Traceback" not in text


def assert_one_line(message: str) -> None:
    """A message that prints as one short line (ksft.cli.one_line escapes
    what a value echoed in it may hold)."""
    assert message and one_line(message).isprintable(), message
    assert len(message) < 400, message  # a pasted megabyte is not echoed whole


# -- properties -----------------------------------------------------------------------


@pytest.mark.parametrize("flag", list(NUMERIC))
@SETTINGS
@given(data=st.data())
def test_a_number_is_in_its_range_or_refused_naming_the_option(
    flag: str, data: st.DataObject
) -> None:
    spec = NUMERIC[flag]
    text = data.draw(number_texts(spec.lo, spec.hi), label="value")
    argv = [*spec.extra, flag, text]
    got = check(spec.case, argv)
    plain = plain_decimal(text)
    if isinstance(got, str):
        assert_one_line(got)
        assert flag in got, got
        assert plain is None or not in_range(plain, spec.lo, spec.hi), f"{text!r} refused: {got}"
        assert_refused_by_program(spec.case, argv, got)
        return
    value = getattr(got, spec.dest)
    assert isinstance(value, spec.kind), value
    assert math.isfinite(value) and in_range(value, spec.lo, spec.hi), value
    assert plain is None or value == plain, (text, value)


# -- options in any combination -------------------------------------------------------

CHOICES: dict[str, list[str]] = {
    "--case": [*cases.names(), "nope", "", "KSM", "ksm ", "\udcff", "ksm,anon"],
    "--backend": [*options.BACKENDS, "ebpf", ""],
    "--trigger": [*options.TRIGGERS, "reboot", ""],
    "--bystander": ["mprotect", "munmap,fork", "fork,fork", ",", "", "mprotect,", "oom"],
    "--workload": ["jvm", "vmhost:real", "forkserver-file", "jvm:huge", "", ":real", "\udcff"],
    "--results": ["/tmp/r", "", "\udcff"],
    "--tracepoint-form": [*options.TRACEPOINT_FORMS, "v6", "v4\n", "\x1b[31mv4"],
    "--workdir": ["/tmp/w", "", "rel"],
}
SWITCHES = ["--allow-destructive", "--count-visits", "--probe-all-walks", "-v"]


def near_bounds(spec: Numeric) -> st.SearchStrategy[str]:
    top = 1000 if spec.hi is None else int(spec.hi)
    return st.one_of(
        st.integers(int(spec.lo) - 1, int(spec.lo) + 3).map(str),
        st.integers(max(int(spec.lo), top - 2), top + 1).map(str),
        st.integers(int(spec.lo), min(top, 600)).map(str),
        st.sampled_from(["nan", "x", ""]),
    )


def one_option() -> st.SearchStrategy[list[str]]:
    numeric = [st.tuples(st.just(f), near_bounds(s)).map(list) for f, s in NUMERIC.items()]
    chosen = [st.tuples(st.just(f), st.sampled_from(v)).map(list) for f, v in CHOICES.items()]
    return st.one_of(*numeric, *chosen, st.sampled_from(SWITCHES).map(lambda f: [f]),
                     st.sampled_from([["stray"], ["--frobnicate"], ["--pages"]]))


command_lines = st.lists(one_option(), max_size=7).map(lambda xs: [a for x in xs for a in x])


def assert_consistent(opts: Options) -> None:
    """Every value in its range, every cross-option constraint met."""
    for spec in NUMERIC.values():
        value = getattr(opts, spec.dest)
        if value is not None:
            assert isinstance(value, spec.kind) and math.isfinite(value), (spec.dest, value)
            assert in_range(value, spec.lo, spec.hi), (spec.dest, value)
    assert opts.split <= opts.pages
    assert set(opts.case) <= set(cases.names())
    assert opts.backend in options.BACKENDS and opts.trigger in options.TRIGGERS
    assert len(set(opts.bystander)) == len(opts.bystander)
    assert set(opts.bystander) <= set(options.BYSTANDERS)
    tree = sum(opts.fork_width**d for d in range(1, opts.fork_depth + 1))
    assert tree <= options.MAX_PROCS
    if opts.precision is None:
        assert opts.min_samples is None and opts.max_samples is None
    else:
        assert (opts.min_samples or 10) <= (opts.max_samples or 300)
        assert opts.backend != "all"
    if opts.trigger == "soft-offline":
        assert opts.allow_destructive
    if opts.workload is not None:
        assert opts.workload.partition(":")[0] in options.workloads.WORKLOADS


def flags_in(argv: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in argv if a.startswith("-") and a != "-"}


def assert_names_an_option(message: str, argv: list[str]) -> None:
    """The line says which option is wrong (a stray argument is named by
    argparse as unrecognized)."""
    if message.startswith("unrecognized arguments: "):
        return
    assert any(f in message for f in flags_in(argv)), f"{message!r} names none of {argv}"


@settings(SETTINGS, max_examples=150)
@given(case=st.sampled_from(cases.names()), argv=command_lines)
def test_any_combination_is_consistent_or_refused_naming_an_option(
    case: str, argv: list[str]
) -> None:
    got = check(case, argv)
    if isinstance(got, Options):
        assert_consistent(got)
        return
    assert_one_line(got)
    assert_names_an_option(got, argv)
    assert_refused_by_program(case, argv, got)


# -- the environment ---------------------------------------------------------------------


@SETTINGS
@given(cap=number_texts(0, options.MAX_PROCS_RAISED), procs=st.integers(1, 2 * 65536))
def test_max_procs_from_the_environment_is_a_count_or_refused(cap: str, procs: int) -> None:
    """RMAPBENCH_MAX_PROCS raises the --procs cap (benchmarks/scale.py);
    a value that is not a count up to the hard cap is refused, naming the
    variable, never ignored."""
    argv = ["--procs", str(procs)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RMAPBENCH_MAX_PROCS", cap)
        got = check("shmem", argv)
    try:  # a count as every option spells one (the property above)
        most = max(options.MAX_PROCS, integer(0, options.MAX_PROCS_RAISED)(cap)) if cap else 512
    except argparse.ArgumentTypeError:
        assert isinstance(got, str), got
        assert_one_line(got)
        assert got.startswith("RMAPBENCH_MAX_PROCS: "), got
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RMAPBENCH_MAX_PROCS", cap)
            assert_refused_by_program("shmem", argv, got)
        return
    if procs <= most:
        assert isinstance(got, Options) and got.procs == procs, got
    else:
        assert got == f"--procs {procs} is more than {most}"


@settings(SETTINGS, max_examples=100)
@given(case=st.sampled_from(cases.names()), suite=command_lines, argv=command_lines,
       raw=st.one_of(st.none(), st.sampled_from(["'", '"--pages', "--case 'a b", "\\", "a\x00b"])))
def test_rmap_args_is_checked_with_the_command_line_and_named_when_it_alone_is_wrong(
    case: str, suite: list[str], argv: list[str], raw: str | None
) -> None:
    text = raw if raw is not None else shlex.join(suite)
    with pytest.MonkeyPatch.context() as mp:
        if "\x00" in text:
            return  # an environment cannot hold it
        mp.setenv("RMAP_ARGS", text)
        got = check(case, argv)
        alone = check(case, [])
        if isinstance(got, Options):
            assert_consistent(got)
            return
        assert_one_line(got)
        bare = check_without_env(case, argv)
        if isinstance(alone, str):
            # The variable is refused on its own: the line says it is the culprit.
            assert alone.startswith("RMAP_ARGS: ") and got == alone, (got, alone)
        elif isinstance(alone, Options) and isinstance(bare, str):
            assert got == bare or not got.startswith("RMAP_ARGS"), (got, bare)
        assert_refused_by_program(case, argv, got)


def check_without_env(case: str, argv: list[str]) -> Options | str:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RMAP_ARGS", raising=False)
        return check(case, argv)
