"""A kernel tree's kselftest pieces, for the in-tree tests: Debian's
linux-source-6.12 fetched once with apt-get download and cached under the
stock kernels' cache root, holding only what the kselftest runner and the
KTAP parser need (tools/testing/selftests' lib.mk, Makefile, kselftest/,
run_kselftest.sh; tools/testing/kunit; scripts/subarch.include, which the
selftests Makefile includes) and every Kconfig file, against which the
suite's config fragment is checked. The entry is built in a temporary sibling and
renamed into place, so a concurrent or interrupted run never leaves half a
tree; placing the suite happens in a per-test copy, never in the cache."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tap.parser import Parser

from rmapbench.guest import kernel

SERIES = "6.12"
PACKAGE = f"linux-source-{SERIES}"
SUITE = Path(__file__).resolve().parents[1] / "tools" / "testing" / "rmap"
MEMBERS = (
    "tools/testing/selftests/lib.mk",
    "tools/testing/selftests/Makefile",
    "tools/testing/selftests/run_kselftest.sh",
    "tools/testing/selftests/kselftest",
    "tools/testing/selftests/kselftest.h",
    "tools/testing/kunit",
    "scripts/subarch.include",
    "*Kconfig*",
)
# What the selftests Makefile's install puts beside run_kselftest.sh.
RUNNER_FILES = ("runner.sh", "prefix.pl", "module.sh", "ktap_helpers.sh", "ksft.py")


def _version() -> str:
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", PACKAGE],
                         capture_output=True, text=True, check=False).stdout
    m = re.search(r"^Version: (\S+)$", out, re.MULTILINE)
    if not m:
        raise kernel.KernelError(f"apt knows no {PACKAGE} (apt-get update?)")
    return m.group(1)


def fetch_tree() -> Path:
    """The cached partial tree (its root, holding tools/ and scripts/)."""
    cache = kernel.cache_root() / "linux-source"
    entry = cache / f"{PACKAGE}_{_version()}"
    complete = ("tools/testing/selftests/lib.mk", "mm/Kconfig")
    if all((entry / member).is_file() for member in complete):
        return entry
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{PACKAGE}.", dir=cache) as tmp:
        work = Path(tmp)
        kernel.run_logged(["apt-get", "download", PACKAGE], cwd=work)
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise kernel.KernelError(f"apt-get download {PACKAGE} gave {len(debs)} .deb files")
        inner = f"./usr/src/{PACKAGE}.tar.xz"
        subprocess.run(f"dpkg-deb --fsys-tarfile '{debs[0]}' | tar -x -f - '{inner}'",
                       shell=True, cwd=work, check=True)
        debs[0].unlink()
        top = PACKAGE  # the tarball's top directory
        kernel.run_logged(["tar", "-x", "-J", "--wildcards", "-f", inner,
                           *(f"{top}/{m}" for m in MEMBERS)], cwd=work)
        (work / inner).unlink()
        if entry.exists():  # an entry from before the Kconfig files
            shutil.rmtree(entry)
        try:
            (work / top).rename(entry)
        except OSError:
            if not (entry / "tools").is_dir():  # else another run won the race
                raise
    return entry


def tree_with_suite(dest: Path) -> Path:
    """A copy of the cached tree in dest with this checkout's suite placed
    at tools/testing/rmap (copied, as a user would), without the
    checkout's caches; returns the tree's root."""
    tree = dest / "linux"
    shutil.copytree(fetch_tree(), tree, symlinks=True)
    shutil.copytree(SUITE, tree / "tools" / "testing" / "rmap", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tree


def kselftest_install(tree: Path, dest: Path) -> Path:
    """What the tree's `make -C tools/testing/selftests install` lays out
    around its collections: run_kselftest.sh and kselftest/ (no
    collections, an empty list); returns the install directory."""
    selftests = tree / "tools" / "testing" / "selftests"
    (dest / "kselftest").mkdir(parents=True)
    shutil.copy2(selftests / "run_kselftest.sh", dest / "run_kselftest.sh")
    for name in RUNNER_FILES:
        shutil.copy2(selftests / "kselftest" / name, dest / "kselftest" / name)
    # Another collection, as a real install has: it must survive ours.
    (dest / "kselftest-list.txt").write_text("size:get_size\n")
    return dest


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")


def lkft_names(ktap: str, prefix: str = "") -> list[tuple[str, str]]:
    """(name, result) as LKFT's kselftest parser derives them: tap.py reads
    the stream, a result's name is its description without `selftests:`,
    with a SKIP reason appended; the `# ` lines before it are its child
    stream, read the same way, their names prefixed with the parent's."""
    out: list[tuple[str, str]] = []
    child: list[str] = []
    for line in Parser().parse_text(ktap):
        if line.category == "diagnostic":
            child.append(line.text[1:].strip())
        elif line.category == "test":
            name = line.description.removeprefix("selftests:")
            directive = line.directive.text
            if line.ok and line.skip and directive.lower().startswith("skip"):
                name = f"{name} {directive[4:]}"
            name = prefix + slug(name)
            out += lkft_names("\n".join(child), name + "_")
            out.append((name, ("skip" if line.skip else "pass") if line.ok else "fail"))
            child = []
    return out
