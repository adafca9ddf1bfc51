"""Bad inputs at every entry point (issue #15): each ends with one line on
stderr that names what was wrong, and an exit status a script can tell
apart (ksft/status.py) - never a traceback, never a boot.

The entry points run in this process (their main(), as the commands call
it) with a stand-in qemu-system-x86_64 first on PATH that records that it
was started: validation must refuse before that. A few run as the real
commands (run_tests.sh, a test program, the runner) in a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import placeholders
import pytest

from rmapbench import __main__ as rmapbench_cli
from rmapbench.bench import program
from rmapbench.guest import suite, vm
from rmapbench.ksft import results, runner
from rmapbench.ksft.status import EXIT_INTERNAL, EXIT_RESULTS, EXIT_USAGE
from rmapbench.machine import knobs

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tools" / "testing" / "rmap"
FIX = Path(__file__).resolve().parent / "fixtures" / "analysis"
K1000, K2000, SWEEP, AB = FIX / "ksm1000", FIX / "ksm2000", FIX / "sweep", FIX / "ab"

# Placeholders in the table, made real per test by the `place` fixture.
FILE, NODIR, PARTIAL = "@FILE", "@NODIR", "@PARTIAL"

Entry = Callable[[list[str]], int]


def _program(argv: list[str]) -> int:
    return program.main("rmap_ksm", "ksm", argv)


def _program_file(argv: list[str]) -> int:
    return program.main("rmap_file", "file", argv)


ENTRIES: dict[str, tuple[str, Entry]] = {
    "run": ("run_tests.sh", suite.main),
    "prog": ("rmap_ksm.py", _program),
    "file": ("rmap_file.py", _program_file),
    "runner": ("runner", runner.main),
    "vm": ("python3 -m rmapbench.guest.vm", vm.main),
    "sweep": ("rmapbench sweep", lambda a: rmapbench_cli.main(["sweep", *a])),
    "ab": ("rmapbench ab", lambda a: rmapbench_cli.main(["ab", *a])),
    "compare": ("rmapbench compare", lambda a: rmapbench_cli.main(["compare", *a])),
    "report": ("rmapbench report", lambda a: rmapbench_cli.main(["report", *a])),
    "summary": ("rmapbench summary", lambda a: rmapbench_cli.main(["summary", *a])),
}

K = str(SUITE / "rmap_ksm.py")
U, R = EXIT_USAGE, EXIT_RESULTS
LONG = "/tmp/" + "a" * 5000  # ENAMETOOLONG wherever it is looked up
TOO_LONG = "File name too long"

# (entry, argv, exit status, a fragment of the one line)
CASES: list[tuple[str, list[str], int, str]] = [
    # --- guest options: run_tests.sh, vm, sweep, ab ---
    ("run", ["--memory", "garbage"], U, "bad memory size 'garbage'"),
    ("run", ["--memory", "2T"], U, "--memory 2T is more than"),
    ("run", ["--kernel", LONG], U, TOO_LONG),
    # A guest can write only its scratch /tmp and the results directory.
    ("run", ["--vm", "--", "--case", "file", "--workdir", "/nonexist"], U, "in a guest only /tmp"),
    ("run", ["--vm", "--", "--case", "file", "--workdir", "/tmp/x"], U, "in a guest only /tmp"),
    ("sweep", ["--vary", "pages=10,20", "-o", NODIR, "--", "file", "--workdir", "/"], U,
     "give --workdir /tmp or leave it out"),
    ("run", ["--results", LONG], U, TOO_LONG),
    ("vm", ["--share", LONG, "--", "true"], U, TOO_LONG),
    ("vm", ["--console-log", LONG, "--", "true"], U, TOO_LONG),
    ("sweep", ["--vary", "pages=1,2", "-o", LONG, "--", "ksm"], U, TOO_LONG),
    ("compare", [LONG, LONG], U, TOO_LONG),
    ("report", [LONG, "-o", LONG + "x"], U, TOO_LONG),
    ("run", ["--memory", "0"], U, "--memory must be at least 1M"),
    ("run", ["--memory", "64M"], U, "less than 128M per node"),
    ("run", ["--memory", "9999G"], U, "--memory 9999G is more than"),
    ("run", ["--memory=-2G"], U, "bad memory size"),
    ("run", ["--nodes", "999"], U, "--nodes must be at most 64"),
    ("run", ["--nodes", "0"], U, "--nodes must be at least 1"),
    ("run", ["--nodes", "x"], U, "--nodes"),
    ("run", ["--nodes", "1.5"], U, "--nodes"),
    ("run", ["--cpus", "0"], U, "--cpus must be at least 1"),
    ("run", ["--cpus", "100000"], U, "--cpus must be at most"),
    ("run", ["--timeout", "-5"], U, "--timeout must be at least 1"),
    ("run", ["--timeout", "0"], U, "--timeout must be at least 1"),
    ("run", ["--timeout", "10000000000"], U, "--timeout must be at most"),
    ("run", ["--timeout", "soon"], U, "--timeout"),
    ("run", ["--accel", "hvf"], U, "invalid choice"),
    ("run", ["--kernel", NODIR], U, "image file not found"),
    ("run", ["--kernel", FILE, "--kernel-series", "6.1"], U, "not allowed with"),
    ("run", ["--kernel-series", "latest"], U, "not a series like 6.12"),
    ("run", ["--modules", "/lib/modules"], U, "--modules needs --kernel"),
    ("run", ["--kernel", FILE, "--modules", NODIR], U, "directory not found"),
    ("run", ["--results", FILE], U, "is not a directory"),
    ("run", ["--results", "/proc/x"], U, "/proc is not writable"),
    ("run", ["--results", "/proc/self/status/x"], U, "is not a directory"),
    ("run", ["--results", ""], U, "expected a path"),
    ("run", ["--case", "nope"], U, "unknown case 'nope'"),
    ("run", ["--", "--pages", "0"], U, "--pages: must be at least 1"),
    ("run", ["--", "--pages", "100000000"], U, "--pages: must be at most"),
    ("run", ["--", "--max-p99-ms", "nan"], U, "must be a finite number"),
    ("run", ["--", "--max-p99-ms", "inf"], U, "must be a finite number"),
    ("run", ["--", "--max-p99-ms", "-1"], U, "must be at least 0.0"),
    ("run", ["--", "--merge-timeout", "inf"], U, "must be a finite number"),
    ("run", ["--", "--merge-timeout", "nan"], U, "must be a finite number"),
    ("run", ["--", "--samples", "0"], U, "--samples: must be at least 1"),
    ("run", ["--", "--samples", "1e3"], U, "not a number: '1e3'"),
    ("run", ["--", "--buffer-kb", "99999999999"], U, "--buffer-kb: must be at most"),
    ("run", ["--", "--results", "x"], U, "give --results before --"),
    ("run", ["--", "--frobnicate"], U, "unrecognized arguments: --frobnicate"),
    ("run", ["--bogus"], U, "unrecognized arguments"),
    ("vm", ["--memory", "garbage", "--", "true"], U, "bad memory size"),
    # --append: what would hang the boot or lose the command's output
    ("vm", ["--append", "", "--", "true"], U, "expected a kernel parameter, got ''"),
    ("vm", ["--append", 'quiet"', "--", "true"], U, "without spaces, quotes or control"),
    ("vm", ["--append", "a b", "--", "true"], U, "without spaces, quotes or control"),
    ("vm", ["--append", "a\nb", "--", "true"], U, "without spaces, quotes or control"),
    ("vm", ["--append=--", "--", "true"], U, "not a kernel parameter: '--'"),
    ("vm", ["--append", "console=tty0", "--", "true"], U, "console= is the suite's own"),
    ("vm", ["--append", "panic=0", "--", "true"], U, "panic= is the suite's own"),
    ("vm", ["--append", "RMAPBENCH_NONCE=0", "--", "true"], U, "RMAPBENCH_NONCE= is the suite's"),
    ("vm", ["--append", "x=" + "y" * 2100, "--", "true"], U, "the kernel keeps 2047"),
    ("vm", ["--nodes", "999", "--", "true"], U, "--nodes must be at most 64"),
    ("vm", ["--timeout", "nan", "--", "true"], U, "--timeout: must be a finite number"),
    ("vm", ["--timeout", "604800.5", "--", "true"], U, "at most 604800, got 604800.5"),
    ("vm", ["--nodes", "\uff15", "--", "true"], U, "not a number"),  # a fullwidth 5
    ("vm", ["--memory", "\u0662G", "--", "true"], U, "bad memory size"),  # an Arabic-Indic 2
    ("vm", ["--memory", "1T", "--", "true"], U, "is more than this machine has"),
    # a value with a minus is the value's problem, not "expected one argument"
    ("vm", ["--memory", "-1G", "--", "true"], U, "bad memory size '-1G'"),
    ("vm", ["--timeout", "-inf", "--", "true"], U, "must be a finite number, got -inf"),
    ("prog", ["--pages", "-1e400"], U, "--pages: not a number: '-1e400'"),
    ("prog", ["--pages", "1_000"], U, "not a number: '1_000'"),
    ("sweep", ["--vary", "pages=100,0100", "-o", NODIR, "--", "ksm"], U, "a value is repeated"),
    ("sweep", ["--vary", "precision=5,5.0", "-o", NODIR, "--", "ksm"], U, "a value is repeated"),
    ("vm", ["--timeout", "-5", "--", "true"], U, "--timeout must be at least 1"),
    ("vm", ["--share", FILE, "--", "true"], U, "is not a directory"),
    ("vm", ["--share", "/proc/x", "--", "true"], U, "not writable"),
    ("vm", ["--console-log", "/proc/x/log", "--", "true"], U, "not writable"),
    ("vm", ["--console-log", PARTIAL, "--", "true"], U, "is a directory"),
    ("vm", ["--nodes", "2"], U, "no command given"),
    ("sweep", ["--vary", "pages=1000,,2000", "-o", NODIR, "--", "ksm"], U, "an empty value"),
    # a selection that leaves out every program named: runs that all SKIP
    ("sweep", ["--vary", "split=1,2", "-o", NODIR, "--", "ksm", "--case", "anon"], U,
     "selects anon, none of the programs given"),
    ("sweep", ["--vary", "case=anon,file", "-o", NODIR, "--", "ksm"], U,
     "selects anon, none of the programs given"),
    ("sweep", ["--vary", "workload=jvm,vmhost", "-o", NODIR, "--", "anon"], U,
     "selects ksm, none of the programs given"),
    ("ab", ["--set", "case=anon", "-o", NODIR, "--", "ksm"], U,
     "selects anon, none of the programs given"),
    ("sweep", ["--vary", "split=1,2", "-o", NODIR, "--", "ksm", "-vh"], U,
     "rmap_ksm.py: --help among a program's options runs nothing"),
    ("run", ["--vm", "--", "--hel"], U, "rmap_ksm.py: --help among a program's options"),
    ("run", ["--vm", "--", "-vh"], U, "rmap_ksm.py: --help among a program's options"),
    ("sweep", ["--vary", "pages=1000,", "-o", NODIR, "--", "ksm"], U, "an empty value"),
    ("sweep", ["--vary", "pages=", "-o", NODIR, "--", "ksm"], U, "give NAME=V1,V2"),
    ("sweep", ["--vary", "pages=1,1", "-o", NODIR, "--", "ksm"], U, "a value is repeated"),
    ("sweep", ["--vary", "Pages=1,2", "-o", NODIR, "--", "ksm"], U, "bad parameter name"),
    ("sweep", ["--vary", "pages=0,1", "-o", NODIR, "--", "ksm"], U, "must be at least 1"),
    ("sweep", ["--vary", "max_p99_ms=nan,1", "-o", NODIR, "--", "ksm"], U, "finite"),
    ("sweep", ["--vary", "pages=1,2", "-o", "/proc/x", "--", "ksm"], U, "not writable"),
    ("sweep", ["--vary", "pages=1,2", "-o", FILE, "--", "ksm"], U, "exists; give a new"),
    ("sweep", ["--vary", "pages=1,2", "--", "ksm"], U, "give -o SET"),
    ("sweep", ["--vary", "pages=1000,2000", "-o", NODIR, "--nodes", "999"], U, "most 64"),
    ("sweep", ["--vary", "pages=1000,2000", "-o", NODIR, "--memory", "0"], U, "--memory must be"),
    ("sweep", ["--vary", "pages=1000,2000", "-o", NODIR, "--timeout", "inf"], U, "--timeout"),
    ("sweep", ["--vary", "pages=1000,2000", "-o", NODIR, "--kernel", NODIR + "/k"], U, "neither"),
    ("sweep", ["--from", NODIR], U, "no such directory"),
    ("sweep", ["--from", FILE], U, "is not a directory"),
    ("sweep", ["--from", str(AB)], U, "is not a sweep result set"),
    ("sweep", ["--from", PARTIAL + "/index"], R, "damaged index"),
    ("ab", ["--set", "pages=5", "--rounds", "0", "-o", NODIR], U, "--rounds"),
    ("ab", ["--set", "pages=5", "--rounds", "many", "-o", NODIR], U, "--rounds"),
    ("ab", ["--set", "pages=5", "--rounds", "100000", "-o", NODIR], U, "must be at most"),
    ("ab", ["--set", "pages=5", "-o", "/proc/x"], U, "not writable"),
    ("ab", ["--set", "pages=5", "-o", FILE], U, "exists; give a new"),
    ("ab", ["--set", "pages=", "-o", NODIR], U, "give NAME=VALUE"),
    ("ab", ["--set", "pages=abc", "-o", NODIR], U, "not a number: 'abc'"),
    ("ab", ["--set", "pages=5", "-o", NODIR, "--max-regression", "nan"], U, "finite"),
    ("ab", ["--set", "pages=5", "-o", NODIR, "--alpha", "inf"], U, "finite"),
    ("ab", ["--kernel", "6.12", "-o", NODIR], U, "give --kernel twice"),
    ("ab", ["--set", "pages=5", "-o", NODIR, "--", "ksm", "--results", "x"], U, "--results"),
    # --- the test programs ---
    ("prog", ["--pages", "abc"], U, "not a number: 'abc'"),
    ("prog", ["--pages", "-3"], U, "must be at least 1"),
    ("prog", ["--pages", "99999999"], U, "must be at most 4000000"),
    ("prog", ["--split", "0"], U, "--split: must be at least 1"),
    ("prog", ["--split", "5", "--pages", "4"], U, "--split 5 is larger than --pages 4"),
    ("prog", ["--warmup", "-1"], U, "must be at least 0"),
    ("prog", ["--max-p99-ms", "nan"], U, "--max-p99-ms: must be a finite number, got nan"),
    ("prog", ["--max-p99-ms=-inf"], U, "must be a finite number"),
    ("prog", ["--max-p99-ms", "1e400"], U, "must be at most"),
    ("prog", ["--merge-timeout", "inf"], U, "--merge-timeout: must be a finite number"),
    ("prog", ["--merge-timeout", "0.5"], U, "must be at least 1.0"),
    ("prog", ["--max-page-sharing", "1"], U, "must be at least 2"),
    ("prog", ["--max-page-sharing", "99999999999"], U, "must be at most"),
    ("prog", ["--merge-across-nodes", "2"], U, "invalid choice"),
    ("prog", ["--buffer-kb", "8"], U, "must be at least 64"),
    ("prog", ["--procs", "1000"], U, "--procs 1000 is more than 512"),
    ("prog", ["--fork-width", "0"], U, "--fork-width: must be at least 1"),
    ("prog", ["--backend", "ebpf"], U, "invalid choice"),
    ("prog", ["--trigger", "reboot"], U, "invalid choice"),
    ("prog", ["--trigger", "pageout"], U, "mapped more than once"),
    ("prog", ["--case", "nope"], U, "unknown case 'nope'"),
    ("prog", ["--results", FILE], U, "--results"),
    ("prog", ["--results", "/proc/x"], U, "not writable"),
    ("prog", ["--results", "/proc/self/status/x"], U, "is not a directory"),
    ("prog", ["--pages"], U, "expected one argument"),
    ("prog", ["--results", ""], U, "expected a path, got ''"),  # not the current directory
    ("prog", ["--results", LONG], U, TOO_LONG),
    ("prog", ["--workload", "jvm", "--precision", "5", "--samples", "3"], U, "--samples does not"),
    ("file", ["--workdir", ""], U, "expected a path, got ''"),
    ("file", ["--workdir", LONG], U, TOO_LONG),
    ("prog", ["extra"], U, "unrecognized arguments: extra"),
    ("file", ["--workdir", "/nonexistent"], U, "--workdir: /nonexistent: no such"),
    ("file", ["--workdir", FILE], U, "is not a directory"),
    ("file", ["--workdir", "/proc"], U, "not writable"),
    ("file", ["--trigger", "split"], U, "only applies to the thp case"),
    # --- the runner ---
    ("runner", ["--timeout", "0", K], U, "--timeout: must be at least 1"),
    ("runner", ["--timeout", "x", K], U, "not a number: 'x'"),
    ("runner", ["--timeout", "1e9", K], U, "not a number"),
    ("runner", [FILE], U, "is not an executable test program"),
    ("runner", [NODIR], U, "is not an executable test program"),
    ("runner", [K, "--", "--case", "nope"], U, "unknown case"),
    ("runner", [K, "--", "--case", "anon"], U, "selects anon, none of the programs given"),
    ("runner", [K, "--", "--pages", "x"], U, "rmap_ksm.py: argument --pages: not a number"),
    ("runner", [K, "--", "--bogus"], U, "unrecognized arguments: --bogus"),
    ("runner", [LONG], U, TOO_LONG),
    ("runner", [], U, "the following arguments are required"),
    # --- compare, report, summary: damaged, partial and inconsistent results ---
    ("compare", [str(K1000)], U, "give BASE and NEW"),
    # the same results on both sides: "no change", and a --max-regression gate passes
    ("compare", [str(K1000), str(K1000) + "/."], U, "BASE and NEW are the same results"),
    ("compare", [f"{AB}:A", f"{AB}:A"], U, "BASE and NEW are the same results"),
    ("compare", [str(AB), str(AB), "--max-regression", "5"], U, "the same results"),
    ("report", [str(K1000), str(K2000), str(K1000) + "/", "-o", NODIR], U, "is given twice"),
    ("compare", [NODIR, str(K1000)], U, "not a directory"),
    ("compare", [FILE, str(K1000)], U, "not a directory"),
    ("compare", [str(FIX), str(K1000)], U, "no rmapbench/result/1 result files"),
    ("compare", [PARTIAL + "/strings", str(K1000)], R, "walks.samples[0] is not a latency"),
    ("compare", [PARTIAL + "/nan", str(K1000)], R, "walks.samples[0] is not a latency"),
    ("compare", [PARTIAL + "/truncated", str(K1000)], R, "damaged result file (truncated?)"),
    ("compare", [PARTIAL + "/notutf8", str(K1000)], R, "not UTF-8"),
    ("compare", [PARTIAL + "/running", str(K1000)], R, "did not finish"),
    ("compare", [PARTIAL + "/interrupted", str(K1000)], R, "interrupted by SIGINT"),
    ("compare", [PARTIAL + "/badstatus", str(K1000)], R, "status 'great' is none of"),
    ("compare", [PARTIAL + "/anon", str(K1000)], R, "no case, metric and point in common"),
    ("compare", [PARTIAL + "/anon", str(K1000), "--max-regression", "5"], R, "in common"),
    ("compare", [PARTIAL + "/index", str(K1000)], R, "damaged index"),
    ("compare", [PARTIAL + "/missing", str(K1000)], R, "missing, although rmap_ksm exited 0"),
    ("compare", [str(K1000), str(K2000), "--max-regression", "nan"], U, "finite"),
    ("compare", [str(K1000), str(K2000), "--max-regression", "-1"], U, ">= 0"),
    ("compare", [str(K1000), str(K2000), "--max-regression", "-inf"], U, "finite"),
    ("compare", [str(K1000), str(K2000), "--alpha", "nan"], U, "finite"),
    ("compare", [str(K1000), str(K2000), "--alpha", "2"], U, "between 0 and 1"),
    ("compare", [str(K1000), str(K2000), "--min-effect", "inf"], U, "finite"),
    ("compare", [str(K1000), str(K2000), "--resamples", "10"], U, "--resamples must be at least"),
    ("compare", [str(K1000), str(K2000), "--resamples", "1e99"], U, "not a number"),
    ("compare", [str(K1000), str(K2000), "--seed", "-1"], U, "--seed: must be at least 0"),
    ("compare", [str(K1000), str(K2000), "--format", "xml"], U, "invalid choice"),
    ("compare", [f"{AB}:C"], U, "no side 'C'"),
    ("report", [str(K1000), "-o", "/proc/x"], U, "/proc/x: /proc is not writable (no file can be"),
    ("report", [str(K1000), "-o", FILE], U, "is not a directory"),
    ("report", [str(K1000)], U, "required: -o"),
    ("report", [NODIR, "-o", NODIR], U, "not a directory"),
    ("report", [PARTIAL + "/truncated", "-o", NODIR], R, "damaged result file"),
    ("report", [PARTIAL + "/running", "-o", NODIR], R, "did not finish"),
    ("summary", [], U, "give one result directory"),
    ("summary", [NODIR], U, "no such directory"),
    ("summary", [FILE], U, "is not a directory"),
    ("summary", [PARTIAL + "/truncated"], R, "damaged result file (truncated?)"),
    ("summary", [PARTIAL + "/running"], R, "did not finish"),
    ("summary", [PARTIAL + "/interrupted"], R, "interrupted by SIGINT"),
    ("summary", [PARTIAL + "/nop90"], R, "scenarios[0].walks.p90_ns is missing"),
]


def _doc(program: str = "rmap_ksm", name: str = "ksm", samples: object = None) -> dict[str, object]:
    walks = {"count": 2, "min_ns": 1.0, "p50_ns": 1.0, "p90_ns": 2.0, "p99_ns": 2.0,
             "max_ns": 2.0, "mean_ns": 1.5, "samples": samples or [1.0, 2.0]}
    return {"schema": results.SCHEMA, "program": program, "status": "pass",
            "scenarios": [{"name": name, "walks": walks, "syscall": walks}]}


def _write(directory: Path, doc: object, name: str = "rmap_ksm.json") -> None:
    directory.mkdir(parents=True)
    (directory / name).write_text(json.dumps(doc))


def make_partial(base: Path) -> None:
    """Result directories with one thing wrong each."""
    _write(base / "strings", _doc(samples=["1", "2"]))
    (base / "nan").mkdir()
    (base / "nan" / "rmap_ksm.json").write_text(
        json.dumps(_doc()).replace("[1.0, 2.0]", "[NaN, 2.0]"))
    (base / "truncated").mkdir()
    (base / "truncated" / "rmap_ksm.json").write_text(json.dumps(_doc())[:50])
    (base / "notutf8").mkdir()
    (base / "notutf8" / "rmap_ksm.json").write_bytes(b'{"schema": "\xff\xfe"}')
    _write(base / "running", results.marker("rmap_ksm"))
    _write(base / "interrupted", {**_doc(), "status": "fail", "interrupted": "SIGINT"})
    _write(base / "badstatus", {**_doc(), "status": "great"})
    nop90 = _doc()
    del nop90["scenarios"][0]["walks"]["p90_ns"]  # type: ignore[index]
    _write(base / "nop90", nop90)
    _write(base / "anon", _doc("rmap_anon", "anon"), "rmap_anon.json")
    (base / "index").mkdir()
    (base / "index" / "index.json").write_text('{"schema": "rmapbench/resultset/1", "po')
    _write(base / "missing", {"schema": "rmapbench/resultset/1", "kind": "sweep",
                              "points": [{"dir": "p0", "status": {"rmap_ksm": 0}}]},
           "index.json")


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], list[str]]:
    """The placeholders made real; a stand-in QEMU on PATH; a private
    journal directory; no suite-wide options from the environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "qemu-started"
    qemu = bin_dir / "qemu-system-x86_64"
    qemu.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 1\n")
    qemu.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(knobs, "JOURNAL_DIR", tmp_path / "journal")
    monkeypatch.delenv("RMAP_ARGS", raising=False)
    (tmp_path / "file").write_text("not a directory\n")
    make_partial(tmp_path / "partial")
    real = {FILE: str(tmp_path / "file"), NODIR: str(tmp_path / "new" / "dir"),
            PARTIAL: str(tmp_path / "partial")}

    def fill(argv: list[str]) -> list[str]:
        return placeholders.subst(argv, real)

    yield fill  # type: ignore[misc]
    assert not marker.exists(), "validation let the input through to QEMU"


