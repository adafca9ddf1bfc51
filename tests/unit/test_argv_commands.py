"""The commands as a user starts them, in a subprocess: --help of every one
exits 0; a bad command line given as raw argv bytes (undecodable ones
included) or a bad environment variable is one line on stderr and exit
status 2, never a traceback.

Safety: --help stops in argparse before anything else; every other argv
run here is first refused in-process by the command's own check()
(test_argv_programs.py and test_argv_front_doors.py test those), so the
subprocess refuses it the same way before anything is set up. No valid
command line of a case program, run_tests.sh, vm, sweep or ab is ever run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmapbench import __main__ as rmapbench_cli
from rmapbench.bench import cases, program
from rmapbench.guest import suite
from rmapbench.ksft import runner
from rmapbench.ksft.cli import UsageError
from rmapbench.ksft.status import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tools" / "testing" / "rmap"
PY = sys.executable


DROP = ("RMAP_ARGS", "RMAPBENCH_MAX_PROCS", "kselftest_override_timeout", "PYTHON")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The commands' environment: the package importable, a private journal
    directory, no suite-wide options (in this process too, where check()
    decides what may be started)."""
    tmp = tmp_path_factory.mktemp("commands")
    out = {k: v for k, v in os.environ.items() if k not in DROP}
    out.update(PYTHONPATH=str(SUITE), RMAPBENCH_JOURNAL_DIR=str(tmp / "journal"))
    with pytest.MonkeyPatch.context() as mp:
        for name in DROP:
            mp.delenv(name, raising=False)
        yield out


def start(argv: list[str | bytes], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def assert_one_line(rc: int, out: str, err: str, prog: str, fragment: str = "") -> None:
    assert rc == EXIT_USAGE, err
    assert out == "", out
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"{prog}: error: ") and fragment in err, err


# -- --help -------------------------------------------------------------------------------

# Each kind of entry point as a real process; the rest in-process below.
HELP: list[list[str]] = [
    ["./run_tests.sh", "--help"],
    [PY, "-m", "rmapbench", "--help"],
    [PY, "-m", "rmapbench", "sweep", "--help"],
    [PY, "-m", "rmapbench.guest.vm", "--help"],
    [PY, "-m", "rmapbench.ksft.runner", "--help"],
    [PY, "-m", "rmapbench.ksft.install", "--help"],
    [PY, "-m", "rmapbench.machine.knobs", "--help"],
    [PY, str(SUITE / "rmap_ksm.py"), "--help"],
]


def test_help_of_every_command_exits_0(env: dict[str, str]) -> None:
    procs = [start(list(argv), env) for argv in HELP]  # all at once: imports take a while
    for argv, proc in zip(HELP, procs, strict=True):
        rc, out, err = finish(proc)
        assert rc == 0, (argv, err)
        assert err == "", (argv, err)
        assert "usage" in out.lower() or "rmapbench" in out, (argv, out)


MAINS: list[tuple[str, Callable[[], int]]] = [
    *((f"rmapbench {cmd}", lambda cmd=cmd: rmapbench_cli.main([cmd, "--help"]))
      for cmd in ("run", "summary", "vm", "sweep", "compare", "ab", "report")),
    *((cases.program(case),
       lambda case=case: program.main(cases.program(case).removesuffix(".py"), case, ["-h"]))
      for case in cases.names()),
]


@pytest.mark.parametrize(("name", "main"), MAINS, ids=[m[0] for m in MAINS])
def test_help_in_process(env: dict[str, str], capsys: pytest.CaptureFixture[str], name: str,
                         main: Callable[[], int]) -> None:
    """--help stops in argparse, before anything is set up: exit 0."""
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: ") and err == "", (out, err)


# -- raw argv bytes --------------------------------------------------------------------------

def _refused(check: Callable[[list[str]], object], argv: list[str]) -> bool:
    try:
        check(argv)
    except UsageError:
        return True
    return False


# (how the command is started, its name in the line, its in-process check, what precedes the value)
COMMANDS: list[tuple[list[str], str, Callable[[list[str]], object], list[str]]] = [
    ([PY, str(SUITE / "rmap_ksm.py")], "rmap_ksm.py", lambda a: program.check("ksm", a),
     ["--pages"]),
    ([PY, str(SUITE / "rmap_file.py")], "rmap_file.py", lambda a: program.check("file", a),
     ["--case"]),
    (["./run_tests.sh"], "run_tests.sh", suite.check, ["--kernel-series"]),
    (["./run_tests.sh"], "run_tests.sh", suite.check, ["--", "--samples"]),
    ([PY, "-m", "rmapbench.ksft.runner"], "runner", runner.check, ["--timeout"]),
]
VALUES = st.one_of(
    st.binary(min_size=1, max_size=6).filter(lambda b: b"\0" not in b),
    st.sampled_from([b"\xff", b"5\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"0x1",
                     b"9" * 5000, b"\x1b[31m1", b"1\n2"]),
)


@settings(derandomize=True, max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(COMMANDS) - 1), value=VALUES)
def test_undecodable_argv_bytes_are_one_line(env: dict[str, str], which: int,
                                             value: bytes) -> None:
    """Python decodes argv with surrogateescape: what the command sees is
    os.fsdecode(value); only an argv its check() refuses is started."""
    command, prog, check, before = COMMANDS[which]
    if not _refused(check, [*before, os.fsdecode(value)]):
        return  # accepted: never started here
    rc, out, err = finish(start([*command, *before, value], env))
    assert_one_line(rc, out, err, prog)


