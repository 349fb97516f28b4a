"""Narrow mode answers what a caller may see (docs/authorization.md): absent shape, lifts, fan-out plan,
warnings for what a query named but the caller lacks, hints naming the metric's project label."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.promql import (
    AccessDenied,
    Holdings,
    LabelModel,
    Limits,
    NarrowingImpossible,
    QuerySyntaxError,
    VerificationFailed,
    analyse_query,
    analyse_selectors,
    enforce_query,
    plan_query,
    plan_selectors,
)
from proxy.promql import nodes as n
from proxy.promql.enforce import RANGE_QUERY_REFUSAL
from proxy.promql.policy import Held
from proxy.promql.rewrite import unwrap
from proxy.promql.verify import verify_query

MODEL = LabelModel()
TRUST = LabelModel(project_label_metrics={"exported_namespace": "DCGM_.*"})
LIMITS = Limits()
ALICE = Holdings(projects={"prod": frozenset({"team-a"})})
RESEARCHER = Holdings(projects={"prod": frozenset({"team-a"}), "test": frozenset({"team-a"})})
CAROL = Holdings(clusters=frozenset({"prod"}), projects={"test": frozenset({"team-b"})})
BOB = Holdings(clusters=frozenset({"test"}))
HUB = Holdings(hub_wide=True)


def run(query: str, holdings: Holdings, model: LabelModel = MODEL) -> str:
    """Analyse and enforce one query in narrow mode (single text)."""
    return enforce_query(analyse_query(query, LIMITS, model), holdings, "narrow")


def test_absent_of_a_narrowed_selector_becomes_and_on_of_absents() -> None:
    """absent(m) for a project holder: every branch absent, regex spelling so no label is invented."""
    assert run("absent(m)", ALICE) == (
        '(absent(m{cluster=~"prod",namespace=~"team-a"}) and on() '
        'absent(m{cluster=~"prod",exported_namespace=~"team-a"}))'
    )


def test_absent_over_time_and_offset_keep_every_branch_shape() -> None:
    """absent_over_time(m[5m] offset 1m) is lifted the same way, range and offset kept."""
    assert run("absent_over_time(m[5m] offset 1m)", ALICE) == (
        '(absent_over_time(m{cluster=~"prod",namespace=~"team-a"}[5m] offset 1m) and on() '
        'absent_over_time(m{cluster=~"prod",exported_namespace=~"team-a"}[5m] offset 1m))'
    )


def test_absent_keeps_the_query_equalities_as_output_labels() -> None:
    """The query's own `cluster="prod"` stays an equality (copied), the added ones are regexes."""
    out = run('absent(m{cluster="prod",job="x"})', ALICE)
    assert out.count('cluster="prod"') == 2 and 'namespace=~"team-a"' in out


def test_absent_over_an_expression_carries_the_union_inside() -> None:
    """absent(sum(m)) needs no lift: the union goes into the instant-vector position."""
    assert run("absent(sum(m))", ALICE) == (
        'absent(sum ((m{cluster="prod",namespace="team-a"} or '
        'm{cluster="prod",exported_namespace="team-a"})))'
    )


def test_timestamp_of_a_selector_is_lifted_not_unioned() -> None:
    """timestamp(m) would answer evaluation times over a union: lifted per branch instead."""
    assert run("timestamp((m))", ALICE) == (
        '(timestamp((m{cluster="prod",namespace="team-a"})) or '
        'timestamp((m{cluster="prod",exported_namespace="team-a"})))'
    )


def test_parenthesised_range_argument_is_lifted() -> None:
    """rate((m[5m])) is lifted like rate(m[5m])."""
    assert run("rate((m[5m]))", ALICE).startswith('(rate((m{cluster="prod",namespace="team-a"}[5m])) or')


@pytest.mark.parametrize(
    "bad",
    [
        'absent((m{cluster="prod",namespace="team-a"} or m{cluster="prod",exported_namespace="team-a"}))',
        'timestamp((m{cluster="prod",namespace="team-a"} or m{cluster="prod",exported_namespace="team-a"}))',
        '(absent(m{cluster=~"prod",namespace=~"team-a"}) and on() absent(m{cluster=~"prod"}))',
        '(absent(m{cluster=~"prod",namespace=~"team-a"}) and on(x) '
        'absent(m{cluster=~"prod",namespace=~"team-a"}))',
        '(absent(m{cluster=~"prod",namespace=~"team-a"}) or absent(m{cluster=~"prod",namespace=~"team-b"}))',
        '(absent(m{cluster=~"prod",namespace=~"team-a"}) and on() '
        'absent(n{cluster=~"prod",namespace=~"team-a"}))',
    ],
)
def test_verifier_refuses_wrong_absent_and_timestamp_shapes(bad: str) -> None:
    """Unions at absent()/timestamp()'s direct argument, or malformed and-on shapes, never verify."""
    original = "timestamp((m))" if bad.startswith("timestamp") else "absent(m)"
    tree = analyse_query(original, LIMITS, MODEL).trees[0]
    with pytest.raises(VerificationFailed):
        verify_query(tree, bad, Held.of(ALICE), MODEL, Limits(max_bytes=1 << 16))


