"""Request-path performance: the guard's run-skipping scanner measures exactly what the plain one did.

`guard.check` consumes runs of tokens it only skips (identifiers, durations, small numbers,
`label="x"` matchers, simple `{…}` selector blocks) in one regex match; the reference scanner in
`guard_reference.py` is the original one-token-per-match loop. Every report and every refusal
(type and message) must be identical on any input.
"""

from __future__ import annotations

import dataclasses
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.promql import Limits, PromQLError
from proxy.promql.guard import check
from tests.unit.promql import guard_reference

TIGHT = Limits(max_bytes=2048, max_depth=5, max_operators=6, max_regex_cost=150)
WIDE = Limits(max_bytes=1 << 16, max_depth=64, max_operators=4096, max_regex_cost=1 << 20)
FRAGMENTS = [
    "m", "up", "rate", "sum", "by", "and", "AND", "or", "Or", "unless", "atan2", "orx", "and_",
    "or.x", "cluster", "namespace", "__name__", "a:b", "{", "}", "(", ")", "[", "]", "=", "==",
    "!=", "=~", "!~", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "^", ",", " ", "\n", "\t",
    '"x"', "'y'", '"c1"', '"a\\"b"', '"\\\\w"', '"(.{9}){9}"', "`r\\d`", "`plain`", '"',
    "'", "`", "5m", "1h30m", "5mx", "5ms", "1", "1.5", ".5", "1e5", "1e400", "0x1F", "9" * 310,
    "7" * 290, "@", "@ -", "offset", "#c\n", "#", "Inf", "NaN", "\\", "~", "!",
]  # fmt: skip


def outcome(fn: object, query: str, limits: Limits) -> tuple[object, ...]:
    """("ok", report fields) or (error type, message) of one scanner on `query`."""
    assert callable(fn)
    try:
        return ("ok", *dataclasses.astuple(fn(query, limits)))
    except PromQLError as exc:
        return (type(exc).__name__, str(exc))


def same(query: str) -> None:
    """Both scanners agree on `query` under tight and wide limits."""
    for limits in (TIGHT, WIDE):
        assert outcome(check, query, limits) == outcome(guard_reference.check, query, limits), query


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_request_path_performance_guard_scanner_matches_reference_on_fragments(query: str) -> None:
    """PromQL-ish fragment soups: identical reports and refusals."""
    same(query)


SELECTOR_PARTS = [
    "m",
    "{",
    "}",
    "a",
    "or",
    "=",
    "!=",
    "=~",
    '"x"',
    "'y'",
    ",",
    " ",
    "(",
    ")",
    "5m",
    "[",
    "]",
    "+",
    "@",
    "-",
]


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(SELECTOR_PARTS), max_size=30).map("".join))
def test_request_path_performance_guard_scanner_matches_reference_on_selectors(query: str) -> None:
    """Selector-block soups, where the scanner's `sel` and `skip` runs apply most."""
    same(query)


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(alphabet=" \n\t\"'`\\{}()[]=!~<>+-*/%^,@#.:_aorndu0159exms", max_size=60))
def test_request_path_performance_guard_scanner_matches_reference_on_characters(query: str) -> None:
    """Character soups over PromQL's significant characters: identical reports and refusals."""
    same(query)


def test_request_path_performance_guard_scanner_matches_reference_on_real_queries() -> None:
    """Dashboard-shaped queries (selectors, regex matchers, word operators in braces)."""
    for query in [
        'sum by (namespace) (DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",namespace="team-a"})',
        'rate(m{ cluster = "c1" , job!="x", a=~"b|c" }[5m]) and on(a) m{or="x"} @ 5',
        "m{and='x',unless=\"y\"} unless atan2(m, m) or m offset 5m",
        '{__name__="m", cluster="c1"}[1h:5m] # comment { ( \n + m',
        "m " + "{}" * 3 + ' + m{a="x"}' * 3,
        "1e400 + m",
        "9" * 309 + " + 1",
    ]:
        same(query)


def test_request_path_performance_guard_is_cheap_on_a_panel_query() -> None:
    """The guard costs well under 100 us of CPU on a typical panel query (min of 50 runs)."""
    query = 'sum by (namespace) (DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",namespace="team-a"})'
    best = float("inf")
    for _ in range(50):
        start = time.process_time()
        check(query, Limits())
        best = min(best, time.process_time() - start)
    assert best < 100e-6, best
