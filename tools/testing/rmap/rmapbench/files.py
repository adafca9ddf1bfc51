"""Writing files so that a reader never sees half of one, and reading
files another program wrote without trusting what they are."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

# tempfile is not imported: with what it imports (shutil, random, ...) it
# cost a test program about 0.1 s under TCG, for one O_EXCL open.


def create_new(directory: str | Path, prefix: str, mode: int = 0o600) -> tuple[int, Path]:
    """A new file of a name no other process picks (O_CREAT | O_EXCL):
    its descriptor, open for writing, and its path."""
    while True:
        path = Path(directory) / f"{prefix}{os.getpid()}.{os.urandom(6).hex()}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), path
        except FileExistsError:
            continue


def write_atomic(path: str | Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write through a temporary file in the same directory, fsync, rename:
    readers (and a run killed half-way) see the old file, or no file, or the
    whole new one. Text is written as UTF-8."""
    path = Path(path)
    fd, tmp = create_new(path.parent, f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class NotReadable(ValueError):
    """A path that is not a regular file, or one larger than the reader takes."""


def read_regular(path: str | Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes.

    Opened non-blocking and checked on the descriptor, so a FIFO does not
    hang the reader and a device (a symlink to /dev/zero) is not read
    without end: NotReadable says which. OSError and UnicodeDecodeError as
    the reading raises them."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotReadable("not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise NotReadable(f"larger than {limit >> 20} MiB")
    return data.decode()
