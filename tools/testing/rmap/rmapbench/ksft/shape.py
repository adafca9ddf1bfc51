"""What the readers of result files may take for granted, checked once
where a file is loaded: the table (ksft/summary.py), the statistics and the
plots (rmapbench/analysis) then never meet a value of the wrong type, a
number that is not one or a list cut short, each of which used to end a
command with an internal error or a nonsense figure.

A check raises Bad naming the field by its path in the document
(`scenarios[0].walks.samples[3] is not a latency ...`); the loader puts the
file in front (results.read_document, resultset.read_index). Only what a
host-side reader reads is checked (docs/json.md has the rest), with the
writers' own leeway: a field they may leave out may be absent, one they
write as null may be null.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

# Latencies are nanoseconds on a 64-bit clock: a value outside [0, 2^64)
# is not one (and 1e308 overflows the sums of the statistics).
MAX_NS = 2.0**64

# What a summary (ksft/stats.Summary) has when it counted something.
PERCENTILES = ("p50_ns", "p90_ns", "p99_ns", "max_ns", "mean_ns")


class Bad(Exception):
    """One field that is not what the writer writes: the message says
    which and how."""


def show(value: Any) -> str:
    """A value for a one-line message, cut short (an integer of 400
    digits is still one line)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def at(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def is_number(value: Any, lo: float | None = None, hi: float | None = None) -> bool:
    """A JSON number (not a bool) that is finite, a float, and in [lo, hi)
    (compared exactly: 2^64 - 1 is below 2^64, though not as a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        x = float(value)
    except OverflowError:  # an integer beyond any float
        return False
    return math.isfinite(x) and (lo is None or value >= lo) and (hi is None or value < hi)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def obj(d: dict[str, Any], key: str, path: str, *, null: bool = True) -> dict[str, Any]:
    """d[key] as an object: {} when absent, or null where the writer writes null."""
    if key not in d or (d[key] is None and null):
        return {}
    value = d[key]
    if not isinstance(value, dict):
        raise Bad(f"{at(path, key)} is not an object: {show(value)}")
    return value


def objects(
    d: dict[str, Any], key: str, path: str, *, null: bool = True
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects of the list d[key] with their paths; none when absent
    (or null, where the writer writes null)."""
    if key not in d or (d[key] is None and null):
        return
    value = d[key]
    if not isinstance(value, list):
        raise Bad(f"{at(path, key)} is not a list: {show(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise Bad(f"{at(at(path, key), i)} is not an object: {show(item)}")
        yield at(at(path, key), i), item


def number(
    d: dict[str, Any],
    key: str,
    path: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    null: bool = False,
    required: bool = False,
) -> None:
    if not _present(d, key, path, required):
        return
    value = d[key]
    if value is None and null and not required:
        return
    if not is_number(value, lo, hi):
        span = f" from {_bound(lo)}" if lo is not None else ""
        span += f" below {_bound(hi)}" if hi is not None else ""
        raise Bad(f"{at(path, key)} is not a finite number{span}: {show(value)}")


def _present(d: dict[str, Any], key: str, path: str, required: bool) -> bool:
    """Whether `key` is there to check; Bad when it is missing but required."""
    if key in d:
        return True
    if required:
        raise Bad(f"{at(path, key)} is missing")
    return False


def _bound(x: float) -> str:
    return {MAX_NS: "2^64", -MAX_NS: "-2^64"}.get(x, f"{x:g}")


def text(
    d: dict[str, Any],
    key: str,
    path: str,
    *,
    null: bool = False,
    empty: bool = True,
    required: bool = False,
) -> None:
    if not _present(d, key, path, required):
        return
    value = d[key]
    if value is None and null:
        return
    if not isinstance(value, str) or (not empty and not value):
        raise Bad(f"{at(path, key)} is not a{'' if empty else ' non-empty'} string: {show(value)}")
    if has_control(value):  # printed in tables and plots: one line, no escapes
        raise Bad(f"{at(path, key)} holds a control character: {show(value)}")


def has_control(value: str) -> bool:
    """Whether a name holds a C0 or C1 control character (newline, ESC...),
    which no writer puts there and which would break a table or a terminal."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value)


def texts(d: dict[str, Any], key: str, path: str) -> None:
    """d[key], when present, a list of strings."""
    value = d.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Bad(f"{at(path, key)} is not a list of strings: {show(value)}")


# -- a result document (rmapbench/result/1) ----------------------------------


def document(doc: Any, statuses: Sequence[str]) -> None:
    """Bad when `doc` is not a result document the readers can use."""
    if not isinstance(doc, dict):
        raise Bad("not a JSON object")
    if not isinstance(doc.get("program"), str) or not doc["program"]:
        raise Bad("no program name")
    if has_control(doc["program"]):
        raise Bad(f"program holds a control character: {show(doc['program'])}")
    if doc.get("status") not in statuses:
        raise Bad(f"status {show(doc.get('status'))} is none of {', '.join(statuses)}")
    text(obj(doc, "kernel", "", null=False), "release", "kernel")
    text(obj(doc, "backend", ""), "name", "backend")
    phases(obj(doc, "phases", ""))
    scenarios = doc.get("scenarios", [])
    if not isinstance(scenarios, list) or not all(isinstance(sc, dict) for sc in scenarios):
        raise Bad("scenarios is not a list of objects")
    names: set[str] = set()
    for i, sc in enumerate(scenarios):
        scenario(f"scenarios[{i}]", sc)
        # Two scenarios of one name would pass for two runs of one case.
        if sc["name"] in names:
            raise Bad(f"scenarios[{i}].name {show(sc['name'])} is repeated")
        names.add(sc["name"])


def scenario(path: str, sc: dict[str, Any]) -> None:
    text(sc, "name", path, empty=False, required=True)
    text(obj(sc, "setup", path), "target_page_type", at(path, "setup"), null=True)
    for group in ("walks", "syscall"):
        summary(sc, group, path)
    callers: set[str] = set()
    for here, entry in objects(sc, "walks_by_caller", path):
        text(entry, "caller", here, required=True)
        _once(entry["caller"], callers, at(here, "caller"))  # one run would count twice
        summary(entry, "walks", here)
    kinds: set[str] = set()
    for here, b in objects(sc, "bystanders", path):
        text(b, "kind", here, empty=False, required=True)
        _once(b["kind"], kinds, at(here, "kind"))
        for phase in ("during", "quiet"):
            summary(b, phase, here)
        stall = obj(b, "stall", here)
        for key in ("p99_ns", "max_ns"):  # during - quiet: may be below 0
            number(stall, key, at(here, "stall"), lo=-MAX_NS, hi=MAX_NS, null=True)
        waits = obj(obj(b, "contention", here), "during", at(here, "contention"))
        number(waits, "rwsem_wait_ns", at(here, "contention.during"), lo=0, null=True)
    waits = obj(obj(sc, "walker_waits", path), "during_walks", at(path, "walker_waits"))
    number(waits, "rwsem_wait_ns", at(path, "walker_waits.during_walks"), lo=0, null=True)


def _once(name: str, seen: set[str], path: str) -> None:
    """Bad when a list a writer keys by name names one twice."""
    if name in seen:
        raise Bad(f"{path} {show(name)} is named twice")
    seen.add(name)


def summary(d: dict[str, Any], key: str, path: str) -> None:
    """A summary of latencies (ksft/stats.Summary, with its samples): a
    count, the percentiles when it counted something, and as many samples
    as it counted (fewer is a list cut short)."""
    s = obj(d, key, path)
    here = at(path, key)
    count = s.get("count", 0)
    if not is_count(count):
        raise Bad(f"{here}.count is not a count: {show(count)}")
    for name in PERCENTILES:
        number(s, name, here, lo=0, hi=MAX_NS, null=not count, required=bool(count))
    values = s.get("samples")
    if values is None:
        return
    if not isinstance(values, list):
        raise Bad(f"{here}.samples is not a list: {show(values)}")
    for i, v in enumerate(values):
        # Whole nanoseconds, as every clock the programs read counts them:
        # 1e-311 would make a ratio of medians overflow.
        if not (is_number(v, 0, MAX_NS) and float(v).is_integer()):
            what = "is not a latency (whole ns from 0 below 2^64)"
            raise Bad(f"{here}.samples[{i}] {what}: {show(v)}")
    if "count" in s and len(values) != count:
        raise Bad(f"{here}.count is {count} but it has {len(values)} samples (cut short?)")


# No program runs for four months (--merge-timeout is at most a week).
MAX_SECONDS = 1e7


def phases(ph: dict[str, Any]) -> None:
    """`phases`: wall seconds, none below 0 or beyond MAX_SECONDS; the
    walk share a fraction."""
    seconds = obj(ph, "seconds", "phases")
    for name in seconds:
        number(seconds, name, "phases.seconds", lo=0, hi=MAX_SECONDS)
    for name in ("total_s", "walks_s"):
        number(ph, name, "phases", lo=0, hi=MAX_SECONDS)
    number(ph, "walk_share", "phases", lo=0, hi=math.nextafter(1, 2), null=True)  # [0, 1]
