"""Property-based tests of the front doors' command lines: run_tests.sh
(guest/suite.py), `rmapbench vm`, `sweep`, `ab`, `compare` and the
runner. Whatever the argv, each command's check() either returns an
invocation whose every value lies in its documented range, with every
cross-option constraint met, or refuses it with one line naming the option;
the command itself then exits 2 with that line and no traceback.

Safety: an argv is only ever handed to check(), which parses, checks and
returns (a given kernel image is read, nothing is fetched or booted).
A command's main() runs only with an argv its check() has just refused,
and a stand-in qemu-system-x86_64 first on PATH records whether anything
got as far as starting one (nothing may). test_bad_inputs.py holds the
hand-written table; these generate around it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import math
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from placeholders import subst

from rmapbench import __main__ as rmapbench_cli
from rmapbench.analysis import ab, compare, sweep
from rmapbench.bench import cases, program
from rmapbench.guest import batch, config, jobs, suite, vm
from rmapbench.guest.qemu import parse_memory
from rmapbench.ksft import runner
from rmapbench.ksft.cli import UsageError, one_line
from rmapbench.ksft.status import EXIT_USAGE
from rmapbench.machine import knobs

SETTINGS = settings(derandomize=True, max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
FIX = Path(__file__).resolve().parent / "fixtures" / "analysis"


def _bzimage(path: Path, release: str = "6.12.0-test") -> Path:
    """The few bytes of a bzImage its release is read from (kernel.py)."""
    header = bytearray(0x400)
    header[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", header, 0x20E, 0x100)
    header[0x300 : 0x300 + len(release)] = release.encode()
    path.write_bytes(bytes(header))
    return path


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Paths of every kind an option may name; a stand-in QEMU first on
    PATH that records being started; a private journal directory; no
    suite-wide options from the environment."""
    tmp = tmp_path_factory.mktemp("argv")
    (tmp / "bin").mkdir()
    marker = tmp / "qemu-started"
    qemu = tmp / "bin" / "qemu-system-x86_64"
    qemu.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    qemu.chmod(0o755)
    (tmp / "file").write_text("not a directory, not a kernel\n")
    (tmp / "dir").mkdir()
    (tmp / "modules" / "6.12.0-test" / "kernel").mkdir(parents=True)
    real = {
        "@FILE": str(tmp / "file"),
        "@DIR": str(tmp / "dir"),
        "@MISSING": str(tmp / "missing" / "x"),
        "@IMAGE": str(_bzimage(tmp / "vmlinuz")),
        "@MODULES": str(tmp / "modules"),
        "@UNREADABLE": "/proc/self/mem",  # a regular file whose read fails, even for root
        "@PROC": "/proc/x",
        "@UNDER_FILE": str(tmp / "file" / "sub"),
        "@NEW": str(tmp / "new"),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{tmp / 'bin'}{os.pathsep}{os.environ['PATH']}")
        mp.delenv("RMAP_ARGS", raising=False)
        mp.delenv("RMAPBENCH_MAX_PROCS", raising=False)
        mp.setattr(knobs, "JOURNAL_DIR", tmp / "journal")
        mp.chdir(tmp)
        yield real
    assert not marker.exists(), "a command line reached QEMU"




# -- generated values -----------------------------------------------------------------

ARABIC_INDIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667"
                             "\u0668\u0669")
ODD = ["", " ", "nan", "inf", "-inf", "1e400", "0x10", "1.5", "1_0", "9" * 5000, "\udcff",
       "\u0663", "-0", "+1", " 3 "]


def counts(lo: int, hi: int) -> st.SearchStrategy[str]:
    near = st.one_of(st.integers(lo - 2, lo + 2), st.integers(hi - 2, hi + 2),
                     st.integers(lo, hi), st.integers(-(10**12), 10**12))
    spelled = near.flatmap(lambda n: st.sampled_from(
        [str(n), f"+{n}", f"{n:_}", f"{n}.0", str(n).translate(ARABIC_INDIC)]))
    return st.one_of(spelled, st.sampled_from(ODD))


