"""The file cases' filesystem check on /proc/self/mountinfo as the kernel
writes it: a space, tab and backslash in a mount point escaped in octal,
other bytes (Latin-1 here) raw (tests/unit/fixtures/kernel/mountinfo-6.18)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rmapbench.scenarios.region import fs_type, unmangle

MOUNTINFO = str(Path(__file__).parent / "fixtures" / "kernel" / "mountinfo-6.18")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/home/user/work", "ext4"),
        ("/dev/shm/rmap", "tmpfs"),
        ("/mnt/usb disk/x", "vfat"),
        ("/mnt/usb disk/scratch/x", "tmpfs"),  # the longer mount point wins
        ("/mnt/back\\slash/x", "tmpfs"),
        ("/mnt/tab\tbed", "tmpfs"),
        (os.fsdecode(b"/media/caf\xe9/x"), "btrfs"),
        ("/mnt/usb diskette", "ext4"),  # not under /mnt/usb disk
    ],
)
def test_fs_type_of(path: str, kind: str) -> None:
    assert fs_type(Path(path), MOUNTINFO) == kind


def test_unmangle() -> None:
    assert unmangle(rb"/a\040b\011c\012d\134e") == b"/a b\tc\nd\\e"


def test_this_machine() -> None:
    assert fs_type(Path("/")) != "unknown"
