"""The bpf backend's pieces that need no kernel: instruction encoding,
the programs' shape, BTF parsing of a blob built here, the ring buffer
reader over a file laid out like the map, records to walks."""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

import pytest

from rmapbench.machine.knobs import Journal, Undo
from rmapbench.tracing import bootcache
from rmapbench.tracing.backend import Unavailable
from rmapbench.tracing.bpf import btf, insn, programs, records
from rmapbench.tracing.bpf import syscall as sc
from rmapbench.tracing.bpf.backend import Bpf
from rmapbench.tracing.bpf.ringbuf import BUSY, DISCARD, RingBuffer

# -- instruction encoding -------------------------------------------------


def test_encodings_match_the_instruction_set() -> None:
    assert insn.mov_reg(6, 1).encode() == bytes.fromhex("bf16000000000000")
    assert insn.mov_imm(0, 0).encode() == bytes.fromhex("b700000000000000")
    assert insn.call(5).encode() == bytes.fromhex("8500000005000000")
    assert insn.exit_().encode() == bytes.fromhex("9500000000000000")
    assert insn.add_imm(2, -8).encode() == bytes.fromhex("07020000f8ffffff")
    assert insn.store(10, -8, 0).encode() == bytes.fromhex("7b0af8ff00000000")
    assert insn.store_imm(10, -72, 1, insn.W).encode() == bytes.fromhex("620ab8ff01000000")
    assert insn.load(1, 6, 16).encode() == bytes.fromhex("7961100000000000")
    assert insn.atomic_add(0, 0, 1).encode() == bytes.fromhex("db10000000000000")
    lo, hi = insn.load_map_fd(1, 7)
    assert lo.encode() + hi.encode() == bytes.fromhex("1811000007000000" + "00" * 8)


def test_labels_resolve_to_slot_offsets() -> None:
    a = insn.Assembler()
    a.jump_if(insn.JEQ, 0, 0, "end")  # over the two-slot load and the mov
    a.emit(insn.load_map_fd(1, 3), insn.mov_imm(0, 1))
    a.label("end")
    a.emit(insn.exit_())
    code = a.assemble()
    assert code[0].off == 3
    assert insn.decode(insn.assemble(code)) == code
    with pytest.raises(ValueError, match="undefined label"):
        b = insn.Assembler()
        b.goto("nowhere")
        b.assemble()


MAPS = programs.Maps(start=3, ringbuf=4, counters=5, follow=6)


def _calls(code: list[insn.Insn]) -> list[tuple[int, int]]:
    return [(i, c.imm) for i, c in enumerate(code) if c.code == insn.JMP | insn.CALL]


def _jumps_in_range(code: list[insn.Insn]) -> None:
    for i, c in enumerate(code):
        if c.code & 0x07 == insn.JMP and c.code not in (insn.JMP | insn.CALL, insn.JMP | insn.EXIT):
            assert 0 <= i + 1 + c.off < len(code), (i, c)


def test_entry_reads_the_clock_last_and_stores_it_once() -> None:
    code = programs.entry(MAPS)
    _jumps_in_range(code)
    i, helper = _calls(code)[-1]
    assert helper == programs.KTIME_GET_NS
    # The clock read, then one store of r0 into the slot, then return 0.
    assert code[i + 1 :] == [insn.store(6, 0, 0), insn.mov_imm(0, 0), insn.exit_()]


def test_exit_reads_the_clock_first() -> None:
    shape = programs.Shape(1, locked=True, rmap_one_offset=16)
    code = programs.exit_(MAPS, shape)
    _jumps_in_range(code)
    calls = _calls(code)
    assert calls[0] == (1, programs.KTIME_GET_NS)  # after saving ctx only
    first = [programs.KTIME_GET_NS, programs.GET_CURRENT_PID_TGID, programs.MAP_LOOKUP]
    assert [h for _, h in calls[:3]] == first
    assert programs.RINGBUF_OUTPUT in [h for _, h in calls]
    assert insn.load(1, 1, 16) in code  # rwc->rmap_one
    assert insn.and_imm(1, 0xFF) in code  # bool locked


