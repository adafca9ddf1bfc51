"""Property tests: event format files as a later or earlier draft of the
proposed rmap tracepoints might lay them out (fields added, removed,
renamed, retyped, printed otherwise), or damaged, are either recognised
correctly or refused as a format not understood, naming the event.

"Correctly" is checked on what the backend then reads: a trace line is
rendered from the changed format (its print fmt applied to known values,
as the kernel would print them with hash-ptr off), and the backend must
read from it the walk those values describe, and name the fields its
in-kernel pairing keys on by what the format prints as folio= and rwc=.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from trace_damage import FIXTURES, SETTINGS

from rmapbench.machine.knobs import Journal
from rmapbench.tracing import tracepoint
from rmapbench.tracing.backend import Unavailable
from rmapbench.tracing.events import Walk
from rmapbench.tracing.tracefs import TraceFS
from rmapbench.tracing.tracepoint import END, START, V4, SyscallPair, Tracepoint

FOLIO, RWC, DURATION = 0xFFFFEA0000123440, 0xFFFFC90000ABC008, 123_456


@dataclass(frozen=True)
class FieldLine:
    type: str
    name: str
    size: int
    signed: int


@dataclass(frozen=True)
class Pair:
    label: str
    conversion: str
    arg: str


@dataclass(frozen=True)
class Fmt:
    name: str
    fields: tuple[FieldLine, ...]
    printed: tuple[Pair, ...]

    def text(self) -> str:
        common = [FieldLine("unsigned short", "common_type", 2, 0),
                  FieldLine("int", "common_pid", 4, 1)]  # fmt: skip
        lines = [f"name: {self.name}", "ID: 640", "format:"]
        at = 0
        for block in (common, self.fields):
            for f in block:
                lines.append(f"\tfield:{f.type} {f.name};\toffset:{at};\tsize:{f.size};"
                             f"\tsigned:{f.signed};")  # fmt: skip
                at += f.size
            lines.append("")
        fmt = " ".join(f"{p.label}=%{p.conversion}" for p in self.printed)
        args = "".join(f", {p.arg}" for p in self.printed)
        return "\n".join([*lines, f'print fmt: "{fmt}"{args}', ""])


def recorded(name: str) -> Fmt:
    """A ground-truth format file as the structure above."""
    text = (FIXTURES / "rmap_truth_formats" / name).read_text()
    fields = tuple(
        FieldLine(t.strip(), n, int(size), int(signed))
        for t, n, size, signed in re.findall(
            r"field:(.*?)\b(\w+);\toffset:\d+;\tsize:(\d+);\tsigned:(\d);", text)
        if not n.startswith("common_")
    )  # fmt: skip
    m = re.search(r'print fmt: "(.*)", (.*)$', text, re.MULTILINE)
    assert m
    convs = re.findall(r"(\w+)=%(\w+)", m.group(1))
    args = [a.strip() for a in re.split(r", (?=\(void|REC|__get)", m.group(2))]
    printed = tuple(Pair(lab, conv, arg) for (lab, conv), arg in zip(convs, args, strict=True))
    return Fmt(name, fields, printed)


RECORDED = {n: recorded(n) for n in (V4, START, END)}


# -- the kernel's side: a line printed from a format ---------------------------


def render(fmt: Fmt, values: dict[str, object]) -> str:
    """The text the print fmt makes of these field values: each stored
    in its field's size, then printed at its conversion's length."""
    sizes = {f.name: f.size for f in fmt.fields}
    out = []
    for p in fmt.printed:
        m = re.fullmatch(r"REC->(\w+) \? \"(\w+)\" : \"(\w+)\"", p.arg)
        if m:
            value: object = m.group(2) if values[m.group(1)] else m.group(3)
        else:
            m = re.search(r"REC->(\w+)|__get_str\((\w+)\)", p.arg)
            assert m
            field = m.group(1) or m.group(2)
            value = values[field]
            if isinstance(value, int):
                value &= (1 << 8 * sizes[field]) - 1
        out.append(f"{p.label}={_convert(p.conversion, value)}")
    return " ".join(out)


def _convert(conversion: str, value: object) -> str:
    if conversion == "s":
        return str(value)
    n = int(value) if isinstance(value, (int, bool)) else 7
    if conversion in ("p", "px"):
        return f"{n:016x}"
    if conversion.startswith("p"):
        return "some_symbol+0x0/0x10"  # %pS and the like
    length = re.match(r"#?(hh|h|ll|l|)", conversion)
    assert length
    n &= (1 << {"hh": 8, "h": 16, "": 32}.get(length.group(1), 64)) - 1
    if conversion.endswith(("x", "X")):
        return ("0x" if conversion.startswith("#") else "") + f"{n:x}"
    return str(n)


def _line(us: int, fmt: Fmt, values: dict[str, object]) -> str:
    return f"         python3-201     [001] ...1.    12.{us:06d}: {fmt.name}: {render(fmt, values)}"


# -- the changes a draft may make -------------------------------------------------

INT_CONVERSIONS = ("p", "px", "pS", "lx", "#lx", "llu", "llx", "lld", "u", "d", "hhu")
INT_TYPES = (("unsigned long", 8, 0), ("void *", 8, 0), ("u64", 8, 0), ("unsigned int", 4, 0),
             ("s64", 8, 1), ("bool", 1, 0), ("int", 4, 1))  # fmt: skip
HARMLESS = ("field added", "fields reordered", "printed reordered", "field renamed")


@st.composite
def changed(draw: st.DrawFn, fmt: Fmt) -> tuple[str, Fmt]:
    kind = draw(st.sampled_from(
        ("field added", "field removed", "field renamed", "label renamed", "field retyped",
         "printed otherwise", "fields reordered", "printed reordered")))  # fmt: skip
    fields, printed = list(fmt.fields), list(fmt.printed)
    if kind == "field added":
        at = draw(st.integers(0, len(printed)))
        fields.append(FieldLine("unsigned int", "nr_vmas", 4, 0))
        printed.insert(at, Pair("nr_vmas", "u", "REC->nr_vmas"))
    elif kind == "fields reordered":
        fields = draw(st.permutations(fields))
    elif kind == "printed reordered":
        printed = draw(st.permutations(printed))
    else:
        i = draw(st.integers(0, len(printed) - 1))
        p = printed[i]
        read = re.search(r"REC->(\w+)|__get_str\((\w+)\)", p.arg)
        assert read
        field = read.group(1) or read.group(2)
        j = next(k for k, f in enumerate(fields) if f.name == field)
        stringy = "__get_str" in p.arg
        if kind == "field removed":
            del printed[i]
            if draw(st.booleans()):
                del fields[j]
        elif kind == "field renamed":
            fields[j] = replace(fields[j], name=field + "_v2")
            printed[i] = replace(p, arg=re.sub(rf"\b{field}\b", field + "_v2", p.arg))
        elif kind == "label renamed":
            printed[i] = replace(p, label=p.label + "2")
        elif kind == "field retyped" and not stringy:
            t, size, signed = draw(st.sampled_from(INT_TYPES))
            fields[j] = FieldLine(t, field, size, signed)
        elif kind == "printed otherwise" and p.conversion != "s":
            printed[i] = replace(p, conversion=draw(st.sampled_from(INT_CONVERSIONS)))
        else:
            kind = "none"
    return kind, Fmt(fmt.name, tuple(fields), tuple(printed))


def _tracefs(tmp_path: Path, formats: dict[str, str]) -> TraceFS:
    for name, text in formats.items():
        d = tmp_path / "events" / "rmap" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "format").write_text(text)
    return TraceFS(tmp_path, Journal(directory=tmp_path / "journal"))


def _printed_from(fmt: Fmt, label: str) -> str | None:
    p = next((p for p in fmt.printed if p.label == label), None)
    m = re.search(r"REC->(\w+)", p.arg) if p else None
    return m.group(1) if m else None


def _expect_read(tp: Tracepoint, formats: dict[str, Fmt], locked: bool, page_type: str) -> None:
    """What the checked backend reads of lines printed from the formats."""
    ended = formats[V4 if tp.form == "duration" else END]
    by_role: dict[str, object] = {"folio_addr": FOLIO, "rwc_addr": RWC, "duration_ns": DURATION,
                                  "page_type": page_type, "locked": locked}  # fmt: skip
    values = {f.name: by_role.get(f.name.removesuffix("_v2"), 7)  # a renamed field: its role's
              for fmt in formats.values() for f in fmt.fields}  # fmt: skip
    if tp.form == "duration":
        text = _line(283, ended, values)
        want = DURATION
    else:
        text = _line(100, formats[START], values) + "\n" + _line(283, ended, values)
        want = 183_000
    # The folio is known when printed whole as a pointer; else unknown, never another.
    folio = next((p for p in ended.printed if p.label == "folio"), None)
    field = _printed_from(ended, "folio")
    raw = folio is not None and bool(re.fullmatch(r"px?|#?l?lx", folio.conversion)) and any(
        f.name == field and f.size == 8 for f in ended.fields)  # fmt: skip
    expected = Walk(12_000_283_000, want, 201, "rmap_walk_locked" if locked else "rmap_walk",
                    page_type, folio=FOLIO if raw else None)  # fmt: skip
    pairing = tp.walks(text)
    assert pairing.walks == [expected] and pairing.lost_with(0) == 0, text
    # The in-kernel pairing keys on the fields folio= and rwc= print.
    keys = (_printed_from(ended, "folio") or "folio", _printed_from(ended, "rwc") or "rwc")
    assert tp.keys == keys
    if tp.form == "start_end":
        assert tp.entry_keys == (_printed_from(formats[START], "folio"),
                                 _printed_from(formats[START], "rwc"))  # fmt: skip
        assert all(any(f.name == k and f.size == 8 for f in ended.fields) for k in tp.keys)


@settings(max_examples=250, **SETTINGS)
@given(data=st.data())
def test_a_changed_draft_is_read_right_or_refused(data: st.DataObject, tmp_path_factory:
                                                  pytest.TempPathFactory) -> None:  # fmt: skip
    forms = data.draw(st.sampled_from([(V4,), (START, END), (V4, START, END)]), label="events")
    prefer = data.draw(st.sampled_from(["auto", "v4", "start-end"]), label="prefer")
    which = data.draw(st.sampled_from(forms), label="changed")
    kind, new = data.draw(changed(RECORDED[which]), label="change")
    event(kind)
    formats = {n: (new if n == which else RECORDED[n]) for n in forms}
    tp = Tracepoint(prefer)
    try:
        tp.check(_tracefs(tmp_path_factory.mktemp("t"), {n: f.text() for n, f in formats.items()}))
    except Unavailable as e:
        # Refused: a format not understood, named; or the form asked for is not there.
        assert "format not understood" in str(e) or "(--tracepoint-form" in str(e), e
        wanted = {"v4": (V4,), "start-end": (START, END)}.get(prefer, forms)
        if kind in HARMLESS and set(wanted) <= set(forms):
            raise AssertionError(f"{kind} refused: {e}") from None
        return
    locked, page_type = data.draw(st.booleans()), data.draw(st.sampled_from(["anon", "ksm"]))
    _expect_read(tp, formats, locked, page_type)


@settings(max_examples=150, **SETTINGS)
@given(data=st.data())
def test_a_damaged_format_file_is_refused_or_read_right(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A format file read short, or with bytes of no encoding."""
    name = data.draw(st.sampled_from((V4, START, END)))
    text = RECORDED[name].text().encode()
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.binary(max_size=8))
    damaged = text[:cut] + junk + (text[cut:] if data.draw(st.booleans()) else b"")
    forms = (V4,) if name == V4 else (START, END)
    root = tmp_path_factory.mktemp("t")
    tfs = _tracefs(root, {n: RECORDED[n].text() for n in forms})
    (root / "events" / "rmap" / name / "format").write_bytes(damaged)
    tp = Tracepoint()
    try:
        tp.check(tfs)
    except Unavailable as e:
        assert f"rmap:{name}: format not understood" in str(e)
        return
    _expect_read(tp, dict(RECORDED), True, "anon")


