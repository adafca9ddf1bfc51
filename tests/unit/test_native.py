"""The suite on this machine, as kernel CI would run it: valid TAP and no
failure. Where this machine cannot time walks (one NUMA node, no probes),
every program must SKIP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tap.parser import Parser

from rmapbench.bench import cases
from rmapbench.guest import suite

ROOT = Path(__file__).resolve().parents[2]


def test_make_run_tests_skips_where_it_cannot_measure() -> None:
    reason = suite.why_not_here()
    if reason is None:
        pytest.skip("this machine can measure; the guest tests cover a real run")
    proc = subprocess.run(
        ["make", "-s", "-C", str(ROOT / "tools/testing/rmap"), "run_tests",
         f"PYTHON={sys.executable}"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = list(Parser().parse_text(proc.stdout))
    assert lines[0].category == "version"
    tests = [ln for ln in lines if ln.category == "test"]
    assert len(tests) == len(cases.programs())  # every case of the registry
    assert all(t.ok and t.skip for t in tests), proc.stdout
    # The programs' own TAP is nested behind "# " and must be valid too.
    inner = "\n".join(ln[2:] for ln in proc.stdout.splitlines()
                      if ln.startswith("# ") and not ln.startswith("# selftests:")
                      and not ln.startswith("# timeout set to"))
    inner_results = [ln for ln in Parser().parse_text(inner) if ln.category == "test"]
    assert len(inner_results) == len(tests) and all(r.skip for r in inner_results)


def test_programs_refuse_bad_options_with_one_line() -> None:
    prog = ROOT / "tools/testing/rmap/rmap_ksm.py"
    for bad in (["--pages", "0"], ["--frobnicate"], ["--backend", "ebpf"]):
        proc = subprocess.run([sys.executable, str(prog), *bad], capture_output=True, text=True,
                              check=False)
        assert proc.returncode == 2, bad
        assert proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
