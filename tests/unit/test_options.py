"""Tests of rmapbench.ksft.options: the option set every test program accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rmapbench.bench import cases
from rmapbench.ksft import options
from rmapbench.ksft.cli import UsageError, refuse
from rmapbench.ksft.options import EXIT_USAGE, Options
from rmapbench.scenarios import SCENARIOS


def parse(prog: str, argv: list[str]) -> Options:
    """The options the case of program prog gets, as its entry parses them."""
    case = cases.case_of(prog if prog.endswith(".py") else prog + ".py")
    assert case is not None
    return options.parse(prog, argv, case, cases.policies())


def not_applicable(opts: Options, case: str) -> list[str]:
    return options.not_applicable(opts, SCENARIOS[case].policy)


@pytest.fixture(autouse=True)
def _no_suite_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMAP_ARGS", raising=False)


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The one stderr line of a refused command line."""
    with pytest.raises(UsageError) as exc:
        parse("rmap_ksm", argv)
    assert refuse("rmap_ksm", exc.value) == EXIT_USAGE == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("rmap_ksm: error: ")
    return lines[0]


def test_defaults() -> None:
    opts = parse("rmap_ksm", [])
    assert opts == Options()
    assert (opts.pages, opts.split, opts.samples, opts.warmup) == (20000, 2, 30, None)
    assert (opts.backend, opts.max_p99_ms, opts.results) == ("auto", None, None)
    assert (opts.merge_timeout, opts.workdir, opts.buffer_kb, opts.verbose) == (
        300.0, None, 8192, False)
    assert opts.given == set()


def test_every_option(tmp_path: Path) -> None:
    opts = parse("rmap_file", [
        "--pages", "4000", "--split", "1", "--samples", "10", "--warmup", "0",
        "--backend", "fprobe", "--max-p99-ms", "2.5", "--results", str(tmp_path),
        "--merge-timeout", "60", "--workdir", str(tmp_path / "w"), "--buffer-kb", "64", "-v",
    ])
    assert (opts.pages, opts.split, opts.samples, opts.warmup) == (4000, 1, 10, 0)
    assert (opts.backend, opts.max_p99_ms, opts.results) == ("fprobe", 2.5, tmp_path)
    assert (opts.merge_timeout, opts.workdir, opts.buffer_kb, opts.verbose) == (
        60.0, tmp_path / "w", 64, True)
    assert opts.given == {
        "pages", "split", "samples", "warmup", "backend", "max_p99_ms", "results",
        "merge_timeout", "workdir", "buffer_kb", "verbose"}


def test_equals_form() -> None:
    opts = parse("rmap_anon", ["--pages=100", "--backend=syscall"])
    assert (opts.pages, opts.backend) == (100, "syscall")


def test_rmap_args_is_prepended(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RMAP_ARGS", "--pages 4000 --samples 10 --workdir '/mnt/a dir'")
    opts = parse("rmap_file", ["--samples", "5"])
    # The command line comes after the suite-wide line, so it wins.
    assert (opts.pages, opts.samples, opts.workdir) == (4000, 5, Path("/mnt/a dir"))
    assert opts.given == {"pages", "samples", "workdir"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--pages", "abc"], "not a number: 'abc'"),
    (["--pages", "0"], "must be at least 1"),
    (["--warmup", "-1"], "must be at least 0"),
    (["--max-p99-ms", "fast"], "not a number"),
    (["--buffer-kb", "8"], "must be at least 64"),
    (["--merge-timeout", "0.5"], "must be at least 1.0"),
    (["--backend", "ebpf"], "invalid choice"),
    (["--max-page-sharing", "1"], "must be at least 2"),
    (["--merge-across-nodes", "2"], "invalid choice"),
    (["--pages"], "expected one argument"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["extra"], "unrecognized arguments: extra"),
])
def test_malformed_or_unknown_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in refused(capsys, argv)


def test_malformed_rmap_args(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RMAP_ARGS", "--pages lots")
    assert "not a number: 'lots'" in refused(capsys, [])
    monkeypatch.setenv("RMAP_ARGS", "--workdir '/mnt/unterminated")
    assert "RMAP_ARGS" in refused(capsys, [])


def test_split_larger_than_pages_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, ["--pages", "4", "--split", "5"])
    assert line == "rmap_ksm: error: --split 5 is larger than --pages 4"
    assert "larger than --pages 20000" in refused(capsys, ["--split", "20001"])
    assert parse("rmap_ksm", ["--pages", "5", "--split", "5"]).split == 5