def memories() -> st.SearchStrategy[str]:
    sizes = st.one_of(st.integers(0, 300), st.integers(1000, 5000), st.integers(10**6, 10**7),
                      st.just(int("9" * 4000)))
    unit = st.sampled_from(["", "M", "m", "G", "g", "T", "K", "MB", " G", "G "])
    spelled = st.tuples(sizes, unit).map(lambda t: f"{t[0]}{t[1]}")
    return st.one_of(spelled, st.sampled_from([*ODD, "\u0662G", "-2G", "2GG"]))


PATHS = ["@FILE", "@DIR", "@MISSING", "@IMAGE", "@UNREADABLE", "@PROC", "@UNDER_FILE", "",
         "\udcff", "."]
SERIES = ["6.12", "6.1", "6.12-rt", "6.12-cloud", "latest", "6", "\u0666.\u0661\u0662",
          "6.12\n", "6.12-xen", ""]
KERNELS = ["@FILE", "@DIR", "@MISSING", "@IMAGE", "@UNREADABLE", "@PROC", "@UNDER_FILE", "\udcff",
           ""]


def guest_option() -> st.SearchStrategy[list[str]]:
    """One guest option of run_tests.sh and vm, with a value of any kind."""
    return st.one_of(
        st.tuples(st.just("--nodes"), counts(1, config.MAX_NODES)).map(list),
        st.tuples(st.just("--cpus"), counts(1, config.MAX_CPUS)).map(list),
        st.tuples(st.just("--memory"), memories()).map(list),
        st.tuples(st.just("--timeout"), counts(1, config.MAX_TIMEOUT)).map(list),
        st.tuples(st.just("--accel"), st.sampled_from(["auto", "kvm", "tcg", "hvf", ""])).map(
            list),
        st.tuples(st.just("--kernel"), st.sampled_from(KERNELS)).map(list),
        st.tuples(st.just("--kernel-series"), st.sampled_from(SERIES)).map(list),
        st.tuples(st.just("--modules"), st.sampled_from([*KERNELS, "@MODULES"])).map(list),
    )


def guest_lines(extra: st.SearchStrategy[list[str]] | None = None
                ) -> st.SearchStrategy[list[str]]:
    one = guest_option() if extra is None else st.one_of(guest_option(), extra)
    return st.lists(one, max_size=5).map(lambda xs: [a for x in xs for a in x])


# -- helpers ------------------------------------------------------------------------------


def attempt(fn: Callable[[list[str]], object], argv: list[str]) -> object:
    """What check() returns, or the message of its UsageError; a SystemExit
    or any other exception is a bug and propagates."""
    try:
        got = fn(argv)
    except UsageError as e:
        if currently_in_test_context():
            event("refused")
        return str(e)
    if currently_in_test_context():
        event("accepted")
    return got


@contextlib.contextmanager
def captured() -> Iterator[io.StringIO]:
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(
            io.StringIO()) as out:
        yield err
    assert out.getvalue() == "", out.getvalue()


def assert_refused(main: Callable[[list[str]], int], prog: str, argv: list[str],
                   message: str) -> None:
    """The command's main() on an argv its check() refused: exit 2, that line."""
    with captured() as err:
        rc = main(argv)
    text = err.getvalue()
    assert rc == EXIT_USAGE, text
    assert text == one_line(f"{prog}: error: {message}") + "\n", text


def assert_names_an_option(message: str, argv: list[str], also: tuple[str, ...] = ()) -> None:
    assert message and len(message) < 600, message
    flags = {a.split("=", 1)[0] for a in argv if a.startswith("-") and a != "-"}
    ok = any(f in message for f in flags) or message.startswith(("unrecognized arguments",
                                                                   *also))
    assert ok, f"{message!r} names none of {argv}"


def assert_guest_in_range(g: config.GuestOptions) -> None:
    assert 1 <= g.nodes <= config.MAX_NODES and 1 <= g.cpus <= config.MAX_CPUS
    assert 1 <= g.timeout <= config.MAX_TIMEOUT
    mib = parse_memory(g.memory)
    assert 1 <= mib <= config.MAX_MEMORY_MIB and mib // g.nodes >= config.MIN_NODE_MIB
    assert g.accel in ("auto", "kvm", "tcg")
    for k in g.kernels:
        if k.image is None:
            assert config.SERIES.fullmatch(k.series) and k.series.isascii(), k
        else:
            assert k.image.is_file(), k
            assert k.modules is None or k.modules.is_dir(), k


