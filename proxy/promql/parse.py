"""promql-parser wrapper: guard, parse, and convert into the project's own tree (`nodes`).

The binding holds the GIL and can panic (a BaseException) when reading some attributes, so every
call into it is wrapped and any surprise becomes a QuerySyntaxError. Its walk()/transform() are
super-linear; conversion is a hand-written recursion over attributes.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import promql_parser as pp

from proxy.promql import nodes as n
from proxy.promql.errors import PromQLError, QuerySyntaxError
from proxy.promql.guard import check
from proxy.promql.limits import Limits

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# the binding's enum members are unhashable, so they are looked up by their str()
_MATCH_OPS: dict[str, n.MatchOpText] = {
    str(pp.MatchOp.Equal): "=",
    str(pp.MatchOp.NotEqual): "!=",
    str(pp.MatchOp.Re): "=~",
    str(pp.MatchOp.NotRe): "!~",
}
_CARDS: dict[str, n.Card] = {
    str(pp.VectorMatchCardinality.OneToOne): "one-to-one",
    str(pp.VectorMatchCardinality.ManyToOne): "many-to-one",
    str(pp.VectorMatchCardinality.OneToMany): "one-to-many",
    str(pp.VectorMatchCardinality.ManyToMany): "many-to-many",
}
_CACHE_SIZE = 2048
_MAX_DURATION_MS = (2**63 - 1) // 1_000_000  # Go's time.Duration range


def number_text(value: float) -> str:
    """Canonical PromQL text of a float that parses back to exactly the same float."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15 and not (value == 0 and math.copysign(1, value) < 0):
        return str(int(value))
    return repr(value)


def _duration_ms(delta: timedelta | None, what: str, *, signed: bool = False) -> int | None:
    if delta is None:
        return None
    micros = delta // _US
    if micros % 1000:
        raise QuerySyntaxError(f"sub-millisecond {what} durations are not supported")
    ms = micros // 1000
    if ms == 0 or (ms < 0 and not signed) or abs(ms) > _MAX_DURATION_MS:
        raise QuerySyntaxError(f"invalid {what} duration")
    return ms


