"""Tests of rmapbench.guest.vm that boot nothing (tests/guest/test_guest_vm.py boots)."""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rmapbench.guest import config, vm
from rmapbench.guest.initramfs import CpioWriter
from rmapbench.guest.kernel import KernelImage, read_bzimage_release
from rmapbench.guest.qemu import Topology, parse_memory
from rmapbench.guest.vm import job_script, main

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "tools" / "testing" / "rmap"


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
    assert parse_memory("1T") == parse_memory("1024G") == 1 << 20  # the documented cap
    assert parse_memory("512") == 512
    for bad in ("lots", "1P", "1.5G", "-1G"):
        with pytest.raises(ValueError):
            parse_memory(bad)


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
    assert main(["--nodes", "2"]) == 2  # no command
    assert main(["--kernel", "/nonexistent/vmlinuz", "--", "true"]) == 2
    assert "not found" in capsys.readouterr().err


def test_checkout_in_tmp_is_kept_visible_in_the_guest() -> None:
    """A CI clone under /tmp must stay visible although /tmp is the guest's
    scratch disk; paths inside a kept path are not listed again."""
    root = vm._project_root()
    assert Path(root, "run_tests.sh").exists()
    keep = vm.paths_to_keep(f"{root}/tools/testing/rmap")
    if root.startswith("/tmp/"):
        assert root in keep
        assert not any(p.startswith(root + "/") for p in keep)




# --- guest options, shared by run_tests.sh, rmapbench vm, sweep and ab -------


def _parsed(kernels: config.KernelArgs, argv: list[str]) -> config.GuestOptions:
    p = argparse.ArgumentParser()
    config.add_arguments(p, kernels=kernels, timeout=3600, timeout_help="seconds")
    return config.from_namespace(p.parse_args(argv))


def test_guest_options_defaults_are_one_stock_kernel_and_two_nodes() -> None:
    for kernels in ("image", "images"):
        g = _parsed(kernels, [])  # type: ignore[arg-type]
        assert g == config.GuestOptions()
        assert g.kernel == config.KernelSpec.stock("6.12") and str(g.kernel) == "6.12"
        assert (g.nodes, g.cpus, g.memory, g.accel, g.timeout) == (2, 2, "2G", "auto", 3600)


def test_a_kernel_is_an_image_or_a_series(tmp_path: Path) -> None:
    image = tmp_path / "6.1"  # a file named like a series is the file
    image.write_bytes(b"")
    assert config.KernelSpec.parse("6.1") == config.KernelSpec.stock("6.1")
    g = _parsed("images", ["--kernel", "6.12", "--kernel", str(image)])
    assert g.kernels == (config.KernelSpec.stock("6.12"), config.KernelSpec.file(image))
    assert [str(k) for k in g.kernels] == ["6.12", str(image)]
    g = _parsed("image", ["--kernel", str(image), "--modules", str(tmp_path)])
    assert g.kernel == config.KernelSpec.file(image, tmp_path)
    assert _parsed("image", ["--kernel-series", "6.1"]).kernel == config.KernelSpec.stock("6.1")
    with pytest.raises(ValueError, match=r"neither an image file nor a series like 6\.12"):
        config.KernelSpec.parse(str(tmp_path / "nothing")).check()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nodes", "0"], "--nodes must be at least 1"),
        (["--cpus", "0"], "--cpus must be at least 1"),
        (["--timeout", "0"], "--timeout must be at least 1"),
        (["--memory", "lots"], "bad memory size 'lots'"),
        (["--memory", "0"], "--memory must be at least 1M"),
        (["--modules", "/lib/modules"], "--modules needs --kernel"),
    ],
)
def test_guest_options_refused(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _parsed("image", argv)


def test_failed_guest_keeps_the_console_log_it_names(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --results the results directory is a temporary one; a guest
    failure names its console.log, which must still be there."""
    from rmapbench.guest import kernel as kernel_mod
    from rmapbench.guest import suite

    monkeypatch.delenv("RMAP_ARGS", raising=False)
    fake = KernelImage(Path("/boot/vmlinuz-fake"), "6.12.0-fake", None, None)
    monkeypatch.setattr(kernel_mod, "fetch_stock_kernel", lambda series, flavour: fake)
    seen: dict[str, object] = {}

    def guest_panics(image: KernelImage, argv: list[str], **kw: Any) -> vm.GuestResult:
        seen.update(kw)
        kw["console_log"].write_text("Kernel panic\n")
        raise vm.GuestError(f"guest kernel panic (x); console log: {kw['console_log']}")

    monkeypatch.setattr(vm, "run_in_guest", guest_panics)
    cwd = Path.cwd()
    assert suite.main(["--vm", "--", "--case", "anon"]) == 3
    assert Path.cwd() == cwd  # and the guest ran in the suite directory, by parameter
    assert seen["cwd"] == suite.SUITE_DIR
    err = capsys.readouterr().err
    log = Path(err.rsplit("console log: ", 1)[1].split()[0])
    try:
        assert log.read_text() == "Kernel panic\n", err
    finally:
        shutil.rmtree(log.parent)


def test_a_guest_writes_only_its_tmp_and_the_share(tmp_path: Path) -> None:
    from rmapbench.guest.vm import workdir_problem

    assert workdir_problem(Path("/tmp")) is None
    assert workdir_problem(Path("/tmp/")) is None
    (tmp_path / "w").mkdir()
    assert workdir_problem(tmp_path / "w", share=tmp_path) is None
    assert "no such directory" in str(workdir_problem(tmp_path / "v", share=tmp_path))
    assert "absolute path" in str(workdir_problem(Path("relative"), share=tmp_path))
    for elsewhere in ("/tmp/x", "/", "/home"):
        assert "in a guest only /tmp" in str(workdir_problem(Path(elsewhere), share=tmp_path))


def test_kernel_command_line_puts_the_suite_s_own_first() -> None:
    """Whatever --append adds comes after the suite's parameters and the
    nonce, so it cannot change how they are read; a line the kernel would
    cut short is refused."""
    from rmapbench.guest import cmdline

    line = cmdline.line(["tsc=reliable"], "00ff")
    assert line == f"{cmdline.SUITE} RMAPBENCH_NONCE=00ff tsc=reliable"
    assert cmdline.length_problem(["tsc=reliable"]) is None
    assert cmdline.length_problem(["x=" + "y" * 2000]) is not None
    assert cmdline.parameter("rdinit=/nonexistent") == "rdinit=/nonexistent"  # a test's fault
