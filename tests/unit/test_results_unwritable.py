"""The program's final result files when the results directory went away
under it (here: replaced by a regular file, as a full filesystem would
refuse them): one line on stderr and False, not an internal error after
the KTAP said how the run went."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmapbench.bench import pipeline
from rmapbench.bench.document import Document
from rmapbench.ksft.options import Options
from rmapbench.machine.knobs import Journal
from rmapbench.scenarios.region import AnonScenario


def _doc(opts: Options, tmp_path: Path) -> Document:
    return Document.start("rmap_anon", AnonScenario(opts, Journal(directory=tmp_path)), opts)


def test_results_written(tmp_path: Path) -> None:
    opts = Options(results=str(tmp_path / "res"))
    assert pipeline._write_results("rmap_anon", opts, _doc(opts, tmp_path))
    assert (tmp_path / "res" / "rmap_anon.json").exists()


def test_results_not_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "res").write_text("not a directory")
    opts = Options(results=str(tmp_path / "res"))
    assert not pipeline._write_results("rmap_anon", opts, _doc(opts, tmp_path))
    err = capsys.readouterr().err
    assert err == (
        f"# rmap_anon: could not write the results to {tmp_path / 'res'}: File exists; "
        "the system was restored\n"
    )
