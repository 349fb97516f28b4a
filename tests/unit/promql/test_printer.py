"""The printer: exact, escaped text that re-parses to the same tree."""

from __future__ import annotations

import pytest

from proxy.promql import Limits
from proxy.promql import nodes as n
from proxy.promql.parse import parse
from proxy.promql.printer import duration, to_text

LIMITS = Limits()


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("foo[1001ms]", "foo[1s1ms]"),
        ("foo offset 1m30ms", "foo offset 1m30ms"),
        ("foo offset -5m", "foo offset -5m"),
        ("foo[5m:]", "foo[5m:]"),
        ("foo[5m:1m] @ end()", "foo[5m:1m] @ end()"),
        ("foo @ start()", "foo @ start()"),
        ("foo @ 1.5", "foo @ 1.500"),
        ("a > bool b", "a > bool b"),
        ("a - ignoring() group_left c", "a - ignoring() group_left() c"),
        ("a + on(x) group_right(y) b", "a + on(x) group_right(y) b"),
        ("sum without () (a)", "sum without () (a)"),
        ("topk(5, a)", "topk (5, a)"),
        ("-a", "-a"),
        ("0x1F", "31"),
        ("Inf", "Inf"),
        ("-Inf", "-Inf"),
        ("NaN", "NaN"),
        ('{"label.with.dots"="v",__name__="some.metric"}', '{"label.with.dots"="v",__name__="some.metric"}'),
        ('sum by ("a.b") (x)', 'sum by ("a.b") (x)'),
        ('"a\\nb\\"c\\\\"', '"a\\nb\\"c\\\\"'),
    ],
)
def test_known_forms_print_exactly(query: str, text: str) -> None:
    """Durations to the ms, @/offset forms, modifiers, numbers, quoting print as expected."""
    tree = parse(query, LIMITS)
    assert to_text(tree) == text
    assert parse(text, LIMITS) == tree


@pytest.mark.parametrize("value", ['"}', "\\", '\\"', "\n\t\r", "a,b", "😀", "\x00\x7f", "\u2028"])
def test_hostile_label_values_round_trip(value: str) -> None:
    """Any label value prints so that it parses back to exactly the same value."""
    tree = n.VectorSelector("up", (n.Matcher("=", "job", value), n.Matcher("=~", "x", "a|b")))
    assert parse(to_text(tree), LIMITS) == tree


def test_durations_use_every_unit() -> None:
    """Durations print in y/w/d/h/m/s/ms units without loss."""
    assert duration(((365 + 7 + 1) * 24 * 3600 + 3661) * 1000 + 5) == "1y1w1d1h1m1s5ms"
