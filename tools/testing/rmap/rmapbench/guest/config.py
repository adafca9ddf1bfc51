"""The guest's options as data (in the manner of kunit_tool's QEMU
parameters): which kernel to boot and the machine to boot it in.

Every front door that boots a guest (run_tests.sh, `rmapbench vm`,
`rmapbench sweep` and `rmapbench ab`) adds the same arguments with
add_arguments() and turns what was parsed into a GuestOptions with
from_namespace(); a kernel is always a KernelSpec, an image file or a
Debian stock series.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rmapbench.guest import backports
from rmapbench.guest import kernel as kernel_mod
from rmapbench.guest.qemu import parse_memory
from rmapbench.ksft.cli import any_path, describe, integer, number, shown
from rmapbench.machine import mm

STOCK_SERIES = "6.12"
# The machine's bounds: QEMU's own limits are far above; a guest of the
# suite needs some memory per node to run Python at all.
MAX_NODES = 64
MAX_CPUS = 256
MAX_MEMORY_MIB = 1024 * 1024  # 1T
MIN_NODE_MIB = 128
MAX_TIMEOUT = 7 * 24 * 3600
# A Debian stock series, optionally with a flavour: 6.12 (generic), 6.12-rt
# (PREEMPT_RT), 6.12-cloud (no 9p: refused before booting, kernel.py).
# ASCII digits: \d alone takes any script's, which no package name has.
SERIES = re.compile(r"\d+\.\d+(?:-(?:rt|cloud))?", re.ASCII)


@dataclass(frozen=True)
class KernelSpec:
    """A guest kernel: an image file (with its modules, optionally) or,
    without an image, a Debian stock series fetched once and cached."""

    text: str  # as the user named it; result sets record it
    image: Path | None = None
    modules: Path | None = None
    series: str = STOCK_SERIES

    @classmethod
    def stock(cls, series: str = STOCK_SERIES) -> KernelSpec:
        return cls(series, series=series)

    @classmethod
    def file(cls, image: Path, modules: Path | None = None) -> KernelSpec:
        return cls(str(image), image=image, modules=modules)

    @classmethod
    def parse(cls, spec: str) -> KernelSpec:
        """IMAGE|SERIES: a series like 6.12 unless a file of that name exists."""
        if not spec:  # Path("") would be the current directory
            raise argparse.ArgumentTypeError("expected an image or a series, got ''")
        if SERIES.fullmatch(spec) and not Path(spec).exists():
            return cls.stock(spec)
        return cls.file(Path(spec))

    def __str__(self) -> str:
        return self.text

    def check(self) -> None:
        """Refuse, before anything is fetched, an IMAGE|SERIES that is neither."""
        try:
            missing = self.image is not None and not self.image.is_file()
        except OSError as e:  # a name too long
            raise ValueError(f"--kernel {shown(self.text)}: {e.strerror or e}") from None
        if missing:
            raise ValueError(f"--kernel {self.text}: neither an image file nor a series like 6.12")

    def fetch(self) -> kernel_mod.KernelImage:
        """The kernel to boot; KernelError (or OSError) when it cannot be had,
        or cannot run the guest."""
        if self.image is not None:
            k = kernel_mod.kernel_from_image(self.image, self.modules)
        else:
            series, _, flavour = self.series.partition("-")
            try:
                k = kernel_mod.fetch_stock_kernel(series, flavour=kernel_mod.flavour(flavour))
            except kernel_mod.NotInSources:
                # A series newer than the machine's release (7.3 on bookworm).
                k = backports.fetch(series, kernel_mod.flavour(flavour))
        problem = kernel_mod.guest_problem(k)
        if problem:
            raise kernel_mod.KernelError(problem)
        return k


def host_memory_mib() -> int | None:
    """This machine's memory (MemTotal) in MiB; None when it cannot be read."""
    try:
        kb = mm.meminfo_kb("MemTotal")
    except (OSError, ValueError, IndexError):
        return None
    return None if kb is None else kb // 1024