@pytest.mark.parametrize(
    "query",
    ["m[5m]", "(m[5m])", "((m[5m] offset 1m))", "m[5m] @ 1700000000", 'm{cluster="prod"}[5m] @ end()'],
)
def test_top_level_range_selector_fans_out_on_query(query: str) -> None:
    """On `query` a narrowed range selector becomes one verified text per branch."""
    forward = plan_query(analyse_query(query, LIMITS, MODEL), ALICE, "narrow", "query")
    assert forward.fan_out and len(forward.texts) == 2
    assert 'namespace="team-a"' in forward.texts[0] and 'exported_namespace="team-a"' in forward.texts[1]
    for text in forward.texts:
        assert text.count("[5m]") == 1 and " or " not in text


def test_top_level_range_selector_fans_out_on_query_exemplars() -> None:
    """query_exemplars reads the exemplars of the selector's series: fanned out the same way."""
    forward = plan_query(analyse_query("m[5m]", LIMITS, MODEL), ALICE, "narrow", "query_exemplars")
    assert forward.fan_out and len(forward.texts) == 2


def test_range_selector_for_whole_cluster_or_hub_holders_needs_no_fan_out() -> None:
    """One branch (clusters held whole, hub-wide) is a single forwarded text."""
    for holdings in (BOB, HUB):
        forward = plan_query(analyse_query("m[5m]", LIMITS, MODEL), holdings, "narrow", "query")
        assert not forward.fan_out and len(forward.texts) == 1


def test_range_selector_on_query_range_is_refused_as_prometheus_does() -> None:
    """query_range refuses matrices anyway: the proxy answers Prometheus' own message."""
    with pytest.raises(QuerySyntaxError, match="range vector"):
        plan_query(analyse_query("m[5m]", LIMITS, MODEL), ALICE, "narrow", "query_range")
    assert "range query" in RANGE_QUERY_REFUSAL


def test_deny_mode_never_fans_out() -> None:
    """Deny mode is unchanged: an unscoped range selector is 403."""
    with pytest.raises(AccessDenied):
        plan_query(analyse_query("m[5m]", LIMITS, MODEL), ALICE, "deny", "query")


_SELECTOR = st.sampled_from(
    ["m", 'm{job="x"}', 'DCGM_X{exported_namespace=~"team-a|team-b"}', 'm{cluster="prod"}']
)


@st.composite
def _queries(draw: st.DrawFn) -> str:
    sel = draw(_SELECTOR)
    rng = f"{sel}[5m]" + draw(st.sampled_from(["", " offset 1m", " @ 1700000000"]))
    shapes = [
        sel,
        rng,
        f"({rng})",
        f"(({rng}))",
        f"rate({rng})",
        f"sum(rate({rng}))",
        f"count({sel})",
        f"topk(2, {sel})",
        f"scalar(sum({sel}))",
        f"{sel} * 2",
        f"({sel}) + ({sel})",
        f"{sel}[10m:1m]",
        f"max_over_time({sel}[10m:1m])",
        f"absent({sel})",
        f"absent_over_time({rng})",
        f"timestamp({sel})",
        f"sum by (cluster) ({sel})",
        f"count_over_time({rng})",
        f"last_over_time({rng})",
    ]
    return draw(st.sampled_from(shapes))


@settings(max_examples=200, deadline=None)
@given(query=_queries(), who=st.sampled_from([ALICE, RESEARCHER, CAROL, BOB, HUB]))
def test_fan_out_is_taken_for_bare_range_selectors_only(query: str, who: Holdings) -> None:
    """Only a (parenthesised) top-level range selector ever yields more than one upstream query."""
    analysis = analyse_query(query, LIMITS, MODEL)
    try:
        forward = plan_query(analysis, who, "narrow", "query")
    except AccessDenied:
        return  # the query named only what this caller lacks
    core, _ = unwrap(analysis.trees[0])
    if forward.fan_out:
        assert isinstance(core, n.MatrixSelector) and len(forward.texts) > 1
    else:
        assert len(forward.texts) == 1


