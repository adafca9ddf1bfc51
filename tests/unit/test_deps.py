"""The programs under a python3 that has only the standard library, as on a
CI device or a distribution's python3 without python3-ptrace: valid KTAP,
a SKIP with a short constant reason, how to get the package, exit 4 - and
option errors still refused with one line and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tap.parser import Parser

from rmapbench.bench import cases
from rmapbench.ksft import deps
from rmapbench.ksft.status import EXIT_USAGE, KSFT_SKIP

SUITE = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"
# No site-packages (-S), nothing from the environment that could add any.
BARE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def bare(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-S", *args], capture_output=True, text=True, env=BARE_ENV,
                          cwd="/", timeout=60, check=False)


@pytest.fixture(scope="module", autouse=True)
def _really_bare() -> None:
    """The premise: this interpreter without site-packages cannot import
    what the suite needs."""
    for module in ("ptrace", "tap"):
        assert bare("-c", f"import {module}").returncode != 0, module


@pytest.mark.parametrize("prog", cases.programs(), ids=lambda p: p.name)
def test_program_skips_without_its_packages(prog: Path) -> None:
    proc = bare(str(prog))
    assert proc.returncode == KSFT_SKIP, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    stem = prog.name.removesuffix(".py")
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["TAP version 13", "1..1"]
    assert f"ok 1 {stem}.walk_latency # SKIP python-ptrace missing" in lines
    assert lines[-1] == "# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:1 error:0"
    hint = next(ln for ln in lines if "python-ptrace is not importable" in ln)
    assert "pip install python-ptrace" in hint and "apt install python3-ptrace" in hint
    assert any("apt install python3-tap" in ln for ln in lines)  # tap.py is missing too
    parsed = [r for r in Parser().parse_text(proc.stdout) if r.category == "test"]
    assert len(parsed) == 1 and parsed[0].ok and parsed[0].skip
    assert parsed[0].directive.reason == "python-ptrace missing"


def test_backend_all_skips_both_results() -> None:
    proc = bare(str(SUITE / "rmap_anon.py"), "--backend", "all")
    assert proc.returncode == KSFT_SKIP
    skipped = [ln for ln in proc.stdout.splitlines() if ln.startswith("ok ")]
    assert skipped == ["ok 1 rmap_anon.walk_latency # SKIP python-ptrace missing",
                       "ok 2 rmap_anon.backend_agreement # SKIP python-ptrace missing"]


@pytest.mark.parametrize(("prog", "argv", "message"), [
    ("rmap_ksm.py", ["--pages", "0"], "--pages: must be at least 1"),
    ("rmap_ksm.py", ["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ("rmap_anon.py", ["--case", "nope"], "unknown case 'nope'"),
    ("rmap_ksm_fork.py", ["--split", "1500"], "--split 1500 is larger than --pages 1000"),
    ("rmap_ksm_procs.py", ["--procs", "1"], "ksm-procs needs --procs 2 or more"),
    ("rmap_file.py", ["--trigger", "split"], "--trigger split only applies to the thp case"),
    ("rmap_anon.py", ["--trigger", "soft-offline"], "add --allow-destructive"),
])
def test_option_errors_are_still_refused(prog: str, argv: list[str], message: str) -> None:
    proc = bare(str(SUITE / prog), *argv)
    assert proc.returncode == EXIT_USAGE, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_make_run_tests_in_an_empty_venv(tmp_path: Path) -> None:
    """make run_tests started with a venv that holds nothing: the runner
    runs, every program SKIPs for its packages, the suite exits 0."""
    venv = tmp_path / "empty"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import ptrace"], capture_output=True,
                          check=False).returncode != 0
    proc = subprocess.run(["make", "-s", "-C", str(SUITE), "run_tests", f"PYTHON={python}"],
                          capture_output=True, text=True, env=BARE_ENV, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    results = [ln for ln in proc.stdout.splitlines() if ln.startswith(("ok ", "not ok "))]
    assert results == [f"ok {n} selftests: rmap: {p.name} # SKIP"
                       for n, p in enumerate(cases.programs(), 1)]
    assert proc.stdout.count("# SKIP python-ptrace missing") == len(results)


def test_missing_names_the_absent_modules() -> None:
    here = deps.Dependency("json", "json", "python3")
    gone = deps.Dependency("no_such_module_rmapbench", "nope", "python3-nope")
    assert deps.missing([here, gone]) == [gone]
    assert gone.reason == "nope missing"
