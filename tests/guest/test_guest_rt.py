"""The suite on Debian's other stock flavours, asked for the way a user
does (`run_tests.sh --vm --kernel-series 6.12-rt`): the PREEMPT_RT kernel,
which has no transparent huge pages (THP depends on !PREEMPT_RT), so the
region cases must not ask for MADV_NOHUGEPAGE (EINVAL there; every case
failed on it) and the thp case SKIPs; and the cloud kernel, which has no
9p, refused before a guest is booted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rmapbench.ksft import results

pytestmark = pytest.mark.guest

ROOT = Path(__file__).resolve().parents[2]


def _run_tests(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "run_tests.sh"), "--vm", *argv], capture_output=True,
                          text=True, timeout=1500, check=False)  # fmt: skip


def test_the_rt_flavour_runs_the_cases_and_skips_thp(tmp_path: Path) -> None:
    res = tmp_path / "res"
    cases = ("anon", "file", "ksm", "thp")
    proc = _run_tests("--kernel-series", "6.12-rt", "--results", str(res), "--", "--pages", "500",
                      "--samples", "3", *[a for c in cases for a in ("--case", c)])  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    docs = {d["program"]: d for d in results.load_results(res)}
    assert sorted(docs) == sorted(f"rmap_{c}" for c in cases)
    for name, doc in docs.items():
        assert doc["kernel"]["release"].endswith("-rt-amd64"), doc["kernel"]
        want = ("skip", "THP not available") if name == "rmap_thp" else ("pass", None)
        assert (doc["status"], doc.get("reason")) == want, out
    assert "Exception|" not in out


def test_the_cloud_flavour_is_refused_before_booting(tmp_path: Path) -> None:
    proc = _run_tests("--kernel-series", "6.12-cloud", "--results", str(tmp_path / "res"),
                      "--", "--case", "anon")  # fmt: skip
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()  # and no "results in" an empty directory
    assert line.startswith("run_tests.sh: error: 6.12.")
    assert "-cloud-amd64 has no CONFIG_NET_9P" in line
    assert line.endswith("the guest could not mount this machine's files over 9p")
    assert list((tmp_path / "res").iterdir()) == []  # nothing was booted, no console log
