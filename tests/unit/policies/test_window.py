"""Grant windows: `until` inclusive in the declared zone, written for Keycloak's server zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from proxy.policies.window import WindowError, from_keycloak, window


def test_date_until_is_inclusive_in_its_zone() -> None:
    """`until: 2026-12-31` in Berlin ends at Berlin's midnight, 23:00 UTC; noa says so in UTC."""
    w = window(date(2026, 1, 1), date(2026, 12, 31), "Europe/Berlin")
    assert w.start == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert w.end == datetime(2026, 12, 31, 23, tzinfo=UTC)
    assert w.keycloak("UTC") == ("2025-12-31 23:00:00", "2026-12-31 23:00:00")
    assert w.keycloak("Europe/Berlin") == ("2026-01-01 00:00:00", "2027-01-01 00:00:00")
    assert w.active(datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC))
    assert not w.active(datetime(2026, 12, 31, 23, 0, 0, tzinfo=UTC))


def test_datetime_until_covers_its_second() -> None:
    """An inclusive date-time end holds through that whole second."""
    w = window(None, "2026-06-01T18:00:00", "UTC")
    assert w.end == datetime(2026, 6, 1, 18, 0, 1, tzinfo=UTC)
    assert w.keycloak("UTC") == (None, "2026-06-01 18:00:01")
    assert w.policy_name("UTC") == "time-open-20260601T180001"


def test_zoned_datetime_keeps_its_offset() -> None:
    """A date-time with an offset is read as written, whatever the file's zone."""
    w = window("2026-06-01T08:00:00+02:00", None, "America/New_York")
    assert w.start == datetime(2026, 6, 1, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    "since,until,zone",
    [(None, "31.12.2026", "UTC"), ("2026-02-01", "2026-01-31", "UTC"), (None, "2026-01-01", "Mars/Olympus")],
)
def test_unreadable_windows(since: str | None, until: str, zone: str) -> None:
    """Bad dates, an end before the start and unknown zones are errors."""
    with pytest.raises(WindowError):
        window(since, until, zone)


def test_keycloak_values_read_back() -> None:
    """A live time policy's values, read in the server zone, give back the file's window."""
    w = window(date(2026, 1, 1), date(2026, 12, 31), "Europe/Berlin")
    nbf, noa = w.keycloak("America/Chicago")
    back = from_keycloak(nbf, noa, "America/Chicago", "Europe/Berlin")
    assert (back.start, back.end) == (w.start, w.end)
    assert back.display("until") == "2026-12-31 23:59:59"
    assert from_keycloak("2026-01-01", None, "UTC", "UTC").start == datetime(2026, 1, 1, tzinfo=UTC)


def test_ended_and_ends_soon() -> None:
    """Ended after the end; 'ends soon' only while it still holds and within 14 days."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert window(None, date(2026, 5, 31)).ended(now)
    assert window(None, date(2026, 6, 10)).ends_soon(now)
    assert not window(None, date(2026, 6, 20)).ends_soon(now)
    assert not window(None, date(2026, 6, 20)).ended(now + timedelta(days=18))
