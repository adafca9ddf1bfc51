"""/proc/PID/maps and smaps as a 6.18 kernel wrote them for a process
mapping files named with a space, a newline (escaped \\012), a carriage
return and Latin-1 bytes, a deleted file, a memfd, shared anonymous memory
and a VMA named with PR_SET_VMA_ANON_NAME ("[anon:...]", 5.17+), with
[vvar_vclock] and [vsyscall] (tests/unit/fixtures/kernel/)."""

from __future__ import annotations

from pathlib import Path

from rmapbench.machine import maps

KERNEL = Path(__file__).parent / "fixtures" / "kernel"
MAPS = maps.lines_of((KERNEL / "maps-6.18").read_bytes())
SMAPS = maps.lines_of((KERNEL / "smaps-6.18").read_bytes())


def _line(name: bytes) -> bytes:
    return next(ln for ln in MAPS if ln.endswith(name))


def test_a_carriage_return_in_a_name_ends_no_line() -> None:
    assert len(MAPS) == 128
    assert _line(b"/tmp/procfs-samples/cr\rname")
    assert _line(b"/tmp/procfs-samples/new\\012line")


def test_count_in_a_range_of_odd_names() -> None:
    lo = int(_line(b"/gone (deleted)").split(b"-")[0], 16)
    hi = int(_line(b"/memfd:rmap (deleted)").split(b" ")[0].split(b"-")[1], 16)
    # gone, lat\xe9, cr\rname, ten library mappings, new\012line, "a file", memfd
    names = [ln for ln in MAPS if lo <= int(ln.split(b"-")[0], 16) < hi]
    assert len(names) == 16
    assert maps.count_in_lines(MAPS, lo, hi) == 16
    # The whole address space, the [vsyscall] page included.
    assert maps.count_in_lines(MAPS, 0, 1 << 64) == len(MAPS)


def test_span_at_a_file_and_a_named_anonymous_vma() -> None:
    line = _line(b"/tmp/procfs-samples/a file")
    lo, hi = (int(x, 16) for x in line.split(b" ")[0].split(b"-"))
    assert maps.span_at(MAPS, lo + 10) == (lo, hi, 0)
    named = _line(b"[anon:rmapbench region]")
    start = int(named.split(b"-")[0], 16)
    span = maps.span_at(MAPS, start)
    assert span is not None and span[0] == start
    assert maps.span_at(MAPS, 0x1000) is None


def test_smaps_field_of_one_vma() -> None:
    heap = next(ln for ln in SMAPS if ln.endswith(b"[heap]"))
    start = int(heap.split(b"-")[0], 16)
    assert maps.smaps_kb(SMAPS, start, b"AnonHugePages:") == 0
    at = SMAPS.index(heap)
    huge = SMAPS[:at] + [heap] + [
        b"AnonHugePages:      2048 kB" if ln.startswith(b"AnonHugePages:") else ln
        for ln in SMAPS[at + 1 : at + 26]
    ] + SMAPS[at + 26 :]
    assert maps.smaps_kb(huge, start, b"AnonHugePages:") == 2048
    # The VMA after it (a deleted file's) is not the heap's.
    assert maps.smaps_kb(huge, start + 1, b"AnonHugePages:") == 0


def test_this_process(tmp_path: Path) -> None:
    lines = maps.read_lines("self")
    assert maps.count_in_lines(lines, 0, 1 << 64) == len(lines) > 0
