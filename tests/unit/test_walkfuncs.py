"""The walk functions' table: substitutes by the names a kernel can trace."""

from __future__ import annotations

from rmapbench.tracing import walkfuncs


def test_the_file_walk_by_its_6_15_name() -> None:
    have = {"rmap_walk_ksm", "rmap_walk_anon", "__rmap_walk_file"}.__contains__
    wanted = {"rmap_walk_anon": "anon", "rmap_walk_file": "file"}
    assert walkfuncs.substituted(wanted, have) == {"rmap_walk_anon": "anon",
                                                  "__rmap_walk_file": "file"}  # fmt: skip
    assert list(walkfuncs.substituted(wanted, lambda f: True) or {}) == list(wanted)


def test_no_substitute_no_functions() -> None:
    only_anon = {"rmap_walk_anon"}.__contains__
    assert walkfuncs.substituted({"rmap_walk_file": "file"}, only_anon) is None
    assert walkfuncs.substituted({"rmap_walk_ksm": "ksm"}, lambda f: False) is None


def test_signatures() -> None:
    sig = walkfuncs.SIGNATURES["__rmap_walk_file"]
    assert (sig.page_type, sig.folio, sig.mapping, sig.rwc, sig.locked) == ("file", 0, 1, 4, 5)
    assert walkfuncs.page_type("__rmap_walk_file") == "file"
    assert walkfuncs.page_type("__do_sys_getppid") == "unknown"
    assert not walkfuncs.has_locked("rmap_walk_ksm") and walkfuncs.has_locked("rmap_walk_file")
