"""make install: add the rmap collection to a kselftest install directory.

    python3 -m rmapbench.ksft.install --suite DIR --dest INSTALL_PATH PROG...

lays out INSTALL_PATH/rmap/ (the programs, settings, the library without its
host-only wings, and vendor/: the pure-Python packages the programs import,
at the versions pinned in vendor.txt) and appends `rmap:PROG` to
INSTALL_PATH/kselftest-list.txt, each line once, so the tree's
run_kselftest.sh -c rmap finds it. A device then needs only python3 and its
standard library: nothing is fetched there.

The packages come from this interpreter's environment when it has the
pinned version, else from wheels in --wheels DIR, else from `pip download`
of the pinned wheels. Only Python sources and metadata are bundled: compiled
extensions (PyYAML's libyaml binding) are left out, their pure-Python
fallbacks are used, so the bundle runs on any architecture.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

COLLECTION = "rmap"
# The wings a device never runs: QEMU guests and numpy/scipy analysis.
HOST_ONLY = ("guest", "analysis")
_COMPILED = (".so", ".pyd", ".dylib", ".pyc")


class InstallError(Exception):
    pass


def read_pins(path: Path) -> dict[str, str]:
    """NAME==VERSION lines (comments and blanks ignored)."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise InstallError(f"{path}: {line!r} is not pinned as NAME==VERSION")
            pins[name.strip()] = version.strip()
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _wanted(rel: PurePosixPath) -> bool:
    """A file of a distribution worth bundling: inside site-packages, not
    compiled, not a cache, not the install record."""
    parts = rel.parts
    return (bool(parts) and parts[0] != ".." and ".data" not in parts[0]
            and "__pycache__" not in parts and rel.suffix not in _COMPILED
            and rel.name not in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json"))


def _from_environment(name: str, version: str, vendor: Path) -> bool:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    if dist.version != version or not dist.files:
        return False
    for f in dist.files:
        rel = PurePosixPath(str(f))
        if _wanted(rel):
            src = Path(str(dist.locate_file(f)))
            dst = vendor.joinpath(*rel.parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return True


def _wheel_in(directory: Path, name: str, version: str) -> Path | None:
    for wheel in sorted(directory.glob("*.whl")):
        wname, wversion = wheel.name.split("-")[:2]
        if _norm(wname) == _norm(name) and wversion == version:
            return wheel
    return None


def _download(name: str, version: str, directory: Path, python: str) -> Path | None:
    argv = [python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
            "-d", str(directory), f"{name}=={version}"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        print(f"install: {' '.join(argv)}: {detail[-1] if detail else 'failed'}",
              file=sys.stderr)
        return None
    return _wheel_in(directory, name, version)


def _unpack(wheel: Path, vendor: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            rel = PurePosixPath(member)
            if member.endswith("/") or not _wanted(rel):
                continue
            dst = vendor.joinpath(*rel.parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(zf.read(member))


def bundle(pins: dict[str, str], vendor: Path, wheels: Path | None = None,
           python: str = sys.executable) -> list[str]:
    """Every pinned package into vendor/; one `NAME==VERSION from WHERE`
    line per package."""
    vendor.mkdir(parents=True, exist_ok=True)
    done = []
    with tempfile.TemporaryDirectory(prefix="rmap-wheels.") as tmp:
        for name, version in pins.items():
            if _from_environment(name, version, vendor):
                done.append(f"{name}=={version} from {sys.executable}'s environment")
                continue
            wheel = _wheel_in(wheels, name, version) if wheels else None
            wheel = wheel or _download(name, version, Path(tmp), python)
            if wheel is None:
                raise InstallError(
                    f"cannot bundle {name}=={version}: not in {sys.executable}'s environment"
                    + (f", no wheel in {wheels}" if wheels else "")
                    + " and pip download failed; run with PYTHON= an interpreter that has it"
                    " (the project's .venv/bin/python) or WHEELS=DIR holding the wheel")
            _unpack(wheel, vendor)
            done.append(f"{name}=={version} from {wheel.name}")
    return done


def _copy_library(src: Path, dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(src, dst, ignore=ignore)
    for wing in HOST_ONLY:
        shutil.rmtree(dst / wing, ignore_errors=True)


def update_list(listing: Path, programs: Iterable[str]) -> None:
    """Append COLLECTION:PROG lines that listing lacks (created if absent)."""
    have = listing.read_text().splitlines() if listing.exists() else []
    new = [f"{COLLECTION}:{p}" for p in programs if f"{COLLECTION}:{p}" not in have]
    if new:
        text = "\n".join([*have, *new]) + "\n"
        tmp = listing.with_name(f".{listing.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, listing)


def install(suite: Path, dest: Path, programs: list[str], files: list[str],
            wheels: Path | None = None) -> list[str]:
    """Lay out dest/rmap beside whatever dest already holds, replacing an
    earlier rmap/ only once the new one is complete."""
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / COLLECTION
    work = Path(tempfile.mkdtemp(prefix=f".{COLLECTION}.", dir=dest))
    try:
        for name in [*programs, *files]:
            src = suite / name
            if src.is_dir():
                _copy_library(src, work / name)
            else:
                shutil.copy2(src, work / name)
        bundled = bundle(read_pins(suite / "vendor.txt"), work / "vendor", wheels)
        (work / "vendor" / "BUNDLED.txt").write_text("\n".join(bundled) + "\n")
        work.chmod(0o755)
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{COLLECTION}.old.", dir=dest))
            final.rename(old / COLLECTION)
        work.rename(final)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    update_list(dest / "kselftest-list.txt", programs)
    return bundled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rmapbench.ksft.install", description=__doc__.split("\n")[0])
    ap.add_argument("--suite", type=Path, required=True, help="tools/testing/rmap")
    ap.add_argument("--dest", type=Path, required=True, help="the kselftest INSTALL_PATH")
    ap.add_argument("--files", default="settings rmapbench",
                    help="installed beside the programs (directories copied whole)")
    ap.add_argument("--wheels", type=Path, help="a directory of pinned wheels (offline)")
    ap.add_argument("programs", nargs="+")
    args = ap.parse_args(argv)
    try:
        bundled = install(args.suite.resolve(), args.dest.resolve(), args.programs,
                          args.files.split(), args.wheels)
    except (InstallError, OSError) as e:
        print(f"install: {e}", file=sys.stderr)
        return 1
    print(f"install: {args.dest}/{COLLECTION}: {len(args.programs)} programs; bundled "
          + ", ".join(b.split(" ", 1)[0] for b in bundled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
