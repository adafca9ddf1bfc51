"""benchmarks/scale.py: the per-process region that fits a guest, and its
table rows from a program's result files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale", ROOT / "benchmarks" / "scale.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


scale = _scale()


def test_procs_pages_keeps_the_scenario_within_the_budget() -> None:
    assert scale.procs_pages(8, 2000, 2048) == 2000  # 64 MiB of 2 GiB
    # 1,024 processes in half of an 8 GiB guest: 1,023 children of 2 MiB
    # leave 2050 MiB, 2 MiB (512 pages) a region.
    assert scale.procs_pages(1024, 2000, 4096) == 512
    assert scale.procs_pages(1024, 500, 4096) == 500
    assert scale.procs_pages(100000, 2000, 64) == 16  # a floor, not zero


def test_procs_pages_fits_what_the_preflight_counts(tmp_path: Path) -> None:
    """A run the benchmark plans is one the case's memory check lets run in
    a guest that has the budget free."""
    from rmapbench.ksft.options import Options
    from rmapbench.machine.knobs import Journal
    from rmapbench.scenarios.ksm_procs import KsmProcsScenario

    for procs, budget in ((8, 2048), (256, 2048), (1024, 4096)):
        pages = scale.procs_pages(procs, 2000, budget)
        sc = KsmProcsScenario(Options(pages=pages, procs=procs), Journal(directory=tmp_path))
        assert sc.footprint() <= budget * scale.MIB, (procs, pages)


def _result(share: Path, name: str, doc: dict[str, object], rss: dict[str, int] | None) -> None:
    (share / name).mkdir()
    (share / name / "rmap_ksm_procs.json").write_text(json.dumps(doc))
    if rss is not None:
        (share / f"{name}.rss.json").write_text(json.dumps(rss))


def test_row_counts_every_process_vmas_and_both_memory_figures(tmp_path: Path) -> None:
    doc = {
        "status": "pass",
        "scenarios": [
            {
                "params": {"pages": 500},
                "setup": {"vmas": 500, "processes": 1024},
                "verified": {"mappings_per_sample": 256, "samples": 4},
            }
        ],
        "phases": {
            "seconds": {"build": 121.6, "merge": 21.7, "verification": 0.96},
            "walk_share": 0.002,
            "total_s": 167.1,
        },
    }
    rss = {"peak_rss_kib": 18261468, "peak_pss_kib": 1807350, "peak_processes": 1024}
    _result(tmp_path, "procs-1024", doc, rss)
    row = dict(zip(scale.HEAD, scale.row(tmp_path, "procs-1024"), strict=True))
    assert row["vmas"] == "512000"
    assert row["build us/vma"] == "280"
    assert row["rss MiB"] == "17833"
    assert row["pss MiB"] == "1765"
    assert row["scenario MiB"] == "2000"
    assert row["status"] == "pass"


def test_a_run_cut_short_fills_every_column(tmp_path: Path) -> None:
    _result(tmp_path, "procs-2048", {"status": "interrupted", "scenarios": []}, None)
    row = scale.row(tmp_path, "procs-2048")
    assert len(row) == len(scale.HEAD)
    assert row[-1] == "interrupted"
