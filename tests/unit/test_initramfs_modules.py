"""The guest's modules chosen from a kernel's modules directory: each
wanted module or, for one that changed its name between releases, the
name this kernel has (no guest needed: small ELF64 files with .modinfo)."""

from __future__ import annotations

import lzma
import struct
from pathlib import Path

import pytest

from rmapbench.guest import initramfs
from rmapbench.guest.kernel import KernelError, KernelImage


def _module(depends: str = "") -> bytes:
    """An ELF64 object with a section-name table and a .modinfo."""
    shstr = b"\0.shstrtab\0.modinfo\0"
    modinfo = f"license=GPL\0depends={depends}\0".encode()
    body_at = 64
    shstr_at, modinfo_at = body_at, body_at + len(shstr)
    shoff = modinfo_at + len(modinfo)
    header = bytearray(64)
    header[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 1)
    sections = b"".join(
        struct.pack("<IIQQQQIIQQ", name, kind, 0, 0, off, size, 0, 0, 1, 0)
        for name, kind, off, size in (
            (0, 0, 0, 0),
            (1, 3, shstr_at, len(shstr)),
            (11, 1, modinfo_at, len(modinfo)),
        )
    )
    return bytes(header) + shstr + modinfo + sections


def _kernel(tmp_path: Path, modules: dict[str, str], builtin: list[str]) -> KernelImage:
    root = tmp_path / "7.3.4+deb13-amd64"
    for name, depends in modules.items():
        path = root / "kernel" / f"{name}.ko.xz"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(lzma.compress(_module(depends)))
    (root / "modules.builtin").write_text("".join(f"kernel/{b}.ko\n" for b in builtin))
    return KernelImage(tmp_path / "vmlinuz", "7.3.4+deb13-amd64", root, None)


BASE = {"netfs": "", "9pnet": "", "9pnet_virtio": "9pnet", "9p": "9pnet,netfs",
        "virtio_blk": "", "ext4": "jbd2,mbcache", "jbd2": "", "mbcache": ""}  # fmt: skip


def test_crc32c_by_its_6_15_name(tmp_path: Path) -> None:
    kernel = _kernel(tmp_path, {**BASE, "crc32c-cryptoapi": ""}, ["virtio_pci"])
    names = [n for n, _ in initramfs.resolve_modules(kernel)]
    assert "crc32c_cryptoapi" in names and "crc32c_generic" not in names
    assert names.index("9pnet") < names.index("9pnet_virtio")  # dependencies first


def test_crc32c_by_its_old_name(tmp_path: Path) -> None:
    kernel = _kernel(tmp_path, {**BASE, "crc32c_generic": "", "virtio_pci": ""}, [])
    names = [n for n, _ in initramfs.resolve_modules(kernel)]
    assert "crc32c_generic" in names and "virtio_pci" in names


def test_neither_name_says_the_newest(tmp_path: Path) -> None:
    kernel = _kernel(tmp_path, BASE, ["virtio_pci"])
    with pytest.raises(KernelError, match="module crc32c_cryptoapi is neither built in"):
        initramfs.resolve_modules(kernel)
