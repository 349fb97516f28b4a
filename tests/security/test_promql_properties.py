"""Property tests: generated queries with hostile names and values are rewritten faithfully.

For every generated query the rewritten text must parse, every selector must carry the tenant
restriction, and — judged by promql-parser's own dump, not the project's converter — nothing
else may change. Narrowing to project holdings must forward only confined selectors.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from proxy.promql import (
    AccessDenied,
    Holdings,
    LabelModel,
    Limits,
    NarrowingImpossible,
    QueryLimitError,
    QuerySyntaxError,
    analyse_query,
    enforce_query,
)
from proxy.promql.parse import parse
from proxy.promql.policy import Held, granted_plan
from proxy.promql.regex import quote_literal
from proxy.promql.selectors import iter_selectors, reach_of
from proxy.promql.strings import is_legacy_label
from tests.unit.promql.corpus import binding_dump, equal_matcher_dump

MODEL = LabelModel()
LIMITS = Limits()
BIG = Limits(max_bytes=1 << 20, max_depth=400, max_operators=20_000, max_regex_cost=10**8)
TENANT = Holdings(clusters=frozenset({"c1"}))
PROJECTS = Holdings(clusters=frozenset({"c3"}), projects={"c1": frozenset({"team-a", "b"})})
TENANT_DUMP = equal_matcher_dump("cluster", "c1")

HOSTILE = ['"}', "\\", '\\"', "\n", ",", "a,b", "c1", "ü", "😀", "", " or ", '"} or x{a="', "}"]
values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(codec="utf-8"), max_size=8),
)
names = st.sampled_from(
    ["job", "instance", "namespace", "a_b", "weird.name", 'q"uote', "new\nline", "ünï", "x,y"]
)


def q(text: str) -> str:
    """A PromQL string literal (JSON escapes are valid Go escapes)."""
    return json.dumps(text, ensure_ascii=False)


def lname(name: str) -> str:
    """A label name, quoted when not legacy-valid (Prometheus 3 syntax)."""
    return name if is_legacy_label(name) else q(name)


@st.composite
def matcher(draw: st.DrawFn) -> str:
    """One matcher with a hostile name/value; regex values are RE2-quoted literals or patterns."""
    name = draw(names)
    op = draw(st.sampled_from(["=", "!=", "=~", "!~"]))
    if op in ("=~", "!~"):
        value = draw(st.one_of(values.map(quote_literal), st.sampled_from([".*", "a|b", "x.+"])))
    else:
        value = draw(values)
    return f"{lname(name)}{op}{q(value)}"


@st.composite
def selector(draw: st.DrawFn) -> str:
    """A vector selector, sometimes already scoped to c1, with optional offset and @."""
    metric = draw(st.sampled_from(["up", "http_requests_total", "DCGM_FI_DEV_GPU_UTIL"]))
    ms = draw(st.lists(matcher(), max_size=3))
    if draw(st.booleans()):
        ms.append('cluster="c1"')
    text = metric + "{" + ",".join(ms) + "}"
    text += draw(st.sampled_from(["", " offset 5m", " @ start()", " @ 1700000000.5", " offset -1m30s"]))
    return text


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binop = st.sampled_from(
        [
            " + ",
            " - ",
            " * ",
            " / ",
            " and ",
            " or ",
            " unless ",
            " > bool ",
            " + on(job) ",
            " * ignoring(instance) group_left(job) ",
            " / on() group_right() ",
            " - ignoring() ",
        ]
    )
    return st.one_of(
        st.tuples(inner, binop, inner).map("".join),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"-{e}"),
        inner.map(lambda e: f"abs({e})"),
        st.tuples(names.map(lname), inner).map(lambda t: f"sum by ({t[0]}) ({t[1]})"),
        inner.map(lambda e: f"max without (job) ({e})"),
        inner.map(lambda e: f"topk(3, {e})"),
        st.tuples(values, inner).map(lambda t: f"count_values({q(t[0])}, {t[1]})"),
        inner.map(lambda e: f"max_over_time(({e})[5m:1m])"),
        inner.map(lambda e: f"avg_over_time(({e})[1h:])"),
        st.tuples(inner, values).map(lambda t: f'label_replace({t[0]}, "dst", {q(t[1])}, "job", "(.*)")'),
    )


leaf = st.one_of(
    selector(),
    selector().map(lambda s: f"rate({s.split(' ')[0]}[5m])"),
    selector().map(lambda s: f"quantile_over_time(0.9, {s.split(' ')[0]}[10m] offset 1m)"),
)
queries = st.recursive(leaf, _grow, max_leaves=6)


def _analyse(query: str):  # type: ignore[no-untyped-def]
    try:
        return analyse_query(query, LIMITS, MODEL)
    except (QuerySyntaxError, QueryLimitError):
        assume(False)  # a type error of the generated grammar: not this property's subject
        raise


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(queries)
def test_tenant_rewrite_parses_scopes_every_selector_and_changes_nothing_else(query: str) -> None:
    """Rewritten text parses, each selector carries cluster="c1", and nothing else changed."""
    out = enforce_query(_analyse(query), TENANT, "narrow")
    tree = parse(out, BIG)
    for vs in iter_selectors(tree):
        assert any(m.op == "=" and m.name == "cluster" and m.value == "c1" for m in vs.matchers)
    assert binding_dump(out, (TENANT_DUMP,)) == binding_dump(query, (TENANT_DUMP,))


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(queries)
def test_narrowing_forwards_only_confined_selectors(query: str) -> None:
    """Narrowed to project-level holdings, every forwarded selector is confined (or refused)."""
    try:
        out = enforce_query(_analyse(query), PROJECTS, "narrow")
    except (NarrowingImpossible, AccessDenied):
        return  # refusing is always safe; forwarding must be confined
    held = Held.of(PROJECTS)
    for vs in iter_selectors(parse(out, BIG)):
        assert granted_plan(reach_of(vs, MODEL), held, MODEL) is not None, out
