"""--bystander: what a slow walk costs the tasks that wait behind it.

A walk holds the target's anon_vma lock (KSM, anon) or its file's i_mmap
lock (file, shmem) for reading. A bystander is a separate task repeating,
as fast as it can, one operation that needs that lock for writing, while
the timed samples run; then the same number of operations (at most
QUIET_MAX_OPS, and QUIET_MAX_S seconds) with no trigger firing, the quiet
baseline. Each operation's wall time is recorded on CLOCK_MONOTONIC, the
clock of the timing backend's trace instance, so each operation is known
to overlap a timed walk of the target or not. One module per part:

  helper.py    the helper process, its operation per kind, its protocol
  crowd.py     the running bystanders of a case (start, Crowd, Recorded)
  entry.py     the statistics, the JSON entry and its report (pure)
  walker.py    the walker's own lock waits (walker_waits, pure)
  holds.py     the walker's own lock holds (lock_holds)
  conclude.py  all of it set against the judged samples, into the document

The pipeline uses start() and conclude() (and Recording, between them).
"""

from rmapbench.bench.bystander.conclude import conclude
from rmapbench.bench.bystander.crowd import Crowd, Recorded, Recording, start

__all__ = ["Crowd", "Recorded", "Recording", "conclude", "start"]
