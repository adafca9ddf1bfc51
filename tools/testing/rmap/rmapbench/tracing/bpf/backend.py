"""The "bpf" backend: each walk timed by a fentry and a fexit program.

auto's first choice where the kernel has no rmap tracepoint
(select.AUTO_ORDER): against the ground-truth kernel it came closest to
the in-kernel duration (docs/ground-truth.md). It exists to put less of
the probe's own cost inside the timed window than fprobe does (issue #12):
what lies between its two clock reads is the tail of one BPF program and
the head of another, with the trampoline around the body (programs.py),
where fprobe's window holds the entry event's ring buffer commit and hist
trigger and the return hook (tracing/probes.py, tracing/calibrate.py).

Its objects - maps, programs, links - are file descriptors of this
process. Nothing global is changed, so nothing is journaled to disk: the
kernel detaches and frees them when the last fd closes, which the
process's exit does even on SIGKILL. The journal still gets an in-memory
step that closes them (machine/knobs.py, kind "call"), so a restore
really detaches the programs at the point it runs, before what comes
after it (a calibration's own programs on the same function; a second
backend's round).

ctypes and mmap (syscall.py, ringbuf.py) are imported when the backend is
checked, not with this module: every program imports it, few use it, and
imports are a visible share of a program's time under TCG.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import struct
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rmapbench.machine.knobs import Undo
from rmapbench.tracing import events, walkfuncs
from rmapbench.tracing.backend import Description, Unavailable
from rmapbench.tracing.bpf import btf, programs, records
from rmapbench.tracing.bpf import insn as bpf_insn
from rmapbench.tracing.tracefs import Instance, TraceFS

if TYPE_CHECKING:
    from rmapbench.tracing.bpf.ringbuf import RingBuffer

RWC = "rmap_walk_control"
RINGBUF_BYTES = 4 << 20  # 64-byte records: 65,536 walks between two reads
SLOTS = 4096  # tasks in a walk at once, per function
FOLLOWED = 1024  # tasks followed at once (follow())
JIT_ENABLE = Path("/proc/sys/net/core/bpf_jit_enable")
LOCKDOWN = Path("/sys/kernel/security/lockdown")
# What check() looks up in the BTF: every walk function and the
# calibration's (tracing/calibrate.py FUNCTION), in one pass per process
# (a later backend of the same run - the calibration's - reuses it).
CALIBRATION_FUNCTION = "__do_sys_getppid"


@functools.cache
def _btf() -> tuple[btf.Found, float]:
    t0 = time.perf_counter()
    found = btf.cached_lookup([*walkfuncs.SIGNATURES, CALIBRATION_FUNCTION], [RWC])
    return found, time.perf_counter() - t0


class Bpf:
    """fentry/fexit programs on `functions` (function -> page type)."""

    name = "bpf"
    own_buffer = True  # its ring buffer map: given no trace instance (tracefs.NoBuffer)

    def __init__(self, functions: dict[str, str] | None = None) -> None:
        self.functions = dict(functions or events.WALK_FUNCTIONS)
        self.order = list(self.functions.items())  # the records' function numbers
        self.pids: set[int] | None = None
        self._found: btf.Found | None = None
        self.btf_seconds = 0.0
        self.load_seconds = 0.0
        self._fds: list[int] = []  # maps, programs, links: closed newest first
        self._ring: RingBuffer | None = None
        self._counters = -1
        self._follow = -1  # the follow map: which tasks' walks the programs time
        self._seen = [0] * programs.COUNTERS  # counter values already reported
        self._symbols: records.Symbols | None = None

    # -- detection ----------------------------------------------------------
    def check(self, tfs: TraceFS) -> None:
        from rmapbench.tracing.bpf import syscall as sc

        if os.geteuid() != 0:
            raise Unavailable("not root (fentry/fexit programs need CAP_BPF and CAP_PERFMON)")
        if os.uname().machine not in sc.NR_BPF:
            raise Unavailable(f"no bpf(2) number known for {os.uname().machine}")
        if _read(LOCKDOWN).find("[confidentiality]") >= 0:
            raise Unavailable("kernel lockdown=confidentiality forbids BPF tracing programs")
        if _read(JIT_ENABLE).strip() == "0":
            raise Unavailable("BPF JIT disabled (net.core.bpf_jit_enable=0): no trampolines")
        try:
            probe = sc.map_create(sc.MAP_ARRAY, 4, 8, 1, "rmapbench_chk")
            sc.close(probe)
        except sc.BpfError as e:
            if e.errno == errno.ENOSYS:
                raise Unavailable("no bpf(2) system call (CONFIG_BPF_SYSCALL)") from None
            raise Unavailable(f"cannot create a BPF map: {e.strerror}") from None
        try:
            found, seconds = _btf()
        except btf.BTFError as e:
            raise Unavailable(str(e)) from None
        missing = [f for f in self.functions if f not in found.funcs]
        if missing:
            # 6.15+: a walk by its substitute's name (tracing/walkfuncs.py).
            instead = walkfuncs.substituted(self.functions, found.funcs.__contains__)
            if instead is None:
                raise Unavailable(
                    f"{', '.join(missing)} not in the kernel's BTF (inlined, or renamed)"
                )
            self.functions, self.order = instead, list(instead.items())
        walk = any(walkfuncs.is_walk(f) for f in self.functions)
        if walk and "rmap_one" not in found.members.get(RWC, {}):
            raise Unavailable(f"no struct {RWC} with rmap_one in the kernel's BTF")
        self._found, self.btf_seconds = found, seconds

    # -- arming -------------------------------------------------------------
    def arm(self, tfs: TraceFS, inst: Instance) -> Description:
        from rmapbench.tracing.bpf import syscall as sc
        from rmapbench.tracing.bpf.ringbuf import RingBuffer

        assert self._found is not None, "check() first"
        found = self._found
        # Closed at restore (every descriptor made below; none yet is fine).
        with tfs.journal.change(Undo("call", f"bpf programs of {self.name}", action=self.close)):
            pass
        t0 = time.perf_counter()
        try:
            self._counters = self._map(sc.MAP_ARRAY, 4, 8, programs.COUNTERS, "rmapbench_cnt")
            self._follow = self._map(sc.MAP_HASH, 4, 4, FOLLOWED, "rmapbench_pid")
            ring = self._map(sc.MAP_RINGBUF, 0, 0, RINGBUF_BYTES, "rmapbench_rb")
            self._ring = RingBuffer(ring, RINGBUF_BYTES)
            offset = found.members.get(RWC, {}).get("rmap_one", 0)
            for index, func in enumerate(self.functions):
                start = self._map(sc.MAP_HASH, 8, 8, SLOTS, f"rb_start{index}")
                maps = programs.Maps(start, ring, self._counters, self._follow)
                sig = walkfuncs.SIGNATURES.get(func)
                shape = programs.Shape(index, sig is not None, sig is not None,
                                       walkfuncs.has_locked(func), offset)  # fmt: skip
                if sig is not None:
                    shape = replace(shape, folio_arg=sig.folio, rwc_arg=sig.rwc,
                                    locked_arg=sig.locked or 0)  # fmt: skip
                btf_id = found.funcs[func]
                # fexit first: a walk entered between the two attachments
                # has no slot and its exit counts as unmatched, instead of
                # a slot that no exit would consume.
                self._attach(programs.exit_(maps, shape), sc.TRACE_FEXIT, btf_id, func, "x")
                self._attach(programs.entry(maps), sc.TRACE_FENTRY, btf_id, func, "e")
        except sc.BpfError as e:
            self.close()
            why = e.last_log_line()
            if not why and e.errno == errno.EPERM:
                # Refused before the verifier ran: capabilities, an LSM, lockdown.
                why = "refused before verification (capabilities, lockdown or an LSM)"
            raise Unavailable(f"{e}{': ' + why if why else ''}") from None
        except OSError as e:
            self.close()
            raise Unavailable(f"cannot map the BPF ring buffer: {e.strerror}") from None
        self.load_seconds = time.perf_counter() - t0
        self._seen = self._read_counters()
        where = ", ".join(self.functions)
        detail = (
            f"fentry/fexit BPF programs on {where}; clock read last at entry, first at exit; "
            "followed tasks only, paired in kernel per task; rwc->rmap_one names the caller; "
            "ring buffer; "
            f"BTF parsed in {self.btf_seconds * 1000:.0f} ms, "
            f"loaded and attached in {self.load_seconds * 1000:.0f} ms"
        )
        types = tuple(dict.fromkeys(self.functions.values()))
        return Description(self.name, "mono", 1, detail, types)

    def _map(self, kind: int, key: int, value: int, entries: int, name: str) -> int:
        from rmapbench.tracing.bpf import syscall as sc

        fd = sc.map_create(kind, key, value, entries, name)
        self._fds.append(fd)
        return fd

    def _attach(self, code: list[bpf_insn.Insn], kind: int, btf_id: int, func: str,
                suffix: str) -> None:  # fmt: skip
        from rmapbench.tracing.bpf import syscall as sc

        name = f"rb_{suffix}_{func}"[:15]
        what = f"{'fexit' if suffix == 'x' else 'fentry'} program on {func}"
        prog = sc.prog_load(bpf_insn.assemble(code), kind, btf_id, name, f"load {what}")
        self._fds.append(prog)
        self._fds.append(sc.attach(prog, f"attach {what}"))

    def close(self) -> None:
        """Detach and free everything (links first: the programs stop)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.pop())
        self._counters = self._follow = -1

    # -- collecting ---------------------------------------------------------
    def follow(self, inst: Instance, pids: list[int]) -> None:
        """Time only these tasks' walks: the follow map the programs look
        the thread up in before the timed window (programs.py). Until the
        first call no walk is timed. The records are filtered again in
        user space: a walk already past the entry when a task stopped
        being followed."""
        from rmapbench.tracing.bpf import syscall as sc

        wanted = set(pids)
        if self._follow >= 0:
            for pid in (self.pids or set()) - wanted:
                with contextlib.suppress(sc.BpfError):
                    sc.map_delete(self._follow, struct.pack("<I", pid))
            for pid in wanted - (self.pids or set()):
                sc.map_update(self._follow, struct.pack("<I", pid), struct.pack("<I", 1))
        self.pids = wanted

    def discard(self) -> None:
        """Forget what was recorded so far (the sampling loop's clear and
        drain: tracing/tracefs.py Instance.drain())."""
        if self._ring is not None:
            self._ring.discard()
            self._seen = self._read_counters()

    def _read_counters(self) -> list[int]:
        if self._counters < 0:
            return [0] * programs.COUNTERS
        from rmapbench.tracing.bpf import syscall as sc

        return [
            struct.unpack("<Q", sc.map_lookup(self._counters, struct.pack("<I", i), 8))[0]
            for i in range(programs.COUNTERS)
        ]

    def walks(self, trace_text: str) -> events.Pairing:
        """The walks recorded since the last call (the trace text is not
        this backend's: ignored)."""
        if self._ring is None:
            return events.Pairing()
        recs, damaged = records.decode_all(self._ring.read())
        damaged += self._ring.take_damaged()
        if recs and self._symbols is None:
            self._symbols = records.Symbols.read()
        out = records.walks(recs, self.order, self._symbols, self.pids)
        now = self._read_counters()
        # Walks the programs dropped (a full ring buffer), and records that
        # could not be read: the sample counts as having lost events.
        out.lost += now[programs.DROPPED] - self._seen[programs.DROPPED] + damaged
        out.unmatched_exits = now[programs.UNMATCHED] - self._seen[programs.UNMATCHED]
        self._seen = now
        return out


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