def _map_loads(code: list[insn.Insn]) -> list[tuple[int, int]]:
    """(index, map fd) of every map fd load (the first slot of the pair)."""
    return [(i, c.imm) for i, c in enumerate(code)
            if c.code == insn.LD | insn.IMM | insn.DW and c.src == 1]  # fmt: skip


def test_entry_asks_the_follow_map_before_taking_a_slot() -> None:
    code = programs.entry(MAPS)
    loads = _map_loads(code)
    assert [fd for _, fd in loads][:2] == [MAPS.follow, MAPS.start]
    # A task not followed: straight to the return, no slot, no clock read.
    i = loads[0][0]
    miss = code[i + 5]  # ld_map_fd (two slots), mov, add, call: then the test
    assert (miss.code, miss.dst, miss.imm) == (insn.JMP | insn.JEQ, 0, 0), miss
    assert code[i + 6 + miss.off :] == [insn.mov_imm(0, 0), insn.exit_()]


def test_exit_counts_unmatched_only_for_followed_tasks() -> None:
    code = programs.exit_(MAPS, programs.Shape(0))
    fds = [fd for _, fd in _map_loads(code)]
    # start, ring buffer, dropped counter; then follow before the unmatched counter.
    assert fds[0] == MAPS.start and fds[-2:] == [MAPS.follow, MAPS.counters], fds
    assert MAPS.follow not in fds[:-2]  # the matched path does not look


def test_calibration_shape_reads_no_arguments() -> None:
    code = programs.exit_(MAPS, programs.Shape(0, folio=False, rwc=False))
    assert not [c for c in code if c.code == insn.LDX | insn.MEM | insn.DW and c.src == 6]


# -- BTF ------------------------------------------------------------------


class Blob:
    """A BTF blob: types appended in order (ids from 1), strings interned."""

    def __init__(self) -> None:
        self.types = b""
        self.strings = b"\0"
        self.count = 0

    def s(self, name: str) -> int:
        at = self.strings.find(b"\0" + name.encode() + b"\0")
        if at >= 0:
            return at + 1
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, name: str, kind: int, vlen: int, size_or_type: int, extra: bytes = b"",
            kind_flag: int = 0) -> int:  # fmt: skip
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.s(name) if name else 0, info, size_or_type) + extra
        self.count += 1
        return self.count

    def bytes(self, magic: int = btf.MAGIC) -> bytes:
        hdr = struct.pack("<HBBIIIII", magic, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strings))  # fmt: skip
        return hdr + self.types + self.strings


def _kernel_like() -> Blob:
    b = Blob()
    u64 = b.add("unsigned long", 1, 0, 8, struct.pack("<I", 64))  # INT
    ptr = b.add("", 2, 0, u64)  # PTR
    b.add("", 3, 0, 0, struct.pack("<III", u64, u64, 4))  # ARRAY
    members = b"".join(
        struct.pack("<III", b.s(name), t, bits)
        for name, t, bits in (("arg", ptr, 0), ("try_lock", u64, 64), ("rmap_one", ptr, 128))
    )
    b.add("rmap_walk_control", 4, 3, 32, members)  # STRUCT
    b.add("e", 6, 2, 4, struct.pack("<Ii", b.s("A"), 0) + struct.pack("<Ii", b.s("B"), 1))
    params = b"".join(struct.pack("<II", b.s(n), ptr) for n in ("folio", "rwc", "locked"))
    proto = b.add("", 13, 3, 0, params)  # FUNC_PROTO
    b.add("rmap_walk_anon", 12, 0, proto)  # FUNC, static
    b.add("x", 14, 0, u64, struct.pack("<I", 0))  # VAR
    b.add(".data", 15, 1, 8, struct.pack("<III", 8, 0, 8))  # DATASEC
    b.add("tag", 17, 0, proto, struct.pack("<i", -1))  # DECL_TAG
    b.add("e64", 19, 1, 8, struct.pack("<III", b.s("C"), 0, 1))  # ENUM64
    b.add("rmap_walk_ksm", 12, 1, proto)  # FUNC, global
    return b


