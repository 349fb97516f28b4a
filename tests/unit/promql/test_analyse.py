"""Reach analysis: finite and unbounded cluster/project sets per docs/authorization.md."""

from __future__ import annotations

import pytest

from proxy.promql import LabelModel, Limits, QuerySyntaxError, analyse_query, analyse_selectors
from proxy.promql.regex import literal_alternation, quote_literal

MODEL = LabelModel()
LIMITS = Limits()


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        ("a|b", {"a", "b"}),
        ("team\\-a", {"team-a"}),
        ("(a|b)", {"a", "b"}),
        ("(?:a|b)", {"a", "b"}),
        ("a|", {"a", ""}),
        ("", {""}),
        ("a.*", None),
        ("(?i)a", None),
        ("a+", None),
        ("\\d", None),
    ],
)
def test_literal_alternation(regex: str, expected: set[str] | None) -> None:
    """Only pure literal alternations are finite; flags/classes/repetition are unbounded."""
    got = literal_alternation(regex)
    assert got == (None if expected is None else frozenset(expected))


def test_quoted_literals_read_back_exactly() -> None:
    """RE2-quoting a literal yields a regex whose finite set is exactly that literal."""
    for value in ["a.b", "x|y", "(z)", "c1", "a\\b", "^$"]:
        assert literal_alternation(quote_literal(value)) == frozenset({value})


def test_reach_is_bounded_union_of_finite_sets() -> None:
    """Finite cluster sets are unioned, projects of any project label attached to them."""
    q = 'a{cluster="c1",namespace="x"} + b{cluster=~"c1|c2",exported_namespace=~"y|z"}'
    reach = analyse_query(q, LIMITS, MODEL).reach()
    assert reach.bounded
    assert reach.clusters == {"c1", "c2"}
    assert reach.projects["c1"] == frozenset({"x", "y", "z"})
    assert reach.projects["c2"] == frozenset({"y", "z"})


@pytest.mark.parametrize(
    "query",
    [
        'a{cluster!="c1"}',
        "a",
        'a{cluster=~"c.*"}',
        'a{cluster=""}',
        'a{cluster=~"c1|"}',
        'rate(a{cluster="c1"}[5m]) + b',
    ],
)
def test_unbounded_or_empty_value_makes_reach_unbounded(query: str) -> None:
    """!=, non-literal regexes, absence and "" in the set make the reach unbounded."""
    assert not analyse_query(query, LIMITS, MODEL).reach().bounded


def test_quoted_label_name_and_name_matcher_are_read() -> None:
    """Prometheus 3 quoted label names and __name__ matchers are analysed like plain ones."""
    a = analyse_query('{"cluster"="c1","__name__"="up"}', LIMITS, MODEL)
    assert a.reach().clusters == frozenset({"c1"})
    assert a.selectors[0].names == frozenset({"up"})


def test_no_selector_query_has_no_selectors() -> None:
    """1+1, vector(1), time() read no series."""
    for q in ["1+1", "vector(1)", "time()"]:
        assert not analyse_query(q, LIMITS, MODEL).has_selectors


def test_match_lists_must_be_selectors() -> None:
    """match[] entries are plain series selectors only."""
    assert analyse_selectors(['up{cluster="c1"}', '{__name__!=""}'], LIMITS, MODEL)
    with pytest.raises(QuerySyntaxError):
        analyse_selectors(["rate(up[5m])"], LIMITS, MODEL)
