"""The project's own immutable PromQL syntax tree.

promql-parser's objects are converted once into these frozen dataclasses, so rewriting builds
new trees instead of mutating the binding's (whose printers ignore or mangle edits), and
verification is plain structural equality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

MatchOpText = Literal["=", "!=", "=~", "!~"]
Card = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; `value` is the unescaped value."""

    op: MatchOpText
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class At:
    """An `@` modifier: `start()`, `end()` or a timestamp in milliseconds."""

    kind: Literal["start", "end", "ts"]
    ms: int = 0


@dataclass(frozen=True, slots=True)
class VectorSelector:
    """`name{matchers} offset … @ …`; offset in signed milliseconds."""

    name: str | None
    matchers: tuple[Matcher, ...]
    offset_ms: int | None = None
    at: At | None = None


@dataclass(frozen=True, slots=True)
class MatrixSelector:
    """`selector[range]`; the selector carries the offset and `@`."""

    vs: VectorSelector
    range_ms: int


@dataclass(frozen=True, slots=True)
class Subquery:
    """`expr[range:step]`, step None for `[range:]`."""

    expr: Expr
    range_ms: int
    step_ms: int | None
    offset_ms: int | None
    at: At | None


@dataclass(frozen=True, slots=True)
class Call:
    """A function call."""

    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Aggregate:
    """An aggregation; `grouping` is "by", "without" or None (no clause)."""

    op: str
    expr: Expr
    param: Expr | None
    grouping: Literal["by", "without"] | None
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BinMod:
    """Vector matching of a binary operation, normalised (defaults filled in)."""

    card: Card
    matching: Literal["on", "ignoring"] | None
    labels: tuple[str, ...]
    group_labels: tuple[str, ...]
    return_bool: bool
    fill_lhs: str | None
    fill_rhs: str | None


@dataclass(frozen=True, slots=True)
class Binary:
    """`lhs op rhs` with its vector matching."""

    op: str
    lhs: Expr
    rhs: Expr
    mod: BinMod


@dataclass(frozen=True, slots=True)
class Paren:
    """`( expr )`."""

    expr: Expr


@dataclass(frozen=True, slots=True)
class Unary:
    """`-expr` (the parser drops unary plus)."""

    expr: Expr


@dataclass(frozen=True, slots=True)
class Number:
    """A number literal, kept as canonical text so NaN compares equal to NaN."""

    text: str


@dataclass(frozen=True, slots=True)
class String:
    """A string literal (unescaped value)."""

    value: str


Expr: TypeAlias = (
    VectorSelector | MatrixSelector | Subquery | Call | Aggregate | Binary | Paren | Unary | Number | String
)

SET_OPERATORS = frozenset({"and", "or", "unless"})


def default_binmod(op: str) -> BinMod:
    """The matching promql-parser implies for `op` without modifiers."""
    card: Card = "many-to-many" if op in SET_OPERATORS else "one-to-one"
    return BinMod(card, None, (), (), False, None, None)
