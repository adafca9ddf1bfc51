"""The guest's initramfs: static busybox, the modules needed to reach the host, /init.

Written as a newc cpio by hand (so device nodes need no root) and gzip-compressed.
Cached under $XDG_CACHE_HOME/rmapbench/initramfs, keyed by kernel release and a hash
of everything that goes in, so it is built once per kernel.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import lzma
import stat
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path

from rmapbench.files import write_atomic
from rmapbench.guest.kernel import KernelError, KernelImage, cache_root

log = logging.getLogger(__name__)

INIT_SCRIPT = Path(__file__).with_name("guest_init.sh")

# What the guest needs to mount the host's root (9p over virtio-pci) and the scratch
# disk (virtio_blk + ext4).  Dependencies are added from each module's .modinfo.
# crc32c is not a declared dependency of ext4/jbd2 (they ask the crypto API for it at
# mount time, via modprobe, which the initramfs lacks), so it is listed explicitly.
# virtio_pci is built in on Debian's 6.12 but a module on 6.1; nothing depends on it,
# yet without it no virtio device appears. A module that changed its name is a
# tuple of its names, newest last: the crypto API's crc32c is crc32c_generic up
# to 6.14 and crc32c-cryptoapi from 6.15 (Debian's 7.3 has only the latter).
WANTED_MODULES: tuple[str | tuple[str, ...], ...] = (
    "virtio_pci", "netfs", "9pnet", "9pnet_virtio", "9p", "virtio_blk",
    ("crc32c_generic", "crc32c_cryptoapi"), "ext4",
)  # fmt: skip

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def _normalise(name: str) -> str:
    return name.replace("-", "_")


def _module_name(path: Path) -> str:
    return _normalise(path.name.split(".ko", 1)[0])


def _decompress(path: Path) -> bytes:
    """Module contents; the guest's busybox insmod cannot be relied on to unpack xz/zst."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        # No zstd in the 3.11 standard library; the zstd tool is the usual fallback.
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def _modinfo_depends(module: bytes) -> list[str]:
    """The depends= entry of an ELF64 module's .modinfo section (no kmod needed)."""
    if module[:4] != b"\x7fELF" or module[4] != 2:
        raise KernelError("not an ELF64 kernel module")
    shoff = struct.unpack_from("<Q", module, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", module, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", module, shoff + index * shentsize
        )
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if module[stroff + name :].startswith(b".modinfo\0"):
            for entry in module[offset : offset + size].split(b"\0"):
                if entry.startswith(b"depends="):
                    return [_normalise(d) for d in entry[8:].decode().split(",") if d]
    return []


def _builtin_modules(modules_dir: Path) -> set[str]:
    builtin = modules_dir / "modules.builtin"
    if not builtin.is_file():
        return set()
    return {_module_name(Path(line)) for line in builtin.read_text().split()}


def resolve_modules(kernel: KernelImage) -> list[tuple[str, bytes]]:
    """(name, decompressed .ko) for the wanted modules and their deps, in load order.

    Built-in modules are skipped.  Without a modules directory nothing is loaded: the
    kernel must have the drivers built in, and /init says so if a mount then fails.
    """
    if kernel.modules_dir is None:
        return []
    files = {_module_name(p): p for p in (kernel.modules_dir / "kernel").rglob("*.ko*")}
    builtin = _builtin_modules(kernel.modules_dir)
    ordered: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in files:
            raise KernelError(f"module {name} is neither built in nor in {kernel.modules_dir}")
        data = _decompress(files[name])
        for dep in _modinfo_depends(data):
            visit(dep)
        ordered.append((name, data))  # after its dependencies

    for wanted in WANTED_MODULES:
        names = (wanted,) if isinstance(wanted, str) else wanted
        # The first name this kernel has, built in or as a file; else the
        # newest, which visit() reports as missing.
        have = [n for n in names if n in builtin or n in files]
        visit(have[0] if have else names[-1])
    return ordered


class CpioWriter:
    """Minimal newc ("070701") cpio archive writer."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        for part in (header + name.encode() + b"\0", data):
            self._chunks.append(part + b"\0" * (-len(part) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def getvalue(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self._chunks)


def _busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    raise KernelError("static busybox not found (apt-get install busybox-static)")


def build_initramfs(modules: Iterable[tuple[str, bytes]], busybox: Path) -> bytes:
    """The gzip-compressed cpio archive."""
    cpio = CpioWriter()
    for d in ("bin", "dev", "proc", "sys", "host", "modules", "sbin", "usr", "usr/bin", "usr/sbin"):
        cpio.directory(d)
    # Without /dev/console in the rootfs the kernel gives /init no stdin/stdout.
    cpio.chardev("dev/console", 5, 1)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    cpio.file("init", INIT_SCRIPT.read_bytes(), 0o755)
    names = []
    for name, data in modules:
        cpio.file(f"modules/{name}.ko", data)
        names.append(name)
    cpio.file("modules/order", "".join(f"{n}\n" for n in names).encode())
    return gzip.compress(cpio.getvalue(), compresslevel=6)


def _cache_key(kernel: KernelImage, busybox: Path) -> str:
    """Hash of the inputs: init script, busybox, and the module files' identities."""
    h = hashlib.sha256(INIT_SCRIPT.read_bytes())
    h.update(busybox.read_bytes())
    if kernel.modules_dir is not None:
        h.update(str(kernel.modules_dir.resolve()).encode())
        st = kernel.modules_dir.stat()
        h.update(f"{st.st_mtime_ns}".encode())
    h.update(repr(WANTED_MODULES).encode())
    return h.hexdigest()[:16]


def cached_initramfs(kernel: KernelImage, cache_dir: Path | None = None) -> Path:
    """Path of the (possibly freshly built) initramfs for this kernel."""
    cache = cache_dir or cache_root() / "initramfs"
    busybox = _busybox()
    path = cache / f"{kernel.release}-{_cache_key(kernel, busybox)}.cpio.gz"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    log.info("building initramfs %s", path)
    data = build_initramfs(resolve_modules(kernel), busybox)
    write_atomic(path, data)
    return path
