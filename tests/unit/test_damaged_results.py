"""Result trees with one thing wrong, each a crash (or a wrong answer) the
readers had before they checked what they load: the recorded fixtures
(tests/unit/fixtures/analysis) edited in one place, run through
rmapbench's main() in this process. test_results_fuzz.py searches for
more; test_bad_inputs.py has the first cases of damage.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rmapbench import __main__ as cli
from rmapbench.ksft import stats
from rmapbench.ksft.status import EXIT_RESULTS

FIX = Path(__file__).resolve().parent / "fixtures" / "analysis"
R = EXIT_RESULTS

Doc = dict[str, Any]


def edit(tree: Path, name: str, change: Callable[[Doc], object]) -> None:
    """Apply change to the JSON file tree/name: it edits the document in
    place, or returns the file's new text."""
    path = tree / name
    doc = json.loads(path.read_text())
    new = change(doc)
    path.write_text(new if isinstance(new, str) else json.dumps(doc))


def samples(values: list[int]) -> Doc:
    """A summary as the programs write it (ksft/stats.py), with its samples."""
    return {**stats.summarize(values).as_dict(), "samples": values}


def walks(doc: Doc) -> Doc:
    walks: Doc = doc["scenarios"][0]["walks"]
    return walks


def with_callers(doc: Doc) -> Doc:
    values = walks(doc)["samples"]
    doc["scenarios"][0]["walks_by_caller"] = [{"caller": "try_to_migrate",
                                               "walks": samples(values)}]
    return doc


def with_bystander(doc: Doc) -> Doc:
    doc["scenarios"][0]["bystanders"] = [{"kind": "mprotect", "during": samples([5, 6]),
                                          "quiet": samples([4, 4])}]
    return doc


def drop(obj: Doc, key: str) -> None:
    del obj[key]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


K1000 = "ksm1000/rmap_ksm.json"
AB_INDEX, SWEEP_INDEX = "ab/index.json", "sweep/index.json"