def test_func_ids_and_member_offsets() -> None:
    b = _kernel_like()
    found = btf.parse(b.bytes(), ["rmap_walk_ksm", "rmap_walk_anon", "absent"],
                      ["rmap_walk_control"])  # fmt: skip
    assert found.funcs == {"rmap_walk_anon": 7, "rmap_walk_ksm": 12}
    assert found.members["rmap_walk_control"] == {"arg": 0, "try_lock": 8, "rmap_one": 16}
    assert found.types == 12  # walked to the end: "absent" is never found


def test_parse_stops_once_everything_is_found() -> None:
    found = btf.parse(_kernel_like().bytes(), ["rmap_walk_anon"])
    assert found.types == 7


def test_a_struct_named_like_a_function_is_not_it() -> None:
    b = Blob()
    b.add("rmap_walk_anon", 4, 0, 0)
    assert btf.parse(b.bytes(), ["rmap_walk_anon"]).funcs == {}


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x9f\xeb", "shorter than its header"),
        (Blob().bytes(magic=0x9FEB), "not little-endian BTF"),
        (struct.pack("<HBBIIIII", btf.MAGIC, 1, 0, 24, 0, 1000, 0, 1), "outside the file"),
    ],
)
def test_damaged_btf_is_one_line(blob: bytes, message: str) -> None:
    with pytest.raises(btf.BTFError, match=message):
        btf.parse(blob, ["f"])


def test_unknown_kind() -> None:
    b = Blob()
    b.add("f", 25, 0, 0)
    with pytest.raises(btf.BTFError, match="unknown kind 25"):
        btf.parse(b.bytes(), ["f"])


