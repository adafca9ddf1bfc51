"""Tests of rmapbench.ksft.preload: the suite's programs forked from a
runner that imported their library behave as the exec'd programs do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rmapbench.bench import cases
from rmapbench.ksft import preload

SUITE = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"


def run(value: str, progs: list[Path], extra: list[str]) -> tuple[int, str]:
    """The runner as the suite starts it: a process of its own (this one
    imported tap whole, which a runner never preloads from)."""
    env = {**os.environ, preload.ENV: value}
    proc = subprocess.run([sys.executable, "-m", "rmapbench.ksft.runner", *map(str, progs),
                           "--", *extra], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def test_only_the_suites_own_programs_apply(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:  # fmt: skip
    prog = SUITE / "rmap_anon.py"
    assert SUITE.resolve() == preload.SUITE
    assert preload.applies(prog, True)
    assert not preload.applies(prog, False)  # outside the registry: exec'd
    copy = tmp_path / "rmap_anon.py"
    copy.write_text(prog.read_text())
    assert not preload.applies(copy, True)  # another directory's copy
    monkeypatch.setenv(preload.ENV, "0")
    assert not preload.applies(prog, True)


@pytest.mark.parametrize("extra", [["--pages", "bogus"], ["--help"], ["--case", "anon", "-x"]])
def test_forked_programs_print_and_exit_as_exec_ones(extra: list[str]) -> None:
    progs = [SUITE / cases.program("anon"), SUITE / cases.program("file")]
    assert run("1", progs, extra) == run("0", progs, extra)


def test_a_process_that_imported_tap_whole_never_preloads(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:  # fmt: skip
    import tap.parser  # noqa: F401 (what this test process has, and a runner never)

    monkeypatch.setattr(preload, "_loaded", None)
    assert "tap" in sys.modules
    assert preload.load() is False


@pytest.mark.parametrize("module", ["rmapbench.ksft.runner", "rmapbench.guest.suite"])
def test_the_runners_do_not_import_tap_before_preloading(module: str) -> None:
    code = f"import sys, {module}; print('tap' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_forked_program_gets_its_argv_cwd_and_environment(tmp_path: Path) -> None:
    prog = tmp_path / "rmap_probe.py"
    prog.write_text(
        "import os, sys\n"
        "print(sys.argv, os.getcwd(), os.environ['PROBE'], os.getpgrp() == os.getpid())\n"
        "print('to stderr', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    env = {**os.environ, "PROBE": "seen"}
    proc = preload.start(prog, ["./rmap_probe.py", "a b"], env, lambda: None)
    lines = proc.stdout.read().splitlines()
    assert proc.wait() == 3
    proc.stdout.close()
    # stdout block-buffered on the pipe, stderr by line: as a fresh interpreter.
    assert lines == ["to stderr", f"['./rmap_probe.py', 'a b'] {tmp_path} seen True"]


def test_a_forked_program_times_out_like_a_popen_one(tmp_path: Path) -> None:
    prog = tmp_path / "rmap_slow.py"
    prog.write_text("import time\nprint('started', flush=True)\ntime.sleep(30)\n")
    proc = preload.start(prog, ["./rmap_slow.py"], dict(os.environ), lambda: None)
    assert proc.stdout.readline() == "started\n"
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    # early.install: one line on stderr and 128+SIGTERM, as a fresh program.
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert "rmap_slow.py: interrupted by SIGTERM" in proc.stdout.read()
    proc.stdout.close()


def test_an_exception_is_a_traceback_and_status_1(tmp_path: Path) -> None:
    prog = tmp_path / "rmap_raise.py"
    prog.write_text("raise RuntimeError('boom')\n")
    proc = preload.start(prog, ["./rmap_raise.py"], dict(os.environ), lambda: None)
    text = proc.stdout.read()
    assert proc.wait() == 1
    proc.stdout.close()
    assert "RuntimeError: boom" in text and "Traceback" in text
    assert sys.stdout is not None  # this process's streams are untouched


def test_without_pidfd_the_timeout_still_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:  # fmt: skip
    monkeypatch.delattr(os, "pidfd_open")  # an older kernel or Python
    prog = tmp_path / "rmap_nap.py"
    prog.write_text("import time\ntime.sleep(0.5)\n")
    proc = preload.start(prog, ["./rmap_nap.py"], dict(os.environ), lambda: None)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.1)
    assert proc.wait(timeout=10) == 0
    proc.stdout.close()
