"""The "bpf" walk-timing backend: fentry/fexit programs on the walk
functions, assembled and loaded with bpf(2) from Python (no libbpf, bcc or
bpftrace). One responsibility per module: insn (instruction encoding),
syscall (the bpf(2) commands used), btf (type ids from
/sys/kernel/btf/vmlinux), programs (the two programs), ringbuf (reading
the records), records (their layout, and walks from them), backend (the
Backend protocol). docs/backends.md says what it times."""