def test_named_project_dropped_is_a_warning() -> None:
    """`exported_namespace=~"team-a|team-b"` for a team-a holder says team-b was left out."""
    q = 'DCGM_X{exported_namespace=~"team-a|team-b"}'
    forward = plan_query(analyse_query(q, LIMITS, MODEL), ALICE, "narrow", "query")
    assert forward.warnings == ("team-b on prod is not among your grants; results cover team-a on prod",)


def test_named_cluster_dropped_is_a_warning() -> None:
    """A named cluster the caller lacks (next to one they hold) is named in the warning."""
    q = 'sum(m{cluster=~"prod|test"})'
    forward = plan_query(analyse_query(q, LIMITS, MODEL), CAROL, "narrow", "query_range")
    assert forward.warnings == (
        "the other namespaces of test are not among your grants; "
        "results cover cluster prod and team-b on test",
    )
    forward = plan_query(analyse_query(q, LIMITS, MODEL), ALICE, "narrow", "query")
    assert forward.warnings == ("cluster test; the other namespaces of prod are not among your grants; "
                                "results cover team-a on prod",)  # fmt: skip


@pytest.mark.parametrize(
    ("query", "who"),
    [
        ("m", ALICE),
        ("sum(rate(m[5m]))", RESEARCHER),
        ("m[5m]", ALICE),
        ('m{namespace="team-a"}', ALICE),
        ('m{cluster="prod",namespace="team-a"}', ALICE),
        ('m{cluster=~"prod|test"}', HUB),
        ('m{namespace=~"team-a|team-b"}', BOB),
    ],
)
def test_no_warning_when_nothing_named_was_dropped(query: str, who: Holdings) -> None:
    """Unscoped queries narrowed to holdings, and fully granted ones, carry no warning."""
    assert plan_query(analyse_query(query, LIMITS, MODEL), who, "narrow", "query").warnings == ()


def test_match_selectors_carry_warnings_both_ways() -> None:
    """match[] lists warn when a named project is dropped, and not for injected scope."""
    named = plan_selectors(
        analyse_selectors(['{namespace=~"team-a|team-z"}'], LIMITS, MODEL), ALICE, "narrow"
    )
    assert named.warnings and "team-z on prod" in named.warnings[0]
    assert (
        plan_selectors(analyse_selectors(['{__name__=~".+"}'], LIMITS, MODEL), ALICE, "narrow").warnings == ()
    )


def test_warnings_name_only_what_the_query_named() -> None:
    """A warning never lists another tenant's names the query did not write."""
    forward = plan_query(
        analyse_query('m{namespace=~"team-a|team-q"}', LIMITS, MODEL), CAROL, "narrow", "query"
    )
    (text,) = forward.warnings
    assert "team-q on test" in text and "team-a on test" in text
    assert "team-c" not in text and "nerc" not in text


def test_hint_names_the_trusted_project_label_for_the_metric() -> None:
    """With exported_namespace trusted for DCGM_*, hints for DCGM series name exported_namespace."""
    with pytest.raises(NarrowingImpossible) as info:
        enforce_query(analyse_query("DCGM_FI_DEV_GPU_UTIL[5m]", LIMITS, TRUST), ALICE, "narrow")
    assert 'exported_namespace="<namespace>"' in str(info.value)
    assert 'and namespace="<namespace>"' not in str(info.value)
    with pytest.raises(AccessDenied) as denied:
        enforce_query(analyse_query("DCGM_FI_DEV_GPU_UTIL", LIMITS, TRUST), ALICE, "deny")
    assert 'exported_namespace="<namespace>"' in str(denied.value)
    with pytest.raises(NarrowingImpossible) as other:
        enforce_query(analyse_query("kube_pod_info[5m]", LIMITS, TRUST), CAROL, "narrow")
    assert 'and namespace="<namespace>" if' in str(other.value)


def test_rewrite_bytes_bound_is_named() -> None:
    """Output over max_rewrite_bytes is a 400 naming PROXY_MAX_REWRITE_BYTES."""
    small = Limits(max_rewrite_bytes=64)
    with pytest.raises(NarrowingImpossible, match="PROXY_MAX_REWRITE_BYTES"):
        enforce_query(analyse_query("sum(m)", small, MODEL), RESEARCHER, "narrow")


def test_branch_bound_is_named() -> None:
    """More branches than the proxy allows is a 400 naming the bound."""
    many = Holdings(projects={f"c{i}": frozenset({f"p{i}"}) for i in range(40)})
    with pytest.raises(NarrowingImpossible, match="bound is 32"):
        enforce_query(analyse_query("m", LIMITS, MODEL), many, "narrow")
