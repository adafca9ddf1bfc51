"""Tests of rmapbench.bench.target: vmemmap base calibration from the walks themselves."""

from __future__ import annotations

import pytest

from rmapbench.bench import target
from rmapbench.bench.target import STRUCT_PAGE_SIZE, VMEMMAP_ALIGN, calibrate, folio_pointer

# The default x86-64 vmemmap_base, and the one of the recorded fprobe traces.
BASE = 0xFFFFEA0000000000
# Another KASLR draw: 1 GiB steps.
BASE2 = 0xFFFFD3C540000000

Sample = tuple[set[int], list[int]]


def migration(base: int, src: int, dst: int, noise: list[int] | None = None) -> Sample:
    """One migration of the target from pfn src to dst: a walk of each."""
    return {src, dst}, [folio_pointer(base, src), folio_pointer(base, dst), *(noise or [])]


def test_folio_pointer() -> None:
    assert folio_pointer(BASE, 0) == BASE
    assert folio_pointer(BASE, 1) == BASE + 64
    # The recorded anon trace: folio 0xffffea0000230580 is pfn 0x8c16.
    assert folio_pointer(BASE, 0x8C16) == 0xFFFFEA0000230580
    assert STRUCT_PAGE_SIZE == 64
    assert VMEMMAP_ALIGN == 1 << 30
    assert BASE2 % VMEMMAP_ALIGN == 0


@pytest.mark.parametrize("base", [BASE, BASE2])
def test_calibrate_from_clean_migrations(base: int) -> None:
    samples = [migration(base, 0x8C16, 0x417F0), migration(base, 0x417F0, 0x8C16),
               migration(base, 0x8C16, 0x417F1)]
    assert calibrate(samples) == base


def test_calibrate_accepts_any_iterables() -> None:
    gen = (({0x100, 0x200}, iter([folio_pointer(BASE, 0x100)])) for _ in range(3))
    assert calibrate(gen) == BASE


def test_single_sample() -> None:
    assert calibrate([migration(BASE, 0x1234, 0x5678)]) == BASE


def test_unaligned_differences_are_not_candidates() -> None:
    # A folio 64 bytes off the target's struct page gives an unaligned base.
    pfns = {0x1234}
    assert calibrate([(pfns, [folio_pointer(BASE, 0x1234) + 64])]) is None
    assert calibrate([(pfns, [folio_pointer(BASE, 0x1234) + (1 << 29)])]) is None


def test_noise_walks_in_a_minority_of_samples() -> None:
    # Other walks in a sample (NUMA balancing, kcompactd) name other folios:
    # they give no aligned candidate and do not move the vote.
    noise = [folio_pointer(BASE, 0x21C6) + 8, folio_pointer(BASE, 0x22E3) + 24]
    samples = [
        migration(BASE, 0x10EF6, 0x22E30, noise=[folio_pointer(BASE, 0x21C6)]),
        migration(BASE, 0x22E30, 0x113168, noise=noise),
        migration(BASE, 0x113168, 0x22E30),
        migration(BASE, 0x22E30, 0x113168),
        migration(BASE, 0x113168, 0x22E30),
    ]
    assert calibrate(samples) == BASE


def test_noise_that_happens_to_be_aligned_loses_the_vote() -> None:
    # A walk of a page exactly 1 GiB / 64 pfns away gives a second aligned
    # candidate in one sample; the real base wins the other samples too.
    far = 0x8C16 + VMEMMAP_ALIGN // STRUCT_PAGE_SIZE
    samples = [
        migration(BASE, 0x8C16, 0x417F0, noise=[folio_pointer(BASE, far)]),
        migration(BASE, 0x417F0, 0x8C16),
        migration(BASE, 0x8C16, 0x417F0),
    ]
    assert calibrate(samples) == BASE


def test_samples_without_target_walks_count_against_the_base() -> None:
    # Half of the samples agree: enough.
    ok = [migration(BASE, 0x100, 0x200), migration(BASE, 0x200, 0x100)]
    empty: list[Sample] = [({0x100, 0x200}, []), ({0x100, 0x200}, [])]
    assert calibrate(ok + empty) == BASE
    # Fewer than half: no base.
    assert calibrate(ok[:1] + empty) is None


def test_none_when_nothing_is_consistent() -> None:
    assert calibrate([]) is None
    assert calibrate([({0x100}, [])]) is None
    # Every sample explains itself with a different base (e.g. the probe
    # reports something that is not a struct page pointer): no majority.
    samples = [
        ({0x100}, [folio_pointer(BASE, 0x100)]),
        ({0x100}, [folio_pointer(BASE2, 0x100)]),
        ({0x100}, [folio_pointer(BASE + 4 * VMEMMAP_ALIGN, 0x100)]),
    ]
    assert calibrate(samples) is None
    # Hashed pointers or physical addresses: nothing aligned at all.
    hashed: list[Sample] = [({0x8C16, 0x417F0}, [0x6B1A2C3D, 0xC0FFEE12]) for _ in range(4)]
    assert calibrate(hashed) is None


def test_target_folios() -> None:
    assert target.target_folios(None, {1, 2}) is None
    assert target.target_folios(BASE, {0x8C16, 0x417F0}) == {
        0xFFFFEA0000230580, 0xFFFFEA000105FC00}
    # pfn 0 means "not known" (pagemap without CAP_SYS_ADMIN): no pointer.
    assert target.target_folios(BASE, {0, 0x8C16}) == {0xFFFFEA0000230580}
    assert target.target_folios(BASE, set()) == set()


def test_a_reused_frame_of_another_page_type_is_not_the_target() -> None:
    """ksm-procs on a loaded host once showed a walk by rmap_walk_anon of
    a folio at the KSM target's old frame: freed by the migration and
    reused within the sample. Only the case's own page type is the target;
    a walker whose type is unknown keeps the folio's verdict."""
    from rmapbench.bench import measure
    from rmapbench.tracing.events import Walk
    from rmapbench.triggers.base import Firing

    base, src, dst = BASE, 0x1000, 0x2000
    walks = [
        Walk(1, 10, 7, "rmap_walk", "ksm", folio=folio_pointer(base, src)),
        Walk(2, 10, 7, "rmap_walk", "ksm", folio=folio_pointer(base, dst)),
        Walk(3, 10, 7, "rmap_walk", "anon", folio=folio_pointer(base, src)),
        Walk(4, 10, 7, "rmap_walk", "unknown", folio=folio_pointer(base, dst)),
    ]
    s = measure.Sample(1, False, Firing(100, done=True), src, dst, walks)
    assert measure.mark([s], "ksm") == base
    assert [w.target for w in s.walks] == [True, True, False, True]
    assert [w.end_ns for w in measure.target_walks(s, "ksm")] == [1, 2, 4]
