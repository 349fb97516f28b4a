"""Fair-use caps on request parameters (docs: points per series, `timeout`).

Pure functions over parameter values: no request, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from proxy import errors
from proxy.durations import parse_duration

Pairs = Sequence[tuple[str, str]]


def parse_time(value: str) -> float | None:
    """Prometheus' time formats: unix seconds or RFC 3339; None when unparseable."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_step(value: str) -> float | None:
    """A `step`: seconds or a Prometheus duration; None when unparseable."""
    try:
        return float(value)
    except ValueError:
        try:
            return parse_duration(value)
        except ValueError:
            return None


def check_range(start_s: str | None, end_s: str | None, step_s: str | None, max_points: int) -> None:
    """Refuse a range with more than `max_points` points per series.

    Missing or unparseable values pass: Prometheus itself answers those errors.
    """
    if start_s is None or end_s is None or step_s is None:
        return
    start, end, step = parse_time(start_s), parse_time(end_s), parse_step(step_s)
    if start is None or end is None or step is None or not all(map(math.isfinite, (start, end, step))):
        return
    if step > 0 and (end - start) / step > max_points:
        raise errors.BadRequest(
            f"exceeded maximum resolution of {max_points} points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )


def cap_timeout(pairs: Pairs, cap: float) -> list[tuple[str, str]]:
    """`pairs` with every `timeout` longer than `cap` seconds replaced by the cap."""
    out = list(pairs)
    for i, (key, value) in enumerate(out):
        if key != "timeout":
            continue
        try:
            asked = parse_duration(value)
        except ValueError:
            continue
        if asked > cap:
            out[i] = (key, f"{int(cap * 1000)}ms")
    return out
