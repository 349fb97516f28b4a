"""Apply per-selector plans to a tree: added matchers, and balanced unions where PromQL allows.

Unions go only where a faithful form exists: instant-vector positions, per-series range functions
lifted whole (`rate(s[5m])` -> `(rate(s1[5m]) or rate(s2[5m]))`), `timestamp(s)` lifted the same
way (over an expression it would answer the evaluation time instead of the sample's), and
`absent(s)` / `absent_over_time(s[d])` as `(absent(s1) and on() absent(s2))` — absent over the
union is absent over every branch (docs/authorization.md). A top-level range selector is left to the
caller (`enforce.Forward.fan_out`); anything else with more than one branch is NarrowingImpossible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.promql import nodes as n
from proxy.promql.errors import NarrowingImpossible
from proxy.promql.policy import Branch, Plan, guidance
from proxy.promql.printer import matcher as matcher_text
from proxy.promql.printer import to_text
from proxy.promql.regex import quote_literal, regex_cost
from proxy.promql.scope import LabelModel

# Range functions computed per series independently, so f(a ∪ b) = f(a) ∪ f(b) for disjoint
# series sets; absent_over_time is deliberately missing (its result depends on the whole set).
LIFTABLE = frozenset(
    {
        "rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear",
        "resets", "changes", "holt_winters", "double_exponential_smoothing",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
        "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time",
        "last_over_time", "present_over_time", "mad_over_time",
        "ts_of_min_over_time", "ts_of_max_over_time", "ts_of_last_over_time",
        "first_over_time", "ts_of_first_over_time",
    }
)  # fmt: skip
# Functions whose arguments may never be replaced by a union.
NO_UNION = frozenset({"info"})
# Functions whose output copies the equality matchers of their argument selector as labels.
LABEL_COPYING = frozenset({"absent", "absent_over_time"})
# Functions that treat a direct selector argument differently from any other expression:
# lifted per branch, never given a union as that argument.
SELECTOR_SENSITIVE = LABEL_COPYING | {"timestamp"}
MAX_UNION_LEAVES = 128
# `and on()`: the left sample survives iff the right side has any sample at all.
AND_ON = n.BinMod("many-to-many", "on", (), (), False, None, None)


@dataclass(slots=True)
class Growth:
    """How much a rewrite grew the query, to scale the verifier's guard limits."""

    leaves: int = 0  # selector copies created by unions
    union_depth: int = 0  # extra nesting an output path can gain
    added_bytes: int = 0
    added_regex_cost: int = 0


def account(growth: Growth, branch: Branch) -> None:
    """Add the bytes and regex cost of `branch`'s matchers to `growth`."""
    for m in branch:
        growth.added_bytes += len(matcher_text(m).encode()) + 1
        if m.op == "=~":
            growth.added_regex_cost += regex_cost(m.value)


def copied_selector(call: n.Call) -> n.VectorSelector | None:
    """The selector whose equality matchers `call`'s output copies as labels (absent), if any.

    Prometheus copies them from the direct argument (parentheses unwrapped), a vector selector
    or, for absent_over_time, the vector selector of a matrix selector.
    """
    if call.func not in LABEL_COPYING or not call.args:
        return None
    arg = call.args[0]
    while isinstance(arg, n.Paren):
        arg = arg.expr
    if isinstance(arg, n.MatrixSelector):
        return arg.vs
    return arg if isinstance(arg, n.VectorSelector) else None


def not_copied(branch: Branch) -> Branch:
    """`branch` with equality matchers respelled `=~"<literal>"`, which absent() does not copy."""
    return tuple(n.Matcher("=~", m.name, quote_literal(m.value)) if m.op == "=" else m for m in branch)


def unwrap(e: n.Expr) -> tuple[n.Expr, int]:
    """`e` without its enclosing parentheses, and how many there were."""
    depth = 0
    while isinstance(e, n.Paren):
        e, depth = e.expr, depth + 1
    return e, depth


def rewrap(e: n.Expr, depth: int) -> n.Expr:
    """`e` inside `depth` parentheses."""
    for _ in range(depth):
        e = n.Paren(e)
    return e


def apply(vs: n.VectorSelector, branch: Branch) -> n.VectorSelector:
    """`vs` with `branch` appended to its matchers."""
    if not branch:
        return vs
    return n.VectorSelector(vs.name, vs.matchers + branch, vs.offset_ms, vs.at)


def balanced_union(items: Sequence[n.Expr]) -> n.Expr:
    """`(a or b)`, `((a or b) or (c or d))`, … built pairwise so depth grows by log2."""
    if len(items) == 1:
        return items[0]
    mid = (len(items) + 1) // 2
    left = balanced_union(items[:mid])
    right = balanced_union(items[mid:])
    return n.Paren(n.Binary("or", left, right, n.default_binmod("or")))


def balanced_and_on(items: Sequence[n.Expr]) -> n.Expr:
    """`(a and on() b)`, `((a and on() b) and on() (c and on() d))`, … built pairwise."""
    if len(items) == 1:
        return items[0]
    mid = (len(items) + 1) // 2
    left = balanced_and_on(items[:mid])
    right = balanced_and_on(items[mid:])
    return n.Paren(n.Binary("and", left, right, AND_ON))