def _at(node: Any) -> n.At | None:
    # reading a negative @ raises pyo3's PanicException, a BaseException
    try:
        at = node.at
        if at is None:
            return None
        kind = at.type
        if kind == pp.AtModifierType.Start:
            return n.At("start")
        if kind == pp.AtModifierType.End:
            return n.At("end")
        stamp = at.at
    except BaseException:  # pyo3 panics are BaseExceptions
        raise QuerySyntaxError("unsupported @ modifier (negative or out of range)") from None
    if not isinstance(stamp, datetime):
        raise QuerySyntaxError("unsupported @ modifier")
    micros = (stamp - _EPOCH) // _US
    if micros < 0 or micros % 1000:
        raise QuerySyntaxError("@ timestamps must be non-negative whole milliseconds")
    return n.At("ts", micros // 1000)


def _matchers(vs: Any) -> tuple[n.Matcher, ...]:
    group = vs.matchers
    if group.or_matchers:
        raise QuerySyntaxError("'or' inside label matchers is not PromQL and is refused")
    out = []
    for m in group.matchers:
        op = _MATCH_OPS.get(str(m.op))
        if op is None:
            raise QuerySyntaxError("unknown matcher operator")
        out.append(n.Matcher(op, str(m.name), str(m.value)))
    return tuple(out)


def _vector(vs: Any) -> n.VectorSelector:
    name = vs.name
    return n.VectorSelector(
        None if name is None else str(name),
        _matchers(vs),
        _duration_ms(vs.offset, "offset", signed=True),
        _at(vs),
    )


def _binmod(op: str, mod: Any) -> n.BinMod:
    if mod is None:
        return n.default_binmod(op)
    card = _CARDS.get(str(mod.card))
    if card is None:
        raise QuerySyntaxError("unknown vector matching cardinality")
    matching = mod.matching
    kind: Any = None
    labels: tuple[str, ...] = ()
    if matching is not None:
        kind = "on" if matching.type == pp.LabelModifierType.Include else "ignoring"
        labels = tuple(str(x) for x in matching.labels)
    fill = mod.fill_values
    lhs = None if fill is None or fill.lhs is None else number_text(float(fill.lhs))
    rhs = None if fill is None or fill.rhs is None else number_text(float(fill.rhs))
    group = mod.group_labels
    return n.BinMod(
        card,
        kind,
        labels,
        tuple(str(x) for x in group) if group else (),
        bool(mod.return_bool),
        lhs,
        rhs,
    )


def _check_info(args: tuple[n.Expr, ...]) -> None:
    # one-argument info() reads target_info with no tenant matcher; the data selector must be
    # a plain {…} label selector as Prometheus requires
    if len(args) != 2:
        raise QuerySyntaxError("info() needs an explicit {…} label selector as second argument")
    data = args[1]
    if not isinstance(data, n.VectorSelector) or data.name is not None:
        raise QuerySyntaxError("the second argument of info() must be a {…} label selector")
    if data.offset_ms is not None or data.at is not None:
        raise QuerySyntaxError("the second argument of info() takes no offset or @")


def convert(node: Any) -> n.Expr:
    """Convert a promql-parser node into the project's tree; unknown kinds are refused."""
    kind = type(node)
    if kind is pp.VectorSelector:
        return _vector(node)
    if kind is pp.MatrixSelector:
        rng = _duration_ms(node.range, "range")
        assert rng is not None
        return n.MatrixSelector(_vector(node.vector_selector), rng)
    if kind is pp.Call:
        name = str(node.func.name)
        args = tuple(convert(a) for a in node.args)
        if name == "info":
            _check_info(args)
        return n.Call(name, args)
    if kind is pp.BinaryExpr:
        op = str(node.op)
        return n.Binary(op, convert(node.lhs), convert(node.rhs), _binmod(op, node.modifier))
    if kind is pp.AggregateExpr:
        mod = node.modifier
        grouping: Any = None
        labels: tuple[str, ...] = ()
        if mod is not None:
            grouping = "by" if mod.type == pp.AggModifierType.By else "without"
            labels = tuple(str(x) for x in mod.labels)
        param = None if node.param is None else convert(node.param)
        return n.Aggregate(str(node.op), convert(node.expr), param, grouping, labels)
    if kind is pp.ParenExpr:
        return n.Paren(convert(node.expr))
    if kind is pp.UnaryExpr:
        return n.Unary(convert(node.expr))
    if kind is pp.SubqueryExpr:
        rng = _duration_ms(node.range, "subquery range")
        assert rng is not None
        return n.Subquery(
            convert(node.expr),
            rng,
            _duration_ms(node.step, "subquery step"),
            _duration_ms(node.offset, "offset", signed=True),
            _at(node),
        )
    if kind is pp.NumberLiteral:
        return n.Number(number_text(float(node.val)))
    if kind is pp.StringLiteral:
        return n.String(str(node.val))
    raise QuerySyntaxError(f"unsupported PromQL construct {kind.__name__}")


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_checked(query: str) -> n.Expr:
    try:
        raw = pp.parse(query)
    except BaseException as exc:  # the binding may panic
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise QuerySyntaxError(f"invalid PromQL: {msg[:200]}") from None
    try:
        return convert(raw)
    except PromQLError:
        raise
    except BaseException as exc:  # attribute reads may panic too
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise QuerySyntaxError("unsupported PromQL construct") from None


def parse(query: str, limits: Limits) -> n.Expr:
    """Guard `query` against `limits`, parse it and return the converted tree (cached by text)."""
    return _parse_checked(check(query, limits).text)


def _register_functions() -> None:
    # holt_winters is a Prometheus 2.x range function (renamed in 3.0) the binding lacks
    for name in ("holt_winters",):
        fn = pp.Function(
            name,
            [pp.ValueType.Matrix, pp.ValueType.Scalar, pp.ValueType.Scalar],
            pp.ValueType.Vector,
        )
        try:
            pp.register_extra_functions([fn])
        except ValueError:
            continue  # already built in or already registered


_register_functions()
