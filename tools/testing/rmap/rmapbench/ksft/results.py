"""Result files: the JSON document (docs/json.md), LAVA result.txt and SQUAD
metrics, each written atomically so a reader never sees half a file.

A run first writes PROGRAM.json with status "running" (write_marker()) and
replaces it with the final document at the end, so the file of a run that
was killed says so; an interrupted run's document has "interrupted" (the
signal). load_results() refuses such files, and damaged ones, naming them
(DamagedResults, exit status EXIT_RESULTS), unless told to keep partial
ones (the front door's summary of its own run)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rmapbench import __version__
from rmapbench.files import NotReadable, read_regular, write_atomic
from rmapbench.ksft import shape
from rmapbench.ksft.cli import ResultsError

SCHEMA = "rmapbench/result/1"
RUNNING = "running"  # the status of a run that has not finished (or was killed)
STATUSES = ("pass", "fail", "skip", "error", RUNNING)


class DamagedResults(ResultsError):
    """A result file that is not what a run writes, or that its run never
    finished: the message names the file."""

# Metrics that leave the JSON for CI dashboards, per scenario.
_EXPORTED = ("p50_ns", "p99_ns", "max_ns", "mean_ns")


def slug(text: str) -> str:
    """LAVA/SQUAD-safe name: non-alphanumerics become '_'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def metrics(doc: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """Flat metric name -> (value, unit) for one result document."""
    out: dict[str, tuple[float, str]] = {}
    for sc in doc.get("scenarios", []):
        name = slug(sc["name"])
        for group in ("walks", "syscall"):
            summary = sc.get(group) or {}
            if not summary.get("count"):
                continue
            for key in _EXPORTED:
                out[f"{name}_{group}_{key.removesuffix('_ns')}"] = (summary[key], "ns")
            out[f"{name}_{group}_count"] = (
                summary["count"],
                "walks" if group == "walks" else "calls",
            )
        out.update(_fidelity_metrics(name, sc))
        out.update(_visit_metrics(name, sc.get("visits") or {}))
        out.update(_bystander_metrics(name, sc))
    return out


# --bystander, per kind: latency during walks and quiet, the stall, the
# operations that overlapped walks, the rwsem waits; the walker's holds
# and its own rwsem waits inside timed walks.
_BYSTANDER_NS = ("p50_ns", "p99_ns", "max_ns")


def _bystander_metrics(name: str, sc: dict[str, Any]) -> dict[str, tuple[float, str]]:
    out: dict[str, tuple[float, str]] = {}
    for b in sc.get("bystanders") or []:
        stem = f"{name}_bystander_{slug(b['kind'])}"
        for phase in ("during", "quiet"):
            summary = b.get(phase) or {}
            if summary.get("count"):
                for key in _BYSTANDER_NS:
                    out[f"{stem}_{phase}_{key.removesuffix('_ns')}"] = (summary[key], "ns")
        stall = b.get("stall") or {}
        for key in ("p99_ns", "max_ns"):
            if key in stall:
                out[f"{stem}_stall_{key.removesuffix('_ns')}"] = (stall[key], "ns")
        if b.get("overlapped") is not None:
            out[f"{stem}_overlapped"] = (b["overlapped"], "ops")
        _rwsem_waits(out, stem, (b.get("contention") or {}).get("during"))
    holds = sc.get("lock_holds") or {}
    acq = holds.get("acquisitions_per_walk")
    if acq:
        out[f"{name}_lock_acquisitions_per_walk"] = (acq["p50"], "acquisitions")
    if holds.get("longest_hold_ns") is not None:
        out[f"{name}_lock_longest_hold"] = (holds["longest_hold_ns"], "ns")
    _rwsem_waits(out, f"{name}_walker", (sc.get("walker_waits") or {}).get("during_walks"))
    return out


def _rwsem_waits(
    out: dict[str, tuple[float, str]], stem: str, waits: dict[str, Any] | None
) -> None:
    """A contention summary's rwsem wait and longest wait (a bystander's or
    the walker's, during walks) as STEM_rwsem_wait and STEM_rwsem_max_wait."""
    if waits and "rwsem_wait_ns" in waits:
        out[f"{stem}_rwsem_wait"] = (waits["rwsem_wait_ns"], "ns")
        out[f"{stem}_rwsem_max_wait"] = (waits["rwsem_max_wait_ns"], "ns")


def _fidelity_metrics(name: str, sc: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """Per caller of the walks, the probe-corrected walks and the triggers
    that did not do their job (docs/json.md, issue #12)."""
    out: dict[str, tuple[float, str]] = {}
    for entry in sc.get("walks_by_caller") or []:
        summary = entry.get("walks") or {}
        if summary.get("count"):
            for key in ("p50_ns", "p99_ns"):
                label = f"{name}_walks_{slug(entry['caller'])}_{key.removesuffix('_ns')}"
                out[label] = (summary[key], "ns")
    corrected = sc.get("walks_corrected") or {}
    if corrected.get("count"):
        for key in ("p50_ns", "p99_ns"):
            out[f"{name}_walks_corrected_{key.removesuffix('_ns')}"] = (corrected[key], "ns")
    failed = sc.get("failed_triggers")
    if failed is not None:
        out[f"{name}_failed_triggers"] = (failed.get("count", 0), "triggers")
    return out


def _visit_metrics(name: str, visits: dict[str, Any]) -> dict[str, tuple[float, str]]:
    """--count-visits: tree visits per walk and what they cost."""
    out: dict[str, tuple[float, str]] = {}
    for group in ("visits", "skipped", "matched"):
        summary = visits.get(group) or {}
        if summary.get("count"):
            out[f"{name}_{group}_p50"] = (summary["p50"], "visits")
            out[f"{name}_{group}_max"] = (summary["max"], "visits")
    if visits.get("cost_per_visit_ns") is not None:
        out[f"{name}_cost_per_visit"] = (visits["cost_per_visit_ns"], "ns")
    return out


def lava_lines(doc: dict[str, Any]) -> list[str]:
    """`NAME RESULT [MEASUREMENT UNITS]` lines, as lava-test-case takes them."""
    prog = slug(doc["program"])
    result = {"pass": "pass", "fail": "fail", "skip": "skip"}.get(doc.get("status", ""), "unknown")
    lines = [f"{prog} {result}"]
    for name, (value, unit) in metrics(doc).items():
        lines.append(f"{prog}_{name} pass {value} {unit}")
    return lines


def squad_metrics(doc: dict[str, Any], suite: str = "rmap") -> dict[str, dict[str, Any]]:
    """SQUAD metrics JSON: the suite is the text before the last '/'."""
    prog = slug(doc["program"])
    return {
        f"{suite}/{prog}_{name}": {"value": value, "unit": unit}
        for name, (value, unit) in metrics(doc).items()
    }


RESULT_SUFFIXES = (".json", ".result.txt", ".squad.json")  # write_results()


def is_result_file(name: str) -> bool:
    """Whether a file name is one write_results() gives a test program's
    results (rmap_NAME.json, .result.txt, .squad.json)."""
    return name.startswith("rmap_") and name.endswith(RESULT_SUFFIXES)


def write_results(directory: str | Path, doc: dict[str, Any]) -> list[Path]:
    """PROGRAM.json, PROGRAM.result.txt and PROGRAM.squad.json in directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prog = doc["program"]
    files = {
        directory / f"{prog}.json": json.dumps(doc, indent=2, sort_keys=False) + "\n",
        directory / f"{prog}.result.txt": "\n".join(lava_lines(doc)) + "\n",
        directory / f"{prog}.squad.json": json.dumps(squad_metrics(doc), indent=2) + "\n",
    }
    for path, text in files.items():
        write_atomic(path, text)
    return list(files)


def marker(program: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document of a run in progress: replaced by the final one at the
    end, left as it is by a run that was killed."""
    return {
        "schema": SCHEMA,
        "tool": {"name": "rmapbench", "version": __version__},
        "program": program,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": RUNNING,
        "reason": "in progress, or killed before it could finish",
        "options": options or {},
        "scenarios": [],
    }


def write_marker(directory: str | Path, doc: dict[str, Any]) -> Path:
    """PROGRAM.json saying the run is in progress."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{doc['program']}.json"
    write_atomic(path, json.dumps(doc, indent=2) + "\n")
    return path


def partial(doc: dict[str, Any]) -> str | None:
    """Why a document's measurements are not complete, or None."""
    if doc.get("status") == RUNNING:
        return "its run did not finish (killed, or still running)"
    if doc.get("interrupted"):
        return f"its run was interrupted by {doc['interrupted']}; the results are partial"
    return None


def damage(doc: Any) -> str | None:
    """What is wrong with a result document's shape (ksft/shape.py), or None."""
    try:
        shape.document(doc, STATUSES)
    except shape.Bad as e:
        return str(e)
    return None


# A result file of --samples 100000 is tens of MiB; more is not a run's.
MAX_FILE_BYTES = 512 << 20


def read_json(path: Path, what: str = "result file") -> Any:
    """The JSON value in a file another run wrote, or DamagedResults naming
    the file: unreadable, not a regular file (a FIFO would hang the reader,
    /dev/zero fill its memory), too large, not UTF-8, not JSON, or holding
    a string no output can print (a lone UTF-16 surrogate, which JSON's
    \\u escapes can spell)."""
    try:
        text = read_regular(path, MAX_FILE_BYTES)
        data = json.loads(text)
    except NotReadable as e:
        raise DamagedResults(f"{path}: not a {what}: {e}") from None
    except UnicodeDecodeError:
        raise DamagedResults(f"{path}: damaged {what}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise DamagedResults(
            f"{path}: damaged {what} (truncated?): {e.msg} at line {e.lineno} column {e.colno}"
        ) from None
    except OSError as e:
        raise DamagedResults(f"{path}: cannot read: {e.strerror or e}") from None
    except RecursionError:  # json nests as deep as the file says
        raise DamagedResults(f"{path}: damaged {what}: nested too deeply") from None
    except MemoryError:
        raise DamagedResults(f"{path}: damaged {what}: too large to parse") from None
    if "\\u" in text:
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise DamagedResults(
                f"{path}: damaged {what}: a string holds a lone UTF-16 surrogate"
            ) from None
    return data


def read_document(path: Path) -> dict[str, Any] | None:
    """One result file: its document, None when it is some other JSON, or
    DamagedResults naming it."""
    data = read_json(path)
    if not (isinstance(data, dict) and data.get("schema") == SCHEMA):
        return None
    problem = damage(data)
    if problem:
        raise DamagedResults(f"{path}: damaged result file: {problem}")
    return data


def load_results(directory: str | Path, keep_partial: bool = False) -> list[dict[str, Any]]:
    """Every result document in a directory, sorted by program name.
    A damaged file, and unless keep_partial a run that did not finish or
    was interrupted, is DamagedResults naming the file."""
    docs = []
    seen: dict[str, Path] = {}
    for path in sorted(Path(directory).glob("*.json")):
        if path.name.endswith(".squad.json") or path.name.startswith("."):
            continue
        data = read_document(path)
        if data is None:
            continue
        why = partial(data)
        if why and not keep_partial:
            raise DamagedResults(f"{path}: {why}")
        # A run writes one file per program: a second one is a copy, which
        # the statistics would take for a second run.
        if data["program"] in seen:
            raise DamagedResults(
                f"{path}: program {data['program']} again (also in {seen[data['program']].name})"
            )
        seen[data["program"]] = path
        docs.append(data)
    return docs
