"""The analysis commands on recorded results (tests/fixtures/analysis: real
runs on Debian 6.12 under TCG, trimmed to their JSON) and their refusals."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rmapbench import __main__ as cli
from rmapbench.analysis import report, resultset, samples, sweep

FIX = Path(__file__).resolve().parent / "fixtures" / "analysis"
SWEEP, AB = FIX / "sweep", FIX / "ab"
K1000, K2000 = FIX / "ksm1000", FIX / "ksm2000"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rmapbench", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _main(args: list[str]) -> int:
    """rmapbench's main in this process (argparse errors exit)."""
    try:
        return cli.main(args)
    except SystemExit as e:
        return int(e.code or 0)


def test_load_dir_and_sets() -> None:
    d = resultset.load(K1000)
    assert d.kind == "dir" and [r.doc["program"] for r in d.runs] == ["rmap_ksm"]
    s = resultset.load(SWEEP)
    assert s.kind == "sweep" and s.index and s.index["grid"] == {"pages": ["1000", "2000"]}
    keys = samples.pooled(s.runs, ["walk"])
    assert {k.point for k in keys} == {"pages=1000", "pages=2000"}
    assert {k.case for k in keys} == {"ksm", "anon"}
    with pytest.raises(ValueError):
        resultset.load(FIX)


