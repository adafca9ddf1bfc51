"""The functions ftrace can probe: tracefs's available_filter_functions.

One function a line, printed with %ps: "rmap_walk_anon", or for a module's
"ext4_map_blocks [ext4]". A function the compiler inlined everywhere is
not there; one it cloned is there under the clone's name
("set_tlb_ubc_flush_pending.isra.0", "page_vma_mkclean_one.constprop.0"),
whose arguments need not be the original's; a static name defined in two
files is there twice. Linux 6.15 turned rmap_walk_file() into a wrapper
inlined into its callers around __rmap_walk_file(folio, mapping,
pgoff_start, nr_pages, rwc, locked), so a probe on rmap_walk_file finds
nothing there; the backends then time __rmap_walk_file
(tracing/walkfuncs.py).

Read only once a probe was refused (to say why, or to find the substitute):
the file lists every traceable function (tens of thousands), too much to
read on every program's way in.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

AVAILABLE = "available_filter_functions"
MAX_RELATED = 4  # names listed in a reason


def parse(text: str) -> Counter[str]:
    """How many traceable functions have each name (module suffix dropped)."""
    names: Counter[str] = Counter()
    for line in text.splitlines():
        name = line.split(" ", 1)[0].strip()
        if name:
            names[name] += 1
    return names


def read(root: Path) -> Counter[str] | None:
    """The traceable functions of the tracefs at `root`; None when the file
    cannot be read (no CONFIG_DYNAMIC_FTRACE)."""
    try:
        return parse((root / AVAILABLE).read_text(errors="replace"))
    except OSError:
        return None


def related(names: Counter[str], func: str) -> list[str]:
    """The traceable names that are `func` under another guise: its clones
    (func.isra.0, func.constprop.0, func.part.0) and the underscored
    function it may wrap (__func)."""
    core = func.lstrip("_")
    return sorted(n for n in names if n != func and n.split(".", 1)[0].lstrip("_") == core)


def absent(names: Counter[str], functions: list[str], where: Path) -> str | None:
    """Why these functions cannot be probed by name, from the traceable
    `names`: the first one missing, and what the kernel has instead; None
    when every one is there."""
    for func in functions:
        if func in names:
            continue
        instead = related(names, func)
        if instead:
            shown = ", ".join(instead[:MAX_RELATED])
            return (f"{func} is not a traceable function of this kernel (not in {where}; it "
                    f"has {shown}, which need not take the same arguments)")  # fmt: skip
        return f"{func} is not a traceable function of this kernel (not in {where}: inlined?)"
    return None


def why_not_traceable(root: Path, functions: list[str]) -> str | None:
    """absent() for the tracefs at `root`, or None when its list cannot be read."""
    names = read(root)
    return None if names is None else absent(names, functions, root / AVAILABLE)
