"""The safety net: re-parse forwarded text and prove it is the original plus grants.

See docs/authorization.md#rewriting-and-the-safety-net.

The check is independent of how the rewrite was built: the output is parsed again, walked
alongside the original tree, may differ only by appended matchers of the allowed shapes (or a
union of such copies where the rewrite may place one, or `absent(A) and on() absent(B) …` for
absent/absent_over_time), and every output selector must be confined to the caller's holdings by
its own matchers. Anything else is VerificationFailed.
"""

from __future__ import annotations

from proxy.promql import nodes as n
from proxy.promql.errors import PromQLError, VerificationFailed
from proxy.promql.limits import Limits
from proxy.promql.parse import parse
from proxy.promql.policy import Held, granted_plan
from proxy.promql.regex import literal_alternation
from proxy.promql.rewrite import (
    AND_ON,
    LABEL_COPYING,
    LIFTABLE,
    NO_UNION,
    SELECTOR_SENSITIVE,
    copied_selector,
    unwrap,
)
from proxy.promql.scope import LabelModel
from proxy.promql.selectors import NAME_LABEL, reach_of


def _fail(why: str) -> VerificationFailed:
    return VerificationFailed(f"rewritten query failed verification: {why}")


def reparse(text: str, limits: Limits) -> n.Expr:
    """Parse forwarded text under (scaled) guard limits; any refusal is a verification failure."""
    try:
        return parse(text, limits)
    except PromQLError as exc:
        raise _fail(f"output does not re-parse ({exc})") from None


