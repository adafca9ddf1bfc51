"""What the exit program hands to user space for each walk, and the walks
made of it.

A record is seven u64 (little-endian, the order of Field): the walk's end
and duration (bpf_ktime_get_ns(), CLOCK_MONOTONIC: the trace instance's
"mono", so end times line up with the rest of a run), the task
(tgid << 32 | pid), the folio (arg 0), rwc->rmap_one, `locked` (arg 2 of
rmap_walk_anon/file; 0 for rmap_walk_ksm, which has none) and the
function's number in the backend's list.

The caller is named from rwc->rmap_one, not from a return address. The
rmap_walk_control is the walk's own description, built by the function
that starts it, and in 6.12 each rmap_one callback belongs to exactly one
such function (RMAP_ONE_CALLER): try_to_migrate_one to try_to_migrate,
remove_migration_pte to remove_migration_ptes, page_mkclean_one to
folio_mkclean. That holds whatever the compiler inlined: the return
address names the function the walk returns to, which is the starter only
where rmap_walk() was inlined into it (remove_migration_ptes() returns
into migrate_folio_move(), which events.CALLER_OF_SITE has to map back).
And reading it is one load after the interval, where the return address
needs bpf_get_stack(), an unwind through the trampoline, for which ORC
has no data (unwind_orc.c falls back to frame pointers and marks the
trace unreliable). A callback missing from the table is reported by its
own symbol name.
"""

from __future__ import annotations

import bisect
import contextlib
import enum
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rmapbench.tracing import bootcache
from rmapbench.tracing.events import Pairing, Walk

KALLSYMS = Path("/proc/kallsyms")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _callbacks(text: str) -> dict[int, str]:
    """The table's callbacks' addresses in kallsyms text: each "ADDR t
    NAME" line found with str.find(). Under TCG one regular expression
    over the 7.7 MB, 170,000 lines of Debian 6.12's kallsyms took 2.0-2.6
    s, against 0.7 s to read the file; this takes 0.13 s."""
    found = {}
    for name in RMAP_ONE_CALLER:
        for kind in "tT":
            needle = f" {kind} {name}\n"
            at = text.find(needle)
            while at >= 0:
                start = text.rfind("\n", 0, at) + 1
                with contextlib.suppress(ValueError):
                    found[int(text[start:at], 16)] = name
                at = text.find(needle, at + len(needle))
    return found


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


class Field(enum.IntEnum):
    END = 0
    DURATION = 1
    PID = 2
    FOLIO = 3
    RMAP_ONE = 4
    LOCKED = 5
    FUNCTION = 6


RECORD = struct.Struct("<7Q")
RECORD_SIZE = RECORD.size

# rwc->rmap_one -> the function that builds that rwc and starts the walk
# (6.12: mm/rmap.c, mm/migrate.c, mm/damon/paddr.c, mm/page_idle.c).
RMAP_ONE_CALLER = {
    "try_to_migrate_one": "try_to_migrate",
    "remove_migration_pte": "remove_migration_ptes",
    "try_to_unmap_one": "try_to_unmap",
    "page_mkclean_one": "folio_mkclean",
    "folio_referenced_one": "folio_referenced",
    "damon_folio_mkold_one": "damon_folio_mkold",
    "damon_folio_young_one": "damon_folio_young",
    "page_idle_clear_pte_refs_one": "page_idle_clear_pte_refs",
    "page_make_device_exclusive_one": "make_device_exclusive_range",
}


@dataclass(frozen=True)
class Record:
    end_ns: int
    duration_ns: int
    pid_tgid: int
    folio: int
    rmap_one: int
    locked: int
    function: int

    @property
    def pid(self) -> int:
        """The thread id: what set_event_pid and Walk.pid hold."""
        return self.pid_tgid & 0xFFFFFFFF


class RecordError(ValueError):
    """Bytes of the ring buffer that are no record of the exit program's."""


def decode(blob: bytes) -> Record:
    if len(blob) != RECORD_SIZE:
        raise RecordError(f"a record of {len(blob)} bytes, not {RECORD_SIZE}")
    return Record(*RECORD.unpack(blob))


def decode_all(blobs: Iterable[bytes]) -> tuple[list[Record], int]:
    """The records, and how many blobs were none (of another length: the
    exit program writes only RECORD_SIZE bytes, so a blob of another
    is damage, or another program's)."""
    out, damaged = [], 0
    for blob in blobs:
        try:
            out.append(decode(blob))
        except RecordError:
            damaged += 1
    return out, damaged