# -- run_tests.sh and vm: the guest options -------------------------------------------


@SETTINGS
@given(argv=guest_lines(st.one_of(
    st.tuples(st.just("--jobs"), counts(1, 4)).map(list),
    st.tuples(st.just("--results"), st.sampled_from([*PATHS, "@NEW"])).map(list),
)))
def test_run_tests_guest_options_in_range_or_refused(paths: dict[str, str],
                                                     argv: list[str]) -> None:
    argv = subst(argv, paths)
    got = attempt(suite.check, argv)
    if isinstance(got, suite.Invocation):
        assert_guest_in_range(got.guest)
        empty = [a for a, b in itertools.pairwise(argv) if not b and a in ("--kernel", "--modules")]
        assert not empty, argv
        ns = got.ns
        assert ns.jobs >= 1
        assert ns.jobs * jobs.host_cpus_per_guest(ns.accel, ns.cpus) <= len(
            os.sched_getaffinity(0)) or ns.jobs == 1
        return
    assert isinstance(got, str)
    assert_names_an_option(got, argv)
    assert_refused(suite.main, "run_tests.sh", argv, got)


@SETTINGS
@given(argv=guest_lines(st.one_of(
    st.tuples(st.just("--share"), st.sampled_from(PATHS)).map(list),
    st.tuples(st.just("--console-log"), st.sampled_from(PATHS)).map(list),
)))
def test_vm_guest_options_in_range_or_refused(paths: dict[str, str], argv: list[str]) -> None:
    argv = [*subst(argv, paths), "--", "true"]
    got = attempt(vm.check, argv)
    if isinstance(got, vm.Invocation):
        assert_guest_in_range(got.guest)
        assert got.command == ["true"]
        assert (got.kernel is None) == (got.guest.kernel.image is None)
        return
    assert isinstance(got, str)
    assert_names_an_option(got, argv)
    assert_refused(vm.main, "python3 -m rmapbench.guest.vm", argv, got)


def test_rmapbench_vm_is_the_same_command(paths: dict[str, str]) -> None:
    argv = ["--memory", "1e3", "--", "true"]
    with pytest.raises(UsageError):
        vm.check(argv)
    assert_refused(lambda a: rmapbench_cli.main(["vm", *a]), "python3 -m rmapbench.guest.vm",
                   argv, "--memory: bad memory size '1e3' (use e.g. 2G or 1536M)")




@pytest.mark.parametrize("value", ["6.12\nrun_tests.sh: ok", "6.12\r", "\x1b[2J6.12", "\udcff"])
def test_a_value_echoed_raw_still_makes_one_line(paths: dict[str, str], value: str) -> None:
    """--kernel-series echoes its value as given: a newline, a terminal
    escape or an undecodable argv byte in it is printed escaped."""
    argv = ["--kernel-series", value]
    message = attempt(suite.check, argv)
    assert isinstance(message, str) and value in message
    with captured() as err:
        assert suite.main(argv) == EXIT_USAGE
    line = err.getvalue()
    assert line.count("\n") == 1 and line.endswith("\n") and line[:-1].isprintable(), line
    assert line.startswith("run_tests.sh: error: --kernel-series 6.12\\n" if "\n" in value
                           else "run_tests.sh: error: --kernel-series "), line


# -- the test programs' options after -- ----------------------------------------------------

TEST_OPTIONS = [
    ["--pages", "1000"], ["--samples", "10"], ["--split", "1"], ["--count-visits"],
    ["--pages", "100"], ["--pages", "0"], ["--samples", "5"], ["--split", "200"],
    ["--case", "ksm"], ["--case", "anon"], ["--case", "nope"], ["--backend", "all"],
    ["--precision", "5"], ["--min-samples", "400"], ["--procs", "2"], ["--trigger", "split"],
    ["--workload", "jvm"], ["--results", "@DIR"], ["--results=@DIR"], ["--res", "@DIR"],
    ["--result", "@NEW"], ["--resu=@DIR"], ["--frobnicate"], ["--pages=7"], ["-v"],
]
test_args = st.lists(st.sampled_from(TEST_OPTIONS), max_size=4).map(
    lambda xs: [a for x in xs for a in x])