class _Rewriter:
    def __init__(self, plans: Sequence[Plan], model: LabelModel) -> None:
        self.plans = plans
        self.index = 0
        self.model = model
        self.growth = Growth()
        # ids of selectors whose equality matchers a label-copying function outputs
        self.copied: set[int] = set()

    def _next(self, vs: n.VectorSelector) -> Plan:
        plan = self.plans[self.index]
        self.index += 1
        if id(vs) in self.copied:
            plan = tuple(not_copied(b) for b in plan)
        for branch in plan:
            account(self.growth, branch)
        return plan

    def _grow(self, count: int) -> None:
        self.growth.leaves += count
        self.growth.union_depth += math.ceil(math.log2(count)) + 1
        if self.growth.leaves > MAX_UNION_LEAVES:
            raise NarrowingImpossible(
                f"narrowing this query would need more than {MAX_UNION_LEAVES} copies of its "
                "selectors (the proxy's union size bound)"
            )

    def _union(self, variants: Sequence[n.Expr]) -> n.Expr:
        self._grow(len(variants))
        return balanced_union(variants)

    def _refuse(self, vs: n.VectorSelector, where: str) -> NarrowingImpossible:
        return NarrowingImpossible(f"cannot narrow {to_text(vs)} {where}; " + guidance(self.model, vs))

    def expr(self, e: n.Expr, union_ok: bool) -> n.Expr:
        if isinstance(e, n.VectorSelector):
            plan = self._next(e)
            variants = [apply(e, b) for b in plan]
            if len(variants) == 1:
                return variants[0]
            if not union_ok:
                raise self._refuse(e, "inside this function")
            return self._union(variants)
        if isinstance(e, n.MatrixSelector):
            plan = self._next(e.vs)
            if len(plan) != 1:
                raise self._refuse(e.vs, "in a range-vector position")
            return n.MatrixSelector(apply(e.vs, plan[0]), e.range_ms)
        if isinstance(e, n.Call):
            return self._call(e, union_ok)
        if isinstance(e, n.Binary):
            lhs = self.expr(e.lhs, union_ok)
            return n.Binary(e.op, lhs, self.expr(e.rhs, union_ok), e.mod)
        if isinstance(e, n.Aggregate):
            param = None if e.param is None else self.expr(e.param, union_ok)
            return n.Aggregate(e.op, self.expr(e.expr, union_ok), param, e.grouping, e.labels)
        if isinstance(e, n.Paren):
            return n.Paren(self.expr(e.expr, union_ok))
        if isinstance(e, n.Unary):
            return n.Unary(self.expr(e.expr, union_ok))
        if isinstance(e, n.Subquery):
            inner = self.expr(e.expr, union_ok)
            return n.Subquery(inner, e.range_ms, e.step_ms, e.offset_ms, e.at)
        return e  # Number, String: no selectors

    def _liftable_arg(self, func: str, arg: n.Expr) -> bool:
        core, _ = unwrap(arg)
        if isinstance(core, n.MatrixSelector):
            return True
        return isinstance(core, n.VectorSelector) and func in SELECTOR_SENSITIVE

    def _variants(self, arg: n.Expr) -> list[n.Expr]:
        """One copy of a (parenthesised) selector argument per branch of its plan."""
        core, depth = unwrap(arg)
        if isinstance(core, n.MatrixSelector):
            plan = self._next(core.vs)
            return [rewrap(n.MatrixSelector(apply(core.vs, b), core.range_ms), depth) for b in plan]
        assert isinstance(core, n.VectorSelector)
        return [rewrap(apply(core, b), depth) for b in self._next(core)]

    def _call(self, e: n.Call, union_ok: bool) -> n.Expr:
        args_ok = union_ok and e.func not in NO_UNION
        copied = copied_selector(e)
        if copied is not None:
            self.copied.add(id(copied))
        leaves_before = self.growth.leaves
        args: list[n.Expr] = []
        lifted: tuple[int, list[n.Expr]] | None = None
        for i, arg in enumerate(e.args):
            if not self._liftable_arg(e.func, arg):
                args.append(self.expr(arg, args_ok))
                continue
            variants = self._variants(arg)
            args.append(variants[0])
            if len(variants) > 1:
                absent = e.func in LABEL_COPYING
                liftable = e.func in LIFTABLE or e.func in SELECTOR_SENSITIVE
                if not liftable or not (union_ok or absent) or lifted is not None:
                    core, _ = unwrap(arg)
                    vs = core.vs if isinstance(core, n.MatrixSelector) else core
                    assert isinstance(vs, n.VectorSelector)
                    raise self._refuse(vs, f"inside {e.func}()")
                lifted = (i, variants)
        if lifted is None:
            return n.Call(e.func, tuple(args))
        index, variants = lifted
        # unions inside the other arguments are copied into every lifted branch
        self.growth.leaves += len(variants) * (self.growth.leaves - leaves_before)
        copies = [n.Call(e.func, (*args[:index], v, *args[index + 1 :])) for v in variants]
        if e.func in LABEL_COPYING:
            self._grow(len(copies))
            return balanced_and_on(copies)
        return self._union(copies)


def rewrite(tree: n.Expr, plans: Sequence[Plan], model: LabelModel) -> tuple[n.Expr, Growth]:
    """Apply `plans` (one per selector, in `iter_selectors` order) to `tree`."""
    rewriter = _Rewriter(plans, model)
    out = rewriter.expr(tree, union_ok=True)
    if rewriter.index != len(plans):
        raise AssertionError("selector plans and tree disagree")
    return out, rewriter.growth
