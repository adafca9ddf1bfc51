"""QEMU command line and supervision of one guest run.

The guest's serial console is QEMU's stdout.  Everything it prints goes to the console
log; only the lines between the BEGIN and EXIT markers (which carry a per-run nonce) go
to the caller's stream.  QEMU runs in its own process group and dies with us
(PR_SET_PDEATHSIG), so a killed test run never leaves a guest behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TextIO

from rmapbench.ksft.cli import shown

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

# Fatal-to-KVM messages: the nested paravirtual KVM of some CI machines cannot run
# stock kernels (an MSR assertion aborts QEMU, or the vCPU stops with an emulation
# failure and QEMU sits paused forever).
KVM_FAILURES = ("KVM internal error", "failed to set MSR", "kvm_buf_set_msrs")
PANIC = "Kernel panic - not syncing"
# Seconds QEMU gets to exit by itself after the command finished or the kernel panicked.
EXIT_GRACE = 10.0


@dataclass(frozen=True)
class Topology:
    """CPUs and memory of the guest, split evenly over NUMA nodes."""

    nodes: int = 2
    cpus: int = 2
    memory_mib: int = 2048

    def qemu_args(self) -> list[str]:
        if self.nodes <= 1:
            return ["-m", f"{self.memory_mib}M", "-smp", str(self.cpus)]
        # One socket per node: CPUs of one socket share an LLC, and a node boundary
        # inside a socket makes Linux WARN ("llc-sibling ... not on the same node").
        # With CPUs not divisible by nodes, the missing CPUs of the last sockets are
        # hot-pluggable (absent), so a node may have no online CPU, which Linux accepts.
        cores = -(-self.cpus // self.nodes)
        per_node = self.memory_mib // self.nodes
        args = [
            "-m", f"{per_node * self.nodes}M",
            "-smp", f"{self.cpus},sockets={self.nodes},cores={cores},threads=1,"
                    f"maxcpus={self.nodes * cores}",
        ]  # fmt: skip
        for node in range(self.nodes):
            cpus = f"{node * cores}-{(node + 1) * cores - 1}"
            args += [
                "-object", f"memory-backend-ram,id=m{node},size={per_node}M",
                "-numa", f"node,nodeid={node},cpus={cpus},memdev=m{node}",
            ]  # fmt: skip
        return args


# More digits than any machine's MiB (and than int() converts: 4300).
MEMORY_DIGITS = 15
MEMORY_SHIFT = {"": 0, "M": 0, "G": 10, "T": 20}  # to MiB


def parse_memory(text: str) -> int:
    """'2G', '1536M', '1T', '2048' (MiB) -> MiB."""
    match = re.fullmatch(r"([0-9]+)([MmGgTt]?)", text.strip(), re.ASCII)
    if not match:
        raise ValueError(f"bad memory size {shown(text, quote=True)} (use e.g. 2G or 1536M)")
    if len(match.group(1).lstrip("0")) > MEMORY_DIGITS:
        raise ValueError(f"memory size {shown(text, quote=True)} is beyond any machine")
    return int(match.group(1)) << MEMORY_SHIFT[match.group(2).upper()]


def accel_args(accel: str) -> list[str]:
    if accel == "kvm":
        # -cpu max under this kind of KVM trips the MSR assertion; host is the norm.
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=single", "-cpu", "max"]


def ninep_args(tag: str, path: Path, readonly: bool) -> list[str]:
    # security_model=none: files are accessed with QEMU's own (unprivileged) credentials.
    # multidevs=remap: / spans several host filesystems; keep guest inode numbers unique.
    ro = ",readonly=on" if readonly else ""
    return [
        "-fsdev", f"local,id={tag},path={path},security_model=none,multidevs=remap{ro}",
        "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}",
    ]  # fmt: skip


@dataclass
class Outcome:
    """What the console showed; filled in while QEMU runs."""

    status: int | None = None
    kvm_failed: bool = False
    panic: str | None = None
    init_failure: str | None = None
    timed_out: bool = False
    started_at: float = 0.0
    begin_at: float | None = None
    qemu_status: int | None = None
    tail: list[str] = field(default_factory=list)


class ConsoleParser:
    """Splits the console into kernel noise (log only) and the command's output."""

    def __init__(self, nonce: str, log_file: BinaryIO, stream: TextIO, outcome: Outcome) -> None:
        self.begin = f"RMAPBENCH-BEGIN-{nonce}"
        self.exit = f"RMAPBENCH-EXIT-{nonce} "
        self.init_failed = f"RMAPBENCH-INIT-FAILED-{nonce} "
        self.log_file, self.stream, self.outcome = log_file, stream, outcome
        self.in_command = False
        self.pending = b""

    def feed(self, data: bytes, now: float) -> None:
        self.log_file.write(data)
        self.log_file.flush()
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        for raw in lines:
            self._line(raw.removesuffix(b"\r").decode("utf-8", "replace"), now)

    def close(self, now: float) -> None:
        if self.pending:
            self._line(self.pending.decode("utf-8", "replace"), now)
            self.pending = b""

    def _line(self, line: str, now: float) -> None:
        out = self.outcome
        out.tail = [*out.tail[-20:], line]
        # A panic can happen while the command runs (it may be what is being tested).
        if PANIC in line and out.panic is None:
            out.panic = line.strip()
        if self.in_command:
            self._command_line(line)
        elif line.startswith(self.begin):
            self.in_command, out.begin_at = True, now
        elif line.startswith(self.init_failed):
            out.init_failure = line.removeprefix(self.init_failed)
        elif any(k in line for k in KVM_FAILURES):
            out.kvm_failed = True

    def _command_line(self, line: str) -> None:
        # The command's last line may lack a newline: the marker then ends it.
        head, sep, rest = line.partition(self.exit)
        if sep:
            self.stream.write(head)
            self.in_command = False
            self.outcome.status = int(rest.split()[0])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def kvm_broken(outcome: Outcome) -> bool:
    return outcome.kvm_failed


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILLed when the parent dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop QEMU and anything it spawned; escalate if it ignores SIGTERM."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_qemu(
    argv: list[str],
    *,
    nonce: str,
    timeout: float,
    console_log: Path,
    stream: TextIO,
    give_up: Callable[[Outcome], bool] = kvm_broken,
) -> tuple[Outcome, float]:
    """Run QEMU until it exits, times out, or give_up(outcome) says stop early.

    By default that is when KVM reports it cannot run the guest: QEMU would otherwise
    sit with a stopped vCPU until the timeout.

    Returns the outcome and the wall seconds QEMU ran.
    """
    outcome = Outcome()
    log.info("running: %s", shlex.join(argv))
    start = outcome.started_at = time.monotonic()
    with console_log.open("ab") as log_file:
        log_file.write(f"# {shlex.join(argv)}\n".encode())
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # QEMU's own errors belong in the console log
            start_new_session=True,
            preexec_fn=_die_with_parent,  # QEMU must never outlive us
        )
        parser = ConsoleParser(nonce, log_file, stream, outcome)
        try:
            _pump(proc, parser, outcome, start + timeout, give_up)
        finally:
            kill_group(proc)
            if proc.stdout is not None:
                proc.stdout.close()
        outcome.qemu_status = proc.returncode
    return outcome, time.monotonic() - start


def _pump(
    proc: subprocess.Popen[bytes],
    parser: ConsoleParser,
    outcome: Outcome,
    deadline: float,
    give_up: Callable[[Outcome], bool],
) -> None:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if outcome.panic or outcome.init_failure or outcome.status is not None:
                # QEMU should exit by itself now (-no-reboot); do not wait forever.
                deadline = min(deadline, now + EXIT_GRACE)
            if now >= deadline:
                outcome.timed_out = outcome.status is None and not outcome.panic
                return
            if give_up(outcome):
                return
            # Wake up at least every second so give_up can also act on silence.
            if not sel.select(min(deadline - now, 1.0)):
                continue
            data = os.read(fd, 65536)
            if not data:  # QEMU exited
                parser.close(time.monotonic())
                proc.wait()
                return
            parser.feed(data, time.monotonic())
