"""Property tests: what the bpf backend reads from the kernel, damaged.

Records read from its BPF ring buffer (a file laid out as the map's
mapping, as in test_bpf.py): of the exit program's size or another,
committed, discarded or still being written, with a damaged length or
a producer position inside a record: each has one defined outcome.

The BTF blob (/sys/kernel/btf/vmlinux): built small with struct as in
test_bpf.py, then cut short, emptied, given another magic, version or
header, or changed word by word in its type section; the parse finds the
same ids and offsets or raises BTFError (which the backend's check turns
into Unavailable: auto passes over to the next backend), never another
exception. The running kernel's blob is read too, where there is one.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_bpf import SIZE, _kernel_like, _rec, _ring_file
from trace_damage import SETTINGS

from rmapbench.tracing.bpf import btf, records
from rmapbench.tracing.bpf.records import RECORD_SIZE
from rmapbench.tracing.bpf.ringbuf import BUSY, DISCARD, RingBuffer

FUNCS = ["rmap_walk_ksm", "rmap_walk_anon", "rmap_walk_file", "__do_sys_getppid"]
STRUCTS = ["rmap_walk_control"]
BLOB = _kernel_like().bytes()
HEADER_FIELDS = ("magic", "version", "flags", "hdr_len", "type_off", "type_len", "str_off",
                 "str_len")  # fmt: skip


@st.composite
def damaged_btf(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["cut", "empty", "header field", "type word", "bytes"]))
    data = bytearray(BLOB)
    if kind == "cut":
        return kind, bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "empty":
        return kind, b""
    if kind == "header field":
        fields = list(btf.HEADER.unpack_from(data))
        i = draw(st.integers(0, len(fields) - 1))
        limit = (1 << 16, 1 << 8, 1 << 8)[i] if i < 3 else 1 << 32
        fields[i] = draw(st.one_of(st.integers(0, limit - 1), st.sampled_from(
            [0, 1, 2, 23, 25, len(data), limit - 1])).filter(lambda v: v < limit))  # fmt: skip
        btf.HEADER.pack_into(data, 0, *fields)
        return f"header {HEADER_FIELDS[i]}", bytes(data)
    _, _, _, hdr_len, type_off, type_len, _, _ = btf.HEADER.unpack_from(data)
    if kind == "type word":
        # A name offset, an info word (kind, vlen, kind_flag), a size or a
        # member's offset: any u32.
        at = hdr_len + type_off + 4 * draw(st.integers(0, type_len // 4 - 1))
        value = draw(st.one_of(st.integers(0, (1 << 32) - 1),
                               st.sampled_from([0, 0xFFFF, 0x0C00FFFF, 0x84000000, 1 << 31])))
        struct.pack_into("<I", data, at, value)
        return kind, bytes(data)
    at = draw(st.integers(0, len(data) - 1))
    junk = draw(st.binary(min_size=1, max_size=16))
    data[at : at + len(junk)] = junk
    return kind, bytes(data)


@settings(max_examples=400, **SETTINGS)
@given(damaged_btf())
def test_damaged_btf_is_read_or_refused(damage: tuple[str, bytes]) -> None:
    kind, blob = damage
    event(kind)
    try:
        found = btf.parse(blob, FUNCS, STRUCTS)
    except btf.BTFError as e:
        assert str(e) and "\n" not in str(e)
        return
    # Read: ids are of types stepped over, offsets are bytes.
    assert all(1 <= tid <= found.types for tid in found.funcs.values())
    assert all(v >= 0 for m in found.members.values() for v in m.values())


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        # Were IndexError, ValueError and struct.error.
        (BLOB[: len(BLOB) - len(_kernel_like().strings) - 4], "outside the file"),
        (btf.HEADER.pack(btf.MAGIC, 1, 0, 8, 0, 0, 0, 0) + b"\0" * 16, "header of 8 bytes"),
        (btf.HEADER.pack(btf.MAGIC, 1, 0, 24, 0, 12, 12, 16) + struct.pack("<III", 1, 0x0400FFFF, 0)
         + b"\0rmap_walk_anon\0", "runs past the type section"),  # a struct of 65535 members
        (btf.HEADER.pack(btf.MAGIC, 1, 0, 24, 0, 4, 4, 16) + struct.pack("<I", 1)
         + b"\0rmap_walk_anon\0", "cut short"),
        (btf.HEADER.pack(btf.MAGIC, 1, 0, 24, 0, 0, 0, 3) + b"abc", "not NUL-bounded"),
        (btf.HEADER.pack(btf.MAGIC, 2, 0, 24, 0, 0, 0, 0), "version 2"),
        (b"", "shorter than its header"),
    ],
)  # fmt: skip
def test_damaged_btf_examples(blob: bytes, message: str) -> None:
    with pytest.raises(btf.BTFError, match=message):
        btf.parse(blob, FUNCS, STRUCTS)


def test_a_member_name_past_the_strings_is_refused() -> None:
    b = _kernel_like()
    at = b.types.find(struct.pack("<I", b.s("rmap_one")))
    types = b.types[:at] + struct.pack("<I", 10**6) + b.types[at + 4 :]
    blob = btf.HEADER.pack(btf.MAGIC, 1, 0, 24, 0, len(types), len(types), len(b.strings))
    with pytest.raises(btf.BTFError, match="past the BTF strings"):
        btf.parse(blob + types + b.strings, FUNCS, STRUCTS)


@pytest.mark.skipif(not btf.VMLINUX.exists(), reason="no /sys/kernel/btf/vmlinux here")
def test_the_running_kernels_btf_and_cuts_of_it() -> None:
    data = btf.VMLINUX.read_bytes()  # read only
    found = btf.parse(data, FUNCS, STRUCTS)
    assert found.types > 1000
    for cut in (0, 23, 24, 4096, len(data) // 3, len(data) - 1):
        with contextlib.suppress(btf.BTFError):
            btf.parse(data[:cut], FUNCS, STRUCTS)


# -- records read from the BPF ring buffer -------------------------------------------

RECORD = _rec()
PAGE = mmap.PAGESIZE


@st.composite
def ring_entries(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    """Records as the map holds them: committed, discarded or busy (any
    of the two bits), of the exit program's size or of another."""
    n = draw(st.integers(0, 12))
    out = []
    for _ in range(n):
        flags = draw(st.sampled_from([0, 0, 0, DISCARD, BUSY, BUSY | DISCARD]))
        size = draw(st.sampled_from([RECORD_SIZE, RECORD_SIZE, 0, 1, 12, 55, 57, 64, 200]))
        out.append((flags, (RECORD * 4)[:size]))
    return out


