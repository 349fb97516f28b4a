"""Prometheus-style durations (`90s`, `5m`, `1h30m`, `250ms`) as seconds."""

from __future__ import annotations

import re
from typing import Any

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(value: Any) -> float:
    """Parse a duration string (or a number of seconds) into seconds; raise ValueError if invalid."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("not a duration")
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not text or _PART.sub("", text) != "":
        raise ValueError(f"invalid duration {value!r} (use e.g. 90s, 5m, 1h30m)")
    units = [m.group(2) for m in _PART.finditer(text)]
    if len(set(units)) != len(units):
        raise ValueError(f"invalid duration {value!r}: repeated unit")
    return sum(int(m.group(1)) * _UNITS[m.group(2)] for m in _PART.finditer(text))


def format_duration(seconds: float) -> str:
    """Seconds as a Prometheus-style duration (`2m`, `1h30m`, `250ms`), the inverse of parsing."""
    if seconds == 0:
        return "0s"
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms" if millis < 1000 else f"{seconds:g}s"
    rest = millis // 1000
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