def gives_results(args: list[str]) -> bool:
    """--results in any spelling argparse takes: whole, with =, abbreviated."""
    return any(a.split("=", 1)[0] in ("--res", "--resu", "--resul", "--result", "--results")
               for a in args)


@SETTINGS
@given(front=guest_lines(st.one_of(
    st.tuples(st.just("--jobs"), counts(1, 3)).map(list),
    st.tuples(st.just("--case"), st.sampled_from(["ksm", "thp", "nope"])).map(list),
)), tests=test_args)
def test_run_tests_checks_the_programs_options_before_anything(
    paths: dict[str, str], front: list[str], tests: list[str]
) -> None:
    argv = subst([*front, "--", *tests], paths)
    got = attempt(suite.check, argv)
    if isinstance(got, suite.Invocation):
        assert not gives_results(got.test_args), got.test_args
        for prog in program.selected_programs(got.test_args):
            case = cases.case_of(prog)
            assert case is not None
            program.check(case, got.test_args)  # what each program will check, in the guest
        return
    assert isinstance(got, str)
    assert_names_an_option(got, argv, also=("rmap_",))
    assert_refused(suite.main, "run_tests.sh", argv, got)



@pytest.mark.parametrize(("argv", "message"), [
    (["--jobs", "2", "--accel", "kvm", "--cpus", "1000"], "--cpus must be at most 256, got 1000"),
    (["--jobs", "2", "--accel", "kvm", "--cpus", "-3"], "--cpus must be at least 1"),
    (["--jobs", "0", "--nodes", "0"], "--nodes must be at least 1"),
    (["--jobs", "0"], "--jobs must be at least 1, got 0"),
])
def test_each_value_is_checked_before_what_values_need_together(
    paths: dict[str, str], argv: list[str], message: str
) -> None:
    """--jobs N needs N guests' host CPUs, and so a --cpus in range first."""
    assert attempt(suite.check, argv) == message


# -- sweep and ab ---------------------------------------------------------------------------

IMAGES = ["6.12", "6.1", "6.12-rt", "@IMAGE", "@FILE", "@DIR", "@MISSING", "", "latest",
          "\u0666.\u0661\u0662"]
OUTPUTS = ["@NEW", "@NEW/a/b", "@FILE", "@DIR", "@PROC", "@UNDER_FILE", ""]
PROGRAMS = [[], ["ksm"], ["anon,ksm"], ["rmap_file.py"], ["nope"], ["ksm-procs"]]


def batch_option() -> st.SearchStrategy[list[str]]:
    """The options sweep and ab share: the guest's, -o, --jobs."""
    return st.one_of(
        st.tuples(st.just("--kernel"), st.sampled_from(IMAGES)).map(list),
        st.tuples(st.just("--nodes"), counts(1, config.MAX_NODES)).map(list),
        st.tuples(st.just("--memory"), memories()).map(list),
        st.tuples(st.just("--timeout"), counts(1, config.MAX_TIMEOUT)).map(list),
        st.tuples(st.just("--accel"), st.sampled_from(["auto", "tcg", "kvm", "x"])).map(list),
        st.tuples(st.just("--jobs"), counts(1, 3)).map(list),
        st.tuples(st.sampled_from(["-o", "--output"]), st.sampled_from(OUTPUTS)).map(list),
    )


def lines(*options: st.SearchStrategy[list[str]], size: int = 3) -> st.SearchStrategy[list[str]]:
    return st.lists(st.one_of(*options), max_size=size).map(lambda xs: [a for x in xs for a in x])


def with_tests(front: list[str], progs: list[str], tests: list[str]) -> list[str]:
    return [*front, "--", *progs, *tests]


