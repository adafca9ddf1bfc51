"""Probe events, and their pairing, kept for the next program of the same
suite run.

Creating a walk function's fprobe (or kprobe) entry and exit events costs
about 0.27 s under TCG and removing them about 0.35 s: each write to
dynamic_events updates the ftrace hash over every traceable function,
patches the call site and waits for RCU grace periods (docs/backends.md).
Pairing them in the kernel costs a trace instance and two hist triggers,
about 0.4 s more to make and remove (tracing/kept.py). Each of the
default suite's ten programs paid all of it for the same three walk
functions. When the suite's runner asks for it (ksft/runner.py sets
RMAPBENCH_SHARED_PROBES to its journal's path), a program that creates a
walk function's events records their removal here, in the runner's
journal, instead of its own, and pairs them in the runner's kept instance
(its hist triggers and synthetic event recorded here too); at its exit
it leaves them in place. The next program that would write the same
definitions and the same pairing uses them as they are. What it enables
in the kept instance stays its own. The runner removes everything once
its last program has ended (release()).

The file is a journal of the runner (journal-PID-shared.json,
machine/knobs.py): its steps are undone by the next run if the runner
is SIGKILLed, after the journals of its programs (which disable the
events in their instances first). A program that finds its runner gone
(SIGTERM from PR_SET_PDEATHSIG, the runner SIGKILLed) releases it all
itself after its own restore (release_if_orphaned()).

What a program measures does not change: the events and triggers on its
walk function are those it would have created, and any other probe on
that function (another kind, other arguments, another backend's) is
removed, pairing first, before it arms (evict()). What is kept for the
other walk functions does not run inside the case's walks (see
tracing/kept.py for what it does run).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rmapbench.machine import knobs
from rmapbench.machine.knobs import Undo, signals_held

log = logging.getLogger(__name__)

ENV = "RMAPBENCH_SHARED_PROBES"
_NAME = re.compile(r"journal-(\d+)" + knobs.SHARED_SUFFIX + r"\.json")


class EvictError(RuntimeError):
    """A kept event could not be removed (the kernel refused: EBUSY while
    an instance still enables it); the one line says which and why."""


def path_for(owner: int, directory: Path | None = None) -> Path:
    """Where the runner `owner` keeps the events its programs leave."""
    return (directory or knobs.JOURNAL_DIR) / f"journal-{owner}{knobs.SHARED_SUFFIX}.json"


PAIRING = "/pairing"  # the tag of a function's hist pairing steps
INSTANCE = "instance"  # the tag of the kept instance's step


@dataclass
class Entry:
    """One walk function's two events: what was written to create them and
    the undo step of each (group/name); and, once a program has paired
    them in the kept instance, that pairing's synthetic event and
    signature (its fields and triggers, the synthetic event's name
    aside)."""

    definitions: list[str]
    synth: str = ""
    pairing: str = ""

    @property
    def removals(self) -> list[str]:
        """"-:group/name" of each event, as written to dynamic_events."""
        return [_removal(d) for d in self.definitions]

    def events(self) -> list[tuple[str, str]]:
        """(group, name) of each event."""
        return [_group_name(r.removeprefix("-:")) for r in self.removals]


@dataclass(frozen=True)
class KeptInstance:
    """The trace instance the programs share for in-kernel pairing."""

    path: str
    buffer_kb: int
    clock: str


class Recorder:
    """What Instance and TraceFS need of a journal (change()), recording
    into the runner's journal under one tag."""

    def __init__(self, shared: SharedProbes, tag: str) -> None:
        self._shared = shared
        self._tag = tag

    def change(self, step: Undo) -> contextlib.AbstractContextManager[None]:
        return self._shared.recording(step, self._tag)


