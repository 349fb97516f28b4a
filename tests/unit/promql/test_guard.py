"""The pre-parse guard: limits, string/comment awareness, refusals before the parser."""

from __future__ import annotations

import pytest

from proxy.promql import Limits, QueryLimitError, QuerySyntaxError
from proxy.promql.guard import check

LIMITS = Limits()


def test_brackets_inside_strings_and_comments_do_not_count() -> None:
    """Brackets and operators in strings/comments are not structure."""
    report = check("up{a=\"((((+-*/\", b='[[[', c=`{{{`} # ((((((( + + +\n", LIMITS)
    assert report.depth == 1 and report.operators == 0


def test_each_limit_is_named_with_value_and_maximum() -> None:
    """Over a limit → QueryLimitError naming the limit and the measured value."""
    cases = {
        "size": ("x" * 11, Limits(max_bytes=10)),
        "nesting depth": ("(((x)))", Limits(max_depth=2)),
        "operator count": ("a + b - c", Limits(max_operators=1)),
        "regex cost": ('u{a=~"\\\\w"}', Limits(max_regex_cost=50)),
    }
    for limit, (query, limits) in cases.items():
        with pytest.raises(QueryLimitError, match=limit) as info:
            check(query, limits)
        assert info.value.value > info.value.maximum


@pytest.mark.parametrize(
    "query",
    ["(up", "up)", 'up{a="x}', "sum(up]", "up{a='x\n'}", "up @ -5", "up @ - 5", "1e999"],
)
def test_malformed_input_is_a_syntax_error_before_parse(query: str) -> None:
    """Unbalanced brackets, unterminated strings, negative @ and huge numbers are refused."""
    with pytest.raises(QuerySyntaxError):
        check(query, LIMITS)


def test_surrogates_are_refused_as_not_utf8() -> None:
    """A query carrying undecodable bytes (surrogate escapes) never reaches the parser."""
    with pytest.raises(QuerySyntaxError, match="UTF-8"):
        check('up{a="\udcff"}', LIMITS)


def test_matcher_operators_inside_braces_are_not_operators() -> None:
    """`!=` inside braces is a matcher, not an arithmetic operator."""
    assert check('up{a!="b",c=~"d"} - 1', LIMITS).operators == 1


def test_raw_strings_with_backslashes_are_respelled() -> None:
    """`…` strings containing a backslash become equivalent "…" strings for the parser."""
    assert check("up{a=~`\\d+`}", LIMITS).text == 'up{a=~"\\\\d+"}'
