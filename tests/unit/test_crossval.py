"""Agreement and overhead arithmetic of --backend all on synthetic rounds."""

from __future__ import annotations

from rmapbench.bench import crossval
from rmapbench.bench.measure import Sample
from rmapbench.ksft import stats
from rmapbench.triggers import Firing


def _round(name: str, walk_p50: int, syscall_p50: int, walks: int = 20,
           samples: int = 10) -> crossval.Round:
    rnd = crossval.Round(name)
    rnd.walks = stats.Summary(walks, 1, walk_p50, walk_p50, walk_p50, walk_p50, walk_p50, 0)
    rnd.syscall = stats.Summary(samples, 1, syscall_p50, 0, 0, 0, 0, 0)
    firing = Firing.migration(syscall_p50, 0, 1, 1)
    rnd.samples = [Sample(i, False, firing, 1, 2) for i in range(samples)]
    return rnd


def test_overhead_is_syscall_change_per_walk() -> None:
    base = _round("syscall", 0, 1_000_000, walks=0)
    fprobe = _round("fprobe", 80_000, 1_200_000)
    assert fprobe.walks_per_sample == 2
    assert crossval.overhead_per_walk_ns(fprobe, base) == 100_000
    assert crossval.overhead_per_walk_ns(base, base) is None


def test_ratio_within_factor_agrees() -> None:
    base = _round("syscall", 0, 1_000_000, walks=0)
    ref = _round("fprobe", 200_000_000, 1_000_000)
    others = [_round("kprobe", 260_000_000, 1_000_000), _round("fgraph", 150_000_000, 1_000_000)]
    assert crossval.disagreements(ref, others, base) == []


def test_large_ratio_flagged_unless_within_measured_overhead() -> None:
    base = _round("syscall", 0, 1_000_000, walks=0)
    ref = _round("fprobe", 90_000, 1_200_000)  # 100 us overhead per walk
    near = _round("fgraph", 40_000, 1_100_000)  # 2.25x, but 50 us apart
    far = _round("kprobe", 900_000, 1_000_000)  # 10x and 810 us apart
    problems = crossval.disagreements(ref, [near, far], base)
    assert len(problems) == 1 and problems[0].startswith("kprobe p50")


def test_a_backend_that_timed_no_walk_disagrees() -> None:
    base = _round("syscall", 0, 1_000_000, walks=0)
    ref = _round("bpf", 200_000_000, 1_000_000)
    silent = _round("fgraph", 0, 1_000_000, walks=0)  # every sample lost events
    gone = crossval.Round("fprobe", unavailable="no fprobe events")
    assert crossval.disagreements(ref, [silent, gone], base) == [
        "fgraph timed no walk in 10 samples"
    ]


def test_agreement_per_caller_when_both_split_the_walks() -> None:
    """A migration's walks are bimodal: the pooled p50 of a few of each
    lands between the modes, so backends are compared caller by caller."""
    base = _round("syscall", 0, 1_000_000, walks=0)
    ref = _round("bpf", 60_000, 1_000_000)  # pooled p50 between 20 and 100 us
    other = _round("kprobe", 100_000, 1_000_000)  # 1.67x pooled, but each caller agrees

    def callers(rnd: crossval.Round, ttm: int, rmp: int) -> None:
        rnd.by_caller = {
            "remove_migration_ptes": stats.Summary(10, 1, rmp, rmp, rmp, rmp, rmp, 0),
            "try_to_migrate": stats.Summary(10, 1, ttm, ttm, ttm, ttm, ttm, 0),
        }

    callers(ref, 100_000, 20_000)
    callers(other, 110_000, 22_000)
    assert crossval.disagreements(ref, [other], base) == []
    callers(other, 300_000, 22_000)
    assert crossval.disagreements(ref, [other], base) == [
        "kprobe try_to_migrate p50 300 us is 3.00x bpf's 100 us"
    ]