def test_compare_text_json_and_gate(capsys: pytest.CaptureFixture[str]) -> None:
    # 1000 -> 2000 pages doubles the KSM walk. One run a side: within what
    # the default (TCG) noise floor allows two runs to differ by.
    assert cli.main(["compare", str(K1000), str(K2000), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    walk = next(r for r in doc["rows"] if r["metric"] == "walk")
    assert walk["verdict"] == "no significant change" and walk["pvalue_samples"] < 0.01
    assert any("between-run variation unknown" in w for w in walk["warnings"])
    # A quiet machine's floor (measured there) lets one run a side conclude.
    quiet = ["--noise-floor", "0.05"]
    assert cli.main(["compare", str(K1000), str(K2000), *quiet]) == 0
    out = capsys.readouterr().out
    assert "ksm/ksm" in out and "REGRESSED" in out and "noise floor" in out
    assert cli.main(["compare", str(K1000), str(K2000), "--format", "json", *quiet]) == 0
    doc = json.loads(capsys.readouterr().out)
    sys_ = next(r for r in doc["rows"] if r["metric"] == "syscall")
    assert sys_["verdict"] == "regressed" and sys_["ci_low"] > 1 and sys_["pvalue"] < 0.01
    assert doc["thresholds"]["noise_floor"] == 0.05
    # Beyond a 50% budget, not a 500% one.
    assert cli.main(["compare", str(K1000), str(K2000), "--max-regression", "50", *quiet]) == 6
    assert cli.main(["compare", str(K1000), str(K2000), "--max-regression", "500", *quiet]) == 0
    # The reverse direction is an improvement, never a regression.
    assert cli.main(["compare", str(K2000), str(K1000), "--max-regression", "0", *quiet]) == 0
    assert "improved" in capsys.readouterr().out
    assert cli.main(["compare", str(K1000), str(K2000), "--noise-floor", "3"]) == 2


def test_compare_same_data_is_no_change(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    copy = tmp_path / "copy"  # the same data in two places (one place twice is refused)
    shutil.copytree(K1000, copy)
    assert cli.main(["compare", str(K1000), str(copy), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| ksm/ksm | walk |" in out and "no significant" not in out
    assert "| - |" in out or out.rstrip().count("| - |") >= 1


def test_ab_set_alone_compares_its_sides(capsys: pytest.CaptureFixture[str]) -> None:
    # Recorded: max_page_sharing 16 (B) against the default 256 (A), 2 rounds.
    assert _main(["compare", str(AB), "--format", "json", "--max-regression", "5"]) == 0
    doc = json.loads(capsys.readouterr().out)
    walk = next(r for r in doc["rows"] if r["metric"] == "walk")
    assert walk["verdict"] == "improved" and walk["ci_high"] < 0.5
    assert len(walk["base_round_medians"]) == 2
    assert "max_page_sharing=16" in doc["new"]["detail"]
    # Sides named explicitly, the other way round: a regression beyond 100%.
    assert _main(["compare", f"{AB}:B", f"{AB}:A", "--max-regression", "100"]) == 6


def test_sweep_from_set_fits_exponent(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["sweep", "--from", str(SWEEP)]) == 0
    out = capsys.readouterr().out
    assert "ksm/ksm walk, fit on every sample" in out and "pages^" in out
    fits = {(f.case, f.mode): f for f in sweep.fits(resultset.load(SWEEP))}
    ksm = fits[("ksm", "samples")].fit
    assert ksm is not None
    (e,) = ksm.exponents
    # A KSM walk over split VMAs grows with the VMAs (= pages at split 2).
    assert e.name == "pages" and 0.5 < e.slope < 2 and e.low < e.slope < e.high
    assert fits[("ksm", "p50")].fit is None  # two points leave no degree of freedom


def test_sweep_shows_bystanders_per_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:  # fmt: skip
    """A sweep of a --workload: its bystanders' operations begun during
    walks get a table per kind (none without bystanders)."""
    import shutil

    assert "bystander-" not in sweep.summary_text(resultset.load(SWEEP))
    copy = tmp_path / "sweep"
    shutil.copytree(SWEEP, copy)
    for i, doc_path in enumerate(sorted(copy.glob("p*/rmap_ksm.json"))):
        doc = json.loads(doc_path.read_text())
        during = [50_000 * (i + 1)] * 99 + [9_000_000]
        doc["scenarios"][0]["bystanders"] = [{"kind": "mprotect", "during": {"samples": during}}]
        doc_path.write_text(json.dumps(doc))
    assert cli.main(["sweep", "--from", str(copy)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("bystander-mprotect: operations begun during walks"):].splitlines()
    assert table[1].split() == ["case", "point", "n", "p50", "p90", "p99"]
    assert [r.split()[1:4] for r in table[2:]] == [
        ["pages=1000", "100", "50"],
        ["pages=2000", "100", "100"],
    ], table


def test_report_writes_expected_files(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    sources = [resultset.load(p) for p in (SWEEP, K1000, K2000, AB)]
    written = report.write(report.build(sources, out), out)
    assert sorted(p.name for p in written) == sorted(report.FILES)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert any("-vs-pages" in p for p in pngs), pngs  # sweep curve with its fit
    assert any(p.startswith("cmp-") for p in pngs), pngs  # comparison CDF
    assert sum("-cdf" in p for p in pngs) >= 4
    assert any(p.startswith("cmp-ab_A-ab_B") for p in pngs), pngs
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for p in pngs:
        assert f"]({p})" in md
    page = (out / "report.html").read_text()
    assert "<img src=" in page and "<th>ratio [95% CI]</th>" in page
    text = (out / "summary.txt").read_text()
    assert "pages^" in text and "ratio [95% CI]" in text


def test_report_cli(tmp_path: Path) -> None:
    proc = _run("report", str(K1000), str(K2000), "-o", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "report.md").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "--vary", "pages=1000,x", "-o", "OUT", "--", "ksm"], "not a number"),
        (["sweep", "--vary", "pages", "-o", "OUT", "--", "ksm"], "NAME=V1,V2"),
        (["sweep", "--vary", "Bad-Name=1,2", "-o", "OUT", "--", "ksm"], "bad parameter name"),
        (["sweep", "--vary", "pages=1,2", "-o", "OUT", "--", "nosuchcase"], "no test program"),
        (
            ["sweep", "--vary", "pages=100,200", "-o", "OUT", "--", "ksm", "--split", "150"],
            "larger than",
        ),
        (["sweep", "--vary", "frobs=1,2", "-o", "OUT", "--", "ksm"], "unrecognized"),
        (["sweep", "--vary", "pages=1,2", "-o", "OUT", "--", "ksm", "--results", "x"], "--results"),
        (["sweep", "--vary", "pages=1,2", "--", "ksm"], "give -o"),
        (["sweep", "--vary", "pages=1000,2000", "-o", str(FIX), "--", "ksm"], "exists"),
        (
            ["sweep", "--vary", "pages=1000,2000", "--kernel", "/nonexistent", "-o", "OUT"],
            "neither an image",
        ),
        (["ab", "-o", "OUT", "--", "ksm"], "--kernel twice"),
        (
            ["ab", "--kernel", "6.12", "--kernel", "6.1", "--set", "pages=5", "-o", "OUT"],
            "not both",
        ),
        (["ab", "--set", "pages", "-o", "OUT"], "NAME=VALUE"),
        (["ab", "--set", "pages=5", "--rounds", "0", "-o", "OUT"], "--rounds"),
        (["ab", "--set", "pages=5", "--alpha", "2", "-o", "OUT"], "--alpha"),
        (["compare", str(K1000)], "BASE and NEW"),
        (["compare", str(K1000), str(FIX / "nothing")], "not a directory"),
        (["compare", f"{SWEEP}:A", str(K1000)], "no side"),
        (["report", str(FIX), "-o", "OUT"], "no rmapbench/result/1"),
    ],
)
def test_bad_usage_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    assert _main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err, err
    assert not (tmp_path / "out").exists()


def test_building_is_atomic(tmp_path: Path) -> None:
    final = tmp_path / "set"
    with pytest.raises(RuntimeError), resultset.building(final) as tmp:
        (tmp / "x").write_text("half")
        raise RuntimeError("guest died")
    assert not final.exists()
    with resultset.building(final) as tmp:
        resultset.write_index(tmp, resultset.base_index("sweep", []))
        assert not final.exists()
    assert resultset.read_index(final)["schema"] == resultset.SCHEMA
    with pytest.raises(resultset.OutputExists), resultset.building(final):
        pass


def test_a_directory_name_with_a_newline_is_escaped_in_the_header(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A name is printed in the text and mail output: a raw newline there
    would split its header line in two."""
    odd = tmp_path / "new\nline"
    shutil.copytree(K1000, odd)
    assert cli.main(["compare", str(K1000), str(odd)]) == 0
    out = capsys.readouterr().out
    assert "new:  new\\nline (kernel" in out
