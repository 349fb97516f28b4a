"""Hub prefix collisions (hubs `moc` and `moc-x`, keys, hostile cluster/project values): a resource
name of one hub never grants anything on another, and the holdings split follows the prefix."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proxy.authz.authorizer import holdings_from
from proxy.hubs import HubConfig, hub_name_problem, problems
from proxy.naming import Keys, ResourceNames

_HUB = st.from_regex(r"[a-z0-9](?:[-a-z0-9]{0,12}[a-z0-9])?", fullmatch=True)
_VALUE = st.from_regex(r"[a-z0-9](?:[-a-z0-9.]{0,16}[a-z0-9])?", fullmatch=True)
_KEYS = st.sampled_from(
    [Keys(), Keys("H", "C", "P"), Keys("HUB", "X", "X"), Keys("Hub", "Cluster", "Project")]
)


def _all_names(names: ResourceNames, cluster: str, project: str) -> list[str]:
    return [names.hub, names.cluster(cluster), names.project(cluster, project)]


@settings(max_examples=400, deadline=None)
@given(a=_HUB, b=_HUB, cluster=_VALUE, project=_VALUE, keys=_KEYS)
def test_names_of_one_hub_never_parse_under_another(
    a: str, b: str, cluster: str, project: str, keys: Keys
) -> None:
    """Every name built for hub `b` is foreign to hub `a` (prefix hubs like moc / moc-x included)."""
    assume(a != b and hub_name_problem(a) is None and hub_name_problem(b) is None)
    mine, other = ResourceNames(a, keys), ResourceNames(b, keys)
    for name in _all_names(other, cluster, project):
        assert mine.parse(name) is None, (a, b, name)
    assert holdings_from(mine, _all_names(other, cluster, project)).holds_anything() is False


def test_prefix_hubs_split_holdings_exactly() -> None:
    """moc-x's hub-wide, cluster and project names grant nothing on moc, and moc's nothing on moc-x."""
    moc, moc_x = ResourceNames("moc"), ResourceNames("moc-x")
    granted = ["HUB-moc-x", "HUB-moc-x-CLUSTER-c1", "HUB-moc-x-CLUSTER-x-CLUSTER-c1-PROJECT-p"]
    assert not holdings_from(moc, granted).holds_anything()
    held = holdings_from(moc_x, ["HUB-moc-CLUSTER-x-CLUSTER-c1", "HUB-moc-CLUSTER-c1-PROJECT-p"])
    assert not held.holds_anything()
    assert holdings_from(moc, ["HUB-moc-CLUSTER-x-CLUSTER-c1"]).holds_anything() is False
    assert holdings_from(moc, ["HUB-moc-CLUSTER-c1-PROJECT-p"]).holds_project("c1", "p")


def test_lower_case_keys_with_several_hubs_are_refused() -> None:
    """Keys spelled like label values could make hub `moc`'s cluster name another hub's: refused."""
    hubs = tuple(
        HubConfig.model_validate({"name": name, "prometheus_base_url": url})
        for name, url in (("moc", "https://a"), ("moc-cluster-a", "https://b"))
    )
    found = problems({}, hubs, ("HUB", "cluster", "PROJECT"))
    assert any("resource-name key 'cluster'" in p for p in found), found