@settings(max_examples=200, **SETTINGS)
@given(entries=ring_entries(), damage=st.sampled_from(["none", "length", "prod"]),
       data=st.data())  # fmt: skip
def test_ring_records_have_a_defined_outcome(
    entries: list[tuple[int, bytes]], damage: str, data: st.DataObject,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Committed records of the right size are walks; of another size,
    damaged (lost); discarded ones consumed unread; a busy one ends the
    read and stays; a length past the producer (a damaged header) drops
    what is left, counted. The consumer position never passes the
    producer's."""
    ends = [0]
    for _, payload in entries:
        ends.append(ends[-1] + ((len(payload) + 8 + 7) & ~7))
    prod = ends[-1]
    bad_at = None
    if damage == "prod" and prod:
        prod = data.draw(st.integers(0, prod))  # the producer's position mid-record
    elif damage == "length" and entries:
        bad_at = data.draw(st.integers(0, len(entries) - 1))
    fd, path = _ring_file(tmp_path_factory.mktemp("ring"), entries, prod)
    if bad_at is not None:
        raw = bytearray(path.read_bytes())
        at = 2 * PAGE + ends[bad_at]
        flags = struct.unpack_from("<I", raw, at)[0] & (BUSY | DISCARD)
        struct.pack_into("<I", raw, at, flags | ((1 << 30) - 1))  # runs past everything
        struct.pack_into("<I", raw, at + SIZE, flags | ((1 << 30) - 1))
        path.write_bytes(bytes(raw))
    ring = RingBuffer(fd, SIZE)
    try:
        recs, damaged = records.decode_all(ring.read())
        damaged += ring.take_damaged()
        (cons,) = struct.unpack_from("<Q", path.read_bytes(), 0)
    finally:
        ring.close()
        os.close(fd)
    # What the reader owes, walking the entries as the kernel laid them out.
    want, want_damaged, want_cons = 0, 0, 0
    for i, (flags, payload) in enumerate(entries):
        if want_cons >= prod or flags & BUSY:
            break
        if i == bad_at or ends[i + 1] > prod:
            want_damaged, want_cons = want_damaged + 1, prod
            break
        if not flags & DISCARD:
            if len(payload) == RECORD_SIZE:
                want += 1
            else:
                want_damaged += 1
        want_cons = ends[i + 1]
    assert (len(recs), damaged, cons) == (want, want_damaged, want_cons)
    assert cons <= prod
    out = records.walks(recs, [("rmap_walk_anon", "anon")], None, None)
    assert len(out.walks) == want and out.lost == 0
