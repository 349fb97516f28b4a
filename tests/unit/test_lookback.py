"""A request's whole time reach: span + selector ranges + subquery ranges + offsets (+ `@`)."""

from __future__ import annotations

import pytest

from proxy import errors, promql
from proxy.lookback import check_lookback, reach
from proxy.promql.scope import LabelModel

LIMITS = promql.Limits(max_bytes=12288, max_depth=24, max_operators=48, max_regex_cost=12000)
DAY = 86400.0
END = 1_800_000_000.0


def _reach(query: str, span: float) -> float:
    trees = promql.analyse_query(query, LIMITS, LabelModel()).trees
    return reach(trees, END - span, END)


@pytest.mark.parametrize(
    ("query", "span", "expected"),
    [
        ("up", 0, 0),
        ("up", 90 * DAY, 90 * DAY),
        ("rate(up[30d])", 30 * DAY, 60 * DAY),
        ("up offset 7d", 1 * DAY, 8 * DAY),
        ("max_over_time(rate(up[5m])[10d:1h] offset 1d)", 0, 10 * DAY + DAY + 300),
        ("up offset -1d", 0, DAY),
        ("up @ start()", DAY, DAY),
        ("1 + 1", 5 * DAY, 5 * DAY),
        ("sum(rate(up[1d])) / sum(rate(up[2d] offset 1d))", 0, 3 * DAY),
    ],
)
def test_reach_adds_span_ranges_subqueries_and_offsets(query: str, span: float, expected: float) -> None:
    """The reach is the window from the earliest to the latest sample the request reads."""
    assert _reach(query, span) == pytest.approx(expected)


def test_at_timestamp_far_in_the_past_counts_from_there() -> None:
    """`@ <ts>` a year before the request reaches back a year."""
    assert _reach(f"up @ {END - 365 * DAY:.0f}", 0) == pytest.approx(365 * DAY)


def test_check_lookback_is_off_by_default_and_refuses_past_the_limit() -> None:
    """Limit 0 allows a 90-day dashboard; a limit refuses a reach past it with a 400."""
    trees = promql.analyse_query("rate(up[30d])", LIMITS, LabelModel()).trees
    check_lookback(trees, END - 90 * DAY, END, 0)
    check_lookback(trees, END - 30 * DAY, END, 60 * DAY)
    with pytest.raises(errors.BadRequest) as refused:
        check_lookback(trees, END - 31 * DAY, END, 60 * DAY)
    assert "PROXY_MAX_LOOKBACK" in refused.value.message
