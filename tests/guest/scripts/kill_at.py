"""kill_at.py PID OUT LINE [KNOB VALUE]: SIGKILL process PID once file OUT
has a line containing LINE and then, if given, once sysfs KNOB reads VALUE
(polled every 2 ms). VALUE "back" means: once KNOB, changed by the time
LINE appeared, reads again what it read when kill_at started - the
program's journal has begun restoring (the newest change, undone first).
Prints what it did; exits 1 when PID ended first. Runs inside the guest."""

import os
import signal
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def main() -> int:
    pid, out, line = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    knob, value = (Path(sys.argv[4]), sys.argv[5]) if len(sys.argv) > 5 else (None, None)
    if knob is not None and value == "back":
        value = knob.read_text().strip()
    while line not in (out.read_text() if out.exists() else ""):
        if not alive(pid):
            print(f"{pid} ended before {line!r}")
            return 1
        time.sleep(0.05)
    if knob is not None:
        while knob.read_text().strip() != value:
            if not alive(pid):
                print(f"{pid} ended before {knob} read {value}")
                return 1
            time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    print(f"killed {pid} after {line!r}" + (f" and {knob}={value}" if knob else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
