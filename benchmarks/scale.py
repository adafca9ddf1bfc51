#!/usr/bin/env python3
"""The suite's own cost as scenarios grow (not a timed test): the ksm case
at growing --pages (VMAs = pages with --split 2) and ksm-procs at growing
--procs, in one guest, printing per run the build time per VMA, the
verification time per mapping checked, the peak memory of the test
process and its children (RSS, which counts a forked child's shared
interpreter pages again in every child, and PSS, which does not) against
the scenario's memory, and the walk share.

    benchmarks/scale.py [--pages 1000,4000] [--procs 2,8] [--procs-pages N]
                        [--full] [--memory 4G]

ksm-procs runs use --procs-pages pages per process (default 2000, the
case's default), fewer when the processes' regions together and the
children's own memory (2 MiB each) would pass half of --memory, so 1,024
processes fit a guest (16 pages each in the default 4G, 512 in 8G).

--full is 1,000 .. 100,000 VMAs and 2 .. 1,024 sharing processes (hours
under TCG). vm.max_map_count is raised by the case itself (journaled and
restored); the 512-process cap of the options is raised for ksm-procs
runs above it through RMAPBENCH_MAX_PROCS, in the guest only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "tools" / "testing" / "rmap"
sys.path.insert(0, str(SUITE))

from rmapbench.guest import config, vm  # noqa: E402
from rmapbench.guest.qemu import parse_memory  # noqa: E402
from rmapbench.scenarios.shared import CHILD_BYTES  # noqa: E402

MIB = 1 << 20

FULL_PAGES = "1000,4000,20000,50000,100000"
FULL_PROCS = "2,8,64,256,1024"
WATCH = Path(__file__).resolve().parent / "rss_watch.py"


def procs_pages(procs: int, per_proc: int, budget_mib: int) -> int:
    """Pages per process for a ksm-procs run: --procs-pages, fewer when the
    scenario would pass the budget: the processes' regions together (before
    merging) and each forked child's own memory, as the case's preflight
    counts them (KsmProcsScenario.footprint())."""
    children_mib = (procs - 1) * CHILD_BYTES // MIB
    fit = (budget_mib - children_mib) * 256 // procs  # 256 pages a MiB
    return max(16, min(per_proc, fit))


def script(
    share: Path, pages: list[int], procs: list[int], samples: int, per_proc: int, budget_mib: int
) -> str:
    py = shlex.quote(sys.executable)
    lines = ["set -u", f"cd {shlex.quote(str(SUITE))}"]
    runs = [("ksm", f"--pages {n}", f"ksm-p{n}") for n in pages]
    runs += [
        ("ksm_procs", f"--procs {p} --pages {procs_pages(p, per_proc, budget_mib)}", f"procs-{p}")
        for p in procs
    ]
    for prog, arg, name in runs:
        d = share / name
        cap = "RMAPBENCH_MAX_PROCS=2048 " if prog == "ksm_procs" else ""
        lines.append(
            f"{cap}{py} {WATCH} {d}.rss.json -- {py} ./rmap_{prog}.py {arg} "
            f"--samples {samples} --results {d} > {d}.txt 2>&1"
        )
    return "\n".join(lines) + "\n"


def row(share: Path, name: str) -> list[str]:
    prog = "rmap_ksm" if name.startswith("ksm") else "rmap_ksm_procs"
    try:
        doc = json.loads((share / name / f"{prog}.json").read_text())
    except OSError:
        return [name, "no result"]
    try:
        rss: dict[str, int] | None = json.loads((share / f"{name}.rss.json").read_text())
    except OSError:  # the watcher died with a run cut short (the guest's timeout)
        rss = None
    if not doc.get("scenarios"):  # cut short before the scenario was built
        return [name, *["-"] * (len(HEAD) - 2), str(doc.get("status"))]
    sc = doc["scenarios"][0]
    setup = sc.get("setup", {})
    ph = doc.get("phases", {})
    secs = ph.get("seconds", {})
    procs = setup.get("processes", 1)
    vmas = (setup.get("vmas") or 0) * procs  # every process builds the same region
    build = secs.get("build", 0) + secs.get("merge", 0)
    mappings = (sc.get("verified") or {}).get("mappings_per_sample") or 0
    checks = (sc.get("verified") or {}).get("samples") or 0
    verify = secs.get("verification", 0)
    pages = sc["params"].get("pages", 0)
    scen_kib = pages * 4 * procs  # the region each process maps, before merging
    return [
        name, str(vmas), str(procs), f"{build:.2f}",
        f"{build / vmas * 1e6:.0f}" if vmas else "-",
        f"{verify / (mappings * checks) * 1e6:.1f}" if mappings and checks else "-",
        f"{rss['peak_rss_kib'] / 1024:.0f}" if rss else "-",
        f"{rss['peak_pss_kib'] / 1024:.0f}" if rss and "peak_pss_kib" in rss else "-",
        f"{scen_kib / 1024:.0f}",
        f"{ph.get('walk_share', 0) * 100:.1f}%", f"{ph.get('total_s', 0):.1f}", doc["status"],
    ]  # fmt: skip


HEAD = ["run", "vmas", "procs", "build s", "build us/vma", "verify us/mapping",
        "rss MiB", "pss MiB", "scenario MiB", "walk share", "total s", "status"]  # fmt: skip


def table(rows: list[list[str]]) -> str:
    w = [max(len(r[i]) for r in [HEAD, *rows] if i < len(r)) for i in range(len(HEAD))]
    return "\n".join("  ".join(c.rjust(w[i]) for i, c in enumerate(r)) for r in [HEAD, *rows])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pages", default="1000,4000")
    p.add_argument("--procs", default="2,8")
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--full", action="store_true", help=f"--pages {FULL_PAGES} --procs {FULL_PROCS}")
    p.add_argument("--memory", default="4G")
    p.add_argument(
        "--procs-pages", type=int, default=2000,
        help="pages per process for ksm-procs (default 2000, the case's own), fewer when "
        "the regions and the children would pass half the guest's memory",
    )  # fmt: skip
    p.add_argument("--keep", type=Path, help="keep the results here")
    ns = p.parse_args()
    pages = [int(x) for x in (FULL_PAGES if ns.full else ns.pages).split(",") if x]
    procs = [int(x) for x in (FULL_PROCS if ns.full else ns.procs).split(",") if x]
    g = config.GuestOptions(memory=ns.memory, accel="tcg", timeout=36000)
    share = ns.keep or Path(tempfile.mkdtemp(prefix="rmapbench-scale-"))
    share.mkdir(parents=True, exist_ok=True)
    budget_mib = parse_memory(ns.memory) // 2
    job = script(share, pages, procs, ns.samples, ns.procs_pages, budget_mib)
    (share / "job.sh").write_text(job)
    result = vm.run_in_guest(
        g.kernel.fetch(), ["sh", str(share / "job.sh")], nodes=g.nodes, cpus=g.cpus,
        memory=g.memory, accel=g.accel, timeout=g.timeout, share_dir=share, cwd=SUITE,
        console_log=share / "console.log",
    )  # fmt: skip
    names = [f"ksm-p{n}" for n in pages] + [f"procs-{n}" for n in procs]
    print(table([row(share, n) for n in names]))
    print(f"guest total {result.total_seconds:.1f} s; results in {share}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
