"""Named models of real systems (--workload NAME[:real]): each expands to a
case, its parameters and its bystanders, as if they had been given before
the rest of the command line (so an option given explicitly wins).

The default size is one a TCG guest runs in minutes; NAME:real is the size
of the system the model is taken from (docs/bystanders.md, Workloads, says
where each number comes from). Pure data: the options parser and the case selection
of the host both expand it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    name: str
    case: str
    small: tuple[str, ...]  # options at the size a TCG guest can run
    real: tuple[str, ...]  # options at the modelled system's size
    models: str  # what it models, one line

    def args(self, real: bool = False) -> list[str]:
        return ["--case", self.case, *(self.real if real else self.small)]


WORKLOADS = {
    w.name: w
    for w in (
        Workload(
            "jvm",
            "ksm",
            ("--pages", "2000", "--split", "2", "--samples", "10", "--bystander", "mprotect",
             "--count-visits"),
            ("--pages", "20000", "--split", "2", "--bystander", "mprotect", "--count-visits"),
            "one JVM: ~20,000 VMAs on one anon_vma, KSM-merged, a thread mprotect-ing its heap "
            "(the upstream report: lock hold 228.65 ms -> 0.396 ms)",
        ),
        Workload(
            "vmhost",
            "ksm-procs",
            ("--procs", "8", "--pages", "500", "--split", "2", "--samples", "10",
             "--bystander", "mprotect", "--count-visits"),
            ("--procs", "64", "--pages", "4000", "--split", "2", "--bystander", "mprotect",
             "--count-visits"),
            "a host of identical guests: page i of every process merged into one KSM page, "
            "a guest process changing its own mappings",
        ),
        Workload(
            "forkserver",
            "anon-fork",
            ("--pages", "1000", "--split", "2", "--fork-width", "8", "--fork-depth", "1",
             "--samples", "10", "--bystander", "munmap,fork"),
            ("--pages", "20000", "--split", "2", "--fork-width", "64", "--fork-depth", "1",
             "--bystander", "munmap,fork"),
            "a zygote-like parent whose children share its anonymous pages copy-on-write, "
            "while it maps, unmaps and forks",
        ),
        Workload(
            "forkserver-file",
            "file-mappers",
            ("--pages", "1000", "--split", "2", "--procs", "16", "--samples", "10",
             "--bystander", "munmap,fork"),
            ("--pages", "20000", "--split", "2", "--procs", "256", "--bystander", "munmap,fork"),
            "the same parent's file pages (its libraries, its image) mapped by every child",
        ),
    )
}


def parse(text: str) -> tuple[Workload, bool]:
    """NAME or NAME:real -> (workload, real). ValueError names the choices."""
    name, _, size = text.partition(":")
    if name not in WORKLOADS or size not in ("", "small", "real"):
        raise ValueError(
            f"unknown workload {text!r} (known: {', '.join(WORKLOADS)}; "
            "NAME:real for the full size)"
        )
    return WORKLOADS[name], size == "real"


def expand(text: str, stopping_rule: bool = False) -> list[str]:
    """The options --workload TEXT stands for. With a stopping rule given
    (--precision), without the fixed --samples count of its small size,
    which the rule replaces."""
    workload, real = parse(text)
    args = workload.args(real)
    if stopping_rule and "--samples" in args:
        at = args.index("--samples")
        del args[at : at + 2]
    return args
