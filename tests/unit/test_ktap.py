"""Tests of rmapbench.ksft.ktap: the output is read back with tap.py's parser."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from tap.parser import Parser

from rmapbench.ksft.ktap import KSFT_FAIL, KSFT_PASS, KSFT_SKIP, KTAP

TOTALS = re.compile(
    r"^# Totals: pass:(\d+) fail:(\d+) xfail:(\d+) xpass:0 skip:(\d+) error:(\d+)$"
)


def parsed(text: str) -> list[Any]:
    return list(Parser().parse_text(text))


def results(text: str) -> list[Any]:
    return [ln for ln in parsed(text) if ln.category == "test"]


def new(cases: list[str]) -> tuple[KTAP, io.StringIO]:
    out = io.StringIO()
    return KTAP("rmap_ksm", cases, out), out


def test_header_version_and_plan() -> None:
    k, out = new(["ksm", "x", "y"])
    lines = parsed(out.getvalue())
    assert [ln.category for ln in lines] == ["version", "plan"]
    assert lines[0].version == 13
    assert lines[1].expected_tests == 3
    assert out.getvalue() == "TAP version 13\n1..3\n"
    assert k.name("ksm") == "rmap_ksm.ksm"


def test_ok_not_ok_skip() -> None:
    k, out = new(["ksm", "anon", "file"])
    k.ok("ksm")
    k.fail("anon")
    k.skip("file", "no NUMA")
    rs = results(out.getvalue())
    assert [(r.number, r.ok, r.skip, r.description) for r in rs] == [
        (1, True, False, "rmap_ksm.ksm"),
        (2, False, False, "rmap_ksm.anon"),
        (3, True, True, "rmap_ksm.file"),
    ]
    assert rs[2].directive.reason == "no NUMA"
    text = out.getvalue().splitlines()
    assert "ok 1 rmap_ksm.ksm" in text
    assert "not ok 2 rmap_ksm.anon" in text
    assert "ok 3 rmap_ksm.file # SKIP no NUMA" in text


def test_skip_reason_loses_hashes() -> None:
    k, out = new(["ksm"])
    k.skip("ksm", "no #CONFIG_KSM")
    (r,) = results(out.getvalue())
    assert r.skip and r.ok
    assert r.directive.reason == "no CONFIG_KSM"
    assert out.getvalue().splitlines()[-1] == "ok 1 rmap_ksm.ksm # SKIP no CONFIG_KSM"


def test_diagnostics_come_before_the_result() -> None:
    k, out = new(["ksm"])
    k.diag("kernel 6.12.0\nbackend fprobe")
    k.diag("")
    k.metric("walks.p99_ns", 123130634)
    k.fail("ksm", "p99 123 ms > 100 ms\nsee the JSON")
    lines = parsed(out.getvalue())
    cats = [ln.category for ln in lines]
    assert cats == ["version", "plan"] + ["diagnostic"] * 6 + ["test"]
    assert [ln.text for ln in lines[2:8]] == [
        "# kernel 6.12.0", "# backend fprobe", "#", "# rmap_ksm.walks.p99_ns: 123130634",
        "# p99 123 ms > 100 ms", "# see the JSON",
    ]
    assert not lines[-1].ok


@pytest.mark.parametrize(("calls", "counts", "status"), [
    ([("ok", "a"), ("ok", "b")], (2, 0, 0, 0, 0), KSFT_PASS),
    ([("ok", "a"), ("fail", "b")], (1, 1, 0, 0, 0), KSFT_FAIL),
    ([("skip", "a"), ("skip", "b")], (0, 0, 0, 2, 0), KSFT_SKIP),
    ([("ok", "a"), ("skip", "b")], (1, 0, 0, 1, 0), KSFT_PASS),
    ([("fail", "a"), ("skip", "b")], (0, 1, 0, 1, 0), KSFT_FAIL),
])
def test_totals_and_exit_status(
    calls: list[tuple[str, str]], counts: tuple[int, ...], status: int
) -> None:
    k, out = new(["a", "b"])
    for what, case in calls:
        if what == "ok":
            k.ok(case)
        elif what == "fail":
            k.fail(case, "broken")
        else:
            k.skip(case, "not root")
    assert k.finish() == status
    last = out.getvalue().splitlines()[-1]
    m = TOTALS.match(last)
    assert m, last
    assert tuple(int(g) for g in m.groups()) == counts
    assert parsed(out.getvalue())[-1].category == "diagnostic"
    assert len(results(out.getvalue())) == len(calls)


def test_exit_status_values() -> None:
    assert (KSFT_PASS, KSFT_FAIL, KSFT_SKIP) == (0, 1, 4)


def test_error_counts_as_failure() -> None:
    k, out = new(["a"])
    k.ok("a")
    k.counts["error"] += 1
    assert k.finish() == KSFT_FAIL
    assert out.getvalue().splitlines()[-1] == (
        "# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:1")


def test_unknown_case_is_rejected() -> None:
    k, out = new(["ksm"])
    before = out.getvalue()
    for report in (k.ok, lambda c: k.fail(c, "x"), lambda c: k.skip(c, "y")):
        with pytest.raises(ValueError, match="not in the plan"):
            report("anon")
    assert k.counts == {"pass": 0, "fail": 0, "xfail": 0, "xpass": 0, "skip": 0, "error": 0}
    # Only fail()'s diagnostic may have been printed; no result line.
    assert results(out.getvalue()) == []
    assert out.getvalue().startswith(before)


def test_whole_program_output_is_valid_tap() -> None:
    k, out = new(["ksm"])
    k.diag("kernel 6.12.0")
    k.ok("ksm")
    assert k.finish() == KSFT_PASS
    lines = parsed(out.getvalue())
    assert "unknown" not in [ln.category for ln in lines]
    assert out.getvalue() == (
        "TAP version 13\n1..1\n# kernel 6.12.0\nok 1 rmap_ksm.ksm\n"
        "# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:0\n"
    )


def test_default_stream_is_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    k = KTAP("rmap_anon", ["anon"])
    k.skip("anon", "not root")
    assert k.finish() == KSFT_SKIP
    assert capsys.readouterr().out.splitlines() == [
        "TAP version 13", "1..1", "ok 1 rmap_anon.anon # SKIP not root",
        "# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:1 error:0",
    ]
