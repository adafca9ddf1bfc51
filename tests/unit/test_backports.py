"""Stock kernels from trixie-backports (guest/backports.py): the packages
chosen from apt's search, and the split packages' layout read back (no
network: apt is faked; the guest test fetches the real one)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rmapbench.guest import backports, kernel

SEARCH = """\
linux-binary-unsigned-7.3.2+deb13-amd64 - Linux 7.3.2 for 64-bit PCs (unsigned kernel image)
linux-binary-unsigned-7.3.10+deb13-amd64 - Linux 7.3.10 for 64-bit PCs (unsigned kernel image)
linux-binary-unsigned-7.3.4+deb13-amd64 - Linux 7.3.4 for 64-bit PCs (unsigned kernel image)
linux-binary-unsigned-7.3.4+deb13-rt-amd64 - Linux 7.3.4 for 64-bit PCs, PREEMPT_RT
"""


@pytest.fixture
def apt(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(kernel, "run_logged", lambda argv, cwd=None: calls.append(argv))

    def search(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, SEARCH if "7\\.3\\." in argv[-1] else "")

    monkeypatch.setattr(subprocess, "run", search)
    return calls


def test_the_newest_of_the_series_in_three_packages(tmp_path: Path, apt: list[list[str]]) -> None:
    assert backports.packages("7.3", "amd64", tmp_path) == [
        "linux-binary-unsigned-7.3.10+deb13-amd64",
        "linux-base-7.3.10+deb13-amd64",
        "linux-modules-7.3.10+deb13-amd64",
    ]
    assert backports.packages("7.3", "rt-amd64", tmp_path)[0].endswith("7.3.4+deb13-rt-amd64")
    assert (tmp_path / "sources.list").read_text() == backports.SOURCE + "\n"
    updates = [c for c in apt if "update" in c]
    assert len(updates) == 1  # the lists of a minute ago are used again
    assert f"Dir::State::Lists={tmp_path / 'lists'}" in updates[0]
    assert not any("/etc/apt" in a for c in apt for a in c)


def test_a_series_nobody_has(tmp_path: Path, apt: list[list[str]]) -> None:
    with pytest.raises(kernel.KernelError, match=r"^no 9\.9 kernel of flavour amd64 in"):
        backports.packages("9.9", "amd64", tmp_path)
    assert len([c for c in apt if "update" in c]) == 2  # refreshed once more before giving up


def test_split_packages_layout(tmp_path: Path) -> None:
    release = "7.3.4+deb13-amd64"
    d = tmp_path / "usr" / "lib" / "modules" / release
    (d / "kernel").mkdir(parents=True)
    (d / "config").write_text("CONFIG_9P_FS=m\n")
    image = bytearray(0x400)
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x20E, 0x100)
    image[0x300 : 0x300 + len(release)] = release.encode()
    (d / "vmlinuz.unsigned").write_bytes(bytes(image))
    k = kernel._image_in(tmp_path)
    assert (k.release, k.modules_dir, k.config) == (release, d, d / "config")