def assert_batch_plan_sound(ns: argparse.Namespace, guest: config.GuestOptions | None,
                            programs: batch.Selection, runs: list[list[str]]) -> None:
    """What sweep and ab accepted can be run as it is: the machine in range,
    each run's options accepted by each program, no --results among them,
    a new output directory, the host CPUs for --jobs."""
    assert guest is not None
    assert_guest_in_range(guest)
    assert len({str(k) for k in guest.kernels}) == len(guest.kernels)
    out = ns.output
    assert out is not None and not out.exists()
    for args in runs:
        assert not gives_results(args), args
        for prog in programs.of(args):  # each run's own programs
            case = cases.case_of(prog)
            assert case is not None
            program.check(case, args)
    per = jobs.host_cpus_per_guest(guest.accel, guest.cpus)
    assert ns.jobs * per <= len(os.sched_getaffinity(0)) or ns.jobs == 1


VARY = ["pages=100,200", "samples=5", "pages=", "pages=1,,2", "Pages=1,2", "kernel=6.12",
        "pages=0,1", "max_p99_ms=nan,1", "split=3,4", "results=@DIR", "bogus=1,2", "pages=1,1",
        "=1", "pages", "workload=jvm,vmhost", "precision=5,10", "min_samples=400"]


@SETTINGS
@given(front=lines(batch_option(), st.tuples(st.just("--vary"), st.sampled_from(VARY)).map(list),
                   st.tuples(st.just("--format"), st.sampled_from(["text", "json", "xml"])).map(
                       list), st.just(["-v"])),
       progs=st.sampled_from(PROGRAMS), tests=test_args,
       base=st.sampled_from([["--vary", "pages=100,200"], ["--vary", "Pages=1,2"]]))
def test_sweep_plans_only_runs_every_program_accepts(
    paths: dict[str, str], front: list[str], progs: list[str], tests: list[str], base: list[str]
) -> None:
    argv = subst(with_tests([*base, "-o", "@NEW", *front], progs, tests), paths)
    got = attempt(sweep.check, argv)
    if isinstance(got, sweep.Plan):
        assert got.grid and got.points and got.ns.source is None
        runs = [sweep.point_args(got.base_args, pt) for pt in got.points]
        assert_batch_plan_sound(got.ns, got.guest, got.programs, runs)
        return
    assert isinstance(got, str)
    assert_names_an_option(got, argv, also=("give ", "no test program", "rmap_"))
    assert_refused(lambda a: rmapbench_cli.main(["sweep", *a]), "rmapbench sweep", argv, got)


SETS = ["pages=100", "pages=", "Pages=1", "samples=abc", "results=@DIR", "backend=all",
        "precision=5", "=1", "split=1", "kernel=6.12"]


@SETTINGS
@given(front=lines(batch_option(), st.tuples(st.just("--set"), st.sampled_from(SETS)).map(list),
                   st.tuples(st.just("--rounds"), counts(1, ab.MAX_ROUNDS)).map(list),
                   st.tuples(st.sampled_from(["--alpha", "--min-effect", "--max-regression",
                                              "--noise-floor"]), counts(0, 2)).map(list),
                   st.tuples(st.just("--resamples"), counts(100, 10**7)).map(list),
                   st.tuples(st.just("--seed"), counts(0, 2**32 - 1)).map(list)),
       progs=st.sampled_from(PROGRAMS), tests=test_args,
       base=st.sampled_from([["--set", "pages=100"], ["--set", "Pages=100"],
                             ["--set", "pages=100", "--set", "pages=200"],
                             ["--kernel", "6.12", "--kernel", "6.1"], []]))
