"""Command lines written with placeholders for paths a test makes (a file,
a directory that must not exist, a partial result set), filled in with
the real paths of the test's temporary directory."""

from __future__ import annotations


def subst(argv: list[str], real: dict[str, str]) -> list[str]:
    """argv with each placeholder of `real` replaced by its path."""
    out = []
    for a in argv:
        for k, v in real.items():
            a = a.replace(k, v)
        out.append(a)
    return out
