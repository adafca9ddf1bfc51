"""Damage to kernel-produced trace text, for the property tests of its
parsers (tests/unit/test_trace_damage.py): each recorded line changed the
way a kernel we did not build, a reader cut short, or bad memory behind a
%s could change it.

Each kind says what a parser owes it: HARMLESS damage (what a later
kernel may add or reorder) must read as the recorded line did; a lost
events marker must be counted; any other damage must give the same
records (some maybe with what the damage hid unknown) or be counted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parent / "unit" / "fixtures"

# Derandomized: the same examples on every run, in CI too.
SETTINGS = {"derandomize": True, "deadline": None, "database": None}

HARMLESS = ("extra field", "field given twice alike", "fields reordered", "long extra field")
KINDS = (
    "truncated", "field dropped", "field given twice", "out of range", "not a number",
    "unknown event", "hashed pointer", "garbage inside", "garbage line", "very long line",
    "lost marker", *HARMLESS,
)  # fmt: skip

_KV = re.compile(r"\w+=\S+")
# The event name after the timestamp, or a graph line's function.
_EVENT = re.compile(r"(\d+\.\d+: )([\w.]+)(:)|(\|\s+)(\w+)(\(\))")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])|0x[0-9a-f]+|\b[0-9a-f]{16}\b")


def sections(name: str, marker: str = "sample") -> list[str]:
    """A fixture's `# rmapbench sample N` sections (or another marker's)."""
    text = (FIXTURES / name).read_text()
    parts = re.split(rf"^# rmapbench {marker} \d+\n", text, flags=re.MULTILINE)
    return [p for p in parts[1:] if p.strip()] or [text]


def event_lines(text: str) -> list[int]:
    lines = text.split("\n")
    return [i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")]


class Damaged:
    def __init__(self, kind: str, text: str, lost: int = 0, lines: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.text = text
        self.lost = lost  # events a lost marker it added says were lost
        self.lines = lines  # what the damaged line became

    def __repr__(self) -> str:  # the damage, not the whole sample
        shown = [ln if len(ln) < 300 else f"{ln[:200]}...({len(ln)} chars)" for ln in self.lines]
        return f"Damaged({self.kind!r}, {shown!r}, lost={self.lost})"

    def _repr_pretty_(self, p: object, cycle: bool) -> None:  # how hypothesis shows it
        p.text(repr(self))  # type: ignore[attr-defined]


def _replace(line: str, m: re.Match[str], group: int, new: str) -> str:
    return line[: m.start(group)] + new + line[m.end(group) :]


def damage_line(draw: Callable[..., object], line: str, kind: str) -> list[str] | None:
    """The line (or lines) `kind` makes of `line`; None when the kind has
    nothing to act on in it."""
    kvs = list(_KV.finditer(line))
    numbers = list(_NUMBER.finditer(line))
    if kind == "truncated":
        # Something is left: a line gone whole is no damage a parser can see.
        raw = line.encode()
        lead = len(line) - len(line.lstrip())
        cut = draw(st.integers(min(lead + 1, len(raw) - 1), max(0, len(raw) - 1)))
        assert isinstance(cut, int)
        return [raw[:cut].decode(errors="replace")]
    if kind in ("field dropped", "field given twice", "field given twice alike"):
        if not kvs:
            return None
        m = kvs[draw(st.integers(0, len(kvs) - 1))]  # type: ignore[index]
        if kind == "field dropped":
            return [(line[: m.start()] + line[m.end() :]).rstrip()]
        key, value = m.group(0).split("=", 1)
        other = value if kind.endswith("alike") else value + "1"
        return [f"{line} {key}={other}"]
    if kind == "fields reordered":
        if len(kvs) < 2:
            return None
        order = draw(st.permutations(range(len(kvs))))
        assert isinstance(order, list)
        out, at = [], 0
        for m, i in zip(kvs, order, strict=True):
            out += [line[at : m.start()], kvs[i].group(0)]
            at = m.end()
        return ["".join(out) + line[at:]]
    if kind in ("out of range", "not a number", "hashed pointer"):
        if not numbers:
            return None
        m = numbers[draw(st.integers(0, len(numbers) - 1))]  # type: ignore[index]
        if kind == "out of range":
            # (after a dash "-5" would be another pid: "comm--5" is comm "comm-")
            sign = [] if line[m.start() - 1 : m.start()] == "-" else ["-5"]
            new = draw(st.sampled_from(
                ["9" * 5000, "1" + "0" * 25, str(1 << 64), "0x1" + "0" * 16, *sign]))  # fmt: skip
        elif kind == "not a number":
            new = draw(st.sampled_from(["zz", "1.2.3", "0x", "ffffzz", "1_000", "0b101", "", "+7"]))
        else:
            new = draw(st.sampled_from(["000000006b1a2c3d", "00000000c0ffee12"]))
        assert isinstance(new, str)
        return [_replace(line, m, 0, new)]
    if kind == "unknown event":
        e = _EVENT.search(line)
        if not e:
            return None
        g = 2 if e.group(2) else 5
        return [_replace(line, e, g, "rmap_walk_v9_new")]
    if kind == "extra field":
        name = draw(st.sampled_from(["nr_vmas", "node", "zz", "flags2"]))
        return [f"{line} {name}=3"]
    if kind == "long extra field":
        return [f"{line} note={'a' * 100_000}"]
    if kind == "garbage inside":
        at = draw(st.integers(0, len(line)))
        junk = draw(st.binary(min_size=1, max_size=12).map(_no_space))
        assert isinstance(at, int) and isinstance(junk, str)
        return [line[:at] + junk + line[at:]]
    if kind == "garbage line":
        junk = draw(st.binary(min_size=1, max_size=200).map(lambda b: b.decode(errors="replace")))
        assert isinstance(junk, str)
        return [line, *junk.split("\n")]
    if kind == "very long line":
        return [line, "x" * 300_000]
    raise AssertionError(kind)


def _no_space(b: bytes) -> str:
    """Bytes as the reader decodes them, without whitespace: a %s's bad
    bytes land inside a field, never split one number into two."""
    text = b.decode(errors="replace")
    return "".join("\ufffd" if c.isspace() else c for c in text) or "\ufffd"


@st.composite
def damaged(draw: st.DrawFn, text: str, kinds: tuple[str, ...] = KINDS) -> Damaged:
    """`text` with one of its lines damaged by one kind of damage."""
    lines = text.split("\n")
    at = draw(st.sampled_from(event_lines(text)))
    kind = draw(st.sampled_from(kinds))
    if kind == "lost marker":
        n = draw(st.integers(1, 10**6))
        marker = draw(st.sampled_from([f"CPU:1 [LOST {n} EVENTS]", "CPU:0 [LOST EVENTS]"]))
        lost = n if "LOST EVENTS" not in marker else 1
        return Damaged(kind, "\n".join([*lines[:at], marker, *lines[at:]]), lost, (marker,))
    new = damage_line(draw, lines[at], kind)
    if new is None:
        return Damaged("none", text)
    return Damaged(kind, "\n".join([*lines[:at], *new, *lines[at + 1 :]]), 0, tuple(new))


def compatible(got: list[tuple[object, ...]], recorded: list[tuple[object, ...]],
               unknown: dict[int, object]) -> bool:  # fmt: skip
    """Whether every record of `got` is one of `recorded` (each used once),
    maybe with a position of `unknown` (index -> its unknown value) unknown."""
    left = list(recorded)
    for g in got:
        for i, r in enumerate(left):
            if all(a == b or (k in unknown and a == unknown[k])
                   for k, (a, b) in enumerate(zip(g, r, strict=True))):  # fmt: skip
                del left[i]
                break
        else:
            return False
    return True
