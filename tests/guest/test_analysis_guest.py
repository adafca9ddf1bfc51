"""End-to-end A/B in real guests (Debian's stock 6.12 under TCG): KSM's
max_page_sharing 16 against the default 256 must be a significant
improvement of the KSM walk, and identical settings on both sides must come
out as no significant change.

With 2000 identical pages split into 2000 VMAs, KSM merges them into ~8 KSM
pages of 256 sharers each by default, or ~125 of 16 with max_page_sharing
16. rmap_walk_ksm() visits every rmap_item of the page's stable node and,
for each, searches that item's anon_vma over its whole range: 2000 VMAs per
item. 16 items instead of 256 is a walk about 16x shorter.

Two ab runs of one boot each; side A is the kernel's default (256). Then
a sweep of the jvm workload, tiny, in one boot: every point runs the
workload's case with its bystander, and the sweep shows the bystander.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rmapbench import __main__ as cli
from rmapbench.analysis import resultset
from rmapbench.bench import cases
from rmapbench.ksft import options

# ab fetches the kernel itself; the shared fixture skips without QEMU and
# fetches it once for the session.
pytestmark = [pytest.mark.guest, pytest.mark.usefixtures("stock_kernel")]

SMALL = ["ksm", "--pages", "2000", "--split", "2", "--samples", "8"]


def _has_max_page_sharing() -> bool:
    parser = options.build_parser("rmap_ksm.py", cases.policies())
    return "--max-page-sharing" in parser.format_help()


needs_option = pytest.mark.skipif(
    not _has_max_page_sharing(), reason="rmap_ksm.py does not accept --max-page-sharing yet"
)


def _ab(out: Path, sets: list[str], rounds: int, capsys: pytest.CaptureFixture[str]
        ) -> tuple[int, dict[str, Any]]:  # fmt: skip
    args = ["ab", "--rounds", str(rounds), "--format", "json", "--max-regression", "5",
            "-o", str(out)]  # fmt: skip
    for s in sets:
        args += ["--set", s]
    status = cli.main([*args, "--", *SMALL])
    return status, json.loads(capsys.readouterr().out)


def _walk(doc: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in doc["rows"] if r["case"] == "ksm" and r["metric"] == "walk")


@needs_option
def test_max_page_sharing_16_is_a_significant_improvement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, doc = _ab(tmp_path / "ab", ["max_page_sharing=16"], 1, capsys)
    row = _walk(doc)
    assert status == 0, doc  # an improvement never trips --max-regression
    assert row["verdict"] == "improved", row
    assert row["ci_high"] < 0.5 and row["pvalue"] < 0.01, row
    src = resultset.load(tmp_path / "ab")
    assert src.index is not None and len(src.index["boots"]) == 1  # both sides, one boot
    ksm = {r.side: r.doc["scenarios"][0]["setup"]["ksm"] for r in src.runs}
    assert ksm["A"]["max_page_sharing"] == 256 and ksm["B"]["max_page_sharing"] == 16
    # The knob really spread the sharers over more KSM pages.
    assert ksm["B"]["pages_shared"] > 4 * ksm["A"]["pages_shared"], ksm


@needs_option
def test_identical_settings_are_no_significant_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Side B sets 256 explicitly, side A leaves the kernel's 256: the same
    # walk, measured A B then B A in one boot.
    status, doc = _ab(tmp_path / "ab", ["max_page_sharing=256"], 2, capsys)
    row = _walk(doc)
    assert status == 0, doc
    assert row["verdict"] == "no significant change", row
    assert row["ci_low"] <= 1 <= row["ci_high"] or row["pvalue"] >= 0.01, row


def test_sweep_of_a_workload_shows_its_bystander(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tiny, to stay cheap: the options after the workload's win (its
    # --samples 10), and the varied --pages after them all.
    out = tmp_path / "sweep"
    status = cli.main(["sweep", "--vary", "pages=100,200", "-o", str(out), "--",
                       "--workload", "jvm", "--samples", "3", "--warmup", "1"])  # fmt: skip
    text = capsys.readouterr().out
    assert status == 0, text
    assert "bystander-mprotect: operations begun during walks" in text, text
    runs = resultset.load(out).runs
    assert sorted(r.doc["scenarios"][0]["params"]["pages"] for r in runs) == [100, 200]
    for r in runs:
        assert r.doc["program"] == "rmap_ksm"  # the workload's case alone
        sc = r.doc["scenarios"][0]
        assert [b["kind"] for b in sc["bystanders"]] == ["mprotect"]
        assert sc["bystanders"][0]["quiet"]["count"] > 0
        assert sc["lock_holds"]["acquisitions_per_walk"]["exact"]  # the workload's --count-visits
        assert "pids" in sc["walker_waits"]
