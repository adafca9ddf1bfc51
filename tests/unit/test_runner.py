"""Tests of rmapbench.ksft.runner: kselftest runner.sh semantics on real tiny programs."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pytest
from tap.parser import Parser

from rmapbench.ksft import runner

PASS = "#!/bin/sh\necho hello from $0\necho\necho args: \"$@\"\nexit 0\n"
SKIP = "#!/bin/sh\necho not root\nexit 4\n"
FAIL = "#!/bin/sh\necho 'not ok 1 rmap_x.x' \nexit 1\n"
EXIT7 = "#!/bin/sh\necho oops >&2\nexit 7\n"
# Restores on SIGTERM, as the test programs do, and says so.
SLOW = f"""#!{sys.executable}
import signal, sys, time

def term(signum, frame):
    print("got SIGTERM, restoring", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, term)
print("started", flush=True)
time.sleep(30)
"""
# Ignores SIGTERM (the ignored disposition is inherited by sleep): needs SIGKILL.
STUBBORN = "#!/bin/sh\ntrap '' TERM\necho started\nsleep 30\n"
ARGS = "#!/bin/sh\nfor a in \"$@\"; do echo \"arg=$a\"; done\n"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KSELFTEST_") or name == "kselftest_override_timeout":
            monkeypatch.delenv(name)


def program(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def run(progs: list[Path], extra: list[str] | None = None, timeout: int = 10) -> tuple[int, str]:
    out = io.StringIO()
    rc = runner.run(progs, extra or [], timeout, out)
    return rc, out.getvalue()


def test_pass(tmp_path: Path) -> None:
    rc, out = run([program(tmp_path, "rmap_a.py", PASS)])
    assert rc == 0
    assert out.splitlines() == [
        "TAP version 13",
        "1..1",
        "# timeout set to 10",
        "# selftests: rmap: rmap_a.py",
        "# hello from ./rmap_a.py",  # run from its directory as ./PROG
        "# ",  # an empty line gets the prefix too, as runner.sh's sed does
        "# args:",
        "ok 1 selftests: rmap: rmap_a.py",
    ]


def test_every_outcome_in_one_run(tmp_path: Path) -> None:
    progs = [program(tmp_path, "p_pass", PASS), program(tmp_path, "p_skip", SKIP),
             program(tmp_path, "p_fail", FAIL), program(tmp_path, "p_exit7", EXIT7)]
    rc, out = run(progs)
    assert rc == 1
    lines = out.splitlines()
    assert lines[:2] == ["TAP version 13", "1..4"]
    assert "ok 1 selftests: rmap: p_pass" in lines
    assert "ok 2 selftests: rmap: p_skip # SKIP" in lines
    assert "not ok 3 selftests: rmap: p_fail # exit=1" in lines
    assert "not ok 4 selftests: rmap: p_exit7 # exit=7" in lines
    assert lines.count("# timeout set to 10") == 4
    # The program's own TAP and stderr are nested as diagnostics.
    assert "# not ok 1 rmap_x.x" in lines
    assert "# oops" in lines
    i = lines.index("# selftests: rmap: p_exit7")
    assert lines[i:] == ["# selftests: rmap: p_exit7", "# oops",
                         "not ok 4 selftests: rmap: p_exit7 # exit=7"]
    # What a TAP consumer sees: four results, the skip as a skip.
    results = [ln for ln in Parser().parse_text(out) if ln.category == "test"]
    assert [(r.number, r.ok, r.skip) for r in results] == [
        (1, True, False), (2, True, True), (3, False, False), (4, False, False)]
    assert {ln.category for ln in Parser().parse_text(out)} <= {
        "version", "plan", "diagnostic", "test"}


@pytest.mark.parametrize(("text", "status"), [(PASS, 0), (SKIP, 0), (FAIL, 1), (EXIT7, 1)])
def test_overall_exit_status(tmp_path: Path, text: str, status: int) -> None:
    assert run([program(tmp_path, "p", text)])[0] == status


def test_timeout_sends_sigterm_first(tmp_path: Path) -> None:
    prog = program(tmp_path, "rmap_slow.py", SLOW)
    t0 = time.monotonic()
    rc, out = run([prog], timeout=1)
    elapsed = time.monotonic() - t0
    assert rc == 1
    assert 1 <= elapsed < 5
    assert out.splitlines() == [
        "TAP version 13",
        "1..1",
        "# timeout set to 1",
        "# selftests: rmap: rmap_slow.py",
        "# started",
        "# got SIGTERM, restoring",
        "not ok 1 selftests: rmap: rmap_slow.py # TIMEOUT 1 seconds",
    ]


def test_timeout_then_sigkill_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "KILL_GRACE", 0.5)
    progs = [program(tmp_path, "stubborn", STUBBORN), program(tmp_path, "after", PASS)]
    t0 = time.monotonic()
    rc, out = run(progs, timeout=1)
    assert time.monotonic() - t0 < 5
    assert rc == 1
    lines = out.splitlines()
    assert "not ok 1 selftests: rmap: stubborn # TIMEOUT 1 seconds" in lines
    assert "ok 2 selftests: rmap: after" in lines  # the run goes on


def test_env_args_name() -> None:
    assert runner.env_args_name("rmap_ksm.py") == "KSELFTEST_RMAP_KSM_PY_ARGS"
    assert runner.env_args_name("/x/y/rmap-anon") == "KSELFTEST_RMAP_ANON_ARGS"


def test_kselftest_args_env_then_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prog = program(tmp_path, "rmap_ksm.py", ARGS)
    monkeypatch.setenv("KSELFTEST_RMAP_KSM_PY_ARGS", "--pages 4000 --workdir '/a b'")
    monkeypatch.setenv("KSELFTEST_OTHER_ARGS", "--not-for-us")
    rc, out = run([prog], extra=["--samples", "5"])
    assert rc == 0
    assert [ln for ln in out.splitlines() if ln.startswith("# arg=")] == [
        "# arg=--pages", "# arg=4000", "# arg=--workdir", "# arg=/a b", "# arg=--samples",
        "# arg=5"]


def test_main_splits_arguments_at_double_dash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not one of the suite's programs (whose parser would refuse --timeout
    # up front): one the runner passes everything after -- to unchecked.
    prog = program(tmp_path, "other.sh", ARGS)
    rc = runner.main(["--timeout", "7", str(prog), "--", "--pages", "10", "--timeout", "3"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert "# timeout set to 7" in lines
    assert [ln for ln in lines if ln.startswith("# arg=")] == [
        "# arg=--pages", "# arg=10", "# arg=--timeout", "# arg=3"]
    assert lines[-1] == "ok 1 selftests: rmap: other.sh"


def test_main_without_double_dash_runs_several(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = program(tmp_path, "a", PASS), program(tmp_path, "b", SKIP)
    assert runner.main(["--timeout", "5", str(a), str(b)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "1..2"
    assert lines[-1] == "ok 2 selftests: rmap: b # SKIP"


def test_main_timeout_from_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prog = program(tmp_path, "p", PASS)
    (tmp_path / "settings").write_text("# comment\ntimeout=45\n")
    assert runner.main([str(prog)]) == 0
    assert "# timeout set to 45" in capsys.readouterr().out.splitlines()
    monkeypatch.setenv("kselftest_override_timeout", "90")
    assert runner.main([str(prog)]) == 0
    assert "# timeout set to 90" in capsys.readouterr().out.splitlines()


def test_settings_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert runner.settings_timeout(tmp_path) == runner.DEFAULT_TIMEOUT == 3600
    (tmp_path / "settings").write_text("timeout = 120\n")
    assert runner.settings_timeout(tmp_path) == 120
    (tmp_path / "settings").write_text("timeout=soon\n")
    assert runner.settings_timeout(tmp_path) == 3600
    monkeypatch.setenv("kselftest_override_timeout", "17")
    assert runner.settings_timeout(tmp_path) == 17


def test_main_refuses_a_non_executable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prog = tmp_path / "notexec"
    prog.write_text(PASS)
    assert runner.main(["--timeout", "5", str(prog)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "is not an executable test program" in err


def test_module_entry_point(tmp_path: Path) -> None:
    import subprocess

    prog = program(tmp_path, "rmap_x.py", SKIP)
    env = {**os.environ, "PYTHONPATH": str(Path(runner.__file__).parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "rmapbench.ksft.runner", "--timeout", "5", str(prog), "--", "-v"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == "ok 1 selftests: rmap: rmap_x.py # SKIP"


ENVIRON = "#!/bin/sh\necho \"shared=${RMAPBENCH_SHARED_PROBES:-}\"\n"


def test_two_programs_or_more_share_probe_events(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """machine/shared_probes.py: the runner names its journal to its
    programs when there is a next program to keep events for; not for one,
    nor with RMAPBENCH_SHARED_PROBES=0; its own environment is left as it
    was."""
    from rmapbench.machine import shared_probes

    monkeypatch.delenv(shared_probes.ENV, raising=False)
    a, b = program(tmp_path, "rmap_a.py", ENVIRON), program(tmp_path, "rmap_b.py", ENVIRON)
    want = f"# shared={shared_probes.path_for(os.getpid())}"
    assert run([a, b])[1].count(want) == 2
    assert "# shared=\n" in run([a])[1] + "\n"
    monkeypatch.setenv(shared_probes.ENV, "0")
    assert run([a, b])[1].count("# shared=\n") == 2
    assert os.environ[shared_probes.ENV] == "0"
    monkeypatch.delenv(shared_probes.ENV)
    run([a, b])
    assert shared_probes.ENV not in os.environ