def test_ab_plans_only_runs_every_program_accepts(
    paths: dict[str, str], front: list[str], progs: list[str], tests: list[str], base: list[str]
) -> None:
    argv = subst(with_tests(["-o", "@NEW", *base, *front], progs, tests), paths)
    got = attempt(ab.check, argv)
    if isinstance(got, ab.Plan):
        assert 1 <= got.ns.rounds <= ab.MAX_ROUNDS
        assert len(got.guest.kernels) == (1 if got.sets else 2) or not got.ns.kernel
        names = [item.partition("=")[0] for item in got.ns.set]
        assert len(set(names)) == len(names), names  # side B's value of each is clear
        t = got.thresholds
        assert 0 < t.alpha < 1 and t.min_effect >= 0 and t.resamples >= 100
        assert 0 <= t.seed < 2**32
        assert t.noise_floor is None or 0 <= t.noise_floor <= 1
        assert_batch_plan_sound(got.ns, got.guest, got.programs, list(got.args.values()))
        return
    assert isinstance(got, str)
    assert_names_an_option(got, argv, also=("give ", "no test program", "rmap_"))
    assert_refused(lambda a: rmapbench_cli.main(["ab", *a]), "rmapbench ab", argv, got)


@SETTINGS
@given(front=lines(batch_option(), st.tuples(st.just("--vary"), st.sampled_from(VARY)).map(list),
                   st.tuples(st.just("--format"), st.sampled_from(["text", "json"])).map(list)),
       tests=st.sampled_from([[], ["--"], ["--", "ksm"], ["--", "--pages", "5"]]),
       source=st.sampled_from([str(FIX / "sweep"), str(FIX / "ab"), "@DIR", "@MISSING"]))
def test_sweep_from_a_set_runs_nothing_so_takes_no_run_option(
    paths: dict[str, str], front: list[str], tests: list[str], source: str
) -> None:
    """--from analyses a set again: an option of a run would be ignored."""
    argv = subst(["--from", source, *front, *tests], paths)
    got = attempt(sweep.check, argv)
    if isinstance(got, sweep.Plan):
        assert got.ns.source is not None and got.ns.source.is_dir()
        # (a guest option given at its default value cannot be told apart)
        run = [a for a in front if a in ("--vary", "-o", "--output", "--kernel")]
        assert not run and tests in ([], ["--"]), argv
        return
    assert isinstance(got, str)
    assert_names_an_option(got, argv, also=("--from",))
    assert_refused(lambda a: rmapbench_cli.main(["sweep", *a]), "rmapbench sweep", argv, got)


# -- compare ---------------------------------------------------------------------------------

DECISION = {"--alpha": (0.0, 1.0), "--min-effect": (0.0, None), "--max-regression": (0.0, None),
            "--noise-floor": (0.0, 1.0)}
SIDES = [str(FIX / "ksm1000"), str(FIX / "ksm2000"), str(FIX / "ab"), f"{FIX / 'ab'}:A",
         f"{FIX / 'ab'}:C", "@DIR", "@MISSING", "@FILE"]


def decision_value() -> st.SearchStrategy[str]:
    return st.one_of(counts(-1, 2), st.floats(allow_nan=True).map(repr),
                     st.sampled_from(["0.05", "1e-9", "0.999", "100", "1e400"]))


@SETTINGS
@given(sides=st.one_of(st.just(SIDES[:2]), st.just(SIDES[2:3]),
                      st.lists(st.sampled_from(SIDES), max_size=3)),
       front=lines(st.tuples(st.sampled_from(list(DECISION)), decision_value()).map(list),
                   st.tuples(st.just("--resamples"), counts(100, 10**7)).map(list),
                   st.tuples(st.just("--seed"), counts(0, 2**32 - 1)).map(list),
                   st.tuples(st.just("--metric"), st.sampled_from(["walk", "all", "x"])).map(
                       list),
                   st.tuples(st.just("--format"), st.sampled_from(["json", "xml"])).map(list),
                   size=4))
def test_compare_thresholds_in_range_or_refused(
    paths: dict[str, str], sides: list[str], front: list[str]
) -> None:
    argv = subst([*sides, *front], paths)
    got = attempt(compare.check, argv)
    if isinstance(got, tuple):
        ns, t, base, new = got
        assert 0 < t.alpha < 1 and t.min_effect >= 0 and 100 <= t.resamples <= 10**7
        assert 0 <= t.seed < 2**32
        assert t.noise_floor is None or 0 <= t.noise_floor <= 1
        assert ns.max_regression is None or 0 <= ns.max_regression < math.inf
        assert base.runs and new.runs
        return
    assert isinstance(got, str)
    assert_names_an_option(got, argv, also=("give BASE", "the following arguments are required",
                                            *(s.split(":")[0] for s in argv)))
    assert_refused(lambda a: rmapbench_cli.main(["compare", *a]), "rmapbench compare", argv, got)


