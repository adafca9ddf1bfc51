"""Property tests: the boot's on-disk caches (tracing/bootcache.py) -- the
probe-cost calibration (calcache.py), the BTF lookup (bpf/btf.py) and the
callbacks' kallsyms addresses (bpf/records.py) -- damaged between the
program that stored them and the next.

A file truncated, emptied, not JSON, nested past the parser's stack, of
another format version or kernel release (the key it holds), or a
directory in its place, is ignored: the result is worked out again and
stored again (atomically: a new file renamed over the old). A value
replaced by any JSON is ignored unless it is of the type the result
holds, and never makes the program raise.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_bpf import KALLSYMS, _kernel_like
from trace_damage import SETTINGS

from rmapbench.tracing import bootcache, calcache, calibrate
from rmapbench.tracing.bpf import btf, records
from rmapbench.tracing.calibrate import Calibration, summarise
from rmapbench.tracing.probes import DynamicProbe

WHOLE = ("cut", "empty", "not JSON", "nested", "other version", "other release", "directory")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=3)
    | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=6,
)  # fmt: skip


def damage(draw: st.DrawFn, path: Path, version_at: list[str], kinds: tuple[str, ...]) -> str:
    """Damage the cache file at `path` one of the ways `kinds`; returns how."""
    kind = draw(st.sampled_from(kinds))
    text = path.read_text()
    stored = json.loads(text)
    if kind == "cut":
        path.write_text(text[: draw(st.integers(0, len(text) - 2))])  # (its last byte is "\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not JSON":
        path.write_bytes(draw(st.binary(min_size=1, max_size=40)).replace(b"{", b"(") + b"\xff")
    elif kind == "nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "directory":
        path.unlink()
        path.mkdir()
    elif kind in ("other version", "other release"):
        key = stored["key"]
        where = key
        for k in version_at[:-1]:
            where = where[k]  # type: ignore[index]
        last: Any = version_at[-1]
        if kind == "other version":
            stored["key"] = {**key, "format": -1} if isinstance(key, dict) else [*key, "v0"]
        else:
            where[last] = "0.0.0-another-kernel"  # type: ignore[index]
        path.write_text(json.dumps(stored))
    else:
        holder, name = _pick(draw, stored, "data")
        holder[name] = draw(JSON)
        path.write_text(json.dumps(stored))
    return kind


def _pick(draw: st.DrawFn, node: Any, name: Any) -> tuple[Any, Any]:
    """A (container, key) somewhere inside node[name]."""
    holder, at = node, name
    while isinstance(holder[at], (dict, list)) and holder[at] and draw(st.booleans()):
        inner = holder[at]
        keys = list(inner) if isinstance(inner, dict) else list(range(len(inner)))
        holder, at = inner, draw(st.sampled_from(keys))
    return holder, at


def fresh(factory: pytest.TempPathFactory, name: str) -> Path:
    """An empty directory of the same path for every example: the paths
    are part of the cache keys, so the files stay one size."""
    path = factory.getbasetemp() / f"damage-{name}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def _files(where: Path) -> list[Path]:
    return sorted(where.iterdir())


def check_rebuilt(where: Path, again: Callable[[], object], first: object) -> None:
    """After a miss the result was stored again, whole, and is reused."""
    (path,) = _files(where)  # no temporary file left beside it
    if path.is_dir():
        return  # nothing can be stored there: each program works it out
    json.loads(path.read_text())
    assert again() == first


# -- the calibration -------------------------------------------------------------


@pytest.mark.parametrize("kinds", [WHOLE, ("value replaced",)])
@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_a_damaged_calibration_is_measured_again(
    kinds: tuple[str, ...], data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    where = fresh(tmp_path_factory, "cache")
    measured: list[int] = []

    def fake(backend: object, buffer_kb: int = 256, firings: int = 200,
             after: object = None) -> Calibration:  # fmt: skip
        measured.append(buffer_kb)
        return summarise("fprobe", "m", calibrate.FUNCTION, [2900, 3000, 3100], 2800)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(calibrate, "for_backend", fake)  # the measurement, not the cache
        mp.setenv(bootcache.ENV, str(where))
        first = calcache.for_backend(DynamicProbe("fprobe"), 8192)
        (path,) = _files(where)
        inode = path.stat().st_ino
        kind = damage(data.draw, path, ["kernel", 0], kinds)
        event(kind)
        got = calcache.for_backend(DynamicProbe("fprobe"), 8192)
        if kind in WHOLE:
            assert not got.reused and len(measured) == 2
            reused = calcache.for_backend(DynamicProbe("fprobe"), 8192)
            if not path.is_dir():
                assert reused.reused and reused.cost_ns == first.cost_ns
                assert path.stat().st_ino != inode  # written anew, renamed over it
            assert [p.name for p in _files(where)] == [path.name]
            return
        # A value replaced: used only if it is what a stored calibration holds.
        if got.reused:
            for f in ("firings", "cost_ns", "p25_ns", "p75_ns", "uncertainty_ns"):
                value = getattr(got, f)
                assert type(value) is int and value >= 0
            assert got.p25_ns <= got.cost_ns <= got.p75_ns and not got.unavailable
            assert isinstance(got.as_dict(), dict)
        else:
            assert len(measured) == 2


def test_a_calibration_of_another_shape_is_measured_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Values of another type were taken as they were: a cost_ns of
    "3000" reached the correction (a TypeError there), a bool passed
    for a count."""
    measured: list[int] = []
    monkeypatch.setattr(calibrate, "for_backend", lambda *a, **k: measured.append(1) or summarise(
        "fprobe", "m", calibrate.FUNCTION, [2900, 3000, 3100], 2800))  # fmt: skip
    monkeypatch.setenv(bootcache.ENV, str(tmp_path))
    calcache.for_backend(DynamicProbe("fprobe"), 8192)
    (path,) = tmp_path.iterdir()
    for field, value in (("cost_ns", "3000"), ("firings", True), ("p25_ns", -1),
                         ("unavailable", "no"), ("backend", "kprobe"), ("body_bound_ns", 1.5)):
        stored = json.loads(path.read_text())
        stored["data"][field] = value
        path.write_text(json.dumps(stored))
        assert not calcache.for_backend(DynamicProbe("fprobe"), 8192).reused, field
    assert len(measured) == 7


