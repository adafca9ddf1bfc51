"""Result files: the JSON document (docs/json.md), LAVA result.txt and SQUAD
metrics, each written atomically so a reader never sees half a file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rmapbench.files import write_atomic

SCHEMA = "rmapbench/result/1"

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
        out.update(_visit_metrics(name, sc.get("visits") or {}))
        out.update(_bystander_metrics(name, sc))
    return out


# --bystander, per kind: latency during walks and quiet, the stall, the
# operations that overlapped walks, the rwsem waits; the walker's holds.
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
        during = (b.get("contention") or {}).get("during") or {}
        if "rwsem_wait_ns" in during:
            out[f"{stem}_rwsem_wait"] = (during["rwsem_wait_ns"], "ns")
            out[f"{stem}_rwsem_max_wait"] = (during["rwsem_max_wait_ns"], "ns")
    holds = sc.get("lock_holds") or {}
    acq = holds.get("acquisitions_per_walk")
    if acq:
        out[f"{name}_lock_acquisitions_per_walk"] = (acq["p50"], "acquisitions")
    if holds.get("longest_hold_ns") is not None:
        out[f"{name}_lock_longest_hold"] = (holds["longest_hold_ns"], "ns")
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


def load_results(directory: str | Path) -> list[dict[str, Any]]:
    """Every result document in a directory, sorted by program name."""
    docs = []
    for path in sorted(Path(directory).glob("*.json")):
        if path.name.endswith(".squad.json"):
            continue
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("schema") == SCHEMA:
            docs.append(data)
    return docs
