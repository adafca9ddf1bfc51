"""Planning of sweeps and A/B runs (no guest): grid, arguments, boot order,
the guest script, marker parsing and the progress line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from rmapbench import __main__ as cli
from rmapbench.analysis import ab, sweep
from rmapbench.guest import batch
from rmapbench.guest.kernel import KernelImage
from rmapbench.guest.progress import Progress
from rmapbench.ksft.cli import UsageError


def test_grid_points_and_args() -> None:
    grid = sweep.parse_vary(["pages=1000,2000", "max_page_sharing=16,256"])
    pts = sweep.points(grid)
    assert len(pts) == 4 and pts[0] == {"pages": "1000", "max_page_sharing": "16"}
    assert sweep.point_args(["--samples", "3"], pts[1]) == [
        "--samples", "3", "--pages", "1000", "--max-page-sharing", "256"]  # fmt: skip
    assert sweep.point_dir(1, pts[1]) == "p001-pages1000-max_page_sharing256"


def test_programs_from_names() -> None:
    progs, args = batch.split_test_args(["--", "ksm,rmap_anon.py", "--pages", "5"])
    assert [p.name for p in progs.of(args)] == ["rmap_ksm.py", "rmap_anon.py"]
    assert args == ["--pages", "5"]
    progs, args = batch.split_test_args(["--pages", "5"])
    assert [p.name for p in progs.of(args)][:3] == ["rmap_ksm.py", "rmap_anon.py", "rmap_file.py"]
    progs, args = batch.split_test_args(["--case", "anon", "--pages", "5"])
    assert [p.name for p in progs.of(args)] == ["rmap_anon.py"]
    # A point's own options choose its programs: --vary workload=jvm runs
    # the workload's case alone there, not every case (which would exit 0
    # with no results).
    assert [p.name for p in progs.of(["--workload", "jvm"])] == ["rmap_ksm.py"]
    with pytest.raises(UsageError, match="nocase"):
        batch.split_test_args(["--case", "nocase"])


def _kernel(name: str) -> KernelImage:
    return KernelImage(Path(f"/boot/{name}"), name, None, None)


def test_ab_kernels_alternate_boots() -> None:
    k = {"A": _kernel("a"), "B": _kernel("b")}
    args = {"A": ["--pages", "9"], "B": ["--pages", "9"]}
    progs = batch.Selection((batch.SUITE_DIR / "rmap_ksm.py",))
    boots, entries = ab.plan(k, args, progs, 2, one_boot_per_round=False)
    assert [b.kernel.release for b in boots] == ["a", "b", "a", "b"]
    assert [e["dir"] for e in entries] == ["r1-A", "r1-B", "r2-A", "r2-B"]


def test_ab_settings_one_boot_per_round_counterbalanced() -> None:
    k = {"A": _kernel("a"), "B": _kernel("a")}
    args = {"A": [], "B": ["--max-page-sharing", "16"]}
    progs = batch.Selection((batch.SUITE_DIR / "rmap_ksm.py",))
    boots, entries = ab.plan(k, args, progs, 3, one_boot_per_round=True)
    assert len(boots) == 3
    order = [[j.directory for j in b.jobs] for b in boots]
    assert order == [["r1-A", "r1-B"], ["r2-B", "r2-A"], ["r3-A", "r3-B"]]
    assert boots[0].jobs[1].args == ["--max-page-sharing", "16"]
    assert [e["boot"] for e in entries] == [0, 0, 1, 1, 2, 2]


def test_script_and_markers(tmp_path: Path) -> None:
    job = batch.Job("p000-pages10", batch.SUITE_DIR / "rmap_ksm.py", ["--pages", "10"])
    text = batch.script([job], tmp_path, first=3)
    assert f"--results {tmp_path}/p000-pages10" in text
    assert f'echo "{batch.MARKER} 3 $?"' in text
    seen: list[tuple[int, int]] = []
    stream = batch.MarkerStream(lambda i, rc: seen.append((i, rc)))
    stream.write("noise\nrmapbench-job 3 0\nrmapbench-j")
    stream.write("ob 4 1\nrmapbench-job x 1\n")
    assert seen == [(3, 0), (4, 1)]


def test_progress_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    p = Progress(4, "runs", stream=quiet)
    p.start()
    p.step()
    p.finish()
    assert quiet.getvalue() == ""  # StringIO is not a tty
    loud = io.StringIO()
    p = Progress(4, "runs", stream=loud, enabled=True)
    p.start("booting")
    p.step("p000")
    assert "1/4 runs done" in loud.getvalue() and "left" in loud.getvalue()
    p.finish()
    assert loud.getvalue().endswith("\n")


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("sweep", "ab", "compare", "report"):
        with pytest.raises(SystemExit) as e:
            cli.main([cmd, "--help"])
        assert e.value.code == 0
        assert f"rmapbench {cmd}" in capsys.readouterr().out


def test_fits_per_kernel_when_kernels_are_swept() -> None:
    """A kernel dimension (or any non-numeric one) is not fitted: each of
    its values gets its own exponent."""
    import numpy as np

    from rmapbench.analysis.resultset import Run, Source

    rng = np.random.default_rng(5)
    runs = []
    for kernel, slope in (("6.1", 1.0), ("6.12", 0.5)):
        for pages in (1000, 2000, 4000):
            walks = (1e3 * pages**slope * rng.lognormal(0, 0.05, 12)).tolist()
            doc = {"program": "rmap_ksm", "kernel": {"release": kernel},
                   "scenarios": [{"name": "ksm", "setup": {"target_page_type": "ksm"},
                                  "walks": {"samples": walks}}]}  # fmt: skip
            runs.append(Run(doc, {"pages": str(pages), "kernel": kernel}))
    grid = {"pages": ["1000", "2000", "4000"], "kernel": ["6.1", "6.12"]}
    source = Source(Path("set"), "sweep", runs, {"grid": grid})
    fits = {(f.given["kernel"], f.mode): f for f in sweep.fits(source)}
    for kernel, slope in (("6.1", 1.0), ("6.12", 0.5)):
        fit = fits[(kernel, "samples")].fit
        assert fit is not None
        (e,) = fit.exponents
        assert e.name == "pages" and e.low < slope < e.high
    assert "ksm/ksm kernel=6.1 walk" in sweep.summary_text(source)


def test_rmap_args_go_first_into_every_run() -> None:
    """The guest's command has an empty environment: $RMAP_ARGS travels in
    the runs' own options, before those after -- (which win)."""
    env = {"RMAP_ARGS": "--pages 700 --case anon"}
    progs, args = batch.split_test_args(["--samples", "3"], env)
    assert [p.name for p in progs.of(args)] == ["rmap_anon.py"]
    assert args == ["--pages", "700", "--case", "anon", "--samples", "3"]
    progs, args = batch.split_test_args(["anon,ksm", "--pages", "9"], env)
    assert [p.name for p in progs.of(args)] == ["rmap_anon.py"]  # ksm's would SKIP
    assert args == ["--pages", "700", "--case", "anon", "--pages", "9"]
    progs, args = batch.split_test_args(["ksm", "--pages", "9"], env)
    with pytest.raises(UsageError, match="selects anon, none of the programs given"):
        progs.of(args)
    with pytest.raises(UsageError, match=r"^RMAP_ARGS: "):
        batch.split_test_args([], {"RMAP_ARGS": "--pages '7"})


def test_bystander_section_says_when_no_operation_met_a_walk() -> None:
    from rmapbench.analysis.resultset import Run, Source

    def run(pages: str, during: list[float]) -> Run:
        sc = {"name": "ksm", "setup": {"target_page_type": "ksm"},
              "bystanders": [{"kind": "mprotect", "during": {"samples": during}}]}  # fmt: skip
        return Run({"scenarios": [sc]}, {"pages": pages})

    quiet = Source(Path("s"), "sweep", [run("100", []), run("200", [])])
    assert sweep.bystander_lines(quiet) == [
        "", "bystander-mprotect: operations begun during walks", "none at any point"]  # fmt: skip
    met = Source(Path("s"), "sweep", [run("100", []), run("200", [5e6])])
    lines = sweep.bystander_lines(met)
    assert lines[1] == "bystander-mprotect: operations begun during walks"
    assert "pages=200" in lines[3] and len(lines) == 4
    bare = Source(Path("s"), "sweep", [Run({"scenarios": [{"name": "ksm"}]}, {"pages": "1"})])
    assert sweep.bystander_lines(bare) == []  # no bystander ran: nothing to say