def test_json_nested_past_the_stack_is_a_miss(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:  # fmt: skip
    """Was RecursionError out of json.loads(): the program ended."""
    monkeypatch.setenv(bootcache.ENV, str(tmp_path))
    bootcache.path(tmp_path, "x", [1]).write_text("[" * 100_000)
    assert bootcache.load("x", [1]) is None


# -- the BTF lookup and the kallsyms addresses ---------------------------------------

FUNCS, STRUCTS = ["rmap_walk_anon", "rmap_walk_ksm"], ["rmap_walk_control"]


@pytest.mark.parametrize("kinds", [WHOLE, ("value replaced",)])
@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_a_damaged_btf_lookup_is_looked_up_again(
    kinds: tuple[str, ...], data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = fresh(tmp_path_factory, "btf")
    vmlinux = root / "vmlinux"
    vmlinux.write_bytes(_kernel_like().bytes())
    where = root / "cache"
    truth = btf.lookup(FUNCS, STRUCTS, vmlinux)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(bootcache.ENV, str(where))
        assert btf.cached_lookup(FUNCS, STRUCTS, vmlinux) == truth
        (path,) = _files(where)
        kind = damage(data.draw, path, [0], kinds)
        event(kind)
        got = btf.cached_lookup(FUNCS, STRUCTS, vmlinux)
        if kind in WHOLE:
            assert got == truth
            check_rebuilt(where, lambda: btf.cached_lookup(FUNCS, STRUCTS, vmlinux), truth)
            return
        if got != truth:  # a value of the right type: ids within the types, offsets numbers
            assert all(type(v) is int and 1 <= v <= got.types for v in got.funcs.values())
            assert all(type(v) is int and v >= 0 for m in got.members.values() for v in m.values())


@pytest.mark.parametrize("kinds", [WHOLE, ("value replaced",)])
@settings(max_examples=40, **SETTINGS)
@given(data=st.data())
def test_damaged_callback_addresses_are_read_again(
    kinds: tuple[str, ...], data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not records._boot_id():
        pytest.skip("no boot id: nothing is kept")
    root = fresh(tmp_path_factory, "ksyms")
    kallsyms = root / "kallsyms"
    kallsyms.write_text(KALLSYMS)
    where = root / "cache"
    truth = records.Symbols(KALLSYMS).known
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(bootcache.ENV, str(where))
        assert records.Symbols.read(kallsyms).known == truth
        (path,) = _files(where)
        kind = damage(data.draw, path, [0], kinds)
        event(kind)
        got = records.Symbols.read(kallsyms).known
        if kind in WHOLE:
            assert got == truth
            check_rebuilt(where, lambda: records.Symbols.read(kallsyms).known, truth)
            return
        assert all(type(a) is int and n in records.RMAP_ONE_CALLER for a, n in got.items())
        sym = records.Symbols(None, got, kallsyms)
        assert isinstance(sym.name(0xFFFFFFFF81300100), str)


def test_cache_writes_are_atomic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """store() writes a new file and renames it over the old one: a reader
    sees the old file or the new, never half of one; nothing is left
    beside it, and a store that fails leaves the old file as it was."""
    monkeypatch.setenv(bootcache.ENV, str(tmp_path))
    bootcache.store("x", [1], {"a": 1})
    (path,) = tmp_path.iterdir()
    old = path.stat().st_ino
    bootcache.store("x", [1], {"a": 2})
    assert path.stat().st_ino != old and bootcache.load("x", [1]) == {"a": 2}
    assert list(tmp_path.iterdir()) == [path]
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("root writes anyway")
        bootcache.store("x", [1], {"a": 3})  # cannot be written: logged
        assert bootcache.load("x", [1]) == {"a": 2}
    finally:
        os.chmod(tmp_path, 0o700)