# -- the syscall events the start/end form's calibration pairs -------------------------

SYSCALL_FORMATS = FIXTURES / "syscall_truth_formats"


@pytest.mark.parametrize(
    ("field", "good"),
    [
        ("\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;", True),
        ("\tfield:long __syscall_nr;\toffset:8;\tsize:8;\tsigned:1;", False),
        ("\tfield:unsigned int __syscall_nr;\toffset:8;\tsize:4;\tsigned:0;", False),
        ("\tfield:int syscall_nr;\toffset:8;\tsize:4;\tsigned:1;", False),
        ("\tfield:int __syscall_nr;\toffset:8;\tsize:four;\tsigned:1;", False),
    ],
)  # fmt: skip
def test_syscall_formats_are_checked(tmp_path: Path, field: str, good: bool) -> None:
    """The calibration saves __syscall_nr into an int synthetic field: a
    kernel whose field is another is refused by name, not left to fail
    (or compare something else) when the triggers are armed."""
    (tmp_path / "synthetic_events").write_text("")
    for name in ("sys_enter_getppid", "sys_exit_getppid"):
        text = (SYSCALL_FORMATS / name).read_text()
        if name == "sys_enter_getppid":
            text = text.replace("\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;", field)
        d = tmp_path / "events" / "syscalls" / name
        d.mkdir(parents=True)
        (d / "format").write_text(text)
    tfs = TraceFS(tmp_path, Journal(directory=tmp_path / "journal"))
    if good:
        SyscallPair().check(tfs)
        return
    with pytest.raises(Unavailable, match="syscalls:sys_enter_getppid: format not understood"):
        SyscallPair().check(tfs)


def test_the_recorded_formats_are_understood() -> None:
    from rmapbench.tracing import eventformat

    for name in (V4, START, END):
        fmt = eventformat.parse((FIXTURES / "rmap_truth_formats" / name).read_text())
        assert fmt.printed["folio"] == eventformat.Printed("p", "(void *)REC->folio_addr",
                                                           "folio_addr")  # fmt: skip
        assert fmt.printed["page_type"].field == "page_type"
        assert fmt.fields["page_type"].type == "__data_loc char[]"
        assert fmt.fields["rwc_addr"] == eventformat.Field("rwc_addr", "unsigned long", 8, False)
        assert tracepoint.understood(fmt, ("folio", "rwc", "page_type", "locked")) == ""
    assert tracepoint.key_fields(RECORDED[END].text()) == ("folio_addr", "rwc_addr")
