"""Event format files (tracefs events/SYSTEM/EVENT/format): the fields an
event records and how its print fmt shows them in the trace text.

The rmap tracepoints are proposed, not merged: a kernel may carry an
earlier or later draft whose fields are named, typed or printed
otherwise. The parsers read the text (tracing/events.py), so what
decides whether they read a draft right is its print fmt: which
name=value pairs it prints, with which conversion, from which field.
parse() gives that, so a backend can check before it arms that the
text holds what it reads, and refuse the event as a format not
understood otherwise. Layout: kernel/trace/trace_events.c (f_show()),
conversions as lib/vsprintf.c takes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


class FormatError(ValueError):
    """A format file that does not read as the kernel writes one; one line."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # the declaration without its name: "unsigned long", "__data_loc char[]"
    size: int
    signed: bool

    @property
    def integer(self) -> bool:
        """A number (a pointer too), not a string or an array."""
        return "[" not in self.type and "__data_loc" not in self.type and 0 < self.size <= 8


@dataclass(frozen=True)
class Printed:
    """What one name=%x pair of the print fmt prints."""

    conversion: str  # length and conversion, extension included: "llu", "p", "px", "s"
    arg: str  # its argument, as the print fmt gives it
    field: str | None  # the field that argument reads (REC->x, __get_str(x)), if one


@dataclass(frozen=True)
class Format:
    name: str
    fields: dict[str, Field]
    printed: dict[str, Printed]  # name in the text -> what prints it there


_FIELD = re.compile(r"\s*field:(?P<decl>[^;]*);(?P<attrs>(?:\s*\w+:[^;]*;)*)\s*", re.ASCII)
_ATTR = re.compile(r"(\w+):([^;]*);", re.ASCII)
_DECL = re.compile(r"(?P<type>.*?)\s*\b(?P<name>\w+)\s*(?P<array>\[[^\]]*\])?", re.ASCII)
_PRINT = re.compile(r'print fmt: "(?P<fmt>(?:[^"\\]|\\.)*)"(?P<args>.*)', re.ASCII | re.DOTALL)
# A conversion: flags, width, precision, length, then the conversion
# (%p with its extension letters: %pS, %px, %pI4 ...).
_CONV = re.compile(
    r"%(?P<flags>[-+ #0]*)(?P<width>\d+|\*)?(?:\.(?P<prec>\d+|\*))?"
    r"(?P<conv>(?:hh|h|ll|l|z|j|t|L)?[diouxXcsn]|p[a-zA-Z0-9]*|%)",
    re.ASCII,
)
_READS = re.compile(r"REC->(\w+)|__get_\w+\(\s*(\w+)\s*\)", re.ASCII)


def parse(text: str) -> Format:
    """The event's name, fields and printed pairs; FormatError when the
    file is not laid out as the kernel writes it."""
    name = ""
    fields: dict[str, Field] = {}
    printed: dict[str, Printed] = {}
    seen_print = False
    for line in text.split("\n"):
        if line.startswith("name: "):
            name = line[len("name: ") :].strip()
        elif line.strip().startswith("field:"):
            f = _field(line)
            fields[f.name] = f
        elif line.startswith("print fmt: "):
            printed = _printed(line)
            seen_print = True
    if not name or not fields or not seen_print:
        raise FormatError("no name, fields or print fmt")
    return Format(name, fields, printed)


def _field(line: str) -> Field:
    m = _FIELD.fullmatch(line)
    d = _DECL.fullmatch(m.group("decl").strip()) if m else None
    if m is None or d is None:
        raise FormatError(f"a field line of no known layout: {line.strip()[:80]!r}")
    attrs = dict(_ATTR.findall(m.group("attrs")))
    try:
        size, signed = int(attrs["size"]), int(attrs["signed"])
    except (KeyError, ValueError):
        raise FormatError(f"a field without its size or sign: {line.strip()[:80]!r}") from None
    type_ = (d.group("type") + (d.group("array") or "")).strip()
    return Field(d.group("name"), type_, size, bool(signed))


def _printed(line: str) -> dict[str, Printed]:
    m = _PRINT.match(line)
    if m is None:
        raise FormatError("a print fmt that is no quoted format and arguments")
    fmt, args = m.group("fmt"), _split_args(m.group("args"))
    out: dict[str, Printed] = {}
    used, before = 0, 0
    for c in _CONV.finditer(fmt):
        if c.group("conv") == "%":
            continue
        # A `*` width or precision takes an argument of its own first.
        used += (c.group("width") == "*") + (c.group("prec") == "*")
        if used >= len(args):
            raise FormatError("a print fmt with fewer arguments than conversions")
        arg = args[used]
        used += 1
        label = re.search(r"(\w+)=$", fmt[before : c.start()])
        before = c.end()
        if label:
            reads = _READS.search(arg)
            read = (reads.group(1) or reads.group(2)) if reads else None
            out[label.group(1)] = Printed(c.group("conv"), arg, read)
    if used != len(args):
        raise FormatError("a print fmt with more arguments than conversions")
    return out


def _split_args(text: str) -> list[str]:
    """', a, f(b, c), "x,y"' -> ['a', 'f(b, c)', '"x,y"']: commas outside
    brackets and string literals."""
    text = text.strip()
    if not text:
        return []
    if not text.startswith(","):
        raise FormatError("a print fmt whose format is not followed by its arguments")
    out, depth, quote, current = [], 0, "", []
    i = 1
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                current.append(text[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    out.append("".join(current).strip())
    if depth or quote or not all(out):
        raise FormatError("a print fmt whose arguments do not parse")
    return out
