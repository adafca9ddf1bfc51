"""The guest kernel's command line: the suite's own parameters, the run's
nonce, and what `--append` may add to them.

The host reads the guest's output from ttyS0 between marker lines that
carry the nonce, and the guest powers off on a panic (panic=-1 with QEMU's
-no-reboot), so a parameter that moves the console, takes the nonce or
the markers' place, or keeps a panicked guest running would lose the
command's output without a word or hang the boot until its timeout. The
kernel splits its command line at spaces and honours double quotes, so a
parameter with either would swallow those after it; and x86 keeps at most
COMMAND_LINE_SIZE - 1 bytes of it, cutting the rest silently. Such an
--append is refused before the boot.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rmapbench.ksft.cli import shown

# rmapbench.guest=1 marks our guests (read from /proc/cmdline, e.g. before
# destructive triggers); the kernel ignores an unknown module parameter.
SUITE = "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init rmapbench.guest=1"
NONCE = "RMAPBENCH_NONCE"
NONCE_HEX = 16  # secrets.token_hex(8)
COMMAND_LINE_SIZE = 2048  # arch/x86/include/asm/setup.h, with the final NUL
# Parameters --append may not give: the suite's console, its exit on a
# panic, and its markers. rdinit= may be given (a test makes init fail).
OWN = ("console", "panic", NONCE, "rmapbench.guest")


def line(extra: Sequence[str], nonce: str) -> str:
    """The whole command line: the suite's parameters and the nonce first,
    so nothing added after them can change how they are read."""
    return " ".join([SUITE, f"{NONCE}={nonce}", *extra])


def parameter(text: str) -> str:
    """argparse type of --append: one kernel parameter the suite can boot with."""
    if not text:
        raise argparse.ArgumentTypeError("expected a kernel parameter, got ''")
    if any(c.isspace() or c == '"' or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(
            f"one kernel parameter, without spaces, quotes or control characters: "
            f"{shown(text, True)}"
        )
    if text.startswith("-"):  # "--" ends the kernel's parameters: the rest go to init
        raise argparse.ArgumentTypeError(f"not a kernel parameter: {shown(text, True)}")
    name = text.split("=", 1)[0]
    if name in OWN:
        raise argparse.ArgumentTypeError(
            f"{name}= is the suite's own: the host reads the guest on ttyS0 between "
            "marker lines, and needs it to power off on a panic"
        )
    return text


def length_problem(extra: Sequence[str]) -> str | None:
    """Why the command line with these --append parameters cannot be booted
    (the kernel would cut it short), or None."""
    size = len(line(extra, "0" * NONCE_HEX).encode())
    if size < COMMAND_LINE_SIZE:
        return None
    return (
        f"--append: the kernel command line would be {size} bytes; "
        f"the kernel keeps {COMMAND_LINE_SIZE - 1}"
    )
