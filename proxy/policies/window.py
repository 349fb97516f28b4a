"""Time-bounded grants: `from` / `until` of a grant, and how Keycloak's time policy must spell them.

`until` is inclusive in the file's time zone: `until: 2026-12-31` holds through the last second of
that day there. Keycloak's time policy (`TimePolicyProvider`, see docs/) parses `nbf`/`noa` with
`SimpleDateFormat("yyyy-MM-dd HH:mm:ss")` in the server JVM's default time zone and denies when
`now.before(nbf)` or `now.after(noa)`: so the written values are the window's start and its
exclusive end, both converted to the Keycloak server's zone (`keycloak_time_zone`, UTC by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KEYCLOAK_FORMAT = "%Y-%m-%d %H:%M:%S"
ENDS_SOON = timedelta(days=14)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class WindowError(ValueError):
    """A `from`/`until`/time zone value that cannot be read."""


def zone(name: str) -> ZoneInfo:
    """An IANA time zone; WindowError when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise WindowError(f"unknown time zone {name!r}") from exc


def _bound(value: Any, tz: ZoneInfo, *, end: bool) -> datetime:
    """A start (inclusive) or an exclusive end instant from a date, date-time or their text."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text) if _DATE.match(text) else datetime.fromisoformat(text)
        except ValueError as exc:
            raise WindowError(f"{value!r} is neither a date (2026-12-31) nor a date-time") from exc
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=tz)
        # An inclusive date-time end covers its whole second.
        return (moment + timedelta(seconds=1) if end else moment).replace(microsecond=0).astimezone(UTC)
    if isinstance(value, date):
        day = value + timedelta(days=1) if end else value
        return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    raise WindowError(f"{value!r} is neither a date (2026-12-31) nor a date-time")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC (None = open), plus the file's spelling and zone for reports."""

    start: datetime | None
    end: datetime | None
    zone: str = "UTC"
    since_text: str | None = None
    until_text: str | None = None

    @property
    def bounded(self) -> bool:
        """Whether the grant has a start or an end at all."""
        return self.start is not None or self.end is not None

    def active(self, at: datetime) -> bool:
        """Whether the grant holds at this instant."""
        return (self.start is None or at >= self.start) and (self.end is None or at < self.end)

    def ended(self, at: datetime) -> bool:
        """Whether the grant's end has passed."""
        return self.end is not None and at >= self.end

    def ends_soon(self, at: datetime, within: timedelta = ENDS_SOON) -> bool:
        """Whether the grant still holds but ends within `within`."""
        return self.end is not None and at < self.end <= at + within

    def keycloak(self, server_zone: str) -> tuple[str | None, str | None]:
        """(`nbf`, `noa`) as Keycloak's time policy reads them in the server's zone."""
        tz = zone(server_zone)
        nbf = self.start.astimezone(tz).strftime(KEYCLOAK_FORMAT) if self.start else None
        noa = self.end.astimezone(tz).strftime(KEYCLOAK_FORMAT) if self.end else None
        return nbf, noa

    def policy_name(self, server_zone: str) -> str:
        """Name of the time policy expressing this window (same window, same policy)."""
        nbf, noa = self.keycloak(server_zone)

        def part(value: str | None) -> str:
            return value.replace("-", "").replace(":", "").replace(" ", "T") if value else "open"

        return f"time-{part(nbf)}-{part(noa)}"

    def describe(self) -> str:
        """`from 2026-01-01 until 2026-12-31 (Europe/Berlin)` as the file wrote it."""
        parts = []
        if self.since_text:
            parts.append(f"from {self.since_text}")
        if self.until_text:
            parts.append(f"until {self.until_text}")
        return " ".join(parts) + f" ({self.zone})"

    def display(self, which: str) -> str:
        """Start or inclusive end as the file's zone shows it (`until` of a date is that date)."""
        tz = zone(self.zone)
        if which == "from":
            return self.start.astimezone(tz).strftime(KEYCLOAK_FORMAT) if self.start else ""
        if self.end is None:
            return ""
        last = self.end.astimezone(tz) - timedelta(seconds=1)
        return last.strftime(KEYCLOAK_FORMAT)


UNBOUNDED = Window(None, None)


def window(since: Any, until: Any, zone_name: str = "UTC") -> Window:
    """The window of a grant; WindowError when a value is unreadable or `until` precedes `from`."""
    if since is None and until is None:
        return Window(None, None, zone_name)
    tz = zone(zone_name)
    start = _bound(since, tz, end=False) if since is not None else None
    end = _bound(until, tz, end=True) if until is not None else None
    if start is not None and end is not None and end <= start:
        raise WindowError(f"until {_text(until)} is before from {_text(since)}")
    return Window(start, end, zone_name, _text(since), _text(until))


def from_keycloak(nbf: str | None, noa: str | None, server_zone: str, show_zone: str) -> Window:
    """The window a live time policy expresses (its values read in the server's zone)."""
    tz = zone(server_zone)

    def read(value: str | None) -> datetime | None:
        if not value:
            return None
        text = value.strip()
        if len(text) == 10:  # TimePolicyProvider.format(): a bare date means its midnight
            text += " 00:00:00"
        return datetime.strptime(text, KEYCLOAK_FORMAT).replace(tzinfo=tz).astimezone(UTC)

    start, end = read(nbf), read(noa)
    shown = Window(start, end, show_zone)
    return Window(
        start,
        end,
        show_zone,
        shown.display("from") or None,
        shown.display("until") or None,
    )
