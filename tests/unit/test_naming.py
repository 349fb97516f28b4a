"""Resource names: building, the safe-value rule, parsing back, holdings, keys shared with policies."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.authz.authorizer import holdings_from
from proxy.naming import Keys, Parsed, ResourceNames, is_safe
from proxy.promql.scope import Holdings

NAMES = ResourceNames("moc")
safe_values = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,30}[a-z0-9])?\Z")


def test_names_follow_the_go_proxy_scheme() -> None:
    """HUB, HUB-<hub>, …-CLUSTER-<c>, …-PROJECT-<p>."""
    assert NAMES.top == "HUB"
    assert NAMES.hub == "HUB-moc"
    assert NAMES.cluster("c1") == "HUB-moc-CLUSTER-c1"
    assert NAMES.project("c1", "ns") == "HUB-moc-CLUSTER-c1-PROJECT-ns"


def test_keys_are_configurable() -> None:
    """Other keywords produce other names."""
    names = ResourceNames("x", Keys("H", "C", "P"))
    assert names.project("c", "p") == "H-x-C-c-P-p"


@pytest.mark.parametrize("part", ["", "a#b", "a,b", "a b"])
def test_unusable_configuration_is_refused(part: str) -> None:
    """Keys or hub names that could break Keycloak's permission syntax are refused."""
    with pytest.raises(ValueError):
        ResourceNames(part)
    with pytest.raises(ValueError):
        Keys(cluster=part)


@given(st.text(max_size=40))
def test_needed_names_never_carry_permission_syntax(value: str) -> None:
    """Whatever a label value is, no `#`, `,` or whitespace reaches a name."""
    for name in NAMES.needed({value}, {value: {value}, "c": {value}}):
        assert "#" not in name and "," not in name and not any(ch.isspace() for ch in name)


@given(safe_values, safe_values)
def test_parse_inverts_building(cluster: str, project: str) -> None:
    """Names built from safe values parse back to what they grant."""
    assert NAMES.parse(NAMES.cluster(cluster)) == Parsed(cluster=cluster)
    assert NAMES.parse(NAMES.project(cluster, project)) == Parsed(cluster=cluster, project=project)


@given(st.text(max_size=40))
def test_safe_values_match_the_kubernetes_pattern(value: str) -> None:
    """`is_safe` is exactly the documented pattern (and a length bound)."""
    expected = re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", value) is not None
    assert is_safe(value) == expected


@pytest.mark.parametrize(
    "name",
    ["HUB-other", "HUB-other-CLUSTER-c", "HUB-moc-CLUSTER-", "HUB-moc-CLUSTER-C#x", "hub-moc", "X"],
)
def test_foreign_names_parse_to_nothing(name: str) -> None:
    """Names of other hubs or not of this scheme grant nothing here."""
    assert NAMES.parse(name) is None


def test_ambiguous_names_grant_nothing() -> None:
    """With lower-case keys a name readable two ways is ignored."""
    names = ResourceNames("moc", Keys("hub", "cluster", "project"))
    assert names.parse("hub-moc-cluster-a-project-b") is None
    assert names.parse("hub-moc-cluster-a") == Parsed(cluster="a")


def test_holdings_from_names() -> None:
    """Cluster grants absorb project grants of the same cluster; hub grants are everything."""
    held = holdings_from(
        NAMES,
        ["HUB-moc-CLUSTER-a", "HUB-moc-CLUSTER-a-PROJECT-x", "HUB-moc-CLUSTER-b-PROJECT-y"]
    )
    assert held == Holdings(clusters=frozenset({"a"}), projects={"b": frozenset({"y"})})
    assert holdings_from(NAMES, ["HUB"]) == Holdings.everything()
    assert holdings_from(NAMES, ["HUB-other"]) == Holdings.nothing()


def test_needed_orders_hub_level_first_and_dedupes() -> None:
    """HUB and HUB-<hub> come first; clusters named by projects are asked too."""
    assert NAMES.needed({"b"}, {"a": {"y", "x"}, "b": {"x"}}) == [
        "HUB", "HUB-moc", "HUB-moc-CLUSTER-a", "HUB-moc-CLUSTER-b",
        "HUB-moc-CLUSTER-a-PROJECT-x", "HUB-moc-CLUSTER-a-PROJECT-y", "HUB-moc-CLUSTER-b-PROJECT-x",
    ]
