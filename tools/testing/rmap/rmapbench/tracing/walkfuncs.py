"""The functions that walk a folio's mappings, and where their arguments are.

rmap_walk() dispatches by the folio's kind to rmap_walk_ksm(folio, rwc),
rmap_walk_anon(folio, rwc, locked) and rmap_walk_file(folio, rwc, locked);
those are what the probe backends time (not rmap_walk() itself, which is
inlined into its callers in mm/rmap.c).

Linux 6.15 split the file walk: rmap_walk_file() checks the folio's
mapping and calls __rmap_walk_file(folio, mapping, pgoff_start, nr_pages,
rwc, locked), which does the walk, so that mapping_wrprotect_range() can
walk a range of a mapping with no folio. The wrapper is small and
inlined into its callers (Debian's 7.3 build has only __rmap_walk_file
among the traceable functions and in its BTF). It returns early only when
folio->mapping is NULL, and then nothing is walked, so __rmap_walk_file
times the same walk; mapping_wrprotect_range() calls it with a NULL folio
(fb deferred I/O), which is never a case's target. A backend that cannot
trace a function by its name takes its SUBSTITUTE when the kernel has
that one, and says so in its description.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Signature:
    """Argument positions (0-based) of a walk function."""

    page_type: str
    rwc: int  # struct rmap_walk_control *
    locked: int | None = None  # bool: rmap_walk_locked() passes true
    mapping: int | None = None  # struct address_space *; None: read folio->mapping
    folio: int = 0


SIGNATURES: dict[str, Signature] = {
    "rmap_walk_ksm": Signature("ksm", rwc=1),
    "rmap_walk_anon": Signature("anon", rwc=1, locked=2),
    "rmap_walk_file": Signature("file", rwc=1, locked=2),
    "__rmap_walk_file": Signature("file", rwc=4, locked=5, mapping=1),
}
# What to time instead when a kernel cannot trace the function by its name.
SUBSTITUTES = {"rmap_walk_file": "__rmap_walk_file"}


def is_walk(func: str) -> bool:
    """A walk function (not a calibration's stand-in: tracing/calibrate.py)."""
    return func in SIGNATURES


def page_type(func: str) -> str:
    sig = SIGNATURES.get(func)
    return sig.page_type if sig else "unknown"


def has_locked(func: str) -> bool:
    sig = SIGNATURES.get(func)
    return sig is not None and sig.locked is not None


def substituted(
    functions: Mapping[str, str], traceable: Callable[[str], bool]
) -> dict[str, str] | None:
    """`functions` (function -> page type, in order) with each one that is
    not `traceable` replaced by its substitute that is; None when some
    function is neither (the caller's own reason then stands)."""
    out: dict[str, str] = {}
    for func, kind in functions.items():
        if traceable(func):
            out[func] = kind
            continue
        instead = SUBSTITUTES.get(func)
        if instead is None or not traceable(instead):
            return None
        out[instead] = kind
    return out
