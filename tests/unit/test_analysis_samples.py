"""Keys of loaded samples: grid points sort by value, not as text."""

from __future__ import annotations

from rmapbench.analysis.samples import Key, sort_key


def test_grid_points_sort_numerically() -> None:
    keys = [Key("ksm-procs", "ksm", "walk", f"procs={p}") for p in (32, 2, 8)]
    assert [k.point for k in sorted(keys, key=sort_key)] == ["procs=2", "procs=8", "procs=32"]
    mixed = [Key("ksm", "ksm", m, "pages=1000 split=4") for m in ("syscall", "walk")]
    assert [k.metric for k in sorted(mixed, key=sort_key)] == ["walk", "syscall"]
