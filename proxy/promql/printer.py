"""The project's PromQL printer: exact text for a `nodes` tree, every string escaped.

It prints the tree as it stands (parentheses are explicit nodes), durations to the millisecond,
label names quoted only when not legacy-valid, and never calls the binding's str()/prettify().
"""

from __future__ import annotations

from proxy.promql import nodes as n
from proxy.promql.strings import is_legacy_metric, label_name, quote

_UNITS = (
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
)


def duration(ms: int) -> str:
    """Prometheus duration text for a positive number of milliseconds (`1m30s5ms`)."""
    if ms <= 0:
        raise ValueError("durations must be positive")
    parts = []
    for unit, size in _UNITS:
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _offset(ms: int) -> str:
    return " offset -" + duration(-ms) if ms < 0 else " offset " + duration(ms)


def _at(at: n.At) -> str:
    if at.kind == "start":
        return " @ start()"
    if at.kind == "end":
        return " @ end()"
    seconds, millis = divmod(at.ms, 1000)
    return f" @ {seconds}.{millis:03d}"


def _modifiers(offset_ms: int | None, at: n.At | None) -> str:
    text = ""
    if at is not None:
        text += _at(at)
    if offset_ms is not None:
        text += _offset(offset_ms)
    return text


def matcher(m: n.Matcher) -> str:
    """`name op "value"` with the name quoted if needed and the value escaped."""
    return f"{label_name(m.name)}{m.op}{quote(m.value)}"


def _selector_body(vs: n.VectorSelector) -> str:
    name = vs.name
    matchers = list(vs.matchers)
    if name is not None and not is_legacy_metric(name):
        # not writable bare: fall back to the Prometheus 3 quoted form inside the braces
        head = quote(name)
        inner = ",".join([head, *(matcher(m) for m in matchers)])
        return "{" + inner + "}"
    text = name or ""
    if matchers or not name:
        text += "{" + ",".join(matcher(m) for m in matchers) + "}"
    return text


def _labels(labels: tuple[str, ...]) -> str:
    return "(" + ", ".join(label_name(x) for x in labels) + ")"


def _binmod(op: str, mod: n.BinMod) -> str:
    text = ""
    if mod.return_bool:
        text += " bool"
    if mod.matching is not None:
        text += f" {mod.matching}{_labels(mod.labels)}"
    if mod.card == "many-to-one":
        text += f" group_left{_labels(mod.group_labels)}"
    elif mod.card == "one-to-many":
        text += f" group_right{_labels(mod.group_labels)}"
    if mod.fill_lhs is not None and mod.fill_lhs == mod.fill_rhs:
        text += f" fill({mod.fill_lhs})"
    else:
        if mod.fill_lhs is not None:
            text += f" fill_left({mod.fill_lhs})"
        if mod.fill_rhs is not None:
            text += f" fill_right({mod.fill_rhs})"
    return text


def to_text(e: n.Expr) -> str:
    """PromQL text of `e` that promql-parser parses back into an equal tree."""
    parts: list[str] = []
    _emit(e, parts)
    return "".join(parts)


def _emit(e: n.Expr, out: list[str]) -> None:
    if isinstance(e, n.VectorSelector):
        out.append(_selector_body(e))
        out.append(_modifiers(e.offset_ms, e.at))
    elif isinstance(e, n.MatrixSelector):
        out.append(_selector_body(e.vs))
        out.append(f"[{duration(e.range_ms)}]")
        out.append(_modifiers(e.vs.offset_ms, e.vs.at))
    elif isinstance(e, n.Call):
        out.append(e.func + "(")
        for i, arg in enumerate(e.args):
            if i:
                out.append(", ")
            _emit(arg, out)
        out.append(")")
    elif isinstance(e, n.Binary):
        _emit(e.lhs, out)
        out.append(f" {e.op}{_binmod(e.op, e.mod)} ")
        _emit(e.rhs, out)
    elif isinstance(e, n.Aggregate):
        out.append(e.op)
        if e.grouping is not None:
            out.append(f" {e.grouping} {_labels(e.labels)}")
        out.append(" (")
        if e.param is not None:
            _emit(e.param, out)
            out.append(", ")
        _emit(e.expr, out)
        out.append(")")
    elif isinstance(e, n.Paren):
        out.append("(")
        _emit(e.expr, out)
        out.append(")")
    elif isinstance(e, n.Unary):
        out.append("-")
        _emit(e.expr, out)
    elif isinstance(e, n.Subquery):
        _emit(e.expr, out)
        step = "" if e.step_ms is None else duration(e.step_ms)
        out.append(f"[{duration(e.range_ms)}:{step}]")
        out.append(_modifiers(e.offset_ms, e.at))
    elif isinstance(e, n.Number):
        out.append(e.text)
    elif isinstance(e, n.String):
        out.append(quote(e.value))
    else:  # pragma: no cover - exhaustive over nodes.Expr
        raise TypeError(f"unknown node {type(e).__name__}")
