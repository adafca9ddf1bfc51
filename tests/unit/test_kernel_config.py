"""The running kernel's config as DAMON's check reads it: /proc/config.gz
or /boot/config-RELEASE (a 6.18 excerpt in tests/unit/fixtures/kernel/)."""

from __future__ import annotations

import gzip
from pathlib import Path

from rmapbench.triggers.damon import kernel_config_lacks

CONFIG = (Path(__file__).parent / "fixtures" / "kernel" / "config-6.18-damon").read_bytes()


def test_options_set_and_not_set(tmp_path: Path) -> None:
    plain, packed = tmp_path / "config-6.18", tmp_path / "config.gz"
    plain.write_bytes(CONFIG)
    packed.write_bytes(gzip.compress(CONFIG))
    for path in (plain, packed):
        assert not kernel_config_lacks("CONFIG_DAMON_PADDR", (path,))
        assert kernel_config_lacks("CONFIG_DAMON_VADDR", (path,))  # "# ... is not set"


def test_a_config_gz_that_does_not_decompress_is_no_config(tmp_path: Path) -> None:
    broken = tmp_path / "config.gz"
    broken.write_bytes(gzip.compress(CONFIG)[:40])  # cut short
    plain = tmp_path / "config-6.18"
    plain.write_bytes(CONFIG)
    assert not kernel_config_lacks("CONFIG_DAMON_VADDR", (broken,))  # unknown
    assert kernel_config_lacks("CONFIG_DAMON_VADDR", (broken, plain))  # the next one tells
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    assert not kernel_config_lacks("CONFIG_DAMON_VADDR", (tmp_path / "junk.gz",))


def test_no_config_is_unknown(tmp_path: Path) -> None:
    assert not kernel_config_lacks("CONFIG_DAMON_PADDR", (tmp_path / "none",))
