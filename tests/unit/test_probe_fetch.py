"""Where the probes fetch the walk's arguments: the exit event where the
kernel allows it (outside the timed interval), and the pairing of both
layouts (no tracefs)."""

from __future__ import annotations

from rmapbench.tracing import events, hist
from rmapbench.tracing.probes import DynamicProbe


def _pair(on_exit: bool) -> hist.HistPair:
    return hist.HistPair(
        synth="g_rmap_walk_anon",
        entry=("g", "rmap_walk_anon_entry"),
        exit=("g", "rmap_walk_anon_exit"),
        tag="0",
        locked=True,
        fields_on_exit=on_exit,
    )


def test_entry_trigger_saves_only_the_timestamp_when_the_exit_fetches() -> None:
    pair = _pair(True)
    assert pair.entry_trigger() == "hist:keys=common_pid:ts0=common_timestamp"
    assert pair.exit_trigger() == (
        "hist:keys=common_pid:lat0=common_timestamp-$ts0:"
        "onmatch(g.rmap_walk_anon_entry).trace(g_rmap_walk_anon,$lat0,folio,mapping,locked)"
    )
    assert pair.fields() == "u64 lat; u64 folio; u64 mapping; u8 locked"


def test_entry_trigger_carries_the_fields_when_the_entry_fetches() -> None:
    pair = _pair(False)
    assert pair.entry_trigger().endswith("fo0=folio,ma0=mapping,lk0=locked")
    assert ".trace(g_rmap_walk_anon,$lat0,$fx0,$mx0,$lx0)" in pair.exit_trigger()


def test_walk_definitions_fetch_at_exit_by_default() -> None:
    for kind, exit_kind in (("fprobe", "f:"), ("kprobe", "r:")):
        p = DynamicProbe(kind)
        p.group = "g"
        entry, exit_ = p._definitions("rmap_walk_anon")
        assert entry.split()[-1] == "rmap_walk_anon"
        assert exit_.startswith(exit_kind) and exit_.endswith("locked=$arg3:u8")
        assert p._pair("rmap_walk_anon", 0).fields_on_exit


def test_user_space_pairing_takes_the_exit_events_arguments() -> None:
    text = (
        "  python3-90 [001] .....   10.000100: rmap_walk_anon_entry: (rmap_walk_anon+0x4/0x1f0)\n"
        "  python3-90 [001] .....   10.000130: rmap_walk_anon_exit: "
        "(try_to_migrate+0x9e/0xd0 <- rmap_walk_anon) folio=0xffffea0000123400 "
        "mapping=0xffff888003b5e001 locked=1\n"
    )
    pairing = events.pair_entry_exit(
        events.parse(text), {"rmap_walk_anon_entry": "rmap_walk_anon"},
        {"rmap_walk_anon_exit": "rmap_walk_anon"},
    )  # fmt: skip
    (walk,) = pairing.walks
    assert walk.duration_ns == 30_000 and walk.folio == 0xFFFFEA0000123400
    assert walk.function == "rmap_walk_locked" and walk.caller == "try_to_migrate"
