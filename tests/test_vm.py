"""Tests of rmapbench.vm: fast unit tests, and `guest` tests that boot a stock kernel.

Guest tests fetch the Debian 6.12 kernel on first use (about 107 MB, cached) and boot it
under TCG; each boot takes roughly 6-10 s.  Deselect them with `-m "not guest"`.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmapbench import vm
from rmapbench.initramfs import CpioWriter
from rmapbench.kernel import KernelImage, fetch_stock_kernel, read_bzimage_release
from rmapbench.qemu import Topology, parse_memory
from rmapbench.vm import GuestError, GuestResult, job_script, main, run_in_guest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "tools" / "testing" / "rmap"

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


# --- fast tests, no guest ---------------------------------------------------------------


def test_topology_two_nodes_splits_cpus_and_memory() -> None:
    args = " ".join(Topology(nodes=2, cpus=4, memory_mib=2048).qemu_args())
    assert "-m 2048M -smp 4,sockets=2,cores=2,threads=1,maxcpus=4" in args
    assert "memory-backend-ram,id=m1,size=1024M" in args
    assert "node,nodeid=0,cpus=0-1,memdev=m0" in args
    assert "node,nodeid=1,cpus=2-3,memdev=m1" in args


def test_topology_one_node_has_no_numa_options() -> None:
    assert Topology(nodes=1, cpus=2, memory_mib=1024).qemu_args() == ["-m", "1024M", "-smp", "2"]


def test_topology_uneven_cpus_leave_hotplug_slots() -> None:
    args = " ".join(Topology(nodes=2, cpus=3, memory_mib=1025).qemu_args())
    assert "-m 1024M -smp 3,sockets=2,cores=2,threads=1,maxcpus=4" in args
    assert "node,nodeid=1,cpus=2-3,memdev=m1" in args


def test_parse_memory() -> None:
    assert parse_memory("2G") == 2048
    assert parse_memory("1536M") == 1536
    with pytest.raises(ValueError):
        parse_memory("lots")


def test_job_script_quotes_arguments_and_env() -> None:
    script = job_script(["echo", "a b", "$HOME"], "/some dir", {"X": "1 2"})
    assert "export X='1 2'" in script
    assert "cd '/some dir' || exit 125" in script
    assert "exec echo 'a b' '$HOME'" in script
    with pytest.raises(ValueError):
        job_script(["true"], "/", {"BAD-NAME": "x"})


def test_cpio_is_readable_by_cpio_tool(tmp_path: Path) -> None:
    if not shutil.which("cpio"):
        pytest.skip("no cpio tool")
    cpio = CpioWriter()
    cpio.directory("d")
    cpio.file("d/f", b"hello", 0o755)
    archive = tmp_path / "a.cpio"
    archive.write_bytes(cpio.getvalue())
    listing = subprocess.run(
        ["cpio", "-t"], stdin=archive.open("rb"), capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing == ["d", "d/f"]


def test_bzimage_release_from_setup_header(tmp_path: Path) -> None:
    image = bytearray(0x400)
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x20E, 0x100)  # string at 0x100 + 0x200
    image[0x300:0x318] = b"6.12.1-test (x@y) #1 SMP"
    (tmp_path / "vmlinuz").write_bytes(bytes(image))
    assert read_bzimage_release(tmp_path / "vmlinuz") == "6.12.1-test"


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--nodes", "2"])  # no command
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--kernel", "/nonexistent/vmlinuz", "--", "true"])
    assert exc.value.code == 2
    assert "not found" in capsys.readouterr().err


# --- guest tests ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kernel() -> KernelImage:
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed")
    return fetch_stock_kernel("6.12")


def boot(
    kernel: KernelImage, tmp_path: Path, argv: list[str], **kw: object
) -> tuple[GuestResult, str]:
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    out = io.StringIO()
    result = run_in_guest(
        kernel, argv, share_dir=share, console_log=tmp_path / "console.log", stream=out,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    print(f"{argv[0]}: {result}")  # boot times show with pytest -s
    return result, out.getvalue()


@pytest.mark.guest
def test_guest_two_nodes_ext4_tmp_share_and_output(kernel: KernelImage, tmp_path: Path) -> None:
    share = tmp_path / "share"
    result, out = boot(kernel, tmp_path, [sys.executable, "-c", PROBE, str(share)])
    assert result.status == 0, out
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["nodes"] == ["node0", "node1"]
    assert facts["tmp"] == "ext4"
    assert facts["release"] == kernel.release
    assert facts["uid"] == 0
    assert facts["cwd"] == str(Path.cwd())
    assert facts["share_in_env"] == str(share.resolve())
    assert (share / "from-guest.txt").read_text() == "written in the guest\n"
    assert "Linux version" not in out  # kernel noise stays in the console log only
    assert result.boot_seconds < result.total_seconds


@pytest.mark.guest
def test_guest_one_node_and_nonzero_status(kernel: KernelImage, tmp_path: Path) -> None:
    script = "ls -d /sys/devices/system/node/node*; echo to-stderr >&2; printf tail; exit 7"
    result, out = boot(kernel, tmp_path, ["sh", "-c", script], nodes=1, cpus=1, memory="1G")
    assert result.status == 7
    assert out.splitlines() == ["/sys/devices/system/node/node0", "to-stderr", "tail"]


@pytest.mark.guest
def test_guest_timeout_raises_quickly(kernel: KernelImage, tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(GuestError, match=r"timed out after 4 s; console log: .*console\.log"):
        boot(kernel, tmp_path, ["sleep", "600"], timeout=4)
    assert time.monotonic() - start < 15


@pytest.mark.guest
def test_cli_returns_command_status(kernel: KernelImage, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rmapbench.vm", "--nodes", "1", "--cpus", "1",
         "--share", str(tmp_path), "--", "sh", "-c", "echo via-cli; exit 5"],
        cwd=PACKAGE_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == "via-cli\n"


def test_checkout_in_tmp_is_kept_visible_in_the_guest() -> None:
    """A CI clone under /tmp must stay visible although /tmp is the guest's
    scratch disk; paths inside a kept path are not listed again."""
    root = vm._project_root()
    assert Path(root, "run_tests.sh").exists()
    keep = vm.paths_to_keep(f"{root}/tools/testing/rmap")
    if root.startswith("/tmp/"):
        assert root in keep
        assert not any(p.startswith(root + "/") for p in keep)
