"""The test programs' imports without what the measuring path never runs.

tap.py's package __init__ imports its unittest runner (and so unittest),
and its line and tracker modules import PyYAML (and more_itertools) when
installed, for YAML blocks; a program only writes KTAP through tap.tracker.Tracker. Under TCG,
over 9p, those imports cost about half a second per program. lean_tap()
makes `tap` a bare package (its submodules import as usual) and hides
PyYAML while tap's modules load, so tap falls back to what it does
without it. Only the test programs call it (bench/program.py), before
anything imports tap; a process that imported tap already keeps it.
Standard library only.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def lean_tap() -> bool:
    """Install the bare tap package; False when tap is loaded or absent."""
    if "tap" in sys.modules:
        return False
    spec = importlib.util.find_spec("tap")
    if spec is None or spec.submodule_search_locations is None:
        return False
    pkg = types.ModuleType("tap")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    pkg.__file__ = spec.origin
    pkg.__package__ = "tap"
    sys.modules["tap"] = pkg
    # tap.tracker imports more_itertools, then yaml, only to learn whether
    # it may write TAP 13 YAML blocks; with yaml hidden the answer is no
    # whatever more_itertools does, so it is hidden too (0.2 s under TCG).
    hidden = [name for name in ("more_itertools", "yaml") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # import NAME: ImportError
    try:
        importlib.import_module("tap.tracker")
    finally:
        for name in hidden:
            del sys.modules[name]
    return True
