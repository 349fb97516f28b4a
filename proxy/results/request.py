"""What the results cache reads of a request, and how it asks for a stretch of it (docs/caching.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web

from proxy.upstream import UpstreamRequest


def ms(value: str | None, parse: Callable[[str], float | None]) -> int | None:
    """A time or step parameter in whole milliseconds; None when absent, unreadable or finer."""
    if value is None:
        return None
    seconds = parse(value)
    if seconds is None or seconds != seconds or abs(seconds) > 1e13:  # NaN, absurd
        return None
    ms = round(seconds * 1000)
    # Prometheus truncates below a millisecond; such a request is not cached rather than guessed.
    return ms if abs(seconds * 1000 - ms) < 1e-3 else None


def param(built: UpstreamRequest, name: str) -> str | None:
    """The one value of `name` in the built request (None: absent or repeated)."""
    values = [v for k, v in (*built.query, *(built.form or ())) if k == name]
    return values[0] if len(values) == 1 else None


def with_bounds(built: UpstreamRequest, first_ms: int, last_ms: int) -> UpstreamRequest:
    """`built` asking for the grid points [first, last] only (start/end where they were sent)."""

    def swap(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        values = {"start": seconds(first_ms), "end": seconds(last_ms)}
        return tuple((k, values.get(k, v)) for k, v in pairs)

    form = swap(built.form) if built.form is not None else None
    return UpstreamRequest(built.method, built.path, swap(built.query), form)


def seconds(ms: int) -> str:
    """Milliseconds as the seconds Prometheus reads back exactly."""
    whole, frac = divmod(ms, 1000)
    return f"{whole}.{frac:03d}" if frac else str(whole)


def caller_refuses_cache(request: web.Request) -> bool:
    """`Cache-Control: no-cache` (or `no-store`) from the caller: answer from the upstream."""
    value = request.headers.get("Cache-Control", "").lower()
    return "no-cache" in value or "no-store" in value


def accepts_gzip(request: web.Request) -> bool:
    """The caller's Accept-Encoding admits gzip (`gzip;q=0` refuses it)."""
    for item in request.headers.get("Accept-Encoding", "").lower().split(","):
        name, _, params = item.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False
