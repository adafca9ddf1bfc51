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
    return out


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


BYSTANDER_COLUMNS = ("case", "bystander", "ops", "overlapped", "quiet p99", "during p99",
                     "stall p99", "stall max", "rwsem wait")  # fmt: skip


def bystander_table(docs: list[dict[str, Any]]) -> str:
    """--bystander results, a second table after the first (none without)."""
    body: list[tuple[str, ...]] = []
    for doc in docs:
        for sc in doc.get("scenarios", []):
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
                    )
                )
    if not body:
        return ""
    widths = [max(len(r[i]) for r in [BYSTANDER_COLUMNS, *body]) for i in range(len(body[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [BYSTANDER_COLUMNS, *body]]  # fmt: skip
    return "\n\n" + "\n".join(lines)
