"""JSON without NaN/Infinity: Python writes them, strict parsers (JavaScript, Go, jq) refuse them."""

from __future__ import annotations

import math


def json_safe(value):
    """`value` with every non-finite float replaced by None (null), through dicts, lists and tuples."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
