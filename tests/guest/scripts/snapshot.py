"""Print, as JSON, every global setting the suite may touch, so a guest test
can compare before and after. Runs inside the guest as root."""

import json
import os
from pathlib import Path

KSM = Path("/sys/kernel/mm/ksm")
TRACING = Path("/sys/kernel/tracing")
KSM_STATE = ("run", "sleep_millisecs", "pages_to_scan", "max_page_sharing",
             "merge_across_nodes", "pages_shared", "pages_sharing")


def read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as e:
        return f"<{e.strerror}>"


def main() -> None:
    snap = {f"ksm/{k}": read(KSM / k) for k in KSM_STATE}
    snap["thp/enabled"] = read(Path("/sys/kernel/mm/transparent_hugepage/enabled"))
    snap["vm.max_map_count"] = read(Path("/proc/sys/vm/max_map_count"))
    snap["vm.numa_balancing"] = read(Path("/proc/sys/kernel/numa_balancing"))
    snap["vm.enable_soft_offline"] = read(Path("/proc/sys/vm/enable_soft_offline"))
    snap["damon/nr_kdamonds"] = read(Path("/sys/kernel/mm/damon/admin/kdamonds/nr_kdamonds"))
    for name in ("dynamic_events", "synthetic_events", "kprobe_events", "current_tracer",
                 "tracing_on", "set_event_pid", "trace_clock", "buffer_size_kb"):
        snap[f"tracing/{name}"] = read(TRACING / name)
    snap["tracing/instances"] = " ".join(sorted(os.listdir(TRACING / "instances")))
    journals = Path("/run/rmapbench")
    snap["journals"] = " ".join(sorted(os.listdir(journals))) if journals.is_dir() else ""
    print(json.dumps(snap, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
