"""Fire the split trigger at a THP made here (until the thp case exists):
one 2 MiB-aligned PMD-mapped anonymous THP, its first page the target.
Prints one JSON object: per sample, whether the split took effect and the
walks seen. Runs inside the guest as root."""

import json
import sys

from rmapbench import measure, mm
from rmapbench.knobs import Journal
from rmapbench.tracing import select, tracefs
from rmapbench.triggers import SplitTrigger

HPAGE = 2 << 20


def main() -> None:
    with Journal(tag="thp") as journal:
        raw = mm.mmap(2 * HPAGE, mm.PROT_READ | mm.PROT_WRITE, mm.MAP_PRIVATE | mm.MAP_ANONYMOUS)
        addr = raw + (-raw) % HPAGE
        mm.madvise(addr, HPAGE, mm.MADV_HUGEPAGE)
        mm.fill(addr, HPAGE, 0x5A)
        trigger = SplitTrigger()
        trigger.check()
        tfs, inst = tracefs.private_instance(journal, 4096)
        backend, desc, _ = select.arm("auto", tfs, inst)
        probe = measure.Probe(backend, inst)
        probe.follow(trigger.pids())
        samples = measure.run(trigger, addr, None, probe, 1, 3)
        measure.mark(samples)
        intact = mm.read_bytes(addr, HPAGE) == bytes([0x5A]) * HPAGE
        json.dump({
            "backend": desc.name,
            "intact": intact,
            "samples": [{
                "done": s.firing.migrated,
                "cost_ns": s.firing.syscall_ns,
                "walks": [{"page_type": w.page_type, "function": w.function,
                           "target": w.target, "ns": w.duration_ns} for w in s.walks],
            } for s in samples],
        }, sys.stdout)
        mm.munmap(raw, 2 * HPAGE)


if __name__ == "__main__":
    main()
