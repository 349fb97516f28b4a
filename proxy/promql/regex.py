"""RE2 regex helpers: literal-alternation sets, literal quoting, and compile-cost estimates.

Everything here reads regex *text* only; nothing is compiled, so attacker input costs linear time.
"""

from __future__ import annotations

from collections.abc import Iterable

# Characters that are special in RE2 outside a character class.
_META = frozenset(".+*?()|[]{}^$\\")

# Estimated compile cost in microseconds of the Rust regex crate (measured on promql-parser
# 0.12.0: Unicode word/letter classes cost ~400 us each, `.` ~5 us, literals ~0.2 us).
_COST_LITERAL = 1
_COST_DOT = 8
_COST_ASCII_CLASS = 3
_COST_NEG_CLASS = 8
_COST_UNICODE_CLASS = 450
_COST_DIGIT = 30
_COST_NOT_DIGIT = 70
_COST_SPACE = 6
_COST_NOT_SPACE = 16
_COST_OTHER_ESCAPE = 4
_COST_GROUP = 4
_COST_PER_REGEX = 20
_MAX_REPEAT = 1000  # RE2's own limit on counted repetition


def quote_literal(value: str) -> str:
    """Escape `value` so RE2 matches exactly that string."""
    return "".join("\\" + ch if ch in _META else ch for ch in value)


def literal_alternation_text(values: Iterable[str]) -> str:
    """RE2 text matching exactly the given literal strings (sorted, deduplicated)."""
    return "|".join(quote_literal(v) for v in sorted(set(values)))


def _strip_group(rx: str) -> str:
    """Drop one wrapping `(...)` / `(?:...)` group when it spans the whole expression."""
    for prefix in ("(?:", "("):
        if rx.startswith(prefix) and rx.endswith(")") and not rx.endswith("\\)"):
            inner = rx[len(prefix) : -1]
            if _balanced(inner):
                return inner
    return rx


def _balanced(rx: str) -> bool:
    """True when parentheses in `rx` (ignoring escaped ones) never close below depth 0."""
    depth = 0
    i = 0
    while i < len(rx):
        ch = rx[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


def _split_top(rx: str) -> list[str] | None:
    """Split `rx` on unescaped `|`; None when any other metacharacter appears."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(rx):
        ch = rx[i]
        if ch == "\\":
            if i + 1 >= len(rx):
                return None
            nxt = rx[i + 1]
            # only punctuation escapes are literals; \d, \w, \n, \x.. etc. are not
            if nxt.isascii() and not nxt.isalnum() and nxt.isprintable():
                current.append(nxt)
                i += 2
                continue
            return None
        if ch == "|":
            parts.append("".join(current))
            current = []
        elif ch in _META:
            return None
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def literal_alternation(rx: str) -> frozenset[str] | None:
    """The exact set of strings a fully anchored RE2 `rx` matches, if it is a literal alternation.

    Prometheus anchors every matcher regex as `^(?:rx)$`. Returns None (unbounded) for anything
    that is not a pure alternation of literals: flags such as `(?i)`, classes, repetition, `.`.
    """
    body = _strip_group(rx)
    alternatives = _split_top(body)
    if alternatives is None:
        return None
    return frozenset(alternatives)


def _parse_repeat(rx: str, i: int) -> tuple[int, int] | None:
    """Parse a counted repetition `{n}`, `{n,}`, `{n,m}` at rx[i]; (count, next index) or None."""
    end = rx.find("}", i)
    if end < 0:
        return None
    body = rx[i + 1 : end]
    lo, sep, hi = body.partition(",")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        return None
    count = int(hi) if hi else (int(lo) + 1 if sep else int(lo))
    return min(max(count, 1), _MAX_REPEAT * 10), end + 1


def _escape_cost(letter: str) -> int:
    """Compile cost of the escape `\\letter` (Unicode classes dominate)."""
    if letter in "wWpP":
        return _COST_UNICODE_CLASS
    if letter == "d":
        return _COST_DIGIT
    if letter == "D":
        return _COST_NOT_DIGIT
    if letter == "s":
        return _COST_SPACE
    if letter == "S":
        return _COST_NOT_SPACE
    if letter.isalnum():
        return _COST_OTHER_ESCAPE
    return _COST_LITERAL


def _class_cost(rx: str, i: int) -> tuple[int, int]:
    """Cost of the character class starting at rx[i] == '[' and the index after it."""
    j = i + 1
    negated = j < len(rx) and rx[j] == "^"
    if negated:
        j += 1
    cost = _COST_NEG_CLASS if negated else _COST_ASCII_CLASS
    first = True
    while j < len(rx):
        ch = rx[j]
        if ch == "]" and not first:
            return cost, j + 1
        first = False
        if ch == "\\" and j + 1 < len(rx):
            esc = _escape_cost(rx[j + 1])
            cost = max(cost, esc) if esc > _COST_OTHER_ESCAPE else cost
            j += 2
            continue
        if ch == "[" and rx.startswith("[:", j):
            close = rx.find(":]", j + 2)
            if close >= 0:
                j = close + 2
                continue
        if not ch.isascii():
            cost = max(cost, _COST_NEG_CLASS)
        j += 1
    # unterminated: the parser refuses it; charge as if every remaining char were a class
    return cost + (len(rx) - i), len(rx)


def regex_cost(rx: str) -> int:
    """Estimated compile cost (~microseconds) of the RE2 regex `rx`, linear in its length.

    Counted repetitions multiply the cost of what they repeat, so `(\\w{100}){100}` is charged
    for the ten thousand Unicode classes the compiler will build.
    """
    # stack of [cost of finished atoms in this group, cost of the last atom]
    stack: list[list[int]] = [[0, 0]]
    i = 0
    n = len(rx)
    while i < n:
        ch = rx[i]
        frame = stack[-1]
        atom = -1
        if ch == "\\" and i + 1 < n:
            atom = _escape_cost(rx[i + 1])
            i += 2
        elif ch == "[":
            atom, i = _class_cost(rx, i)
        elif ch == "(":
            stack.append([_COST_GROUP, 0])
            i += 1
            continue
        elif ch == ")":
            if len(stack) > 1:
                done = stack.pop()
                atom = done[0] + done[1]
                frame = stack[-1]
            i += 1
        elif ch == "{":
            rep = _parse_repeat(rx, i)
            if rep is not None:
                count, i = rep
                frame[1] *= count
                continue
            atom = _COST_LITERAL
            i += 1
        elif ch in "*+?":
            frame[1] += 1
            i += 1
            continue
        elif ch == ".":
            atom = _COST_DOT
            i += 1
        elif ch == "|":
            frame[0] += frame[1] + 1
            frame[1] = 0
            i += 1
            continue
        else:
            atom = _COST_LITERAL if ch.isascii() else _COST_LITERAL * 2
            i += 1
        if atom >= 0:
            frame[0] += frame[1]
            frame[1] = atom
    total = 0
    for frame in stack:
        total += frame[0] + frame[1]
    return total + _COST_PER_REGEX
