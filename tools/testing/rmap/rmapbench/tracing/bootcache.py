"""Results kept for the rest of a guest boot: the probe-cost calibration
(tracing/calcache.py), the bpf backend's BTF lookup and its callbacks'
kallsyms addresses (tracing/bpf/).

The guest runner sets $RMAPBENCH_CACHE_DIR to a directory on the guest's
scratch /tmp, discarded with the guest; without it nothing is stored. Each
result is one file holding its whole key beside the data, compared on
reading (the file's name, a checksum of the key, only keeps different
keys apart), written atomically. A file that is missing, unreadable or of
another key is a miss: the result is worked out again. A directory that
cannot be written only costs the later programs the reuse.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from pathlib import Path

from rmapbench.files import write_atomic

log = logging.getLogger(__name__)

ENV = "RMAPBENCH_CACHE_DIR"


def directory() -> Path | None:
    """The boot's cache directory, when the guest runner gave one."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


def path(where: Path, prefix: str, key: object) -> Path:
    digest = zlib.crc32(json.dumps(key, sort_keys=True).encode())
    return where / f"{prefix}-{digest:08x}.json"


def load(prefix: str, key: object) -> object | None:
    """What store() kept under `key` this boot, or None."""
    where = directory()
    if where is None:
        return None
    file = path(where, prefix, key)
    try:
        stored = json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:  # (JSON nested past the stack)
        log.warning("boot cache %s unreadable, ignored: %s", file, e)
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        log.warning("boot cache %s does not match, ignored", file)
        return None
    return stored.get("data")


def store(prefix: str, key: object, data: object) -> None:
    """Keep `data` under `key` for the rest of the boot (nothing without a
    cache directory)."""
    where = directory()
    if where is None:
        return
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path(where, prefix, key), json.dumps({"key": key, "data": data}) + "\n")
    except OSError as e:
        log.warning("not cached in %s: %s", where, e)