def _one_line(err: str, prog: str, fragment: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    assert fragment in lines[0], err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("entry", "argv", "status", "fragment"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input(place: Callable[[list[str]], list[str]], capsys: pytest.CaptureFixture[str],
                   entry: str, argv: list[str], status: int, fragment: str) -> None:
    prog, main = ENTRIES[entry]
    try:
        rc = main(place(argv))
    except SystemExit as e:  # argparse's own exits would be a bug too
        pytest.fail(f"SystemExit {e.code}")
    err = capsys.readouterr().err
    assert rc == status, err
    _one_line(err, prog, fragment)


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 100
    assert {c[0] for c in CASES} == set(ENTRIES)


# --- as real commands: the shell front door, a program, the runner ---------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RMAP_ARGS"}
    env.update(PYTHONPATH=str(SUITE), RMAPBENCH_JOURNAL_DIR=str(tmp_path / "journal"), **extra)
    return env


@pytest.mark.parametrize(("argv", "status", "fragment"), [
    (["./run_tests.sh", "--memory", "garbage"], U,
     "run_tests.sh: error: --memory: bad memory size"),
    (["./run_tests.sh", "--results", "/proc/x"], U, "run_tests.sh: error: argument --results"),
    ([sys.executable, K, "--max-p99-ms", "nan"], U, "rmap_ksm.py: error: argument --max-p99-ms"),
    ([sys.executable, "-m", "rmapbench", "summary", "/nonexistent"], U, "no such directory"),
])
def test_commands(tmp_path: Path, argv: list[str], status: int, fragment: str) -> None:
    proc = subprocess.run(argv, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == status, proc.stderr
    assert proc.stderr.count("\n") == 1 and fragment in proc.stderr, proc.stderr


def test_unbalanced_quote_in_kselftest_args(tmp_path: Path) -> None:
    env = _env(tmp_path, KSELFTEST_RMAP_KSM_PY_ARGS="--workdir '/a b")
    proc = subprocess.run([sys.executable, "-m", "rmapbench.ksft.runner", K], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == U, proc.stdout + proc.stderr
    assert proc.stdout == ""  # refused before the plan, so before any program ran
    _one_line(proc.stderr, "runner", "KSELFTEST_RMAP_KSM_PY_ARGS: No closing quotation")


@pytest.mark.parametrize(("env", "fragment"), [
    ({"RMAP_ARGS": "--bogus"}, "rmap_ksm.py: RMAP_ARGS: unrecognized arguments: --bogus"),
    ({"RMAP_ARGS": "--pages '5"}, "RMAP_ARGS: No closing quotation"),
    ({"KSELFTEST_RMAP_KSM_PY_ARGS": "--pages x"},
     "KSELFTEST_RMAP_KSM_PY_ARGS: rmap_ksm.py: argument --pages: not a number: 'x'"),
    ({"kselftest_override_timeout": "x"}, "kselftest_override_timeout: not a number: 'x'"),
])
def test_runner_refuses_options_before_the_plan(tmp_path: Path, env: dict[str, str],
                                                fragment: str) -> None:
    """Every program would refuse them: one line and exit 2 before any
    program runs, not ten failed tests (exit 1) saying the same."""
    proc = subprocess.run([sys.executable, "-m", "rmapbench.ksft.runner", K,
                           str(SUITE / "rmap_anon.py")], env=_env(tmp_path, **env),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == U, proc.stdout + proc.stderr
    assert proc.stdout == ""
    _one_line(proc.stderr, "runner", fragment)


HELP_SEE = "runs nothing; see ./rmap_ksm.py --help"


@pytest.mark.parametrize(("entry", "argv", "env", "fragment"), [
    ("run", ["--vm"], {"RMAP_ARGS": "-h"}, f"rmap_ksm.py: RMAP_ARGS: --help there {HELP_SEE}"),
    ("run", ["--vm"], {"KSELFTEST_RMAP_ANON_PY_ARGS": "--help"},
     "KSELFTEST_RMAP_ANON_PY_ARGS: rmap_anon.py: --help among a program's options runs"),
    ("prog", [], {"RMAP_ARGS": "-vh"}, f"RMAP_ARGS: --help there {HELP_SEE}"),
    ("ab", ["--set", "split=1", "-o", NODIR, "--", "ksm"], {"RMAP_ARGS": "-vh"},
     f"rmap_ksm.py: RMAP_ARGS: --help there {HELP_SEE}"),
    ("run", ["--vm"], {"KSELFTEST_RMAP_KSM_PY_ARGS": "--case anon"},
     "KSELFTEST_RMAP_KSM_PY_ARGS: --case or --workload selects anon, which leaves rmap_ksm.py out"),
    ("sweep", ["--vary", "split=1,2", "-o", NODIR, "--", "ksm"], {"RMAP_ARGS": "--case anon"},
     "selects anon, none of the programs given"),
    ("sweep", ["--vary", "split=1,2", "-o", NODIR, "--", "ksm"], {"RMAP_ARGS": "--pages 0"},
     "rmap_ksm.py: RMAP_ARGS: argument --pages: must be at least 1"),
    ("sweep", ["--vary", "split=1,2", "-o", NODIR, "--", "ksm"], {"RMAP_ARGS": "-o /tmp/x"},
     "rmap_ksm.py: RMAP_ARGS: unrecognized arguments: -o /tmp/x"),
    ("sweep", ["--vary", "split=1,2", "-o", NODIR, "--", "ksm"],
     {"KSELFTEST_RMAP_KSM_PY_ARGS": "--pages 5"},
     "KSELFTEST_RMAP_KSM_PY_ARGS is set: sweep and ab do not pass it to rmap_ksm.py"),
    ("ab", ["--set", "split=1", "-o", NODIR, "--", "file"],
     {"KSELFTEST_RMAP_FILE_PY_ARGS": "--workdir /var/tmp"},
     "KSELFTEST_RMAP_FILE_PY_ARGS is set: sweep and ab do not pass it"),
])
def test_options_from_the_environment(
    place: Callable[[list[str]], list[str]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], entry: str, argv: list[str], env: dict[str, str],
    fragment: str,
) -> None:
    """A program's options from $RMAP_ARGS or its kselftest variable: a
    refusal names the variable, help asked for there runs nothing (and
    would pass), and sweep and ab, which cannot pass a program's own
    variable into their runs, refuse it rather than drop it."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    prog, main = ENTRIES[entry]
    assert main(place(argv)) == U
    _one_line(capsys.readouterr().err, prog, fragment)


def test_guest_memory_is_checked_against_this_machine_only_to_boot(
    place: Callable[[list[str]], list[str]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Run here (in a guest of 2G, say) the default --memory 2G boots
    nothing and is no reason to refuse; to boot, more than MemTotal is."""
    from rmapbench.guest import config

    monkeypatch.setattr(config, "host_memory_mib", lambda: 1900)
    assert suite.check(["--case", "anon"]).guest.memory == "2G"
    assert suite.main(["--vm", "--case", "anon"]) == U
    _one_line(capsys.readouterr().err, "run_tests.sh", "--memory 2G is more than this machine")


def test_front_door_refuses_a_results_directory_of_an_earlier_run(
    place: Callable[[list[str]], list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Its table, and summary or compare later, would take another run's
    result files (another kernel's, other cases) for this run's."""
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "console.log").write_text("a failed boot's log is no result\n")
    assert suite.check(["--vm", "--results", str(earlier)]).ns.results == earlier
    (earlier / "rmap_ksm.json").write_text("{}\n")
    assert suite.main(["--vm", "--case", "anon", "--results", str(earlier)]) == U
    _one_line(capsys.readouterr().err, "run_tests.sh",
              "holds an earlier run's results (rmap_ksm.json); give a new or empty directory")
    assert not (tmp_path / "qemu-started").exists()


@pytest.mark.parametrize(("workdir", "fragment"), [
    ("nosuch", "no such directory"),
    ("file", "not a directory"),
    ("relative", "give an absolute path"),
])
def test_front_door_checks_a_workdir_in_the_results_directory(
    place: Callable[[list[str]], list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, workdir: str, fragment: str,
) -> None:
    """The guest sees the results directory as it is on this machine, so a
    --workdir there that is missing or a file is refused before the boot;
    a relative one would name another directory from the guest's programs."""
    share = tmp_path / "res"
    share.mkdir()
    (share / "file").write_text("")
    (share / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    given = "res/sub" if workdir == "relative" else str(share / workdir)
    assert suite.main(["--vm", "--case", "file", "--results", str(share), "--",
                       "--workdir", given]) == U  # fmt: skip
    _one_line(capsys.readouterr().err, "run_tests.sh", fragment)
    assert not (tmp_path / "qemu-started").exists()
    assert vm.workdir_problem(share / "sub", share) is None
    assert vm.workdir_problem(Path("//tmp")) is None


@pytest.mark.parametrize(("env", "fragment"), [
    ({"RMAP_ARGS": "--results /tmp/elsewhere"}, "RMAP_ARGS: give --results to run_tests.sh"),
    ({"KSELFTEST_RMAP_KSM_PY_ARGS": "--res=/tmp/x"},
     "KSELFTEST_RMAP_KSM_PY_ARGS: give --results to run_tests.sh"),
    ({"kselftest_override_timeout": "0"}, "kselftest_override_timeout: must be at least 1"),
])
def test_front_door_refuses_what_it_would_override(
    place: Callable[[list[str]], list[str]], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], env: dict[str, str], fragment: str,
) -> None:
    """--results from the environment would lose, without a word, to the
    directory run_tests.sh gives every program; a bad timeout variable
    would be ignored (the guest's runner is given --timeout)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert suite.main(["--vm"]) == U
    _one_line(capsys.readouterr().err, "run_tests.sh", fragment)


def test_front_door_takes_the_kselftest_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RMAP_ARGS", raising=False)
    monkeypatch.setenv("kselftest_override_timeout", "120")
    assert suite.check(["--vm"]).guest.timeout == 120
    assert suite.check(["--vm", "--timeout", "60"]).guest.timeout == 60  # the option wins
    monkeypatch.delenv("kselftest_override_timeout")
    assert suite.check(["--vm"]).guest.timeout == suite.DEFAULT_TIMEOUT


def test_sigint_during_start_up_is_one_line(tmp_path: Path) -> None:
    """A SIGINT while the program still imports its library: one line,
    128+2. -X importtime says on stderr when each import is done, so the
    signal comes right after the rmapbench package (which installs the
    handler) and before the rest (Python's own start-up, before the
    program's first line, is out of any program's reach)."""
    proc = subprocess.Popen([sys.executable, "-X", "importtime", K, "--case", "anon"],
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.rsplit("|", 1)[-1].strip() == "rmapbench":
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    err = "".join(ln for ln in rest.splitlines(keepends=True)
                  if not ln.startswith("import time:"))
    if proc.returncode == 0:  # finished before the signal: a fast machine
        pytest.skip("the program was done before the signal")
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert "interrupted by SIGINT" in err


def test_internal_error_is_one_line_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*a: object, **k: object) -> object:
        raise KeyError("oops")

    monkeypatch.setattr(rmapbench_cli.summary, "table", boom)
    assert rmapbench_cli.main(["summary", str(K1000)]) == EXIT_INTERNAL
    line = capsys.readouterr().err.strip()
    assert line == ("rmapbench summary: internal error: KeyError: 'oops' "
                    "(rerun with -v for the traceback)")
    # -v, before or after the directory, shows the traceback as its help says.
    for argv in (["summary", str(K1000), "-v"], ["summary", "-v", str(K1000)]):
        assert rmapbench_cli.main(argv) == EXIT_INTERNAL
        err = capsys.readouterr().err
        assert "Traceback" in err and "KeyError: 'oops'" in err
    assert rmapbench_cli.main(["summary", str(K1000), str(K2000)]) == EXIT_USAGE
    assert capsys.readouterr().err == "rmapbench summary: error: give one result directory\n"


def test_stale_journal_is_replayed_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    knob = tmp_path / "knob"
    knob.write_text("changed")
    jdir = tmp_path / "journal"
    jdir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (jdir / f"journal-{dead.pid}.json").write_text(json.dumps(
        {"pid": dead.pid, "steps": [{"kind": "write", "path": str(knob), "value": "orig"},
                                    {"kind": "rmdir", "path": str(tmp_path / "never")}]}))
    monkeypatch.setattr(knobs, "JOURNAL_DIR", jdir)
    monkeypatch.delenv("RMAP_ARGS", raising=False)
    assert program.main("rmap_anon", "anon", ["--case", "ksm"]) == 4  # not selected: SKIP
    err = capsys.readouterr().err
    assert f"# rmap_anon.py: replayed the journal of dead run {dead.pid}: 2 changes undone" in err
    assert knob.read_text() == "orig" and not list(jdir.iterdir())


def test_summary_flags_a_killed_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results.write_marker(tmp_path, results.marker("rmap_ksm"))
    assert rmapbench_cli.main(["summary", str(tmp_path)]) == EXIT_RESULTS
    out, err = capsys.readouterr()
    assert "RUNNING" in out
    _one_line(err, "rmapbench summary", "rmap_ksm: its run did not finish")
