"""Durations and sizes as people write them in YAML: `10s`, `500ms`, `5m`, `1h`, `2d`; `1MB`, `64k`."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024, "m": 1000**2, "mb": 1000**2,
               "mib": 1024**2, "mi": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3}


def _shown(v: object) -> str:
    # Bounded: a YAML alias bomb (billion laughs) is cheap to load but its full repr is not.
    if isinstance(v, str):
        return repr(v[:80]) + ("..." if len(v) > 80 else "")
    if v is None or isinstance(v, bool | int | float):
        return repr(v)
    return f"a {type(v).__name__}"


def parse_duration(v: object) -> float:
    """Seconds from a number or a string such as `500ms`, `10s`, `5m`, `1h`, `1d`."""
    if isinstance(v, bool):
        raise ValueError(f"expected a duration such as 10s or 5m, got {_shown(v)}")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        m = _DURATION.match(v)
        if m:
            return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 10s, 500ms or 5m, got {_shown(v)}")


def parse_size(v: object) -> float:
    """Bytes from a number or a string such as `512`, `64k`, `1MB`, `2MiB`."""
    if isinstance(v, bool):
        raise ValueError(f"expected a size such as 1MB, got {_shown(v)}")
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        m = _SIZE.match(v)
        if m:
            return float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]
    raise ValueError(f"expected a size such as 512, 64k or 1MB, got {_shown(v)}")


def format_duration(s: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n and s % n == 0:
            return f"{int(s // n)}{unit}"
    if s < 1:
        return f"{s * 1000:g}ms"
    return f"{s:g}s"
