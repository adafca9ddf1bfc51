"""The installed collection on a device: a kselftest install made from the
kernel tree's runner files plus the suite's make install, run in a
two-node stock 6.12 guest by the tree's run_kselftest.sh -c rmap under a
python3 that has only its standard library (an empty venv first on PATH).
Every case must measure and pass; the KTAP must satisfy the tree's KTAP
parser and tap.py; the lab script must hand lava-test-case every case's
result and its walk p50/p99 as measurements."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kernel_tree
import pytest
from kernel_tree import lkft_names
from tap.parser import Parser

from rmapbench.bench import cases
from rmapbench.ksft import results

pytestmark = pytest.mark.guest

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "automated" / "linux" / "rmap" / "rmap.sh"
PROGRAMS = [p.name for p in cases.programs()]
SMALL = "--pages 1000 --samples 3 --warmup 1 --procs 4 --fork-width 2 --fork-depth 1"
LAB_PROGRAMS = ["rmap_ksm.py", "rmap_anon.py", "rmap_file.py"]


@pytest.fixture(scope="module")
def device_run(tmp_path_factory: pytest.TempPathFactory, guest: Callable[..., str]
               ) -> dict[str, Any]:
    share = tmp_path_factory.mktemp("guest-kselftest")
    tree = kernel_tree.tree_with_suite(share)
    inst = kernel_tree.kselftest_install(tree, share / "kselftest")
    proc = subprocess.run(
        ["make", "-s", "-C", str(tree / "tools" / "testing" / "rmap"), "install",
         f"INSTALL_PATH={inst}", f"PYTHON={sys.executable}"],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(share / "bare")],
                               check=True)
    script = f"""set -u
d={share}
PATH=$d/bare/bin:$PATH; export PATH
# The premise: python3 here has nothing beyond its standard library.
for m in ptrace tap yaml more_itertools numpy; do
    python3 -c "import $m" 2>/dev/null && echo "$m" >> $d/importable
done
command -v python3 > $d/python3
# runner.sh appends the programs' output to /dev/stdout (guest_init.sh
# makes the standard /dev links a device has).
test -e /dev/stdout || echo "no /dev/stdout" >&2
cd {inst}
start=$(date +%s)
RMAP_ARGS="{SMALL} --results $d/res" ./run_kselftest.sh -c rmap 2>&1 | cat > $d/ktap.txt
echo $(( $(date +%s) - start )) > $d/seconds
mkdir $d/fake
printf '#!/bin/sh\\necho "$*" >> {share}/lava.log\\n' > $d/fake/lava-test-case
chmod +x $d/fake/lava-test-case
cd $d
PATH=$d/fake:$PATH {LAB} -p {inst} -o $d/lab -t "{' '.join(LAB_PROGRAMS)}" \\
    -a "--pages 1000 --samples 3" > $d/lab.txt 2>&1; echo $? > $d/lab.rc
"""
    guest(script, share, timeout=2400)
    return {
        "share": share,
        "tree": tree,
        "ktap": (share / "ktap.txt").read_text(),
        "seconds": int((share / "seconds").read_text()),
        "python3": (share / "python3").read_text().strip(),
        "importable": (share / "importable").read_text() if (share / "importable").exists()
        else "",
        "docs": {d["program"]: d for d in results.load_results(share / "res")},
        "lava": (share / "lava.log").read_text().splitlines(),
        "lab_rc": int((share / "lab.rc").read_text()),
    }


def test_device_python_has_only_the_standard_library(device_run: dict[str, Any]) -> None:
    assert device_run["python3"] == str(device_run["share"] / "bare" / "bin" / "python3")
    assert device_run["importable"] == ""


def test_every_case_passes_through_run_kselftest(device_run: dict[str, Any]) -> None:
    ktap = device_run["ktap"]
    res = [ln for ln in ktap.splitlines() if ln.startswith(("ok ", "not ok "))]
    assert res == [f"ok {n} selftests: rmap: {p}" for n, p in enumerate(PROGRAMS, 1)], ktap
    assert "Traceback" not in ktap
    print(f"run_kselftest.sh -c rmap: {len(res)} programs in {device_run['seconds']} s")
    for prog in PROGRAMS:
        doc = device_run["docs"][prog.removesuffix(".py")]
        assert doc["status"] == "pass", doc.get("reason")
        sc = doc["scenarios"][0]
        assert sc["walks"]["count"] >= 3
        kinds = {(k["page_type"], k["folio"]) for k in sc["walks_by_kind"]}
        assert any(folio == "target" for _, folio in kinds), kinds
        print(f"  {prog}: {sc['name']} walk p50 {sc['walks']['p50_ns'] / 1e3:.1f} us "
              f"p99 {sc['walks']['p99_ns'] / 1e3:.1f} us")


def test_ktap_is_accepted_by_the_trees_parser_and_tap_py(device_run: dict[str, Any]) -> None:
    ktap = device_run["share"] / "ktap.txt"
    kunit = device_run["tree"] / "tools" / "testing" / "kunit" / "kunit.py"
    report = device_run["share"] / "kunit.json"
    proc = subprocess.run([sys.executable, str(kunit), "parse",
                                       f"--json={report}", str(ktap)],
                                      capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Ran {len(PROGRAMS)} tests: passed: {len(PROGRAMS)}" in proc.stdout
    assert [c["status"] for c in json.loads(report.read_text())["test_cases"]] == \
        ["PASS"] * len(PROGRAMS)
    parsed = [r for r in Parser().parse_text(ktap.read_text()) if r.category == "test"]
    assert len(parsed) == len(PROGRAMS) and all(r.ok and not r.skip for r in parsed)
    names = [n for n, _ in lkft_names(ktap.read_text())]
    assert names == [n for p in PROGRAMS for n in (
        f"rmap_{p.removesuffix('.py')}_py_{p.removesuffix('.py')}_walk_latency",
        f"rmap_{p.removesuffix('.py')}_py")]


def test_lab_script_reports_results_and_measurements(device_run: dict[str, Any]) -> None:
    assert device_run["lab_rc"] == 0
    lines = device_run["lava"]
    for prog in LAB_PROGRAMS:
        stem = prog.removesuffix(".py")
        case = stem.removeprefix("rmap_")
        assert f"{stem} --result pass" in lines, lines
        for q in ("p50", "p99"):
            rec = next(ln for ln in lines if ln.startswith(f"{stem}_{case}_walks_{q} "))
            words = rec.split()
            assert words[1:3] == ["--result", "pass"] and words[3] == "--measurement"
            assert float(words[4]) > 0 and words[5:] == ["--units", "ns"], rec
    assert len(lines) == 3 * len(LAB_PROGRAMS), lines
