"""A plain-text table of a result directory, for terminals and mail."""

from __future__ import annotations

from typing import Any

from rmapbench.bench import cases
from rmapbench.ksft.stats import format_ns

COLUMNS = ("case", "backend", "walks", "p50", "p90", "p99", "max", "syscall p50", "result")


def rows(docs: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for doc in docs:
        backend = (doc.get("backend") or {}).get("name", "-")
        result = doc.get("status", "?")
        if doc.get("reason") and result != "pass":
            result += f" ({doc['reason']})"
        if doc.get("interrupted"):
            result = f"INTERRUPTED by {doc['interrupted']}: " + result
        if not doc.get("scenarios") and result.startswith("running"):  # killed, or running
            out.append((str(doc.get("program", "?")), backend, "-", "-", "-", "-", "-", "-",
                        result.upper()))
        for sc in doc.get("scenarios", []):
            w = sc.get("walks") or {}
            s = sc.get("syscall") or {}

            def ns(d: dict[str, Any], key: str) -> str:
                return format_ns(d[key]) if d.get("count") else "-"

            out.append(
                (
                    sc["name"],
                    backend,
                    str(w.get("count", "-")),
                    ns(w, "p50_ns"),
                    ns(w, "p90_ns"),
                    ns(w, "p99_ns"),
                    ns(w, "max_ns"),
                    ns(s, "p50_ns"),
                    result,
                )
            )
            out.extend(_caller_rows(sc))
    return out


def _caller_rows(sc: dict[str, Any]) -> list[tuple[str, ...]]:
    """One indented row per caller of the walks (docs/json.md
    walks_by_caller): the two walks of a migration apart."""
    rows: list[tuple[str, ...]] = []
    for entry in sc.get("walks_by_caller") or []:
        w = entry.get("walks") or {}
        if not w.get("count"):
            continue
        rows.append((f"  {entry['caller']}", "", str(w["count"]),
                     *(format_ns(w[k]) for k in ("p50_ns", "p90_ns", "p99_ns", "max_ns")),
                     "", ""))  # fmt: skip
    return rows


# The suite's own programs first, in the order the runner runs them.
ORDER = tuple(cases.program(name).removesuffix(".py") for name in cases.names())


def _order(doc: dict[str, Any]) -> tuple[int, str]:
    prog = str(doc.get("program", ""))
    return (ORDER.index(prog) if prog in ORDER else len(ORDER), prog)


def table(docs: list[dict[str, Any]]) -> str:
    body = rows(sorted(docs, key=_order))
    if not body:
        return "no results"
    extra = bystander_table(sorted(docs, key=_order))
    widths = [max(len(r[i]) for r in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    # The last column is free text; do not pad it.
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1]
        for r in [COLUMNS, *body]
    ]
    return "\n".join(lines) + extra


# The phase columns of phase_table(), in ksft/phases.py's order; short names.
PHASE_COLUMNS = (
    ("startup", "start"), ("imports", "import"), ("preflight", "pre"), ("arm", "arm"),
    ("build", "build"), ("merge", "merge"), ("prepare", "prep"), ("warmup", "warm"),
    ("samples", "samples"), ("verification", "verify"), ("calibrate", "calib"),
    ("visits", "visits"),
    ("teardown", "tear"), ("drain", "drain"), ("restore", "restore"), ("report", "report"),
)  # fmt: skip


def phase_table(docs: list[dict[str, Any]]) -> str:
    """Seconds per phase of each program (docs/json.md `phases`), its
    total, the timed walks and their share; "" when no result has phases.
    Columns no program spent 5 ms in are left out."""
    with_phases = [d for d in sorted(docs, key=_order) if isinstance(d.get("phases"), dict)]
    if not with_phases:
        return ""
    secs = [d["phases"].get("seconds") or {} for d in with_phases]
    cols = [(k, h) for k, h in PHASE_COLUMNS if any(s.get(k, 0) >= 0.005 for s in secs)]
    head = ("case", *(h for _, h in cols), "total", "walks", "share")
    body = []
    for d, s in zip(with_phases, secs, strict=True):
        ph = d["phases"]
        share = ph.get("walk_share")
        name = (d.get("scenarios") or [{}])[0].get("name") or str(d.get("program", "?"))
        body.append((
            name,
            *(f"{s[k]:.2f}" if k in s else "-" for k, _ in cols),
            f"{ph.get('total_s', 0):.2f}",
            f"{ph.get('walks_s', 0):.3f}",
            f"{share * 100:.1f}%" if share is not None else "-",
        ))  # fmt: skip
    total = sum(d["phases"].get("total_s", 0) for d in with_phases)
    walks = sum(d["phases"].get("walks_s", 0) for d in with_phases)
    share = f"{walks / total * 100:.1f}%" if total else "-"
    body.append(("all", *("" for _ in cols), f"{total:.2f}", f"{walks:.3f}", share))
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["phases (seconds of wall time per program)"]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths, strict=True))).rstrip() for r in [head, *body]]
    return "\n".join(lines)


def full(docs: list[dict[str, Any]]) -> str:
    """table(), then phase_table() when there is one."""
    phases = phase_table(docs)
    return table(docs) + ("\n\n" + phases if phases else "")



BYSTANDER_COLUMNS = ("case", "bystander", "ops", "overlapped", "quiet p99", "during p99",
                     "stall p99", "stall max", "rwsem wait", "walker wait")  # fmt: skip


def bystander_table(docs: list[dict[str, Any]]) -> str:
    """--bystander results, a second table after the first (none without)."""
    body: list[tuple[str, ...]] = []
    for doc in docs:
        for sc in doc.get("scenarios", []):
            # The walker's own rwsem waits inside its timed walks (one
            # figure per scenario, beside each of its bystanders).
            walker = ((sc.get("walker_waits") or {}).get("during_walks") or {}).get("rwsem_wait_ns")
            for b in sc.get("bystanders") or []:
                stall = b.get("stall") or {}
                wait = ((b.get("contention") or {}).get("during") or {}).get("rwsem_wait_ns")

                def ns(v: Any) -> str:
                    return format_ns(v) if v is not None else "-"

                body.append(
                    (
                        sc["name"],
                        b["kind"],
                        str(b.get("ops", "-")),
                        str(b.get("overlapped", "-")),
                        ns((b.get("quiet") or {}).get("p99_ns")),
                        ns((b.get("during") or {}).get("p99_ns")),
                        ns(stall.get("p99_ns")),
                        ns(stall.get("max_ns")),
                        ns(wait),
                        ns(walker),
                    )
                )
    if not body:
        return ""
    widths = [max(len(r[i]) for r in [BYSTANDER_COLUMNS, *body]) for i in range(len(body[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [BYSTANDER_COLUMNS, *body]]  # fmt: skip
    return "\n\n" + "\n".join(lines)
