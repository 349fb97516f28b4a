"""enforce_query / enforce_selectors: granted matchers, narrowing shapes, trust limits."""

from __future__ import annotations

import pytest

from proxy.promql import (
    AccessDenied,
    Holdings,
    LabelModel,
    Limits,
    NarrowingImpossible,
    analyse_query,
    analyse_selectors,
    enforce_query,
    enforce_selectors,
)

MODEL = LabelModel()
LIMITS = Limits()


def run(query: str, holdings: Holdings, mode: str = "narrow", model: LabelModel = MODEL) -> str:
    """Analyse and enforce one query."""
    assert mode in ("narrow", "deny")
    return enforce_query(analyse_query(query, LIMITS, model), holdings, mode)  # type: ignore[arg-type]


def test_identical_equality_matchers_are_not_added_twice() -> None:
    """absent(m{cluster="c1",namespace="a"}) keeps its output labels: nothing is added."""
    h = Holdings(projects={"c1": frozenset({"a"})})
    q = 'absent(m{cluster="c1",namespace="a"})'
    assert run(q, h, "deny") == q


def test_clusters_held_whole_are_one_added_regex() -> None:
    """Holding c1 and c2 whole narrows to cluster=~"c1|c2", anywhere (even under absent)."""
    h = Holdings(clusters=frozenset({"c1", "c2"}))
    out = run("absent_over_time(up[5m] offset 1m)", h)
    assert out == 'absent_over_time(up{cluster=~"c1|c2"}[5m] offset 1m)'


def test_union_branches_share_identical_project_sets_and_are_balanced() -> None:
    """Clusters with identical project sets share a branch; four branches nest pairwise."""
    h = Holdings(projects={"c1": frozenset({"a"}), "c2": frozenset({"a"}), "c3": frozenset({"b"})})
    out = run("rate(m[5m])", h)
    assert out == (
        '((rate(m{cluster=~"c1|c2",namespace="a"}[5m]) or rate(m{cluster="c3",namespace="b"}[5m]))'
        ' or (rate(m{cluster=~"c1|c2",exported_namespace="a"}[5m]) or '
        'rate(m{cluster="c3",exported_namespace="b"}[5m])))'
    )


def test_trust_limit_restricts_secondary_label_to_trusted_metrics() -> None:
    """A secondary project label grants only for trusted metrics and then carries __name__."""
    model = LabelModel(project_label_metrics={"exported_namespace": "DCGM_.*"})
    h = Holdings(projects={"c1": frozenset({"a"})})
    with pytest.raises(AccessDenied):
        run('up{cluster="c1",exported_namespace="a"}', h, "deny", model)
    q = 'DCGM_FI_DEV_GPU_UTIL{cluster="c1",exported_namespace="a"}'
    assert run(q, h, "deny", model) == q
    out = run('sum({job="x"})', h, "narrow", model)
    assert 'exported_namespace="a",__name__=~"DCGM_.*"' in out
    assert run("sum(up)", h, "narrow", model) == 'sum (up{cluster="c1",namespace="a"})'


def test_match_lists_become_one_selector_per_branch() -> None:
    """A narrowed match[] selector is forwarded as one selector per branch."""
    h = Holdings(clusters=frozenset({"c1"}), projects={"c2": frozenset({"a"})})
    out = enforce_selectors(analyse_selectors(['{__name__!=""}'], LIMITS, MODEL), h, "narrow")
    assert out == [
        '{__name__!="",cluster="c1"}',
        '{__name__!="",cluster="c2",namespace="a"}',
        '{__name__!="",cluster="c2",exported_namespace="a"}',
    ]


def test_top_level_range_selector_without_fan_out_is_refused_with_guidance() -> None:
    """Outside `/api/v1/query` a narrowed top-level range selector is a 400 saying what to add."""
    h = Holdings(projects={"c1": frozenset({"a"})})
    with pytest.raises(NarrowingImpossible, match='cluster="<cluster>"'):
        run("m[5m]", h)


def test_holdings_with_unsafe_names_grant_nothing() -> None:
    """Names outside Kubernetes syntax in holdings are ignored (they name nothing)."""
    h = Holdings(clusters=frozenset({'c1"}'}))
    with pytest.raises(AccessDenied):
        run("up", h)