@dataclass(frozen=True)
class GuestOptions:
    """What to boot, and the machine: run_in_guest's parameters as data."""

    kernels: tuple[KernelSpec, ...] = (KernelSpec.stock(),)
    nodes: int = 2
    cpus: int = 2
    memory: str = "2G"
    accel: str = "auto"
    timeout: float = 3600  # seconds per boot

    def host_problem(self) -> str | None:
        """Why this machine cannot boot the guest (checked only where one is
        booted: a run here, in a guest of 2G, needs no 2G more), or None."""
        host = host_memory_mib()
        if host is not None and parse_memory(self.memory) > host:
            # QEMU would fail to allocate it: "guest failed", exit 3
            return f"--memory {self.memory} is more than this machine has ({host}M)"
        return None

    @property
    def kernel(self) -> KernelSpec:
        """The kernel of a front door that boots one."""
        return self.kernels[0]

    def check(self) -> None:
        """ValueError, with the option's name, for a machine that cannot be."""
        if not math.isfinite(self.timeout):
            raise ValueError(f"--timeout must be a finite number of seconds, got {self.timeout}")
        for name, value, most in (("nodes", self.nodes, MAX_NODES), ("cpus", self.cpus, MAX_CPUS),
                                  ("timeout", self.timeout, MAX_TIMEOUT)):  # fmt: skip
            if value < 1:
                raise ValueError(f"--{name} must be at least 1")
            if value > most:
                raise ValueError(f"--{name} must be at most {most:g}, got {shown(str(value))}")
        try:
            mib = parse_memory(self.memory)
        except ValueError as e:
            raise ValueError(f"--memory: {e}") from None
        if mib < 1:
            raise ValueError("--memory must be at least 1M")
        if mib > MAX_MEMORY_MIB:
            raise ValueError(f"--memory {self.memory} is more than {MAX_MEMORY_MIB // 1024}G")
        if mib // self.nodes < MIN_NODE_MIB:
            raise ValueError(
                f"--memory {self.memory} over --nodes {self.nodes} leaves less than "
                f"{MIN_NODE_MIB}M per node"
            )


KernelArgs = Literal["image", "images"]


def add_arguments(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    kernels: KernelArgs,
    timeout: int | float,
    timeout_help: str,
    kernel_help: str = "",
) -> None:
    """The guest options of a front door.

    kernels="image": --kernel IMAGE [--modules DIR] or --kernel-series X.Y
    (run_tests.sh, rmapbench vm); kernels="images": --kernel IMAGE|SERIES,
    repeatable (sweep, ab), with `kernel_help`. The timeout's type is that of
    its default.
    """
    if kernels == "image":
        which = p.add_mutually_exclusive_group()
        which.add_argument(
            "--kernel",
            type=any_path(),
            metavar="IMAGE",
            help="guest kernel (bzImage/vmlinuz); default: Debian's stock "
            f"{STOCK_SERIES}, fetched once",
        )
        which.add_argument(
            "--kernel-series",
            default=STOCK_SERIES,
            metavar="X.Y[-rt]",
            help="stock Debian kernel series when no --kernel is given, -rt for its "
            f"PREEMPT_RT flavour (default {STOCK_SERIES})",
        )
        p.add_argument(
            "--modules",
            type=any_path(),
            metavar="DIR",
            help="modules of --kernel (lib/modules/RELEASE)",
        )
    else:
        p.add_argument(
            "--kernel",
            action="append",
            default=[],
            type=KernelSpec.parse,
            metavar="IMAGE|SERIES",
            help=kernel_help,
        )
    # Unbounded here: GuestOptions.check() says what the bounds are.
    p.add_argument("--nodes", type=integer(), default=2, help="guest NUMA nodes (default 2)")
    p.add_argument("--cpus", type=integer(), default=2, help="guest CPUs (default 2)")
    p.add_argument("--memory", default="2G", help="guest memory (default 2G)")
    p.add_argument(
        "--accel",
        choices=("auto", "kvm", "tcg"),
        default="auto",
        help="auto tries KVM and falls back to TCG (default auto)",
    )
    p.add_argument(
        "--timeout",
        type=integer() if isinstance(timeout, int) else number(),
        default=timeout,
        metavar="S",
        help=f"{timeout_help} (default {timeout:g})",
    )


def from_namespace(ns: argparse.Namespace) -> GuestOptions:
    """The GuestOptions of what add_arguments() parsed; ValueError (a
    message naming the option) for a machine or kernel that cannot be."""
    try:
        return _from_namespace(ns)
    except OSError as e:  # a path that cannot be looked at: a name too long, say
        raise ValueError(describe(e)) from None


def _from_namespace(ns: argparse.Namespace) -> GuestOptions:
    given: list[KernelSpec] | Path | None = ns.kernel
    if isinstance(given, list):  # kernels="images"
        specs = tuple(given) or (KernelSpec.stock(),)
    else:
        if ns.modules is not None and given is None:
            raise ValueError("--modules needs --kernel")
        if ns.modules is not None and not ns.modules.is_dir():
            raise ValueError(f"--modules {ns.modules}: directory not found")
        if given is not None and not given.is_file():
            what = "a directory, not an image file" if given.is_dir() else "image file not found"
            raise ValueError(f"--kernel {given}: {what}")
        if given is None and not SERIES.fullmatch(ns.kernel_series):
            raise ValueError(
                f"--kernel-series {ns.kernel_series}: not a series like 6.12 or 6.12-rt"
            )
        one = KernelSpec.file(given, ns.modules) if given else KernelSpec.stock(ns.kernel_series)
        specs = (one,)
    g = GuestOptions(specs, ns.nodes, ns.cpus, ns.memory, ns.accel, ns.timeout)
    g.check()
    return g
