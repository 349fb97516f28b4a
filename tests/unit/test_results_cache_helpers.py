"""The results cache's request plumbing: bounds rewritten in place, stretches joined, no gaps."""

from __future__ import annotations

import pytest

from proxy.results.request import accepts_gzip, caller_refuses_cache, ms, seconds, with_bounds
from proxy.results.stretches import joined
from proxy.upstream import UpstreamRequest


def test_bounds_are_replaced_where_they_were_sent() -> None:
    """A piece's start/end replace the caller's, in the URL or the form, nothing else moves."""
    form = UpstreamRequest(
        "POST", "/q", (("dedup", "true"),), (("query", "up"), ("start", "1"), ("end", "9"))
    )
    swapped = with_bounds(form, 30_000, 60_500)
    assert swapped.form == (("query", "up"), ("start", "30"), ("end", "60.500"))
    assert swapped.query == (("dedup", "true"),)
    url = UpstreamRequest("GET", "/q", (("start", "1"), ("end", "9"), ("step", "30")))
    assert with_bounds(url, 0, 90_000).query == (("start", "0"), ("end", "90"), ("step", "30"))


def test_adjacent_missing_stretches_are_asked_at_once() -> None:
    """Stretches one step apart (across a day boundary) become one upstream request."""
    assert joined([(60, 90), (0, 30), (200, 230)], 30) == [(0, 90), (200, 230)]


@pytest.mark.parametrize(
    ("value", "refused"),
    [
        ("no-cache", True),
        ("max-age=0, no-store", True),
        ("NO-CACHE", True),
        ("max-age=60", False),
        ("", False),
    ],
)
def test_cache_control_from_the_caller(value: str, refused: bool) -> None:
    """`no-cache` and `no-store` bypass the cache; other directives do not."""
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("GET", "/", headers={"Cache-Control": value} if value else {})
    assert caller_refuses_cache(request) is refused


def test_seconds_are_printed_exactly() -> None:
    """Milliseconds print as Prometheus reads them back, never rounded."""
    assert [seconds(ms) for ms in (0, 1_000, 1_500, 1_700_000_000_001)] == [
        "0",
        "1",
        "1.500",
        "1700000000.001",
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1700000000", 1_700_000_000_000),
        ("1.5", 1_500),
        ("2026-12-06T00:00:00Z", 1_796_515_200_000),
        ("1.0005", None),
        ("x", None),
        ("NaN", None),
    ],
)
def test_times_to_milliseconds(value: str, expected: int | None) -> None:
    """Times become whole milliseconds; sub-millisecond or unreadable times are not cached."""
    from proxy import caps

    assert ms(value, caps.parse_time) == expected


@pytest.mark.parametrize(
    ("value", "gzip"),
    [
        ("gzip", True),
        ("deflate, gzip;q=1.0", True),
        ("*", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("", False),
    ],
)
def test_accept_encoding_gzip(value: str, gzip: bool) -> None:
    """A cached answer goes out gzipped only to callers that accept gzip."""
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request("GET", "/", headers={"Accept-Encoding": value} if value else {})
    assert accepts_gzip(request) is gzip
