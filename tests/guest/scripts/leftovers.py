"""Print the processes (zombies included) of the given test programs: an
element of argv named like one of them, or a comm (the first 15 characters
of the executed file's name, kept by zombies, whose argv is gone). Runs
inside the guest; prints nothing when none is left."""

import os
import sys
from pathlib import Path


def main() -> None:
    names = set(sys.argv[1:])
    comms = {n[:15] for n in names}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state = stat[stat.rindex(")") + 2 :].split()[0]
        named = any(Path(a.decode(errors="replace")).name in names for a in argv)
        if named or comm in comms:
            print(entry.name, state, comm)


if __name__ == "__main__":
    main()