class Verifier:
    """Structural and confinement checks against one caller's holdings."""

    def __init__(self, held: Held, model: LabelModel) -> None:
        self.held = held
        self.model = model
        self.clusters = held.cluster_names()
        self.projects = held.project_names()
        self.trust_regexes = frozenset(model.project_label_metrics.values())
        # ids of output selectors whose equality matchers absent() copies into its output
        self.copied: set[int] = set()
        # ids of original selectors that are the direct argument of absent()/timestamp():
        # a union there changes the answer, so only the lifted shapes may replace them
        self.direct: set[int] = set()

    def _values(self, m: n.Matcher) -> frozenset[str]:
        values = frozenset((m.value,)) if m.op == "=" else literal_alternation(m.value)
        if m.op not in ("=", "=~") or not values or "" in values:
            raise _fail(f"added matcher {m.name}{m.op} is not a set of granted names")
        return values

    def _check_added(self, added: tuple[n.Matcher, ...], copied: bool) -> None:
        for m in added:
            if copied and m.op == "=":
                raise _fail("an equality matcher was added where absent() copies it as a label")
            if m.name == self.model.cluster_label:
                if not self.held.hub_wide and not self._values(m) <= self.clusters:
                    raise _fail("added cluster matcher names a cluster not held")
            elif m.name in self.model.project_labels:
                if not self.held.hub_wide and not self._values(m) <= self.projects:
                    raise _fail("added project matcher names a project not held")
            elif m.name == NAME_LABEL:
                if m.op != "=~" or m.value not in self.trust_regexes:
                    raise _fail("added metric-name matcher is not a configured trust limit")
            else:
                raise _fail(f"matcher on {m.name!r} was added")

    def selector(self, orig: n.VectorSelector, out: n.VectorSelector) -> None:
        """`out` is `orig` plus well-formed added matchers, and confined to the holdings."""
        k = len(orig.matchers)
        if (
            out.name != orig.name
            or out.offset_ms != orig.offset_ms
            or out.at != orig.at
            or out.matchers[:k] != orig.matchers
        ):
            raise _fail("a selector changed")
        self._check_added(out.matchers[k:], id(out) in self.copied)
        if granted_plan(reach_of(out, self.model), self.held, self.model) is None:
            raise _fail("a selector is not confined to the caller's holdings")

    def _is_union(self, e: n.Expr) -> bool:
        return (
            isinstance(e, n.Paren)
            and isinstance(e.expr, n.Binary)
            and e.expr.op == "or"
            and e.expr.mod == n.default_binmod("or")
        )

    def _leaves(self, e: n.Expr, out: list[n.Expr]) -> None:
        if self._is_union(e):
            assert isinstance(e, n.Paren) and isinstance(e.expr, n.Binary)
            self._leaves(e.expr.lhs, out)
            self._leaves(e.expr.rhs, out)
        else:
            out.append(e)

    def _is_and_on(self, e: n.Expr) -> bool:
        return (
            isinstance(e, n.Paren)
            and isinstance(e.expr, n.Binary)
            and e.expr.op == "and"
            and e.expr.mod == AND_ON
        )

    def _and_on_leaves(self, e: n.Expr, out: list[n.Expr]) -> None:
        if self._is_and_on(e):
            assert isinstance(e, n.Paren) and isinstance(e.expr, n.Binary)
            self._and_on_leaves(e.expr.lhs, out)
            self._and_on_leaves(e.expr.rhs, out)
        else:
            out.append(e)

    def _union_allowed(self, orig: n.Expr) -> bool:
        if isinstance(orig, n.VectorSelector):
            return id(orig) not in self.direct
        if not isinstance(orig, n.Call):
            return False
        cores = [unwrap(a)[0] for a in orig.args]
        if orig.func in LIFTABLE and any(isinstance(c, n.MatrixSelector) for c in cores):
            return True
        return orig.func == "timestamp" and any(isinstance(c, n.VectorSelector) for c in cores)

    def expr(self, orig: n.Expr, out: n.Expr, union_ok: bool) -> None:
        """Walk `orig` and `out` together; raise VerificationFailed on any other difference."""
        if union_ok and self._union_allowed(orig) and self._is_union(out):
            leaves: list[n.Expr] = []
            self._leaves(out, leaves)
            for leaf in leaves:
                self._same(orig, leaf, union_ok)
            return
        if isinstance(orig, n.Call) and orig.func in LABEL_COPYING and self._is_and_on(out):
            # absent(A) and on() absent(B) …: absent over the union is absent over every branch
            leaves = []
            self._and_on_leaves(out, leaves)
            for leaf in leaves:
                self._same(orig, leaf, union_ok)
            return
        self._same(orig, out, union_ok)

    def _same(self, orig: n.Expr, out: n.Expr, union_ok: bool) -> None:
        if type(orig) is not type(out):
            raise _fail(f"{type(orig).__name__} became {type(out).__name__}")
        if isinstance(orig, n.VectorSelector):
            assert isinstance(out, n.VectorSelector)
            self.selector(orig, out)
        elif isinstance(orig, n.MatrixSelector):
            assert isinstance(out, n.MatrixSelector)
            if orig.range_ms != out.range_ms:
                raise _fail("a range changed")
            self.selector(orig.vs, out.vs)
        elif isinstance(orig, n.Call):
            assert isinstance(out, n.Call)
            if orig.func != out.func or len(orig.args) != len(out.args):
                raise _fail("a function call changed")
            args_ok = union_ok and orig.func not in NO_UNION
            copied = copied_selector(out)
            if copied is not None:
                self.copied.add(id(copied))
            if orig.func in SELECTOR_SENSITIVE:
                for a in orig.args:
                    core = unwrap(a)[0]
                    if isinstance(core, n.VectorSelector):
                        self.direct.add(id(core))
            for a, b in zip(orig.args, out.args, strict=True):
                self.expr(a, b, args_ok)
        elif isinstance(orig, n.Binary):
            assert isinstance(out, n.Binary)
            if orig.op != out.op or orig.mod != out.mod:
                raise _fail("a binary operation changed")
            self.expr(orig.lhs, out.lhs, union_ok)
            self.expr(orig.rhs, out.rhs, union_ok)
        elif isinstance(orig, n.Aggregate):
            assert isinstance(out, n.Aggregate)
            if (orig.op, orig.grouping, orig.labels) != (out.op, out.grouping, out.labels):
                raise _fail("an aggregation changed")
            if (orig.param is None) != (out.param is None):
                raise _fail("an aggregation parameter changed")
            if orig.param is not None and out.param is not None:
                self.expr(orig.param, out.param, union_ok)
            self.expr(orig.expr, out.expr, union_ok)
        elif isinstance(orig, n.Subquery):
            assert isinstance(out, n.Subquery)
            if (orig.range_ms, orig.step_ms, orig.offset_ms, orig.at) != (
                out.range_ms,
                out.step_ms,
                out.offset_ms,
                out.at,
            ):
                raise _fail("a subquery changed")
            self.expr(orig.expr, out.expr, union_ok)
        elif isinstance(orig, n.Paren | n.Unary):
            assert isinstance(out, n.Paren | n.Unary)
            self.expr(orig.expr, out.expr, union_ok)
        elif isinstance(orig, n.Number | n.String):
            if orig != out:
                raise _fail("a literal changed")
        else:
            raise _fail(f"unknown node kind {type(orig).__name__}")


def verify_query(original: n.Expr, text: str, held: Held, model: LabelModel, limits: Limits) -> None:
    """Re-parse `text` and prove it is `original` with only granted restrictions added."""
    Verifier(held, model).expr(original, reparse(text, limits), union_ok=True)


def verify_selector(
    original: n.VectorSelector, text: str, held: Held, model: LabelModel, limits: Limits
) -> None:
    """Re-parse one forwarded match[] selector and prove it is `original` plus grants."""
    out = reparse(text, limits)
    if not isinstance(out, n.VectorSelector):
        raise _fail("a match[] selector became another expression")
    Verifier(held, model).selector(original, out)
