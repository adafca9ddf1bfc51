"""kprobe events recorded in a Debian 6.1 guest (no fprobe there, no BTF
arguments: raw offsets), read by the same code as the fprobe backend."""

from __future__ import annotations

from pathlib import Path

from rmapbench.tracing import events
from rmapbench.tracing.probes import DynamicProbe

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "kprobe_ksm_6.1.trace"


def test_kprobe_samples_pair_in_kernel_and_in_user_space() -> None:
    probe = DynamicProbe("kprobe")
    probe.group = "rmapbench_140"  # the recorded run's pid
    probe._hist = True  # the recording was paired in the kernel
    samples = FIXTURE.read_text().split("# rmapbench sample ")[1:]
    assert len(samples) == 4
    for text in samples:
        exact = probe.walks(text)
        raw = events.pair_entry_exit(
            events.parse(text),
            {f"{f}_entry": f for f in events.WALK_FUNCTIONS},
            {f"{f}_exit": f for f in events.WALK_FUNCTIONS},
        )
        ksm = [w for w in exact.walks if w.page_type == "ksm"]
        # try_to_migrate(), then remove_migration_ptes(), which 6.1 inlines
        # into migrate_pages_batch() (6.12: migrate_folio_move()).
        assert [w.caller for w in ksm] == ["try_to_migrate", "migrate_pages_batch"]
        assert exact.unmatched_exits == 0 and exact.unfinished == 0
        # The in-kernel latency agrees with the text timestamps to 1 us.
        for e, r in zip(exact.walks, raw.walks, strict=True):
            assert abs(e.duration_ns - r.duration_ns) <= 1_000
            assert e.folio == r.folio and e.folio is not None
