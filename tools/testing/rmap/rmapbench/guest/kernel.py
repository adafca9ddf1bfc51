"""Kernels to boot in the test guest: Debian stock packages or a user-supplied image.

A stock kernel is downloaded once with ``apt-get download`` (works as any user) and
extracted with ``dpkg-deb -x`` into a per-package cache directory.  The cache entry is
built in a temporary sibling directory and renamed into place, so a concurrent or
interrupted run never leaves a half-extracted kernel behind.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rmapbench.files import write_atomic

log = logging.getLogger(__name__)

# Debian names its unsigned generic kernels linux-image-6.12.117+deb12-amd64-unsigned.
# The "amd64" flavour has NUMA_EMU and the full module set; "cloud-amd64" is smaller.
DEFAULT_FLAVOUR = "amd64"


class KernelError(Exception):
    """A kernel could not be found, downloaded or inspected."""


class NotInSources(KernelError):
    """The machine's apt sources have no package of the series."""


@dataclass(frozen=True)
class KernelImage:
    """A bootable kernel and what is known about it."""

    vmlinuz: Path
    release: str
    modules_dir: Path | None  # lib/modules/RELEASE, or None if only built-ins are usable
    config: Path | None  # boot/config-RELEASE when known


def run_logged(argv: list[str], cwd: Path | None = None) -> None:
    """Run an external command, logging it so it can be rerun by hand."""
    log.info("running: %s%s", " ".join(argv), f"  (in {cwd})" if cwd else "")
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise KernelError(
            f"{argv[0]} failed with status {proc.returncode}: {detail[-1] if detail else ''}"
        )


def cache_root() -> Path:
    """$XDG_CACHE_HOME/rmapbench (default ~/.cache/rmapbench)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rmapbench"


def read_bzimage_release(path: Path) -> str:
    """Kernel release from a bzImage's setup header (kernel_version field at 0x20E).

    The field is an offset, relative to 0x200, of a NUL-terminated string such as
    "6.12.117+deb12-amd64 (debian-kernel@...) #1 SMP ..."; the release is its first word.
    """
    with path.open("rb") as f:
        header = f.read(0x210)
        if len(header) < 0x210 or header[0x202:0x206] != b"HdrS":
            raise KernelError(f"{path}: not a bzImage (no HdrS setup header)")
        (offset,) = struct.unpack_from("<H", header, 0x20E)
        f.seek(offset + 0x200)
        text = f.read(256).split(b"\0", 1)[0].decode("ascii", "replace")
    if not text.strip():
        raise KernelError(f"{path}: bzImage has no kernel_version string")
    return text.split()[0]


def kernel_from_image(image: Path, modules: Path | None = None) -> KernelImage:
    """Describe a user-supplied vmlinuz/bzImage.

    Modules come from ``modules`` (a lib/modules/RELEASE directory, or a directory that
    contains RELEASE/) or, failing that, from IMAGE/../lib/modules/RELEASE as laid out by
    an extracted Debian package.  No modules is acceptable: a kernel with 9p, virtio_blk
    and ext4 built in needs none, and the guest reports clearly if it cannot mount.
    """
    image = image.resolve()
    if not image.is_file():
        raise KernelError(f"kernel image not found: {image}")
    release = read_bzimage_release(image)
    # An extracted package: boot/vmlinuz-RELEASE beside lib/modules/RELEASE,
    # or the image inside usr/lib/modules/RELEASE itself (split packages).
    candidates = [image.parent.parent / "lib" / "modules" / release]
    if image.parent.name == release:
        candidates.append(image.parent)
    if modules is not None:
        candidates = [modules / release, modules]
    modules_dir = next((c for c in candidates if (c / "kernel").is_dir()), None)
    if modules is not None and modules_dir is None:
        raise KernelError(f"--modules {modules}: no kernel/ tree for release {release}")
    configs = [image.parent / f"config-{release}"]
    if image.parent.name == release:
        configs.append(image.parent / "config")
    config = next((c for c in configs if c.is_file()), None)
    return KernelImage(image, release, modules_dir, config)


# What the guest's init cannot do without (guest_init.sh): mount this
# machine's / and the run's directories over 9p on virtio.
GUEST_NEEDS = ("CONFIG_NET_9P", "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS")


def guest_problem(k: KernelImage) -> str | None:
    """Why this kernel cannot run the suite's guest, from its config when
    that is known (Debian's cloud flavour has no 9p), or None."""
    if k.config is None:
        return None
    try:
        text = k.config.read_text(errors="replace")
    except OSError:
        return None
    have = {line.split("=", 1)[0] for line in text.splitlines() if line.endswith(("=y", "=m"))}
    missing = [opt for opt in GUEST_NEEDS if opt not in have]
    if missing:
        return (
            f"{k.release} has no {', '.join(missing)} (config {k.config}): the guest could not "
            "mount this machine's files over 9p"
        )
    return None


def version_key(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name))


def flavour(suffix: str) -> str:
    """The Debian flavour of a series' suffix: "" (6.12) is the generic
    amd64, "rt" (6.12-rt) rt-amd64, "cloud" cloud-amd64."""
    return f"{suffix}-{DEFAULT_FLAVOUR}" if suffix else DEFAULT_FLAVOUR


