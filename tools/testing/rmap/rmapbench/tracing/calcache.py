"""When the probe-cost calibration runs: once per boot and definition.

Calibrating a probe backend (tracing/calibrate.py) arms two more probes in
an instance of their own and fires them 200 times: about a second per
program under TCG, the same second for every program of a guest boot,
whose kernel and probes do not change between them. The guest runner sets
$RMAPBENCH_CACHE_DIR (tracing/bootcache.py) to a directory on the guest's scratch /tmp, which is
discarded with the guest: the first program of a boot to calibrate a
backend stores the result there, and later ones with the same key reuse it
(`reused: true`, with `calibrated_at`/`calibrated_by` of the program that
measured it, and that program's after-firing figures: only a program that
calibrates arms the after-firing timer). The key is everything the
measurement depends on: the running kernel (release and build), the
backend and its form (the v4 and start/end tracepoints differ), the
calibrated function (for the start/end form, the syscall event pair),
firings, buffer size, and the source of the modules that define the
probes and read their output (named by path, size and mtime: the tree
does not change during a boot). Without the variable (a program run on its
own) every program calibrates, and no file is written.

The calibration's probes are the same whatever walk function the program
has armed beside them (tracing/select.py walk_types()): each probe is an
ftrace_ops of its own on its own function, so the cost measured by one
case stands for another's.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

from rmapbench.ksft import phases
from rmapbench.tracing import (
    bootcache,
    calibrate,
    events,
    fgraph,
    hist,
    probes,
    tracefs,
    tracepoint,
)
from rmapbench.tracing.backend import Backend
from rmapbench.tracing.bpf import backend as bpf_backend
from rmapbench.tracing.bpf import btf as bpf_btf
from rmapbench.tracing.bpf import programs as bpf_programs
from rmapbench.tracing.bpf import records as bpf_records
from rmapbench.tracing.calibrate import Calibration

ENV = bootcache.ENV
FORMAT = 2  # of the cache file; a change makes old files misses

# The modules whose code the measurement depends on.
_SOURCES = (calibrate, events, fgraph, hist, probes, tracefs, tracepoint,
            bpf_backend, bpf_btf, bpf_programs, bpf_records)  # fmt: skip


def cached(backend: Backend, buffer_kb: int = 256,
           firings: int = calibrate.FIRINGS) -> Calibration | None:  # fmt: skip
    """This boot's stored calibration for the backend, or None."""
    key = _key(backend, buffer_kb, firings) if bootcache.directory() else None
    return _load(key) if key is not None else None


def after_firings(backend: Backend, buffer_kb: int = 256) -> calibrate.AfterFirings | None:
    """The after-firing timer (calibrate.AfterFirings) when this program
    will calibrate; None when it will reuse this boot's calibration, whose
    after-firing figures came with it (arming the timer's probes and
    removing them again costs about a second under TCG)."""
    if cached(backend, buffer_kb) is not None:
        return None
    return calibrate.AfterFirings(backend, buffer_kb)


def for_backend(backend: Backend, buffer_kb: int = 256, firings: int = calibrate.FIRINGS,
                after: calibrate.AfterFirings | None = None) -> Calibration:  # fmt: skip
    """calibrate.for_backend(), or its result from this boot's cache."""
    key = _key(backend, buffer_kb, firings) if bootcache.directory() else None
    if key is not None:
        stored = _load(key)
        if stored is not None:
            return stored
    with phases.span("calibrate"):  # once a boot: about 1 s under TCG
        measured = calibrate.for_backend(backend, buffer_kb, firings, after=after)
    cal = replace(
        measured,
        calibrated_at=_now(),
        calibrated_by=_program(),
    )
    if key is not None and not cal.unavailable and cal.firings:
        bootcache.store(_prefix(key), key, asdict(cal))
    return cal


def _key(backend: Backend, buffer_kb: int, firings: int) -> dict[str, object] | None:
    """What a stored calibration must match to be reused (None: the
    sources cannot be read, so nothing is reused)."""
    u = os.uname()
    try:
        code = []
        for module in _SOURCES:
            st = os.stat(module.__file__ or "")
            code.append([module.__file__, st.st_size, st.st_mtime_ns])
    except OSError:
        return None
    built = calibrate.machinery(backend)
    return {
        "format": FORMAT,
        "kernel": [u.release, u.version, u.machine],
        "backend": backend.name,
        "form": getattr(backend, "form", None),
        "function": built.function if built is not None else calibrate.FUNCTION,
        "firings": firings,
        "buffer_kb": buffer_kb,
        "code": code,
    }


def _load(key: dict[str, object]) -> Calibration | None:
    """The stored calibration for `key`, marked reused; None when there is
    none, or it does not read back as one (then it is measured again)."""
    data = bootcache.load(_prefix(key), key)
    if not isinstance(data, dict) or set(data) != {f.name for f in fields(Calibration)}:
        return None
    if not all(_of_type(data[f.name], str(f.type)) for f in fields(Calibration)):
        return None
    cal = Calibration(**data)
    # What for_backend() stores: a measurement, of this backend.
    if cal.unavailable or cal.firings < 1 or cal.backend != key["backend"]:
        return None
    if not cal.p25_ns <= cal.cost_ns <= cal.p75_ns:
        return None
    return replace(cal, reused=True)


def _of_type(value: object, annotation: str) -> bool:
    """Whether a stored value is what Calibration's field holds: a count
    or a time in ns (an int, not negative, no bool), a str or a bool."""
    if annotation == "int | None" and value is None:
        return True
    if annotation in ("int", "int | None"):
        return type(value) is int and value >= 0
    return type(value) is {"str": str, "bool": bool}.get(annotation)


def _prefix(key: dict[str, object]) -> str:
    return f"calibration-{key['backend']}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def _program() -> str:
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
