"""JSON output that every parser reads: Python writes a float that is not
a number as NaN or Infinity, tokens JSON does not have (jq, JavaScript's
JSON.parse and Go refuse them), so a figure that is none - the ratio of a
comparison without data, an unbounded end of an interval - is null."""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def finite(value: Any) -> Any:
    """value with every NaN and infinity, however deep, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