def test_not_applicable() -> None:
    opts = parse("rmap_ksm", ["--merge-timeout", "60", "--workdir", "/mnt", "--pages", "10"])
    assert not_applicable(opts, "ksm") == ["--workdir"]
    assert not_applicable(opts, "file") == ["--merge-timeout"]
    assert not_applicable(opts, "anon") == ["--merge-timeout", "--workdir"]
    assert not_applicable(parse("rmap_anon", []), "anon") == []
    assert set(options.CASE_SPECIFIC) == {
        "merge_timeout", "workdir", "max_page_sharing", "merge_across_nodes",
        "procs", "fork_width", "fork_depth"}
    ksm = parse("rmap_ksm", ["--max-page-sharing", "16", "--merge-across-nodes", "0"])
    assert (ksm.max_page_sharing, ksm.merge_across_nodes) == (16, 0)
    for case in ("ksm", "ksm-procs", "ksm-fork", "ksm-mremap"):
        assert not_applicable(ksm, case) == []
    assert not_applicable(ksm, "anon") == ["--max-page-sharing", "--merge-across-nodes"]


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    text = options.build_parser("rmap_ksm", cases.policies()).format_help()
    for opt in ("--pages", "--split", "--samples", "--warmup", "--backend", "--max-p99-ms",
                "--results", "--merge-timeout", "--workdir", "--buffer-kb", "--verbose",
                "--max-page-sharing", "--merge-across-nodes"):
        assert opt in text


def test_process_options() -> None:
    opts = parse("rmap_ksm_fork", ["--procs", "16", "--fork-width", "3", "--fork-depth", "1"])
    assert (opts.procs, opts.fork_width, opts.fork_depth) == (16, 3, 1)
    assert SCENARIOS["ksm-procs"].policy.procs_for(opts) == 16
    d = parse("rmap_ksm_procs", [])
    assert (d.procs, d.fork_width, d.fork_depth) == (None, 2, 2)
    assert SCENARIOS["ksm-procs"].policy.procs_for(d) == 8
    assert SCENARIOS["file-mappers"].policy.procs_for(d) == 32


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--procs", "0"], "--procs: must be at least 1"),
        (["--procs", "513"], "--procs 513 is more than 512"),
        (["--fork-width", "0"], "--fork-width: must be at least 1"),
        (["--fork-depth", "9"], "--fork-depth 9 is more than 8"),
        (["--fork-width", "8", "--fork-depth", "3"], "make a tree of 584 processes"),
    ],
)
def test_process_options_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in refused(capsys, argv)


def test_process_options_apply_to_their_cases() -> None:
    opts = parse("rmap_ksm", ["--procs", "4", "--fork-depth", "1"])
    assert not_applicable(opts, "ksm") == ["--fork-depth", "--procs"]
    assert not_applicable(opts, "ksm-procs") == ["--fork-depth"]
    assert not_applicable(opts, "anon-fork") == ["--procs"]


@pytest.mark.parametrize(
    ("program", "argv", "message"),
    [
        ("rmap_ksm_procs.py", ["--procs", "1"], "ksm-procs needs --procs 2 or more"),
        ("rmap_anon_fork.py", ["--fork-width", "2", "--fork-depth", "9"], "--fork-depth 9"),
        ("rmap_shmem.py", ["--procs", "1000"], "--procs 1000 is more than 512"),
    ],
)
def test_programs_refuse_process_options(program: str, argv: list[str], message: str) -> None:
    """Before anything is set up: one line on stderr, nothing on stdout, 2."""
    prog = Path(__file__).resolve().parents[2] / "tools/testing/rmap" / program
    proc = subprocess.run([sys.executable, str(prog), *argv], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_multi_process_cases_default_to_fewer_pages() -> None:
    assert parse("rmap_ksm.py", []).pages == 20000
    assert parse("rmap_ksm_fork.py", []).pages == SCENARIOS["ksm-fork"].policy.pages
    assert parse("rmap_file_mappers", []).pages == SCENARIOS["file-mappers"].policy.pages
    assert parse("rmap_ksm_fork.py", ["--pages", "30000"]).pages == 30000


def test_tracepoint_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("rmap_anon", []).tracepoint_form == "auto"
    assert parse("rmap_anon", ["--tracepoint-form", "start-end"]).tracepoint_form == "start-end"
    assert "--tracepoint-form" in refused(capsys, ["--tracepoint-form", "v6"])


@pytest.mark.parametrize(("argv", "asks"), [
    (["-h"], True), (["--help"], True), (["--he"], True), (["--h"], True),
    (["-vh"], True), (["-hv"], True), (["--pages", "5", "-v", "-h"], True),
    ([], False), (["-v"], False), (["--pages", "5"], False),
    (["--case", "ksm-mremap"], False),  # an "h" in a value is not help
    (["--pages", "x", "-h"], False),  # refused first, for its own reason
])
def test_help_is_found_in_every_spelling(argv: list[str], asks: bool) -> None:
    """What a front door refuses to pass on: argparse would print the
    program's help and exit 0, having run nothing."""
    from rmapbench.ksft import cli

    assert cli.asks_help(lambda: options.build_parser("rmap_ksm.py", {}), argv) is asks


def test_help_is_refused_from_rmap_args_but_not_on_the_program_s_own_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert options.help_refusal("rmap_ksm.py", ["-h"], own_line=True) is None
    assert "among a program's options" in str(options.help_refusal("rmap_ksm.py", ["-h"], False))
    monkeypatch.setenv("RMAP_ARGS", "--pages 5 -vh")
    assert str(options.help_refusal("rmap_ksm.py", [], True)).startswith("RMAP_ARGS: --help")
