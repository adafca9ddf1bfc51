"""When the probe-cost calibration runs: once per boot and definition.

Calibrating a probe backend (tracing/calibrate.py) arms two more probes in
an instance of their own and fires them 200 times: about a second per
program under TCG, the same second for every program of a guest boot,
whose kernel and probes do not change between them. The guest runner sets
$RMAPBENCH_CACHE_DIR to a directory on the guest's scratch /tmp, which is
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

import json
import logging
import os
import sys
import time
import zlib
from dataclasses import asdict, fields, replace
from pathlib import Path

from rmapbench.files import write_atomic
from rmapbench.tracing import calibrate, events, fgraph, hist, probes, tracefs, tracepoint
from rmapbench.tracing.backend import Backend
from rmapbench.tracing.bpf import backend as bpf_backend
from rmapbench.tracing.bpf import btf as bpf_btf
from rmapbench.tracing.bpf import programs as bpf_programs
from rmapbench.tracing.bpf import records as bpf_records
from rmapbench.tracing.calibrate import Calibration

log = logging.getLogger(__name__)

ENV = "RMAPBENCH_CACHE_DIR"
FORMAT = 1  # of the cache file; a change makes old files misses

# The modules whose code the measurement depends on.
_SOURCES = (calibrate, events, fgraph, hist, probes, tracefs, tracepoint,
            bpf_backend, bpf_btf, bpf_programs, bpf_records)  # fmt: skip


def cached(backend: Backend, buffer_kb: int = 256,
           firings: int = calibrate.FIRINGS) -> Calibration | None:  # fmt: skip
    """This boot's stored calibration for the backend, or None."""
    directory = os.environ.get(ENV)
    key = _key(backend, buffer_kb, firings) if directory else None
    if directory and key is not None:
        return _load(Path(directory), key)
    return None


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
    directory = os.environ.get(ENV)
    key = _key(backend, buffer_kb, firings) if directory else None
    if directory and key is not None:
        stored = _load(Path(directory), key)
        if stored is not None:
            return stored
    cal = replace(
        calibrate.for_backend(backend, buffer_kb, firings, after=after),
        calibrated_at=_now(),
        calibrated_by=_program(),
    )
    if directory and key is not None and not cal.unavailable and cal.firings:
        _store(Path(directory), key, cal)
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


def _path(directory: Path, key: dict[str, object]) -> Path:
    # The file holds the whole key, compared on reading: the name only
    # keeps different keys apart.
    digest = zlib.crc32(json.dumps(key, sort_keys=True).encode())
    return directory / f"calibration-{key['backend']}-{digest:08x}.json"


def _load(directory: Path, key: dict[str, object]) -> Calibration | None:
    """The stored calibration for `key`, marked reused; None when there is
    none, or it does not read back as one (then it is measured again)."""
    path = _path(directory, key)
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("calibration cache %s unreadable, calibrating: %s", path, e)
        return None
    names = {f.name for f in fields(Calibration)}
    data = stored.get("calibration") if isinstance(stored, dict) else None
    if stored.get("key") != key or not isinstance(data, dict) or set(data) != names:
        log.warning("calibration cache %s does not match, calibrating", path)
        return None
    try:
        cal = Calibration(**data)
    except TypeError:
        return None
    return replace(cal, reused=True)


def _store(directory: Path, key: dict[str, object], cal: Calibration) -> None:
    """Keep `cal` for the rest of the boot; a directory that cannot be
    written only costs the later programs their own calibration."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(
            _path(directory, key), json.dumps({"key": key, "calibration": asdict(cal)}) + "\n"
        )
    except OSError as e:
        log.warning("calibration not cached in %s: %s", directory, e)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def _program() -> str:
    return Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else ""