def test_a_boots_lookup_is_kept_for_the_next_program(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """With the guest's cache directory the second lookup reads the stored
    result, not the BTF (here overwritten with garbage of the same size);
    another size is another kernel's file, looked up again."""
    vmlinux = tmp_path / "vmlinux"
    blob = _kernel_like().bytes()
    vmlinux.write_bytes(blob)
    monkeypatch.setenv(bootcache.ENV, str(tmp_path / "cache"))
    first = btf.cached_lookup(["rmap_walk_anon"], ["rmap_walk_control"], vmlinux)
    vmlinux.write_bytes(b"\0" * len(blob))
    assert btf.cached_lookup(["rmap_walk_anon"], ["rmap_walk_control"], vmlinux) == first
    assert first.funcs and len(list((tmp_path / "cache").glob("btf-*.json"))) == 1
    vmlinux.write_bytes(b"\0" * (len(blob) + 4))
    with pytest.raises(btf.BTFError, match="magic"):  # another file: parsed again
        btf.cached_lookup(["rmap_walk_anon"], ["rmap_walk_control"], vmlinux)
    monkeypatch.delenv(bootcache.ENV)
    vmlinux.write_bytes(blob)
    assert btf.cached_lookup(["rmap_walk_anon"], [], vmlinux).funcs == first.funcs


def test_missing_btf_file(tmp_path: Path) -> None:
    with pytest.raises(btf.BTFError, match="CONFIG_DEBUG_INFO_BTF"):
        btf.lookup(["f"], path=tmp_path / "vmlinux")


# -- ring buffer ----------------------------------------------------------

SIZE = 4 * mmap.PAGESIZE


def _ring_file(tmp_path: Path, entries: list[tuple[int, bytes]], prod: int) -> tuple[int, Path]:
    """A file laid out like the map's mapping: consumer page, producer
    page, then the data twice."""
    page = mmap.PAGESIZE
    data = bytearray(SIZE)
    pos = 0
    for flags, payload in entries:
        struct.pack_into("<II", data, pos, len(payload) | flags, 0)
        data[pos + 8 : pos + 8 + len(payload)] = payload
        pos += (len(payload) + 8 + 7) & ~7
    body = bytearray(page) + struct.pack("<Q", prod).ljust(page, b"\0") + data + data
    path = tmp_path / "ring"
    path.write_bytes(bytes(body))
    return os.open(path, os.O_RDWR), path


def test_ring_reads_committed_records_and_consumes_them(tmp_path: Path) -> None:
    a, b, c = b"A" * 56, b"B" * 12, b"C" * 56
    fd, path = _ring_file(tmp_path, [(0, a), (DISCARD, b), (0, c), (BUSY, a)], 64 + 24 + 64 + 64)
    ring = RingBuffer(fd, SIZE)
    assert list(ring.read()) == [a, c]  # the discarded one skipped, the busy one left
    (cons,) = struct.unpack_from("<Q", path.read_bytes(), 0)
    assert cons == 64 + 24 + 64
    assert list(ring.read()) == []  # still busy
    ring.close()


# -- records to walks -----------------------------------------------------

KALLSYMS = """\
ffffffff81300000 T try_to_migrate
ffffffff81300100 t try_to_migrate_one
ffffffff81300800 t remove_migration_pte
ffffffff81301000 T some_other_callback
ffffffff81302000 t __pfx_next
"""


def _rec(**kw: int) -> bytes:
    base = {"END": 5000, "DURATION": 1200, "PID": (7 << 32) | 42, "FOLIO": 0xFFFFEA0000001000,
            "RMAP_ONE": 0xFFFFFFFF81300100, "LOCKED": 0, "FUNCTION": 0}  # fmt: skip
    base.update(kw)
    return records.RECORD.pack(*(base[f.name] for f in records.Field))


def test_callbacks_are_exact_lines_of_kallsyms() -> None:
    text = (
        "ffffffff81000100 t page_mkclean_one\n"  # the first line
        "ffffffff81000200 t try_to_migrate_one_more\n"  # a longer name
        "ffffffff81000300 t remove_migration_pte\n"
        "ffffffffc0000000 t try_to_unmap_one\t[some_module]\n"  # not vmlinux's
        "ffffffff81000400 d folio_referenced_one\n"  # not text
        "ffffffff81000500 T try_to_migrate_one\n"
    )
    assert records._callbacks(text) == {
        0xFFFFFFFF81000100: "page_mkclean_one",
        0xFFFFFFFF81000300: "remove_migration_pte",
        0xFFFFFFFF81000500: "try_to_migrate_one",
    }


def test_record_layout() -> None:
    r = records.decode(_rec())
    assert records.RECORD_SIZE == 56
    assert (r.end_ns, r.duration_ns, r.pid, r.folio) == (5000, 1200, 42, 0xFFFFEA0000001000)


def test_walks_name_callers_and_follow_tasks() -> None:
    recs = [
        records.decode(_rec()),
        records.decode(_rec(RMAP_ONE=0xFFFFFFFF81300800, LOCKED=1, FUNCTION=1)),
        records.decode(_rec(RMAP_ONE=0xFFFFFFFF81301010, PID=99)),  # not followed
        records.decode(_rec(RMAP_ONE=0xFFFFFFFF81301010, FOLIO=0)),
        records.decode(_rec(FUNCTION=5)),  # no such function: a walk lost
    ]
    order = [("rmap_walk_anon", "anon"), ("rmap_walk_file", "file")]
    out = records.walks(recs, order, records.Symbols(KALLSYMS), {42})
    assert [(w.page_type, w.function, w.caller) for w in out.walks] == [
        ("anon", "rmap_walk", "try_to_migrate"),
        ("file", "rmap_walk_locked", "remove_migration_ptes"),
        ("anon", "rmap_walk", "some_other_callback"),  # unknown callback: its own name
    ]
    assert out.walks[0].folio == 0xFFFFEA0000001000 and out.walks[2].folio is None
    assert all(w.end_ns == 5000 and w.duration_ns == 1200 and w.pid == 42 for w in out.walks)
    assert out.lost == 1
    assert len(records.walks(recs, order, None, None).walks) == 4


def test_a_boots_callback_addresses_are_kept_for_the_next_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within a boot (its boot id) the callbacks come from the cache, and
    kallsyms is read only for an address that is not one of them."""
    kallsyms, boot = tmp_path / "kallsyms", tmp_path / "boot_id"
    kallsyms.write_text(KALLSYMS)
    boot.write_text("b1\n")
    monkeypatch.setattr(records, "BOOT_ID", boot)
    monkeypatch.setenv(bootcache.ENV, str(tmp_path / "cache"))
    first = records.Symbols.read(kallsyms)
    kallsyms.write_text("")  # what is cached does not need it
    again = records.Symbols.read(kallsyms)
    assert again.known == first.known and again.name(0xFFFFFFFF81300100) == "try_to_migrate_one"
    assert again.name(0xFFFFFFFF81301010) == ""  # not a callback: the (now empty) file
    boot.write_text("b2\n")  # another boot, another KASLR offset: read again
    assert records.Symbols.read(kallsyms).known == {}


def test_callers_of_callbacks_under_compiler_suffixes() -> None:
    # kallsyms lines of a Clang LTO build and of clones, with 6.2+'s
    # __pfx_ padding symbols in front of each function.
    text = (
        "ffffffff8161bd20 t __pfx_try_to_unmap_one.llvm.5813520392836112871\n"
        "ffffffff8161bd30 t try_to_unmap_one.llvm.5813520392836112871\n"
        "ffffffff8161cce0 t try_to_migrate_one.constprop.0\n"
        "ffffffff8161e760 T rmap_walk\n"
    )
    sym = records.Symbols(text)
    assert records.caller(sym.name(0xFFFFFFFF8161BD30)) == "try_to_unmap"
    assert records.caller(sym.name(0xFFFFFFFF8161CCE0)) == "try_to_migrate"
    assert records.caller("some_callback.isra.0") == "some_callback.isra.0"  # unknown: as it is


def test_symbols_without_kallsyms() -> None:
    sym = records.Symbols("")
    assert sym.name(0xFFFFFFFF81300100) == "" and sym.name(0) == ""


# -- the backend without a kernel ----------------------------------------


def test_unarmed_backend_has_no_walks() -> None:
    p = Bpf({"rmap_walk_anon": "anon"})
    assert p.walks("ignored").walks == []
    p.close()  # nothing to close


def test_not_root_is_one_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(Unavailable, match=r"^not root"):
        Bpf().check(None)  # type: ignore[arg-type]


def test_verifier_log_last_line() -> None:
    e = sc.BpfError("load x", 13, "0: R1=ctx\ninvalid mem access 'scalar'\nprocessed 9 insns\n")
    assert e.last_log_line() == "invalid mem access 'scalar'"
    assert "Permission denied" in str(e)


def test_a_call_step_runs_at_restore_and_is_never_on_disk(tmp_path: Path) -> None:
    ran: list[str] = []
    j = Journal(tmp_path, tag="t")
    marker = tmp_path / "knob"
    marker.write_text("0")
    j.set(marker, "1")
    j.on_undo(Undo("call", "bpf", action=lambda: ran.append("closed")))
    saved = json.loads(next(tmp_path.glob("journal-*.json")).read_text())
    assert [s["kind"] for s in saved["steps"]] == ["write"]
    j.restore()
    assert ran == ["closed"] and marker.read_text() == "0"


def test_bpf_gets_no_trace_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bpf records into its own ring buffer map: nothing is made in tracefs
    for it, and what the sampling loop asks of the instance is a no-op;
    a probe backend still gets its private instance."""
    from rmapbench.tracing import tracefs
    from rmapbench.tracing.probes import DynamicProbe

    (tmp_path / "instances").mkdir()
    monkeypatch.setattr(tracefs, "find_tracefs", lambda: tmp_path)
    with Journal(tag="t", directory=tmp_path / "j") as journal:
        tfs, inst = tracefs.instance_for(Bpf(), journal, 256)
        assert isinstance(inst, tracefs.NoBuffer) and tfs.root == tmp_path
        inst.follow_pids([1, 2])
        inst.clear()
        inst.drain()
        assert (inst.take(), inst.lost_events(), inst.followed) == ("", 0, [1, 2])
        assert not list((tmp_path / "instances").iterdir())
        with pytest.raises(tracefs.TraceError, match="no trace instance"):
            inst.enable("rmap", "rmap_walk")

        # A probe backend's instance is made (the fake tracefs has no
        # trace_clock to read back, so it stops there).
        with pytest.raises(OSError):
            tracefs.instance_for(DynamicProbe("fprobe"), journal, 256)
        assert [p.name[:10] for p in (tmp_path / "instances").iterdir()] == ["rmapbench-"]
