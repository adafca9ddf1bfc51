"""Stock kernels by series and flavour (6.12, 6.12-rt), and the refusal,
before booting, of a kernel whose config says the guest cannot mount this
machine's files (Debian's cloud flavour has no 9p)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from rmapbench.guest import config
from rmapbench.guest import kernel as kernel_mod
from rmapbench.guest.kernel import KernelImage, guest_problem


def _parse(*argv: str) -> config.GuestOptions:
    p = argparse.ArgumentParser()
    config.add_arguments(p, kernels="image", timeout=60, timeout_help="s")
    return config.from_namespace(p.parse_args(list(argv)))


def test_a_series_may_name_the_rt_flavour() -> None:
    assert _parse("--kernel-series", "6.12-rt").kernel.series == "6.12-rt"
    assert config.KernelSpec.parse("6.1-rt").series == "6.1-rt"
    assert kernel_mod.flavour("rt") == "rt-amd64"
    assert kernel_mod.flavour("") == "amd64"


@pytest.mark.parametrize("bad", ["6.12-foo", "6.12rt", "rt"])
def test_other_suffixes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape("not a series like 6.12 or 6.12-rt")):
        _parse("--kernel-series", bad)


def test_the_flavour_reaches_the_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []
    image = KernelImage(Path("/boot/vmlinuz-x"), "6.12.1-rt-amd64", None, None)

    def fetch(series: str, flavour: str) -> KernelImage:
        asked.append((series, flavour))
        return image

    monkeypatch.setattr(kernel_mod, "fetch_stock_kernel", fetch)
    assert config.KernelSpec.stock("6.12-rt").fetch() is image
    assert config.KernelSpec.stock("6.1").fetch() is image
    assert asked == [("6.12", "rt-amd64"), ("6.1", "amd64")]


def _kernel(tmp_path: Path, lines: list[str]) -> KernelImage:
    cfg = tmp_path / "config-6.12.1-cloud-amd64"
    cfg.write_text("\n".join(["CONFIG_VIRTIO_PCI=y", *lines]) + "\n")
    return KernelImage(tmp_path / "vmlinuz", "6.12.1-cloud-amd64", None, cfg)


def test_a_kernel_without_9p_is_named(tmp_path: Path) -> None:
    k = _kernel(tmp_path, ["# CONFIG_NET_9P is not set"])
    problem = guest_problem(k)
    assert problem == (
        "6.12.1-cloud-amd64 has no CONFIG_NET_9P, CONFIG_NET_9P_VIRTIO, CONFIG_9P_FS "
        f"(config {k.config}): the guest could not mount this machine's files over 9p"
    )


def test_9p_built_in_or_as_modules_will_do(tmp_path: Path) -> None:
    k = _kernel(tmp_path, ["CONFIG_NET_9P=m", "CONFIG_NET_9P_VIRTIO=m", "CONFIG_9P_FS=y"])
    assert guest_problem(k) is None
    assert guest_problem(KernelImage(tmp_path / "vmlinuz", "x", None, None)) is None
