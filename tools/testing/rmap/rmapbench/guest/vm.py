"""Run a command inside a QEMU guest that sees the host's filesystem read-only.

drgn-vmtest / kunit_tool style: a cached initramfs (busybox + a few modules) mounts the
host's / over 9p, puts a scratch ext4 disk on /tmp and the results directory (rw) at its
host path, chroots into the host's tree and runs the command there, so the host's
Python and packages run unchanged inside the guest kernel.

    python3 -m rmapbench.guest.vm [--kernel IMAGE | --kernel-series 6.12] -- CMD ARGS...

The command runs in the directory run_in_guest() is given (the CLI's: its own cwd).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

from rmapbench.guest import bytecode, cmdline, config
from rmapbench.guest.initramfs import cached_initramfs
from rmapbench.guest.kernel import KernelError, KernelImage, pvh_vmlinux
from rmapbench.guest.qemu import (
    Outcome,
    Topology,
    accel_args,
    kvm_broken,
    ninep_args,
    parse_memory,
    run_qemu,
)
from rmapbench.ksft import preload
from rmapbench.ksft.cli import Parser, guarded, out_dir, out_file, replay_journals
from rmapbench.ksft.status import EXIT_GUEST
from rmapbench.machine import shared_probes

log = logging.getLogger(__name__)

STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SCRATCH_SIZE = 2 << 30  # sparse; only what the guest writes takes host space
KVM_BOOT_WINDOW = 30.0  # an `auto` KVM attempt that shows nothing by then is abandoned

# None until a KVM attempt in this process has told us whether KVM works here.
_kvm_works: bool | None = None


class GuestError(Exception):
    """The guest did not produce an exit status (panic, timeout, init failure...)."""


@dataclass(frozen=True)
class GuestResult:
    status: int
    accel: str
    boot_seconds: float  # QEMU start to the command's start
    total_seconds: float  # QEMU start to QEMU exit


def guest_path() -> str:
    """PATH inside the guest: this interpreter's directories first.

    Both the unresolved directory (a venv's bin/, which carries the venv's packages) and
    the resolved one (the real interpreter, avoiding e.g. pyenv shims) are listed.
    """
    dirs = [os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))]
    return ":".join(dict.fromkeys([*dirs, *STANDARD_PATH.split(":")]))


def job_script(argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    """The script /bin/sh runs inside the chroot (with an empty environment)."""
    for name in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"invalid environment variable name {name!r}")
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines += [
        f"cd {shlex.quote(cwd)} || exit 125",
        f"exec {shlex.join(argv)}",
    ]
    return "\n".join(lines) + "\n"


def params_script(share: Path, keep: Sequence[str]) -> str:
    """Variables for /init (see guest_init.sh)."""
    return (
        f"RB_SHARE={shlex.quote(str(share))}\nRB_KEEP={shlex.quote(' '.join(keep))}\nRB_SCRATCH=1\n"
    )


def _project_root() -> str:
    """The checkout this package runs from (it holds run_tests.sh), or ""."""
    root = Path(__file__).resolve().parents[5]
    return str(root) if (root / "run_tests.sh").exists() else ""


def paths_to_keep(cwd: str) -> list[str]:
    """Host paths under /tmp the command needs although the scratch disk hides /tmp:
    the cwd, the interpreter and its prefix, and the whole checkout (a CI clone in
    /tmp runs its tests' helper scripts in the guest). Paths inside another kept
    path are left out."""
    wanted = [cwd, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)),
              _project_root()]  # fmt: skip
    keep = sorted(p for p in set(wanted) if p.startswith("/tmp/") and " " not in p)
    return [p for p in keep if not any(p.startswith(k + "/") for k in keep)]


def workdir_problem(workdir: Path, share: Path | None = None) -> str | None:
    """Why a test program in the guest could not write into `workdir`, or
    None. The guest sees this machine's directories read-only; what it can
    write is its scratch /tmp, empty at boot, and the share (the results
    directory, at its own path)."""
    if not workdir.is_absolute():  # the guest's programs run from another directory
        return (f"--workdir {workdir}: give an absolute path (in a guest the programs "
                "run from tools/testing/rmap)")
    path = Path("/" + os.path.normpath(workdir).lstrip("/"))  # //tmp is /tmp
    if path == Path("/tmp"):
        return None
    if share is not None and path.is_relative_to(share.resolve()):
        # The guest sees the results directory as it is here (9p, the same path).
        if path.is_dir():
            return None
        return f"--workdir {workdir}: {'not a' if path.exists() else 'no such'} directory"
    return (f"--workdir {workdir}: in a guest only /tmp (its scratch disk, empty at boot) "
            "and the results directory can be written; give --workdir /tmp or leave it out")


def make_scratch(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)
    # Initialise inode tables and journal now, so no ext4lazyinit thread runs in the
    # guest during measurements.
    argv = ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(path)]
    log.info("running: %s", shlex.join(argv))
    subprocess.run(argv, check=True, capture_output=True)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit while a guest runs, so cleanup code runs."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; PDEATHSIG still covers QEMU
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _attempts(accel: str) -> list[str]:
    if accel == "auto":
        return ["tcg"] if _kvm_works is False else ["kvm", "tcg"]
    if accel not in ("kvm", "tcg"):
        raise ValueError(f"accel must be auto, kvm or tcg, not {accel!r}")
    return [accel]


def _kvm_gave_up(outcome: Outcome) -> bool:
    """During an `auto` KVM attempt: is this KVM unable to run the kernel?"""
    if outcome.kvm_failed:
        return True
    silent_for = time.monotonic() - outcome.started_at
    return outcome.begin_at is None and silent_for > KVM_BOOT_WINDOW


def _kvm_failed(outcome: Outcome) -> bool:
    """After an attempt: did it fail before the guest got anywhere?"""
    never_started = outcome.begin_at is None and outcome.init_failure is None
    return outcome.kvm_failed or (never_started and outcome.panic is None)


def _check(outcome: Outcome, status_file: Path, timeout: float, console_log: Path) -> int:
    """The command's exit status, or a GuestError saying why there is none."""
    where = f"console log: {console_log}"
    if outcome.timed_out:
        raise GuestError(f"guest timed out after {timeout:g} s; {where}")
    if status_file.is_file():
        with contextlib.suppress(ValueError):
            return int(status_file.read_text().strip())
    if outcome.status is not None:
        return outcome.status
    if outcome.kvm_failed:
        raise GuestError(f"KVM cannot run this kernel here (try --accel tcg); {where}")
    if outcome.init_failure:
        raise GuestError(f"guest init failed while {outcome.init_failure}; {where}")
    if outcome.panic:
        raise GuestError(f"guest kernel panic ({outcome.panic}); {where}")
    last = next((line for line in reversed(outcome.tail) if line.strip()), "")
    raise GuestError(
        f"guest gave no exit status (QEMU status {outcome.qemu_status}, last console "
        f"line {last!r}); {where}"
    )


def run_in_guest(
    kernel: KernelImage,
    argv: Sequence[str],
    *,
    nodes: int = 2,
    cpus: int = 2,
    memory: str = "2G",
    accel: str = "auto",
    timeout: float = 600,
    share_dir: Path,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    console_log: Path,
    stream: TextIO = sys.stdout,
    kernel_args: Sequence[str] = (),
) -> GuestResult:
    """Boot `kernel` and run `argv` as root in the host's tree; return its exit status.

    The command runs in `cwd` (a host path; the guest sees the host's tree); `share_dir`
    is writable in the guest at the same path; its output goes to `stream`, all console
    output to `console_log`.
    """
    global _kvm_works
    if not argv:
        raise ValueError("empty command")
    problem = cmdline.length_problem(kernel_args)
    if problem:
        raise ValueError(problem)
    share = share_dir.resolve()
    if not share.is_dir() or share == Path("/"):
        raise ValueError(f"share_dir must be an existing directory other than /: {share}")
    cwd = os.path.abspath(cwd)
    topology = Topology(nodes, cpus, parse_memory(memory))
    job_env = {
        "PATH": guest_path(), "HOME": "/root", "TERM": "dumb", "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1", "RMAPBENCH_GUEST": "1",
        "RMAPBENCH_CACHE_DIR": "/tmp/rmapbench-cache",  # the boot's (tracing/calcache.py)
        "RMAPBENCH_SHARE": str(share), **(env or {}),
    }  # fmt: skip
    for name in (preload.ENV, shared_probes.ENV):  # the runner's opt-outs
        if os.environ.get(name) == "0" and name not in job_env:
            job_env[name] = "0"
    initrd = cached_initramfs(kernel)
    bytecode.precompile()  # the guest cannot write the bytecode it would compile
    vmlinux = pvh_vmlinux(kernel) or kernel.vmlinuz
    console_log.write_text("")
    with sigterm_raises(), tempfile.TemporaryDirectory(prefix="rmapbench-vm-") as tmp:
        ctl, scratch = Path(tmp) / "ctl", Path(tmp) / "scratch.img"
        ctl.mkdir()
        (ctl / "job.sh").write_text(job_script(argv, cwd, job_env))
        (ctl / "params.sh").write_text(params_script(share, paths_to_keep(cwd)))
        make_scratch(scratch, SCRATCH_SIZE)
        nonce = secrets.token_hex(cmdline.NONCE_HEX // 2)
        base = [
            # q35 rather than pc: its PCI interrupt routing skips the ACPI LNKx link
            # probing that costs about 0.8 s under TCG.
            "qemu-system-x86_64", "-machine", "q35", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-kernel", str(vmlinux), "-initrd", str(initrd),
            "-append", cmdline.line(kernel_args, nonce),
            *topology.qemu_args(),
            *ninep_args("hostroot", Path("/"), readonly=True),
            *ninep_args("rmapctl", ctl, readonly=False),
            *ninep_args("results", share, readonly=False),
            "-drive", f"if=none,id=scratch,file={scratch},format=raw,cache=unsafe",
            "-device", "virtio-blk-pci,drive=scratch",
        ]  # fmt: skip
        attempts = _attempts(accel)
        for used in attempts:
            probing = used == "kvm" and accel == "auto"
            outcome, seconds = run_qemu(
                [*base, *accel_args(used)],
                nonce=nonce,
                timeout=timeout,
                console_log=console_log,
                stream=stream,
                give_up=_kvm_gave_up if probing else kvm_broken,
            )
            if probing and _kvm_failed(outcome):
                _kvm_works = False
                print(
                    "rmapbench.guest.vm: KVM failed to start the guest; falling back to TCG",
                    file=sys.stderr,
                )
                continue
            _kvm_works = _kvm_works or used == "kvm"
            status = _check(outcome, ctl / "status", timeout, console_log)
            boot = (outcome.begin_at or outcome.started_at) - outcome.started_at
            return GuestResult(status, used, boot, seconds)
    raise GuestError(f"no accelerator could boot the guest; console log: {console_log}")


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python3 -m rmapbench.guest.vm",
        description="Run a command as root in a QEMU guest that sees the host's files.",
    )
    config.add_arguments(p, kernels="image", timeout=600.0, timeout_help="seconds")
    p.add_argument("--share", type=out_dir(), default=Path("."), help="rw results dir (default .)")
    p.add_argument(
        "--console-log", type=out_file(), help="default: a temp file kept on failure"
    )
    p.add_argument(
        "--append", action="append", default=[], type=cmdline.parameter, metavar="PARAM",
        help="an extra kernel parameter (repeatable)",
    )  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true", help="log external commands")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    return p


def main(args: Sequence[str] | None = None) -> int:
    return guarded("python3 -m rmapbench.guest.vm", lambda: _main(args), args)


@dataclass(frozen=True)
class Invocation:
    """A command line of the vm command, parsed and checked."""

    opts: argparse.Namespace
    command: list[str]
    guest: config.GuestOptions
    kernel: KernelImage | None  # a given image, read; None: the stock kernel, not fetched yet


def check(args: Sequence[str] | None) -> Invocation:
    """The command line parsed and checked, a given kernel image read, and
    nothing else done (no fetch, no boot); UsageError otherwise."""
    parser = _parser()
    opts = parser.parse_args(args)
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        parser.error("no command given (put it after --)")
    if not all(isinstance(a, str) for a in opts.append):  # argparse reads --append=-- as []
        parser.error("argument --append: not a kernel parameter: '--'")
    problem = cmdline.length_problem(opts.append)
    if problem:
        parser.error(problem)
    try:
        g = config.from_namespace(opts)
    except ValueError as e:
        parser.error(str(e))
    problem = g.host_problem()
    if problem:
        parser.error(problem)
    try:
        # A given image is read now (a usage error); a stock kernel is fetched later.
        kernel = g.kernel.fetch() if g.kernel.image else None
    except KernelError as e:
        text = str(e)
        parser.error(text if text.startswith("--") else f"--kernel: {text}")
    except OSError as e:  # a file that cannot be read: /proc/self/mem, an I/O error
        parser.error(f"--kernel {g.kernel}: cannot read it ({e.strerror or e})")
    return Invocation(opts, list(command), g, kernel)


def _main(args: Sequence[str] | None) -> int:
    checked = check(args)
    opts, command, g, kernel = checked.opts, checked.command, checked.guest, checked.kernel
    logging.basicConfig(level=logging.INFO if opts.verbose else logging.WARNING)
    replay_journals("rmapbench.guest.vm")
    keep_log = opts.console_log is not None
    if keep_log:
        opts.console_log.parent.mkdir(parents=True, exist_ok=True)
    console_log = opts.console_log or Path(tempfile.mkstemp(".log", "rmapbench-console-")[1])
    try:
        result = run_in_guest(
            kernel or g.kernel.fetch(),
            command,
            nodes=g.nodes, cpus=g.cpus, memory=g.memory, accel=g.accel,
            timeout=g.timeout, share_dir=opts.share, cwd=Path.cwd(), console_log=console_log,
            kernel_args=opts.append,
        )  # fmt: skip
    except (GuestError, KernelError) as e:
        print(f"rmapbench.guest.vm: error: {e}", file=sys.stderr)
        return EXIT_GUEST
    except KeyboardInterrupt:
        print(f"rmapbench.guest.vm: interrupted; console log: {console_log}", file=sys.stderr)
        return 130
    if not keep_log:
        console_log.unlink(missing_ok=True)
    log.info("accel %s, boot %.1f s, total %.1f s", result.accel, result.boot_seconds,
             result.total_seconds)  # fmt: skip
    return result.status


if __name__ == "__main__":
    sys.exit(main())
