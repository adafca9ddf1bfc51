"""Which walks touched the target page.

Probes report the walked folio as a kernel pointer to its struct page; user
space knows the target's page frame numbers before and after migration
(pagemap). On x86-64 struct pages sit in the virtual memory map at
vmemmap_base + pfn * 64, and vmemmap_base is randomised in 1 GiB steps. The
base is recovered from the samples themselves: the value that explains the
walks of most samples, 1 GiB aligned. No kernel symbol is needed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

STRUCT_PAGE_SIZE = 64
VMEMMAP_ALIGN = 1 << 30


def folio_pointer(base: int, pfn: int) -> int:
    return base + pfn * STRUCT_PAGE_SIZE


def calibrate(samples: Iterable[tuple[set[int], Iterable[int]]]) -> int | None:
    """vmemmap_base from (target pfns, walked folio pointers) per sample, or
    None when no aligned base explains at least half of the samples."""
    votes: Counter[int] = Counter()
    total = 0
    for pfns, folios in samples:
        total += 1
        candidates = {
            f - p * STRUCT_PAGE_SIZE
            for f in folios
            for p in pfns
            if (f - p * STRUCT_PAGE_SIZE) % VMEMMAP_ALIGN == 0
        }
        votes.update(candidates)
    if not votes:
        return None
    base, hits = votes.most_common(1)[0]
    return base if hits * 2 >= total else None


def target_folios(base: int | None, pfns: Iterable[int]) -> set[int] | None:
    if base is None:
        return None
    return {folio_pointer(base, p) for p in pfns if p}
