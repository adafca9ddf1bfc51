"""The measured machine: syscalls, pagemap, maps, processes, the knob journal, KSM, THP."""
