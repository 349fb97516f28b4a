"""Reference guard: the original one-token-per-match scanner, kept as a differential oracle.

`proxy.promql.guard.check` jumps over runs of tokens it only skips; on every input it must
measure exactly what this plain scanner measures (tests/unit/promql/test_guard_scanner.py).
"""

from __future__ import annotations

import re

from proxy.promql.errors import QueryLimitError, QuerySyntaxError
from proxy.promql.guard import GuardReport
from proxy.promql.limits import Limits
from proxy.promql.regex import regex_cost
from proxy.promql.strings import quote, unquote

_TOKEN = re.compile(
    r"""
      (?P<str>"(?:[^"\\\n]|\\[^\n])*"|'(?:[^'\\\n]|\\[^\n])*'|`[^`]*`)
    | (?P<comment>\#[^\n]*)
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
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


def check(query: str, limits: Limits) -> GuardReport:
    """The original scan: measure `query`, raising QueryLimitError/QuerySyntaxError."""
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
    """`query` with the given spans replaced."""
    parts = []
    last = 0
    for start, end, replacement in spans:
        parts.append(query[last:start])
        parts.append(replacement)
        last = end
    parts.append(query[last:])
    return "".join(parts)
