"""Build the thp scenario, split its THP the way the split trigger does
(debugfs split_huge_pages "PID,0xSTART,0xEND"), migrate the first page,
collapse it again, and print what verify() said at each step as JSON.
Runs inside the guest as root."""

import json
import os
import subprocess
from pathlib import Path

from rmapbench.ksft.options import Options
from rmapbench.machine import mm, thp
from rmapbench.machine.knobs import Journal
from rmapbench.scenarios.thp import ThpScenario
from rmapbench.triggers import MigrateTrigger

DEBUGFS = Path("/sys/kernel/debug")
SPLIT = DEBUGFS / "split_huge_pages"


def main() -> None:
    if not SPLIT.exists():
        subprocess.run(["mount", "-t", "debugfs", "none", str(DEBUGFS)], check=True)
    steps: dict[str, object] = {}
    with Journal() as journal:
        sc = ThpScenario(Options(), journal)
        addr = sc.build()
        pid = os.getpid()
        try:
            steps["built"] = {"thp": thp.is_thp_head(pid, addr), "problems": sc.verify()}
            SPLIT.write_text(f"{pid},{addr:#x},{addr + sc.size:#x}")
            steps["split"] = {"thp": thp.is_thp_head(pid, addr), "problems": sc.verify()}
            firing = MigrateTrigger().fire(addr)
            steps["migrated_split"] = {
                "migrated": firing.done, "thp": thp.is_thp_head(pid, addr),
                "problems": sc.verify()}
            mm.madvise(addr, sc.size, mm.MADV_COLLAPSE)
            steps["collapsed"] = {"thp": thp.is_thp_head(pid, addr), "problems": sc.verify()}
            firing = MigrateTrigger().fire(addr)
            steps["migrated_thp"] = {
                "migrated": firing.done, "thp": thp.is_thp_head(pid, addr),
                "problems": sc.verify()}
            # A subpage that lost its mapping is named, not missed.
            mm.madvise(addr + 5 * mm.PAGE_SIZE, mm.PAGE_SIZE, 4)  # MADV_DONTNEED
            steps["hole"] = {"problems": sc.verify()}
            steps["verified_as"] = sc.setup["verified_as"]
        finally:
            sc.teardown()
    print(json.dumps(steps))


if __name__ == "__main__":
    main()