class SharedProbes:
    """The runner's journal of probe events, opened by a program."""

    def __init__(self, path: Path) -> None:
        m = _NAME.fullmatch(path.name)
        if not m:
            raise ValueError(f"{ENV}: {path} is not a shared-probe journal")
        self.path = path
        self.owner = int(m.group(1))
        self.probes: dict[str, Entry] = {}
        self.instance: KeptInstance | None = None
        self._steps: list[Undo] = []
        self._tags: list[str] = []  # each step's: a function, function + PAIRING, INSTANCE
        self._load()

    # -- the file -------------------------------------------------------------
    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s: %s", self.path, e)
            return
        self._steps = [Undo(**s) for s in data.get("steps", [])]
        self._tags = list(data.get("tags", [""] * len(self._steps)))
        self.probes = {
            f: Entry(list(e["definitions"]), e.get("synth", ""), e.get("pairing", ""))
            for f, e in data.get("probes", {}).items()
        }  # fmt: skip
        kept = data.get("instance")
        if kept:
            self.instance = KeptInstance(str(kept["path"]), int(kept["buffer_kb"]),
                                         str(kept["clock"]))  # fmt: skip

    def _save(self) -> None:
        probes = {f: {"definitions": e.definitions, "synth": e.synth, "pairing": e.pairing}
                  for f, e in self.probes.items()}  # fmt: skip
        kept = self.instance.__dict__ if self.instance else None
        knobs.write_journal(self.path, self.owner, self._steps, tags=self._tags,
                            probes=probes, instance=kept)  # fmt: skip

    @contextlib.contextmanager
    def recording(self, step: Undo, tag: str) -> Iterator[None]:
        """Record `step` (on disk, first), then let the block make the
        change it undoes; forgotten again when the block fails. Signals
        are held meanwhile, as in Journal.change()."""
        with signals_held():
            self._steps.append(step)
            self._tags.append(tag)
            self._save()
            try:
                yield
            except BaseException:
                i = next(i for i in reversed(range(len(self._steps))) if self._steps[i] is step)
                del self._steps[i], self._tags[i]
                self._save()
                raise

    def pairing_recorder(self, func: str) -> Recorder:
        """A journal for the steps of `func`'s pairing in the kept instance."""
        return Recorder(self, func + PAIRING)

    def instance_recorder(self) -> Recorder:
        """A journal for the kept instance's removal (set_instance() says
        what it is once it exists)."""
        return Recorder(self, INSTANCE)

    # -- what a program does --------------------------------------------------
    def adoptable(self, func: str, definitions: list[str], root: Path) -> Entry | None:
        """The events of `func` when they were created with exactly these
        definitions (the group aside) and still exist."""
        entry = self.probes.get(func)
        if entry is None or [_ungrouped(d) for d in entry.definitions] != [
            _ungrouped(d) for d in definitions
        ]:
            return None
        if all((root / "events" / g / n / "format").exists() for g, n in entry.events()):
            return entry
        return None

    @contextlib.contextmanager
    def creating(self, func: str, definition: str, root: Path) -> Iterator[None]:
        """Record the removal of one event (on disk, first), then let the
        block create it by writing `definition` to `root`/dynamic_events;
        forgotten again when the block fails."""
        entry = self.probes.setdefault(func, Entry([]))
        entry.definitions.append(definition)
        step = Undo("append", str(root / "dynamic_events"), _removal(definition))
        try:
            with self.recording(step, func):
                yield
        except BaseException:
            entry.definitions.pop()
            if not entry.definitions:
                del self.probes[func]
            self._save()
            raise

    def set_instance(self, kept: KeptInstance) -> None:
        self.instance = kept
        self._save()

    def set_pairing(self, func: str, synth: str, signature: str) -> None:
        entry = self.probes[func]
        entry.synth, entry.pairing = synth, signature
        self._save()

    def evict(self, functions: list[str], keep: Entry | None = None) -> None:
        """Remove the kept events of these functions (all but `keep`) and
        their pairings; EvictError when the kernel refuses (what is left
        stays recorded)."""
        for func in functions:
            entry = self.probes.get(func)
            if entry is None or entry is keep:
                continue
            self._undo({func, func + PAIRING}, f"the probe events kept on {func}")
            del self.probes[func]
            self._save()

    def evict_all(self) -> None:
        """Remove every kept event and pairing (the kept instance stays)."""
        self.evict(list(self.probes))

    def evict_pairing(self, func: str) -> None:
        """Remove `func`'s pairing (triggers, synthetic event) from the kept
        instance, its events left."""
        entry = self.probes.get(func)
        if entry is not None:
            entry.synth = entry.pairing = ""
        self._undo({func + PAIRING}, f"the pairing kept for {func}")
        self._save()

    def _undo(self, tags: set[str], what: str) -> None:
        with signals_held():
            for i in reversed(range(len(self._steps))):
                if self._tags[i] not in tags:
                    continue
                step = self._steps[i]
                try:
                    with contextlib.suppress(FileNotFoundError):
                        step.apply()
                except OSError as e:
                    self._save()
                    raise EvictError(f"cannot remove {what} ({step.kind} {step.value or step.path}"
                                     f"): {e.strerror or e}") from e  # fmt: skip
                del self._steps[i], self._tags[i]

    def release(self) -> list[str]:
        """Remove every kept event, newest first; the failures (the file is
        then kept for the next run's replay)."""
        failures: list[str] = []
        with signals_held():
            for step in reversed(self._steps):
                try:
                    step.apply()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    failures.append(f"{step.kind} {step.value or step.path}: {e.strerror or e}")
            if not failures:
                self._steps, self._tags, self.probes, self.instance = [], [], {}, None
                with contextlib.suppress(OSError):
                    self.path.unlink()
        return failures


def _ungrouped(definition: str) -> str:
    """'f:rmapbench_12/ev fn args' -> 'f:ev fn args'."""
    head, _, rest = definition.partition(" ")
    kind, _, name = head.partition(":")
    return f"{kind}:{name.split('/', 1)[-1]} {rest}"


def _removal(definition: str) -> str:
    """'f:group/ev fn args' -> '-:group/ev'."""
    return "-:" + definition.split()[0].partition(":")[2]


def _group_name(event: str) -> tuple[str, str]:
    group, _, name = event.partition("/")
    return group, name


def from_env() -> SharedProbes | None:
    """The runner's shared probes, when it asked for them."""
    value = os.environ.get(ENV, "")
    if not value:
        return None
    try:
        return SharedProbes(Path(value))
    except (ValueError, OSError, KeyError, TypeError) as e:
        log.warning("not sharing probes: %s", e)
        return None


def release_if_orphaned() -> list[str]:
    """After a program's restore: when its runner is gone, nobody else will
    remove the events it shares; the program does."""
    shared = from_env()
    if shared is None or (os.getppid() == shared.owner and knobs.alive(shared.owner)):
        return []
    return shared.release()
