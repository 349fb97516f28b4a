"""Bypass table: known tricks against label-injecting proxies, with the expected decision per caller.

Decisions: "fwd" (forwarded, and every output selector is confined — checked by the verifier and
again here), "403" (AccessDenied), "400" (syntax/limit or narrowing impossible).
"""

from __future__ import annotations

import pytest

from proxy.promql import (
    AccessDenied,
    Holdings,
    LabelModel,
    Limits,
    NarrowingImpossible,
    PromQLError,
    QueryLimitError,
    QuerySyntaxError,
    analyse_query,
    enforce_query,
)
from proxy.promql.parse import parse
from proxy.promql.policy import Held, granted_plan
from proxy.promql.selectors import iter_selectors, reach_of

MODEL = LabelModel()
LIMITS = Limits()
HOLDERS = {
    "ns": Holdings(projects={"c1": frozenset({"team-a"})}),
    "cluster": Holdings(clusters=frozenset({"c1"})),
    "mixed": Holdings(clusters=frozenset({"c1"}), projects={"c2": frozenset({"team-a"})}),
    "hub": Holdings(hub_wide=True),
    "nothing": Holdings(),
}
# query, then expected decision for: ns, cluster, mixed, hub, nothing
TABLE: list[tuple[str, str, str, str, str, str]] = [
    ('up{cluster="c1",namespace="team-a"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c2",namespace="team-b"}', "403", "403", "403", "fwd", "403"),
    ('up{cluster="c1",namespace="team-b"}', "403", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c1",namespace="team-a\\"} or up{cluster=\\"c2"}', "403", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c1\\\\",namespace="team-a"}', "403", "403", "403", "fwd", "403"),
    ('up{cluster="c1\\n"}', "403", "403", "403", "fwd", "403"),
    ('up{"cluster"="c2"}', "403", "403", "fwd", "fwd", "403"),
    ('{"cluster"="c2","__name__"="up"}', "403", "403", "fwd", "fwd", "403"),
    ('{__name__="up",cluster="c2"}', "403", "403", "fwd", "fwd", "403"),
    ('up{cluster="c1"} or up{cluster="c2"}', "403", "403", "fwd", "fwd", "403"),
    ('up{cluster="c1"} unless up{cluster="c2"}', "403", "403", "fwd", "fwd", "403"),
    ('up{cluster="c1"} and on() up{cluster="c9"}', "403", "403", "403", "fwd", "403"),
    ('label_replace(up{cluster="c2"}, "cluster", "c1", "", "")', "403", "403", "fwd", "fwd", "403"),
    ('label_join(up{cluster="c9"}, "namespace", ",", "cluster")', "403", "403", "403", "fwd", "403"),
    ('label_replace(up, "cluster", "c1", "", "")', "fwd", "fwd", "fwd", "fwd", "403"),
    ("absent(up)", "fwd", "fwd", "fwd", "fwd", "403"),
    ('absent(up{cluster="c9"})', "403", "403", "403", "fwd", "403"),
    ("absent_over_time(up[5m])", "fwd", "fwd", "fwd", "fwd", "403"),
    ('count_values("cluster", up)', "fwd", "fwd", "fwd", "fwd", "403"),
    ('count_values("x", up{cluster="c9"})', "403", "403", "403", "fwd", "403"),
    ("info(up)", "400", "400", "400", "400", "400"),
    ('info(up{cluster="c1"}, {k8s_cluster_name=~".+"})', "400", "fwd", "400", "fwd", "403"),
    ('info(up{cluster="c1"}, {cluster="c1"})', "400", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c1" or cluster="c2"}', "400", "400", "400", "400", "400"),
    ('up{job="x" or cluster="c9"}', "400", "400", "400", "400", "400"),
    ('up{cluster=~"c1|.*"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster=~"(?i)C1"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster=~"c1|"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster=""}', "403", "403", "403", "fwd", "403"),
    ('up{cluster=~".+"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster!="c1"}', "403", "403", "fwd", "fwd", "403"),
    ('up{cluster!~"c1|c2"}', "403", "403", "403", "fwd", "403"),
    ('up{cluster=~"c\\\\d"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster=~"c1",namespace=~"team-a|team-b"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster=~"c1",namespace=~"team\\\\-a"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c1",namespace=~"(?i)TEAM-A"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c1",exported_namespace="team-a"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c1",namespace=""}', "fwd", "fwd", "fwd", "fwd", "403"),
    ("rate(up[5m])", "fwd", "fwd", "fwd", "fwd", "403"),
    ("up[5m]", "400", "fwd", "400", "fwd", "403"),
    ('up{cluster="c1"}[5m]', "400", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c1",namespace="team-a"}[5m]', "fwd", "fwd", "fwd", "fwd", "403"),
    ("max_over_time(up[1h:5m])", "fwd", "fwd", "fwd", "fwd", "403"),
    ("sum by (cluster) (rate(up[5m] offset 1h @ end()))", "fwd", "fwd", "fwd", "fwd", "403"),
    ("topk(scalar(count(up)), up)", "fwd", "fwd", "fwd", "fwd", "403"),
    ("1 + 1", "fwd", "fwd", "fwd", "fwd", "403"),
    ("vector(1)", "fwd", "fwd", "fwd", "fwd", "403"),
    ('time() > bool up{cluster="c9"}', "403", "403", "403", "fwd", "403"),
    ('up # {cluster="c9"}', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c9"} @ -1', "400", "400", "400", "400", "400"),
    ("up[1001us]", "400", "400", "400", "400", "400"),
    ('{__name__=~"up|.+",cluster="c2"}', "403", "403", "fwd", "fwd", "403"),
    ('sum(up{cluster="c1"}) by (cluster) + on(namespace) group_right up', "fwd", "fwd", "fwd", "fwd", "403"),
    ('up{cluster="c1",namespace="team-a",cluster="c2"}', "403", "403", "403", "fwd", "403"),
]
DECISIONS: dict[type[PromQLError], str] = {
    AccessDenied: "403",
    NarrowingImpossible: "400",
    QuerySyntaxError: "400",
    QueryLimitError: "400",
}


def _decide(query: str, holdings: Holdings) -> tuple[str, str]:
    try:
        return "fwd", enforce_query(analyse_query(query, LIMITS, MODEL), holdings, "narrow")
    except PromQLError as exc:
        return DECISIONS.get(type(exc), type(exc).__name__), str(exc)


CASES = [
    pytest.param(row[0], holder, row[1 + i], id=f"{holder}:{row[0]}")
    for row in TABLE
    for i, holder in enumerate(HOLDERS)
]


@pytest.mark.parametrize(("query", "holder", "expected"), CASES)
def test_bypass_table_decision(query: str, holder: str, expected: str) -> None:
    """Each trick gets its expected decision, and anything forwarded is confined to the holdings."""
    decision, detail = _decide(query, HOLDERS[holder])
    assert decision == expected, detail
    if decision == "fwd":
        held = Held.of(HOLDERS[holder])
        tree = parse(detail, Limits(max_bytes=1 << 20, max_depth=200, max_operators=10_000))
        for vs in iter_selectors(tree):
            assert granted_plan(reach_of(vs, MODEL), held, MODEL) is not None, detail


def test_bypass_table_has_enough_rows() -> None:
    """The table covers at least forty tricks."""
    assert len(TABLE) >= 40


def test_denial_messages_never_list_other_tenants() -> None:
    """A 403 names what the query asked for, never the clusters/namespaces others hold."""
    _, message = _decide('up{cluster="c9",namespace="secret"}', HOLDERS["mixed"])
    assert "c9" in message
    assert "c2" not in message and "team-a" not in message
    _, message = _decide('up{cluster!="c1"}', HOLDERS["cluster"])
    assert "c2" not in message


def test_deny_mode_refuses_unbounded_and_names_missing() -> None:
    """deny mode: unscoped selectors are refused with what is missing, granted ones pass."""
    holder = HOLDERS["mixed"]
    with pytest.raises(AccessDenied, match="not limited to a cluster"):
        enforce_query(analyse_query("up", LIMITS, MODEL), holder, "deny")
    with pytest.raises(AccessDenied, match='namespace "team-b" in cluster "c2"'):
        q = 'up{cluster="c2",namespace="team-b"}'
        enforce_query(analyse_query(q, LIMITS, MODEL), holder, "deny")
    q = 'up{cluster="c2",namespace="team-a"}'
    assert enforce_query(analyse_query(q, LIMITS, MODEL), holder, "deny") == q


def test_narrowing_message_names_the_matcher_to_add() -> None:
    """NarrowingImpossible says which explicit cluster/namespace matcher to add."""
    with pytest.raises(NarrowingImpossible, match=r'cluster="<cluster>".*namespace="<namespace>"'):
        enforce_query(analyse_query("up[5m]", LIMITS, MODEL), HOLDERS["mixed"], "narrow")