# -- bad environment variables ------------------------------------------------------------

ENVIRONMENT = [
    ({"RMAP_ARGS": "--pages x"}, [PY, str(SUITE / "rmap_ksm.py"), "--samples", "5"],
     "rmap_ksm.py", "RMAP_ARGS: argument --pages: not a number: 'x'"),
    ({"RMAP_ARGS": "--workdir '/a"}, [PY, str(SUITE / "rmap_anon.py")], "rmap_anon.py",
     "RMAP_ARGS: No closing quotation"),
    ({"RMAPBENCH_MAX_PROCS": "lots"}, [PY, str(SUITE / "rmap_shmem.py"), "--procs", "600"],
     "rmap_shmem.py", "RMAPBENCH_MAX_PROCS: not a number: 'lots'"),
    ({"RMAP_ARGS": "--case nope"}, ["./run_tests.sh"], "run_tests.sh", "in --case"),
    ({"kselftest_override_timeout": "0"}, [PY, "-m", "rmapbench.ksft.runner",
                                           str(SUITE / "rmap_ksm.py")],
     "runner", "kselftest_override_timeout: must be at least 1"),
    ({"KSELFTEST_RMAP_KSM_PY_ARGS": "'"}, [PY, "-m", "rmapbench.ksft.runner",
                                           str(SUITE / "rmap_ksm.py")],
     "runner", "KSELFTEST_RMAP_KSM_PY_ARGS: No closing quotation"),
    ({"PYTHON": "/tmp"}, ["./run_tests.sh", "--nodes", "0"], "run_tests.sh",
     "PYTHON=/tmp is not an executable file"),
    ({"PYTHON": str(ROOT / "README.md")}, ["./run_tests.sh", "--nodes", "0"], "run_tests.sh",
     "is not an executable file"),
    ({"PYTHON": "/nonexistent/python3"}, ["./run_tests.sh"], "run_tests.sh", "not found"),
]


def test_bad_environment_variables_are_one_line(env: dict[str, str]) -> None:
    procs = [start(argv, {**env, **extra}) for extra, argv, _, _ in ENVIRONMENT]
    for (_, _, prog, fragment), proc in zip(ENVIRONMENT, procs, strict=True):
        rc, out, err = finish(proc)
        assert_one_line(rc, out, err, prog, fragment)


def test_rmapbench_without_a_command_is_one_line(env: dict[str, str]) -> None:
    for argv, fragment in (([], "give a command (run, summary, vm, "),
                           (["frob"], "unknown command 'frob'")):
        rc, out, err = finish(start([PY, "-m", "rmapbench", *argv], env))
        assert_one_line(rc, out, err, "rmapbench", fragment)


def test_the_journal_tool_takes_no_argument(env: dict[str, str], tmp_path: Path) -> None:
    """python3 -m rmapbench.machine.knobs replays journals by hand: a stray
    argument is refused before it replays anything."""
    rc, out, err = finish(start([PY, "-m", "rmapbench.machine.knobs", "now"], env))
    assert_one_line(rc, out, err, "python3 -m rmapbench.machine.knobs",
                    "unrecognized arguments: now")


def test_the_journal_tool_says_what_it_found(env: dict[str, str], tmp_path: Path) -> None:
    """Nothing to undo is said, not silence; a journal directory that is a
    file or cannot be looked up is one line and exit 2."""
    tool = [PY, "-m", "rmapbench.machine.knobs"]
    empty = tmp_path / "journals"
    empty.mkdir()
    rc, out, err = finish(start(tool, {**env, "RMAPBENCH_JOURNAL_DIR": str(empty)}))
    assert (rc, out) == (0, "") and f"nothing to undo: no journal of a dead run in {empty}" in err
    (tmp_path / "file").write_text("")
    for bad, fragment in ((tmp_path / "file", "not a directory"),
                          (tmp_path / ("a" * 300), "File name too long")):
        rc, out, err = finish(start(tool, {**env, "RMAPBENCH_JOURNAL_DIR": str(bad)}))
        assert_one_line(rc, out, err, "python3 -m rmapbench.machine.knobs", fragment)


def test_an_empty_journal_directory_is_the_default(env: dict[str, str]) -> None:
    code = "from rmapbench.machine import knobs; print(knobs.JOURNAL_DIR)"
    rc, out, err = finish(start([PY, "-c", code], {**env, "RMAPBENCH_JOURNAL_DIR": ""}))
    assert (rc, out, err) == (0, "/run/rmapbench\n", "")


@pytest.mark.parametrize(("timeout", "fragment"), [
    ("abc", "argument --timeout: not a number: 'abc'"),
    ("0", "argument --timeout: must be at least 1, got 0"),
])
def test_make_run_tests_with_a_bad_timeout_is_the_runners_one_line(
    env: dict[str, str], timeout: str, fragment: str
) -> None:
    """make run_tests TIMEOUT=... (standalone): the runner refuses it
    before its plan; make adds its own line and passes the status on."""
    proc = subprocess.run(["make", "-s", "-C", str(SUITE), "run_tests", f"TIMEOUT={timeout}",
                           f"PYTHON={PY}"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == EXIT_USAGE and proc.stdout == "", proc.stdout + proc.stderr
    runner_line, *make_lines = proc.stderr.splitlines()
    assert runner_line.startswith("runner: error: ") and fragment in runner_line, proc.stderr
    assert "Traceback" not in proc.stderr and len(make_lines) <= 1, proc.stderr
