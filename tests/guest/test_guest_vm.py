"""Tests of rmapbench.guest.vm that boot a stock kernel.

Guest tests fetch the Debian 6.12 kernel on first use (about 107 MB, cached) and boot it
under TCG; each boot takes roughly 6-10 s.  Deselect them with `-m "not guest"`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rmapbench.guest.kernel import KernelImage
from rmapbench.guest.vm import GuestError, GuestResult

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"

# Runs inside the guest: reports what the tests check in one boot.
PROBE = """
import json, os, sys
share = sys.argv[1]
mounts = {line.split()[1]: line.split()[2] for line in open("/proc/mounts")}
with open(os.path.join(share, "from-guest.txt"), "w") as f:
    f.write("written in the guest\\n")
print(json.dumps({
    "nodes": sorted(n for n in os.listdir("/sys/devices/system/node") if n.startswith("node")),
    "tmp": mounts.get("/tmp"),
    "release": os.uname().release,
    "uid": os.getuid(),
    "cwd": os.getcwd(),
    "share_in_env": os.environ.get("RMAPBENCH_SHARE"),
}))
"""


Boot = Callable[..., tuple[GuestResult, str]]


def boot(guest_boot: Boot, tmp_path: Path, argv: list[str], **kw: object
         ) -> tuple[GuestResult, str]:  # fmt: skip
    result, out = guest_boot(
        argv, tmp_path / "share", console_log=tmp_path / "console.log", **kw
    )  # fmt: skip
    print(f"{argv[0]}: {result}")  # boot times show with pytest -s
    return result, out


@pytest.mark.guest
def test_guest_two_nodes_ext4_tmp_share_and_output(
    stock_kernel: KernelImage, guest_boot: Boot, tmp_path: Path
) -> None:
    share = tmp_path / "share"
    here = Path(__file__).resolve().parent  # not the default cwd, nor ours
    result, out = boot(guest_boot, tmp_path, [sys.executable, "-c", PROBE, str(share)], cwd=here)
    assert result.status == 0, out
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["nodes"] == ["node0", "node1"]
    assert facts["tmp"] == "ext4"
    assert facts["release"] == stock_kernel.release
    assert facts["uid"] == 0
    assert facts["cwd"] == str(here)
    assert facts["share_in_env"] == str(share.resolve())
    assert (share / "from-guest.txt").read_text() == "written in the guest\n"
    assert "Linux version" not in out  # kernel noise stays in the console log only
    assert result.boot_seconds < result.total_seconds


@pytest.mark.guest
def test_guest_one_node_and_nonzero_status(guest_boot: Boot, tmp_path: Path) -> None:
    script = "ls -d /sys/devices/system/node/node*; echo to-stderr >&2; printf tail; exit 7"
    result, out = boot(guest_boot, tmp_path, ["sh", "-c", script], nodes=1, cpus=1, memory="1G")
    assert result.status == 7
    assert out.splitlines() == ["/sys/devices/system/node/node0", "to-stderr", "tail"]


@pytest.mark.guest
def test_guest_timeout_raises_quickly(guest_boot: Boot, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(GuestError, match=r"timed out after 4 s; console log: .*console\.log"):
        boot(guest_boot, tmp_path, ["sleep", "600"], timeout=4)
    assert time.monotonic() - start < 15


@pytest.mark.guest
def test_cli_returns_command_status(stock_kernel: KernelImage, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rmapbench.guest.vm", "--nodes", "1", "--cpus", "1",
         "--share", str(tmp_path), "--", "sh", "-c", "echo via-cli; exit 5"],
        cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == "via-cli\n"