class Symbols:
    """Function addresses from /proc/kallsyms (root sees the real ones).

    Read once, when the first record arrives; the callbacks of the table
    are found by their lines (_callbacks()), the rest of the file only
    parsed when an address is not one of them. Under TCG reading and
    matching the file took about 0.9 s, so within a guest boot the
    callbacks' addresses are kept in the boot's cache (tracing/bootcache.py)
    under the boot id (KASLR places them once per boot), and the file is
    read only for an address that is not one of them."""

    def __init__(self, text: str | None, known: dict[int, str] | None = None,
                 path: Path = KALLSYMS) -> None:  # fmt: skip
        """`text`: the file's, or None to read `path` when needed."""
        self._text = text
        self._path = path
        self.known = known if known is not None else _callbacks(self._full())
        self._starts: list[int] | None = None
        self._names: list[str] = []

    def _full(self) -> str:
        if self._text is None:
            try:
                self._text = self._path.read_text()
            except OSError:
                self._text = ""
        return self._text

    @classmethod
    def read(cls, path: Path = KALLSYMS) -> Symbols:
        boot = _boot_id()
        if bootcache.directory() is None or not boot:
            return cls(None, path=path)
        key = [boot, str(path), sorted(RMAP_ONE_CALLER)]
        known = _stored(bootcache.load("kallsyms", key))
        if known is not None:
            return cls(None, known, path)
        symbols = cls(None, path=path)
        bootcache.store("kallsyms", key, {str(a): n for a, n in symbols.known.items()})
        return symbols

    def name(self, addr: int) -> str:
        """The function holding `addr` ("" when unknown or 0)."""
        if not addr:
            return ""
        if addr in self.known:
            return self.known[addr]
        if self._starts is None:
            pairs = sorted(
                (int(m.group(1), 16), m.group(2))
                for m in re.finditer(r"^([0-9a-f]+) [tTwW] (\S+)", self._full(), re.M)
            )
            self._starts = [p[0] for p in pairs]
            self._names = [p[1] for p in pairs]
        i = bisect.bisect_right(self._starts, addr) - 1
        return self._names[i] if i >= 0 and self._starts[i] else ""


def _stored(data: object) -> dict[int, str] | None:
    """Stored callback addresses, if they are what Symbols.read() stores:
    decimal addresses of the table's callbacks (any other shape is read
    from kallsyms again, never trusted)."""
    if not isinstance(data, dict):
        return None
    out = {}
    for addr, name in data.items():
        if not (isinstance(addr, str) and addr.isascii() and addr.isdigit() and len(addr) <= 20):
            return None
        if not isinstance(name, str) or name not in RMAP_ONE_CALLER or int(addr) >= 1 << 64:
            return None
        out[int(addr)] = name
    return out


def caller(rmap_one: str) -> str:
    """The starter of the walk whose rwc->rmap_one is this function. Its
    kallsyms name may carry what the compiler appended: a clone's
    ".constprop.0" or ".isra.0", or the ".llvm.NNNN" of a function a Clang
    LTO build promoted; C names have no dots, so the name is the part
    before the first one."""
    return RMAP_ONE_CALLER.get(rmap_one.split(".", 1)[0], rmap_one)


def walks(records: Iterable[Record], functions: list[tuple[str, str]],
          symbols: Symbols | None, pids: set[int] | None) -> Pairing:  # fmt: skip
    """The walks of these records. `functions`: (function, page type) by
    the records' function number; `pids`: the followed tasks (None: all).
    A record of no function numbered, or of a negative duration, is none
    the programs write: counted as a walk lost."""
    out = Pairing()
    for r in records:
        if pids is not None and r.pid not in pids:
            continue
        if r.function >= len(functions) or r.duration_ns >= 1 << 63:
            out.lost += 1
            continue
        page_type = functions[r.function][1]
        name = symbols.name(r.rmap_one) if symbols is not None else ""
        out.walks.append(
            Walk(
                end_ns=r.end_ns,
                duration_ns=r.duration_ns,
                pid=r.pid,
                function="rmap_walk_locked" if r.locked else "rmap_walk",
                page_type=page_type,
                folio=r.folio or None,
                caller=caller(name),
            )
        )
    return out