def stock_package_name(series: str, flavour: str = DEFAULT_FLAVOUR) -> str:
    """Newest stock kernel package of a series that apt knows about. Debian
    names them linux-image-6.12.N+debNN-FLAVOUR-unsigned since 6.12 and
    linux-image-6.1.0-ABI-FLAVOUR-unsigned before."""
    s, f = re.escape(series), re.escape(flavour)
    pattern = re.compile(rf"^linux-image-{s}\.(?:\d+\+deb\d+|0-\d+)-{f}-unsigned$")
    argv = ["apt-cache", "search", "--names-only", f"^linux-image-{series}"]
    log.info("running: %s", " ".join(argv))
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
    names = [line.split(" ", 1)[0] for line in out.splitlines()]
    matches = sorted((n for n in names if pattern.match(n)), key=version_key)
    if not matches:
        raise NotInSources(
            f"apt knows no linux-image-{series}.*-{flavour}-unsigned package "
            "(is the bookworm/backports source configured and `apt-get update` run?)"
        )
    return matches[-1]


def _image_in(tree: Path) -> KernelImage:
    # boot/vmlinuz-RELEASE (one bookworm package), or the split packages'
    # usr/lib/modules/RELEASE/vmlinuz.unsigned (guest/backports.py).
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    images += sorted((tree / "usr" / "lib" / "modules").glob("*/vmlinuz*"))
    if len(images) != 1:
        raise KernelError(f"{tree}: expected exactly one kernel image, found {len(images)}")
    return kernel_from_image(images[0])


def fetch_stock_kernel(
    series: str = "6.12", cache_dir: Path | None = None, flavour: str = DEFAULT_FLAVOUR
) -> KernelImage:
    """Download (once) and extract the newest Debian stock kernel of a series."""
    cache = cache_dir or cache_root() / "kernels"
    package = stock_package_name(series, flavour)
    return extract_once(cache / package, [package])


def extract_once(
    entry: Path, packages: Sequence[str], apt_options: Sequence[str] = ()
) -> KernelImage:
    """The kernel cached in `entry`, made from `packages` (downloaded with
    apt-get download and these options, extracted together) when absent.
    An entry appears only by the rename of a complete tree."""
    if entry.is_dir():
        return _image_in(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the final location so the rename is atomic (same filesystem).
    with tempfile.TemporaryDirectory(prefix=f".{entry.name}.", dir=entry.parent) as tmp:
        work = Path(tmp)
        run_logged(["apt-get", *apt_options, "download", *packages], cwd=work)
        debs = sorted(work.glob("*.deb"))
        if len(debs) != len(packages):
            raise KernelError(f"apt-get download {' '.join(packages)} produced {len(debs)} "
                              f".deb files, not {len(packages)}")  # fmt: skip
        tree = work / "tree"
        for deb in debs:
            run_logged(["dpkg-deb", "-x", str(deb), str(tree)])
        shutil.rmtree(tree / "usr" / "share" / "doc", ignore_errors=True)
        try:
            tree.rename(entry)
        except OSError:
            # Another process won the race; its complete copy is as good as ours.
            if not entry.is_dir():
                raise
    log.info("cached %s in %s", " ".join(packages), entry)
    return _image_in(entry)


# Start of the compressed payload for each compressor the kernel can use; the ones
# decompressible without extra Python packages (zstd needs the zstd tool).
_PAYLOAD_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
# ELF note "Xen", type XEN_ELFNOTE_PHYS32_ENTRY (18): the kernel has a PVH entry point.
_PVH_NOTE = re.compile(rb"\x04\x00\x00\x00.{4}\x12\x00\x00\x00Xen\x00", re.DOTALL)


def _decompress_payload(payload: bytes) -> bytes | None:
    kind = next((k for m, k in _PAYLOAD_MAGIC.items() if payload.startswith(m)), None)
    try:
        if kind == "gzip":
            return gzip.decompress(payload)
        if kind == "xz":
            return lzma.LZMADecompressor().decompress(payload)
        if kind == "zstd" and shutil.which("zstd"):
            # The payload ends with a 4-byte size that zstd complains about (status 1)
            # after writing the complete output; judge by the ELF that comes out.
            proc = subprocess.run(["zstd", "-dc"], input=payload, capture_output=True)
            return proc.stdout
    except (OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile):
        pass
    return None


def pvh_vmlinux(kernel: KernelImage, cache_dir: Path | None = None) -> Path | None:
    """The uncompressed ELF vmlinux inside a bzImage, if QEMU can boot it via PVH.

    Under TCG the bzImage decompressor costs 1.5-2 s of every boot; QEMU loads an ELF
    vmlinux with a PVH entry note directly.  Cached; None if not possible (the caller
    then boots the bzImage).
    """
    image = kernel.vmlinuz.read_bytes()
    digest = hashlib.sha256(image).hexdigest()[:16]
    cache = cache_dir or cache_root() / "vmlinux"
    path = cache / f"{kernel.release}-{digest}.elf"
    if path.is_file():
        return path
    if image[0x202:0x206] != b"HdrS":
        return None
    setup_sects = image[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    elf = _decompress_payload(image[start : start + payload_length])
    if not elf or not elf.startswith(b"\x7fELF") or not _PVH_NOTE.search(elf):
        log.info("%s: no PVH-bootable vmlinux inside; booting the bzImage", kernel.vmlinuz)
        return None
    cache.mkdir(parents=True, exist_ok=True)
    write_atomic(path, elf)  # never a truncated vmlinux in the cache
    return path
