"""What the guest tests share: Debian's stock 6.12 kernel, fetched once per
session, and fixtures that run something in a guest from an explicit
directory (the suite's unless told), so no test changes this process's
working directory.

    def test_x(guest: Callable[..., str], tmp_path: Path) -> None:
        out = guest("./rmap_anon.py --pages 100", tmp_path, nodes=1)
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import pytest

from rmapbench.guest import kernel, vm

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tools" / "testing" / "rmap"


@pytest.fixture(scope="session")
def stock_kernel() -> kernel.KernelImage:
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed")
    return kernel.fetch_stock_kernel("6.12")


def _boot(
    image: kernel.KernelImage,
    argv: Sequence[str],
    share: Path,
    stream: TextIO,
    *,
    cwd: Path = SUITE,
    console_log: Path | None = None,
    nodes: int = 2,
    cpus: int = 2,
    memory: str = "2G",
    timeout: float = 900,
) -> vm.GuestResult:
    share.mkdir(parents=True, exist_ok=True)
    return vm.run_in_guest(
        image, argv, nodes=nodes, cpus=cpus, memory=memory, accel="auto", timeout=timeout,
        share_dir=share, cwd=cwd, console_log=console_log or share / "console.log",
        stream=stream,
    )  # fmt: skip


@pytest.fixture(scope="session")
def guest(stock_kernel: kernel.KernelImage) -> Callable[..., str]:
    """guest(script, share, *, cwd=SUITE, nodes=2, timeout=900, kernel=stock 6.12):
    run a shell script in a guest from `cwd` with `share` writable; return
    what it printed (streamed to share/stdout.txt as it comes)."""

    def run(
        script: str,
        share: Path,
        *,
        cwd: Path = SUITE,
        nodes: int = 2,
        timeout: float = 900,
        kernel: kernel.KernelImage | None = None,
    ) -> str:
        out = share / "stdout.txt"
        with open(out, "w") as stream:
            _boot(kernel or stock_kernel, ["sh", "-c", script], share, stream,
                  cwd=cwd, nodes=nodes, timeout=timeout)  # fmt: skip
        return out.read_text()

    return run


@pytest.fixture(scope="session")
def guest_boot(stock_kernel: kernel.KernelImage) -> Callable[..., tuple[vm.GuestResult, str]]:
    """guest_boot(argv, share, *, cwd=SUITE, console_log=share/console.log,
    nodes=2, cpus=2, memory="2G", timeout=900): run argv in a guest of the
    stock kernel; its result and what it printed."""

    def run(argv: Sequence[str], share: Path, **kw: object) -> tuple[vm.GuestResult, str]:
        out = io.StringIO()
        result = _boot(stock_kernel, argv, share, out, **kw)  # type: ignore[arg-type]
        return result, out.getvalue()

    return run
