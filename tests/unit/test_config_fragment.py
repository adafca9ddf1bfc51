"""tools/testing/rmap/config, the kselftest config fragment a CI merges into
the kernels it builds (scripts/kconfig/merge_config.sh, as `make
kselftest-merge` does with every collection's config): in the form those
files take, every symbol a real one in Debian's linux-source-6.12, and every
option the suite's own messages name as needed for a case, trigger or
backend asked for there. scripts/ground-truth/build.sh builds from it and
checks that each option survived olddefconfig."""

from __future__ import annotations

import re
from pathlib import Path

import kernel_tree

FRAGMENT = kernel_tree.SUITE / "config"
LIBRARY = kernel_tree.SUITE / "rmapbench"
# Named in messages but not asked for: what only this project's QEMU guest
# needs (the build script adds it), or what the fragment's options select.
NOT_ASKED = {
    "CONFIG_NET_9P", "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS",  # the guest's 9p share
    "CONFIG_TRACING", "CONFIG_PROBE_EVENTS",  # selected by FTRACE, KPROBE_EVENTS
    "CONFIG_ARCH_ENABLE_THP_MIGRATION",  # an architecture's property
}


def options() -> list[str]:
    return FRAGMENT.read_text().splitlines()


def test_fragment_has_the_form_of_a_kselftest_config() -> None:
    lines = options()
    assert lines, FRAGMENT
    bad = [ln for ln in lines if not re.fullmatch(r"CONFIG_[A-Z0-9_]+=y", ln)]
    assert not bad
    assert lines == sorted(set(lines))  # sorted, each once, as merge_config reads best


def test_every_option_the_suite_names_is_asked_for() -> None:
    named: set[str] = set()
    for path in LIBRARY.rglob("*.py"):
        named |= set(re.findall(r"\bCONFIG_[A-Z0-9_]+\b", path.read_text()))
    asked = {ln.split("=")[0] for ln in options()}
    assert named - NOT_ASKED <= asked, sorted(named - NOT_ASKED - asked)
    assert NOT_ASKED.isdisjoint(asked)


def _kconfig_symbols(tree: Path) -> set[str]:
    symbols: set[str] = set()
    for path in tree.rglob("Kconfig*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            symbols |= set(re.findall(r"^\s*(?:menu)?config\s+([A-Z0-9_]+)\s*$", text, re.M))
    return symbols


def test_every_option_exists_in_linux_6_12() -> None:
    tree = kernel_tree.fetch_tree()
    symbols = _kconfig_symbols(tree)
    assert len(symbols) > 10_000, tree  # the whole tree's Kconfig files
    missing = [ln for ln in options() if ln.split("=")[0].removeprefix("CONFIG_") not in symbols]
    assert not missing
