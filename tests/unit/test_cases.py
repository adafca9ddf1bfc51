"""Tests of rmapbench.bench.cases: the case registry and --case, across programs,
the runner and the front door (no guest: unselected programs never set up)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tap.parser import Parser

from rmapbench.bench import cases, program
from rmapbench.guest import suite
from rmapbench.ksft import runner
from rmapbench.ksft.cli import UsageError, refuse
from rmapbench.ksft.options import EXIT_USAGE
from rmapbench.scenarios import SCENARIOS

SUITE = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"


@pytest.fixture(autouse=True)
def _no_suite_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMAP_ARGS", raising=False)


def test_registry_is_the_scenarios() -> None:
    assert cases.names() == list(SCENARIOS)
    assert cases.names()[:3] == ["ksm", "anon", "file"]
    assert cases.program("ksm-mremap") == "rmap_ksm_mremap.py"
    assert cases.case_of("/x/rmap_anon_fork.py") == ("anon-fork" if "anon-fork" in SCENARIOS
                                                      else None)
    assert cases.case_of("./rmap_anon.py") == "anon"
    assert cases.case_of("/x/rmap_ksm_mremap.py") == "ksm-mremap"
    assert cases.case_of("other.sh") is None


def test_every_case_has_its_program() -> None:
    for prog in cases.programs():
        assert prog.exists() and os.access(prog, os.X_OK), prog
        text = prog.read_text()
        assert f'main("{prog.stem}", "{cases.case_of(prog)}")' in text, prog
    # ... and the Makefile lists them all, in the same order.
    makefile = (SUITE / "Makefile").read_text().replace("\\\n", " ")  # join continued lines
    listed = next(ln for ln in makefile.splitlines() if ln.startswith("TEST_PROGS"))
    assert listed.split(":=")[1].split() == [p.name for p in cases.programs()]


def test_selection_from_argv_and_rmap_args() -> None:
    assert cases.selection(["--pages", "10"], env={}) is None
    assert cases.selection(["--case", "anon", "--case=ksm"], env={}) == ["anon", "ksm"]
    assert cases.selection(["--pages", "5"], env={"RMAP_ARGS": "--case file"}) == ["file"]
    assert cases.programs(["file", "ksm"]) == [SUITE / "rmap_ksm.py", SUITE / "rmap_file.py"]


def test_program_refuses_an_unknown_case(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError) as exc:
        program.check("ksm", ["--case", "ksm", "--case", "kms"])
    assert refuse("rmap_ksm.py", exc.value) == EXIT_USAGE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        "rmap_ksm.py: error: unknown case 'kms' in --case (known: ")
    assert program.check("ksm", ["--case", "anon", "--case", "ksm"]).case == ["anon", "ksm"]


def run_program(name: str, *args: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SUITE / name), *args], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, **(env or {})})


def test_unselected_program_skips_with_exit_4() -> None:
    proc = run_program("rmap_file.py", "--case", "ksm", "--backend", "all")
    assert proc.returncode == 4, proc.stderr  # KSFT_SKIP: runner.sh says "# SKIP"
    lines = list(Parser().parse_text(proc.stdout))
    tests = [ln for ln in lines if ln.category == "test"]
    assert [t.description for t in tests] == ["rmap_file.walk_latency",
                                               "rmap_file.backend_agreement"]
    assert all(t.ok and t.skip for t in tests)
    assert proc.stdout.count("# SKIP not selected by --case") == 2
    plan = [ln for ln in lines if ln.category == "plan"]
    assert plan and plan[0].expected_tests == 2


def test_unselected_through_rmap_args_too(tmp_path: Path) -> None:
    proc = run_program("rmap_anon.py", "--results", str(tmp_path),
                       env={"RMAP_ARGS": "--case file"})
    assert proc.returncode == 4 and "SKIP not selected by --case" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # not run: no result files


def test_unknown_case_program_exit_2() -> None:
    proc = run_program("rmap_anon.py", "--case", "nope")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "unknown case 'nope'" in proc.stderr


def test_runner_runs_only_the_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[Path]] = []
    monkeypatch.setattr(runner, "run", lambda progs, extra, timeout: seen.append(progs) or 0)
    progs = [str(p) for p in cases.programs()]
    assert runner.main([*progs, "--", "--case", "anon", "--pages", "9"]) == 0
    assert seen[-1] == [SUITE / "rmap_anon.py"]
    monkeypatch.setenv("RMAP_ARGS", "--case file --case ksm")
    assert runner.main(progs) == 0
    assert seen[-1] == [SUITE / "rmap_ksm.py", SUITE / "rmap_file.py"]


def test_runner_plan_counts_only_the_selected(tmp_path: Path) -> None:
    out = io.StringIO()
    prog = SUITE / "rmap_anon.py"
    assert runner.run([prog], ["--case", "anon", "--backend", "bogus"], 30, out) == 1
    assert "1..1" in out.getvalue()


def test_runner_unknown_case_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main([str(SUITE / "rmap_ksm.py"), "--", "--case", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runner: error: unknown case 'bad'") and len(err.splitlines()) == 1


def test_front_door_unknown_case_exit_2_before_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object) -> int:
        raise AssertionError("ran something")

    monkeypatch.setattr(suite, "run_guest", boom)
    monkeypatch.setattr(suite, "run_here", boom)
    assert suite.main(["--vm", "--", "--case", "anon", "--case", "zzz"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "unknown case 'zzz'" in err[0], err
    assert suite._programs(["--case", "anon"]) == [SUITE / "rmap_anon.py"]
    assert suite._programs([]) == cases.programs()


def test_summary_orders_by_the_registry() -> None:
    from rmapbench.ksft.summary import table

    docs = [{"program": cases.program(n)[:-3], "status": "pass", "scenarios": [{"name": n}]}
            for n in reversed(cases.names())]
    rows = [line.split()[0] for line in table(docs).splitlines()[1:]]
    assert rows == cases.names()


def test_front_door_takes_case_before_the_double_dash() -> None:
    """run_tests.sh --case NAME is the same as run_tests.sh -- --case NAME."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([str(root / "run_tests.sh"), "--vm", "--case", "nope"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "unknown case 'nope'" in proc.stderr