# (id, file, change, command line ({T}: the tree), status, fragment of the one line)
CASES: list[tuple[str, str, Callable[[Doc], object], list[str], int, str]] = [
    # --- what a result document holds (ksft/shape.py) ---
    ("huge-int-p50", K1000, lambda d: walks(d).update(p50_ns=10**400),
     ["summary", "{T}/ksm1000"], R, "scenarios[0].walks.p50_ns is not a finite number"),
    ("backend-a-string", K1000, lambda d: d.update(backend="fprobe"),
     ["summary", "{T}/ksm1000"], R, "backend is not an object: 'fprobe'"),
    ("backend-name-a-number", K1000, lambda d: d["backend"].update(name=3),
     ["summary", "{T}/ksm1000"], R, "backend.name is not a string: 3"),
    ("kernel-null", K1000, lambda d: d.update(kernel=None),
     ["compare", "{T}/ksm1000", "{T}/ksm2000"], R, "kernel is not an object: None"),
    ("setup-a-list", K1000, lambda d: d["scenarios"][0].update(setup=[]),
     ["compare", "{T}/ksm1000", "{T}/ksm2000"], R, "scenarios[0].setup is not an object"),
    ("negative-sample", K1000, lambda d: walks(d)["samples"].__setitem__(3, -5),
     ["compare", "{T}/ksm1000", "{T}/ksm2000"], R,
     "scenarios[0].walks.samples[3] is not a latency (whole ns from 0 below 2^64): -5"),
    ("sample-1e308", K1000, lambda d: walks(d)["samples"].__setitem__(0, 1e308),
     ["compare", "{T}/ksm1000", "{T}/ksm2000"], R, "walks.samples[0] is not a latency"),
    ("sample-subnormal", K1000, lambda d: walks(d).update(samples=[1e-311], count=1),
     ["compare", "{T}/ksm1000", "{T}/ksm2000"], R, "walks.samples[0] is not a latency"),
    ("samples-cut-short", K1000, lambda d: walks(d).update(samples=walks(d)["samples"][:5]),
     ["compare", "{T}/ksm1000", "{T}/ksm2000"], R,
     "scenarios[0].walks.count is 10 but it has 5 samples (cut short?)"),
    ("phase-not-a-number", K1000,
     lambda d: d.update(phases={"seconds": {"build": "x"}, "total_s": 1.0}),
     ["summary", "{T}/ksm1000"], R,
     "phases.seconds.build is not a finite number from 0 below 1e+07: 'x'"),
    ("bystander-without-kind", K1000,
     lambda d: drop(with_bystander(d)["scenarios"][0]["bystanders"][0], "kind"),
     ["summary", "{T}/ksm1000"], R, "scenarios[0].bystanders[0].kind is missing"),
    ("caller-missing", K1000,
     lambda d: drop(with_callers(d)["scenarios"][0]["walks_by_caller"][0], "caller"),
     ["summary", "{T}/ksm1000"], R, "scenarios[0].walks_by_caller[0].caller is missing"),
    # --- found by fuzzing the readers (issue #14's robustness bar) ---
    ("walk-share-beyond-a-float", K1000,
     lambda d: d.update(phases={"seconds": {}, "total_s": 1.0, "walk_share": 10**307}),
     ["summary", "{T}/ksm1000"], R, "phases.walk_share is not a finite number from 0"),
    ("total-beyond-any-run", K1000,
     lambda d: d.update(phases={"seconds": {}, "total_s": 1e308, "walks_s": 0}),
     ["summary", "{T}/ksm1000"], R, "phases.total_s is not a finite number from 0 below 1e+07"),
    ("lone-surrogate", K1000, lambda d: d["scenarios"][0].update(name="\ud800"),
     ["summary", "{T}/ksm1000"], R, "a string holds a lone UTF-16 surrogate"),
    ("surrogate-in-kernel", K1000, lambda d: d["kernel"].update(release="6.12\udfff"),
     ["compare", "{T}/ksm1000", "{T}/ksm2000"], R, "a string holds a lone UTF-16 surrogate"),
    ("newline-in-a-name", K1000, lambda d: d["scenarios"][0].update(name="ksm\n\x1b[2J"),
     ["summary", "{T}/ksm1000"], R, "scenarios[0].name holds a control character"),
    ("caller-twice", K1000,
     lambda d: with_callers(d)["scenarios"][0]["walks_by_caller"].append(
         d["scenarios"][0]["walks_by_caller"][0]),
     ["compare", "{T}/ksm1000", "{T}/ksm2000"], R,
     "scenarios[0].walks_by_caller[1].caller 'try_to_migrate' is named twice"),
    ("nested-too-deeply", K1000, lambda d: nested(100_000),
     ["summary", "{T}/ksm1000"], R, "damaged result file: nested too deeply"),
    # --- what a result set's index holds (resultset.check_index) ---
    ("kind-removed", AB_INDEX, lambda d: drop(d, "kind"),
     ["compare", "{T}/ab"], R, "damaged index: kind None is none of sweep, ab"),
    ("round-null", AB_INDEX, lambda d: d["points"][0].update(round=None),
     ["compare", "{T}/ab"], R, "damaged index: points[0].round is not a round: None"),
    ("side-a-string", AB_INDEX, lambda d: d["sides"].update(A="x"),
     ["compare", "{T}/ab"], R, "damaged index: sides.A is not an object: 'x'"),
    ("boots-null", AB_INDEX, lambda d: d.update(boots=None),
     ["compare", "{T}/ab"], R, "damaged index: boots is not a list: None"),
    ("accel-null", SWEEP_INDEX, lambda d: d["boots"][0].update(accel=None),
     ["report", "{T}/sweep", "-o", "{T}/out"], R, "boots[0].accel is not a string: None"),
    ("params-empty", SWEEP_INDEX, lambda d: d["points"][0].update(params={}),
     ["sweep", "--from", "{T}/sweep"], R, "points[0].params {} are not a point of the grid"),
    ("grid-a-number", SWEEP_INDEX, lambda d: d["grid"].update(pages=5),
     ["sweep", "--from", "{T}/sweep"], R, "grid.pages is not a parameter with a list of values"),
    ("grid-nan", SWEEP_INDEX, lambda d: d["grid"]["pages"].__setitem__(0, float("nan")),
     ["sweep", "--from", "{T}/sweep", "--format", "json"], R, "grid.pages: values not all"),
    ("test-args-a-number", SWEEP_INDEX, lambda d: d["test_args"].__setitem__(0, 1),
     ["sweep", "--from", "{T}/sweep"], R, "test_args is not a list of strings"),
    ("dir-repeated", AB_INDEX, lambda d: d["points"][1].update(dir="r1-A"),
     ["compare", "{T}/ab"], R, "points[1].dir r1-A is repeated"),
    ("dir-out-of-the-set", AB_INDEX, lambda d: d["points"][0].update(dir="../ksm1000"),
     ["compare", "{T}/ab"], R, "points[0].dir is not a directory name: '../ksm1000'"),
    ("point-repeated", SWEEP_INDEX, lambda d: d["points"][1].update(params={"pages": "1000"}),
     ["sweep", "--from", "{T}/sweep"], R, "points[1] repeats the point 'pages=1000'"),
    ("not-a-result-in-a-set", "sweep/p000-pages1000/rmap_ksm.json", lambda d: drop(d, "schema"),
     ["sweep", "--from", "{T}/sweep"], R,
     "p000-pages1000/rmap_ksm.json: not a rmapbench/result/1 result of rmap_ksm, although "
     "rmap_ksm exited 0"),
]  # fmt: skip


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(FIX, tmp_path / "fx")
    return tmp_path / "fx"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main() with warnings as errors: on a terminal they are more lines of stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("name", "change", "argv", "status", "fragment"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_damaged(tree: Path, capsys: pytest.CaptureFixture[str], name: str,
                 change: Callable[[Doc], object], argv: list[str], status: int,
                 fragment: str) -> None:  # fmt: skip
    edit(tree, name, change)
    rc, _, err = run([a.replace("{T}", str(tree)) for a in argv], capsys)
    assert rc == status, err
    (line,) = err.splitlines()
    assert line.startswith(f"rmapbench {argv[0]}: error: "), line
    assert fragment in line and str(tree) in line, line
    assert not (tree / "out").exists()


def test_a_second_file_of_one_program(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A copy beside the original would be taken for a second run."""
    shutil.copy(tree / K1000, tree / "ksm1000" / "copy.json")
    rc, _, err = run(["compare", str(tree / "ksm1000"), str(tree / "ksm2000")], capsys)
    assert rc == R
    assert err == (f"rmapbench compare: error: {tree / K1000}: program rmap_ksm again "
                   "(also in copy.json)\n")


def test_two_scenarios_of_one_name(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(tree, K1000, lambda d: d["scenarios"].append(d["scenarios"][0]))
    rc, _, err = run(["compare", str(tree / "ksm1000"), str(tree / "ksm2000")], capsys)
    assert rc == R
    assert err.endswith("damaged result file: scenarios[1].name 'ksm' is repeated\n"), err


# --- figures the statistics cannot take as they come -----------------------


def strict_json(text: str) -> Any:
    """JSON as jq and JSON.parse read it: NaN and Infinity are no tokens of it."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} in the output")

    return json.loads(text, parse_constant=refuse)


def test_a_median_of_0_ns_has_no_ratio(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Walks below the clock's resolution (1000 ns from text timestamps):
    no ratio, no verdict, and a gate that cannot pass on them."""
    edit(tree, K1000, lambda d: d["scenarios"][0].update(walks=samples([0] * 10)))
    sides = [str(tree / "ksm1000"), str(tree / "ksm2000"), "--resamples", "200"]
    rc, out, err = run(["compare", *sides, "--format", "json"], capsys)
    assert (rc, err) == (0, "")
    doc = strict_json(out)
    walk = next(r for r in doc["rows"] if r["metric"] == "walk")
    assert walk["verdict"] == "no data" and walk["ratio"] is None
    assert "base: median 0 ns (below the clock's resolution): no ratio" in walk["warnings"]
    rc, _, err = run(["compare", *sides, "--max-regression", "5"], capsys)
    assert rc == R
    assert err.endswith("no data to compare for ksm/ksm walk (ksm1000: median 0 ns)\n"), err


def test_an_interval_without_upper_end(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A few walks of 0 ns: some resamples have a base median of 0, so the
    interval has no upper end - said as null, without numpy's warnings."""
    edit(tree, K1000, lambda d: d["scenarios"][0]["syscall"]["samples"].__setitem__(0, 0))
    edit(tree, "ab/r1-A/rmap_ksm.json", lambda d: d["scenarios"][0].update(walks=samples([0])))
    rc, out, err = run(["compare", str(tree / "ksm1000"), str(tree / "ksm2000"), "--format",
                        "json", "--resamples", "200"], capsys)  # fmt: skip
    assert (rc, err) == (0, "")
    syscall = next(r for r in strict_json(out)["rows"] if r["metric"] == "syscall")
    assert syscall["ci_high"] is None and syscall["verdict"] == "no significant change"
    rc, out, err = run(["compare", str(tree / "ab"), "--format", "json"], capsys)
    assert (rc, err) == (0, "")
    walk = next(r for r in strict_json(out)["rows"] if r["metric"] == "walk")
    assert walk["base_runs"] == 2 and walk["ci_low"] is not None


def test_report_of_walks_of_0_ns(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A log axis has no 0: matplotlib's warning would be stderr's second line."""
    for name in (K1000, "sweep/p000-pages1000/rmap_ksm.json", "sweep/p001-pages2000/rmap_ksm.json"):
        edit(tree, name, lambda d: d["scenarios"][0].update(walks=samples([0] * 4)))
    rc, _, err = run(["report", str(tree / "ksm1000"), str(tree / "sweep"), "-o",
                      str(tree / "out")], capsys)  # fmt: skip
    assert (rc, err) == (0, "")
    assert (tree / "out" / "00-ksm1000-ksm-cdf.png").read_bytes().endswith(b"IEND\xaeB`\x82")
    assert (tree / "out" / "01-sweep-ksm-vs-pages.png").is_file()



def test_a_sweep_of_one_latency(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every walk of the same latency at every point (1000 ns each, on a
    clock of 1000 ns): no fit of nan [nan, nan], and a plot without one."""
    for name in ("sweep/p000-pages1000/rmap_ksm.json", "sweep/p001-pages2000/rmap_ksm.json"):
        edit(tree, name, lambda d: d["scenarios"][0].update(walks=samples([1000] * 4)))
    rc, out, err = run(["sweep", "--from", str(tree / "sweep")], capsys)
    assert (rc, err) == (0, "")
    assert "ksm/ksm walk, fit on every sample: every latency is the same: nothing to fit" in out
    rc, _, err = run(["report", str(tree / "sweep"), "-o", str(tree / "out")], capsys)
    assert (rc, err) == (0, "")


def test_a_report_that_fails_leaves_none(tree: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A report is built aside and moved into place: one that fails half-way
    (here the disk is full after the first plot) leaves what was there."""
    from rmapbench.analysis import plots

    real, calls = plots.cdf, []

    def then_full(path: Path, *args: Any) -> Path:
        calls.append(path)
        if len(calls) > 1:
            path.write_bytes(b"\x89PNG half")
            raise OSError(28, "No space left on device")
        return real(path, *args)

    monkeypatch.setattr(plots, "cdf", then_full)
    out = tree / "out"
    out.mkdir()
    (out / "report.md").write_text("the last report\n")
    argv = ["report", str(tree / "ksm1000"), str(tree / "ksm2000"), "-o", str(out)]
    rc, _, err = run(argv, capsys)
    # One line and the status of an -o that cannot be written, not an internal error.
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"rmapbench report: error: cannot write the report in {out}: "), err
    assert "No space left on device" in err
    assert [p.name for p in out.iterdir()] == ["report.md"]
    assert (out / "report.md").read_text() == "the last report\n"
    rc, _, err = run([*argv[:-1], str(tree / "new")], capsys)
    assert rc == 2 and not (tree / "new").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_result_file_that_is_no_file(tree: Path, capsys: pytest.CaptureFixture[str],
                                       kind: str) -> None:  # fmt: skip
    """A FIFO used to block every reader for good, a link to /dev/zero to
    fill its memory: both are refused on the descriptor, naming the file."""
    path = tree / "ksm1000" / "rmap_anon.json"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    for argv in (["summary", str(tree / "ksm1000")],
                 ["compare", str(tree / "ksm1000"), str(tree / "ksm2000")]):  # fmt: skip
        rc, _, err = run(argv, capsys)
        assert rc == R, err
        assert err == f"rmapbench {argv[0]}: error: {path}: not a result file: not a regular file\n"


def test_summary_of_no_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As compare and report: a directory without results is refused, so a
    gate on summary does not pass a run that wrote nothing."""
    (tmp_path / "notes.txt").write_text("x\n")
    rc, out, err = run(["summary", str(tmp_path)], capsys)
    assert (rc, out) == (2, "")
    assert err == f"rmapbench summary: error: {tmp_path}: no rmapbench/result/1 result files\n"


def test_report_of_names_matplotlib_would_parse(tree: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:  # fmt: skip
    """A name with $...$ (or a | in the tables) is text in plots and tables,
    not mathtext that fails to parse."""
    edit(tree, K1000, lambda d: d["scenarios"][0].update(name="k$\\x$|y"))
    edit(tree, "ksm2000/rmap_ksm.json", lambda d: d["scenarios"][0].update(name="k$\\x$|y"))
    rc, _, err = run(["report", str(tree / "ksm1000"), str(tree / "ksm2000"),
                      "-o", str(tree / "out")], capsys)  # fmt: skip
    assert rc == 0, err
    html = (tree / "out" / "report.html").read_text()
    assert "<td>k$\\x$|y/ksm</td>" in html  # the cell is CASE/SCENARIO


def test_sweep_refuses_what_its_index_cannot_name(capsys: pytest.CaptureFixture[str]) -> None:
    """An index names grid values as words: a value with a space would have
    made a finished sweep unreadable (exit 8) after all its boots."""
    rc, _, err = run(["sweep", "--vary", "workdir=/tmp/a b,/tmp", "-o", "/tmp/never",
                      "--kernel", "/nonexistent", "--", "ksm"], capsys)  # fmt: skip
    assert rc == 2
    assert err == ("rmapbench sweep: error: --vary workdir=/tmp/a b,/tmp: "
                   "a value holds white space\n")


@pytest.mark.parametrize("flag", ["--help", "-h", "--hel", "--h", "-vh", "-hv"])
def test_help_in_test_args_runs_nothing(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    """argparse would print the program's help and exit 0: a sweep that
    "passed" having run nothing. -h inside a cluster (-vh) is help too."""
    rc, out, err = run(["sweep", "--vary", "pages=1000,2000", "-o", "/tmp/never",
                        "--kernel", "/nonexistent", "--", "ksm", flag], capsys)  # fmt: skip
    assert (rc, out) == (2, "")
    assert err.startswith(
        "rmapbench sweep: error: rmap_ksm.py: --help among a program's options runs nothing"
    ), err