# -- the runner (make run_tests) ---------------------------------------------------------------

SUITE = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"
PROGS = [str(SUITE / "rmap_ksm.py"), str(SUITE / "rmap_anon.py"), "@FILE", "@DIR", "@MISSING",
         str(SUITE / "settings"), ""]


@SETTINGS
@given(timeout=st.one_of(st.just([]), st.tuples(st.just("--timeout"),
                                                 counts(1, runner.MAX_TIMEOUT)).map(list)),
       progs=st.lists(st.sampled_from(PROGS), max_size=3),
       extra=st.sampled_from([[], ["--", "--case", "ksm"], ["--", "--case", "nope"],
                              ["--", "--pages", "x"], ["--"]]),
       override=st.one_of(st.none(), counts(1, runner.MAX_TIMEOUT)),
       ksm_args=st.sampled_from([None, "--pages 5", "--workdir '/a b", "'"]))
def test_runner_plan_is_sound_or_refused(
    paths: dict[str, str], timeout: list[str], progs: list[str], extra: list[str],
    override: str | None, ksm_args: str | None,
) -> None:
    """What `make run_tests` hands the runner, and what runner.sh's
    variables say: check() gives executable programs and a timeout in
    range, or refuses before the plan is printed."""
    argv = subst([*timeout, *progs, *extra], paths)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("kselftest_override_timeout", override),
                            ("KSELFTEST_RMAP_KSM_PY_ARGS", ksm_args)):
            if value is None:
                mp.delenv(name, raising=False)
            else:
                mp.setenv(name, value)
        got = attempt(runner.check, argv)
        if isinstance(got, tuple):
            run, _, seconds = got
            assert 1 <= seconds <= runner.MAX_TIMEOUT
            assert all(p.is_file() and os.access(p, os.X_OK) for p in run)
            return
        assert isinstance(got, str)
        assert_names_an_option(got, argv, also=(
            "the following arguments are required", "argument progs", "kselftest_override_timeout",
            "KSELFTEST_RMAP_KSM_PY_ARGS", *(a for a in argv if a and not a.startswith("-"))))
        assert_refused(runner.main, "runner", argv, got)


# -- the programs' variables reach the guest -------------------------------------------------


def test_the_programs_variables_are_checked_here_and_given_to_the_guest(
    paths: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guest's command starts with an empty environment: run_tests.sh
    checks $RMAP_ARGS and $KSELFTEST_<PROG>_ARGS before booting and hands
    them to the guest's job, so its programs run with what was checked."""
    monkeypatch.setenv("RMAP_ARGS", "--samples 5")
    monkeypatch.setenv("KSELFTEST_RMAP_KSM_PY_ARGS", "--pages 4000")
    got = suite.check(["--case", "ksm"])
    progs = program.selected_programs(got.test_args)
    env = suite.guest_env(progs)
    assert env == {"RMAP_ARGS": "--samples 5", "KSELFTEST_RMAP_KSM_PY_ARGS": "--pages 4000"}
    script = vm.job_script(["true"], "/", env)
    assert "export RMAP_ARGS='--samples 5'\n" in script
    assert "export KSELFTEST_RMAP_KSM_PY_ARGS='--pages 4000'\n" in script
    for value, message in (("--pages 0", "KSELFTEST_RMAP_KSM_PY_ARGS: rmap_ksm.py: argument "
                                         "--pages: must be at least 1, got 0"),
                           ("'", "KSELFTEST_RMAP_KSM_PY_ARGS: No closing quotation")):
        monkeypatch.setenv("KSELFTEST_RMAP_KSM_PY_ARGS", value)
        assert attempt(suite.check, ["--case", "ksm"]) == message
        assert_refused(suite.main, "run_tests.sh", ["--case", "ksm"], message)
