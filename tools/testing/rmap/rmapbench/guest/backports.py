"""Stock kernels newer than the machine's Debian release ships: Debian's
trixie-backports (the 7.x series among them), through an apt source of
the suite's own.

The source lives in the kernel cache (its sources.list, package lists and
archives), never in /etc/apt: the machine's apt configuration is left as
it is, and the source is asked only for a series the machine's own
sources do not have (guest/config.py). Its lists are refreshed when older
than a day, and once more when the series is not among them.

There Debian splits a kernel into an unsigned image package
(linux-binary-unsigned-RELEASE: /usr/lib/modules/RELEASE/vmlinuz.unsigned),
a base package (linux-base-RELEASE: config, System.map, modules.builtin,
which says what the initramfs need not load) and a modules package
(linux-modules-RELEASE); all three are fetched and extracted into one
cache entry, as one bookworm package is.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from rmapbench.guest import kernel

SOURCE = "deb http://deb.debian.org/debian trixie-backports main"
MAX_AGE_S = 24 * 3600


def options(where: Path) -> list[str]:
    """apt's options for the private source at `where`: its own lists and
    archives, the machine's trusted keys (which sign trixie too)."""
    return [
        "-o", f"Dir::Etc::SourceList={where / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={where / 'lists'}",
        "-o", f"Dir::Cache={where / 'cache'}",
    ]  # fmt: skip


def update(where: Path, force: bool = False) -> None:
    """Write the source and refresh its lists unless they are recent."""
    stamp = where / "updated"
    if not force and stamp.is_file() and time.time() - stamp.stat().st_mtime < MAX_AGE_S:
        return
    (where / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (where / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (where / "sources.list").write_text(SOURCE + "\n")
    kernel.run_logged(["apt-get", "-q", *options(where), "update"])
    stamp.touch()


IMAGE = "linux-binary-unsigned-{series}.N+debNN-{flavour}"


def packages(series: str, flavour: str, where: Path) -> list[str]:
    """The newest image, base and modules packages of a series: for 7.3,
    linux-binary-unsigned-7.3.4+deb13-amd64, linux-base-7.3.4+deb13-amd64
    and linux-modules-7.3.4+deb13-amd64."""
    s, f = re.escape(series), re.escape(flavour)
    pattern = re.compile(rf"^linux-binary-unsigned-({s}\.\d+\+deb\d+)-{f}$")
    for force in (False, True):
        update(where, force)
        argv = ["apt-cache", *options(where), "search", "--names-only",
                f"^linux-binary-unsigned-{s}\\."]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        versions = [m[1] for line in out.splitlines() if (m := pattern.match(line.split(" ")[0]))]
        if versions:
            v = max(versions, key=kernel.version_key)
            return [f"linux-{p}-{v}-{flavour}" for p in ("binary-unsigned", "base", "modules")]
    raise kernel.KernelError(
        f"no {series} kernel of flavour {flavour} in this machine's apt sources or in "
        f"Debian's trixie-backports (looked for {IMAGE.format(series=series, flavour=flavour)})"
    )


def fetch(series: str, flavour: str = kernel.DEFAULT_FLAVOUR,
          cache_dir: Path | None = None) -> kernel.KernelImage:  # fmt: skip
    """Download (once) and extract the newest trixie-backports kernel of a series."""
    cache = cache_dir or kernel.cache_root() / "kernels"
    where = cache / "apt-trixie-backports"
    wanted = packages(series, flavour, where)
    return kernel.extract_once(cache / wanted[0], wanted, options(where))
