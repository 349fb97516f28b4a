"""Pre-parse guard: one linear scan that bounds what promql-parser is ever asked to parse.

The parser crashes the process on deep nesting, is quadratic in tree depth and compiles every
matcher regex while holding the GIL, so nothing reaches it before this scan has measured bytes,
bracket depth, operator tokens and regex compile cost. The scan respects string literals and
comments so brackets inside strings do not count and brackets outside them cannot hide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from proxy.promql.errors import QueryLimitError, QuerySyntaxError
from proxy.promql.limits import Limits
from proxy.promql.regex import regex_cost
from proxy.promql.strings import quote, unquote

# Two token kinds let the scanner jump over what it only skips, so the Python loop below sees
# just the tokens it measures: `sel`, a selector brace block with only `=`/`!=` matchers on plain
# strings (one nesting level, no operator counted, no regex), optionally after its metric name;
# and `skip`, a run of identifiers other than word operators, durations, small decimal numbers
# and `label="plain string"` matchers, separated by blanks, commas or single `=`. Neither starts
# with a blank or comma, so neither can separate `=~`/`!~` (or `@`) from the token after it.
_SP = r"[ \t\r\n]*"
_WORD = r"(?!(?i:and|or|unless|atan2)(?![A-Za-z0-9_:.]))[A-Za-z_][A-Za-z0-9_:.]*"
_DUR = r"(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_.])"
_SMALL_NUM = r"[0-9]{1,300}(?:\.[0-9]*)?(?![0-9A-Za-z_.])"  # < 1e300: always in float range
_PLAIN_STR = r""""[^"\\\n]*(?:\\[^\n][^"\\\n]*)*"|'[^'\\\n]*(?:\\[^\n][^'\\\n]*)*'"""
_EQ = r"=(?![=~])"
_SKIP_ITEM = rf"{_WORD}(?:{_SP}{_EQ}{_SP}(?:{_PLAIN_STR}))?|{_DUR}|{_SMALL_NUM}"
_MATCHER = rf"{_WORD}{_SP}(?:{_EQ}|!=){_SP}(?:{_PLAIN_STR})"
_BLOCK = rf"\{{{_SP}(?:{_MATCHER}(?:{_SP},{_SP}{_MATCHER})*{_SP},?{_SP})?\}}"
_TOKEN = re.compile(
    rf"""
      (?P<sel>(?:{_WORD}{_SP})?{_BLOCK})
    | (?P<skip>(?:{_SKIP_ITEM})(?:(?:[ \t\r\n,]|{_EQ})*(?:{_SKIP_ITEM}))*)
    | (?P<str>"(?:[^"\\\n]|\\[^\n])*"|'(?:[^'\\\n]|\\[^\n])*'|`[^`]*`)
    | (?P<comment>\#[^\n]*)
    | (?P<open>[(\[{{])
    | (?P<close>[)\]}}])
    | (?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>])
    | (?P<word>[A-Za-z_][A-Za-z0-9_:.]*)
    | (?P<dur>(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_.]))
    | (?P<num>0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<at>@)
    | (?P<bad>["'`])
    """,
    re.VERBOSE,
)
_PAIRS = {")": "(", "]": "[", "}": "{"}
_WORD_OPERATORS = frozenset({"and", "or", "unless", "atan2"})


@dataclass(frozen=True, slots=True)
class GuardReport:
    """What the guard measured on an accepted query."""

    bytes: int
    depth: int
    operators: int
    regex_cost: int
    # the query with raw `…` strings that contain a backslash respelled as "…" strings, which
    # promql-parser 0.12 mis-lexes; the value of every string is unchanged
    text: str


def check(query: str, limits: Limits) -> GuardReport:
    """Measure `query` and raise QueryLimitError/QuerySyntaxError before any parse happens."""
    try:
        size = len(query.encode("utf-8"))
    except UnicodeEncodeError:
        raise QuerySyntaxError("query is not valid UTF-8") from None
    if size > limits.max_bytes:
        raise QueryLimitError("size (bytes)", size, limits.max_bytes)
    if not query.strip():
        raise QuerySyntaxError("empty query")
    stack: list[str] = []
    max_depth = 0
    operators = 0
    cost = 0
    prev = ""  # previous significant token text
    respelled: list[tuple[int, int, str]] = []
    for tok in _TOKEN.finditer(query):
        kind = tok.lastgroup
        if kind == "skip":
            prev = ""  # the run's last token is an identifier, number, duration or string
            continue
        if kind == "sel":
            if len(stack) >= max_depth:
                max_depth = len(stack) + 1
                if max_depth > limits.max_depth:
                    raise QueryLimitError("nesting depth", max_depth, limits.max_depth)
            prev = ""  # the block's last token is `}`
            continue
        text = tok.group()
        if kind == "comment":
            continue
        if kind == "str":
            if text[0] == "`" and "\\" in text:
                respelled.append((tok.start(), tok.end(), quote(text[1:-1])))
            if prev in ("=~", "!~"):
                cost += regex_cost(unquote(text))
                if cost > limits.max_regex_cost:
                    raise QueryLimitError("regex cost", cost, limits.max_regex_cost)
        elif kind == "open":
            stack.append(text)
            if len(stack) > max_depth:
                max_depth = len(stack)
                if max_depth > limits.max_depth:
                    raise QueryLimitError("nesting depth", max_depth, limits.max_depth)
        elif kind == "close":
            if not stack or stack.pop() != _PAIRS[text]:
                raise QuerySyntaxError(f"unbalanced {text!r} in query")
        elif kind == "op" or (kind == "word" and text.lower() in _WORD_OPERATORS):
            # inside {} these are matcher operators, not arithmetic the parser nests on
            if not stack or stack[-1] != "{" or kind == "word":
                operators += 1
                if operators > limits.max_operators:
                    raise QueryLimitError("operator count", operators, limits.max_operators)
            if kind == "op" and text == "-" and prev == "@":
                raise QuerySyntaxError("negative @ timestamps are not supported")
        elif kind == "num":
            _check_number(text)
        elif kind == "bad":
            raise QuerySyntaxError("unterminated string literal in query")
        prev = text
    if stack:
        raise QuerySyntaxError(f"unclosed {stack[-1]!r} in query")
    if respelled:
        query = _respell(query, respelled)
    return GuardReport(size, max_depth, operators, cost, query)


def _check_number(text: str) -> None:
    """Refuse number literals outside float range (Prometheus rejects them; the parser says Inf)."""
    try:
        value = float(int(text, 16)) if text[:2] in ("0x", "0X") else float(text)
    except OverflowError:
        value = float("inf")
    if value > 1.7976931348623157e308:
        raise QuerySyntaxError(f"number {text[:40]} is out of range")


def _respell(query: str, spans: list[tuple[int, int, str]]) -> str:
    parts = []
    last = 0
    for start, end, replacement in spans:
        parts.append(query[last:start])
        parts.append(replacement)
        last = end
    parts.append(query[last:])
    return "".join(parts)
