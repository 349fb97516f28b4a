"""Resource names: building, the safe-value rule, parsing back, holdings, keys shared with policies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.authz.authorizer import Authorizer, holdings_from
from proxy.config import load_settings
from proxy.keycloak_client import KeycloakClient
from proxy.naming import Keys, Parsed, ResourceNames, is_safe
from proxy.policies.cli import main as policies_main
from proxy.promql.scope import Holdings
from proxy_demo.policy import DEMO_POLICY

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
        NAMES, ["HUB-moc-CLUSTER-a", "HUB-moc-CLUSTER-a-PROJECT-x", "HUB-moc-CLUSTER-b-PROJECT-y"]
    )
    assert held == Holdings(clusters=frozenset({"a"}), projects={"b": frozenset({"y"})})
    assert holdings_from(NAMES, ["HUB"]) == Holdings.everything()
    assert holdings_from(NAMES, ["HUB-other"]) == Holdings.nothing()


def test_needed_orders_hub_level_first_and_dedupes() -> None:
    """HUB and HUB-<hub> come first; clusters named by projects are asked too."""
    assert NAMES.needed({"b"}, {"a": {"y", "x"}, "b": {"x"}}) == [
        "HUB",
        "HUB-moc",
        "HUB-moc-CLUSTER-a",
        "HUB-moc-CLUSTER-b",
        "HUB-moc-CLUSTER-a-PROJECT-x",
        "HUB-moc-CLUSTER-a-PROJECT-y",
        "HUB-moc-CLUSTER-b-PROJECT-x",
    ]


def _exported_resources(tmp_path: Path) -> set[str]:
    """Resource names `policies export` writes for the demo file (with the current environment)."""
    out = tmp_path / "realm.json"
    assert policies_main(["export", str(DEMO_POLICY), "-o", str(out)]) == 0
    realm = json.loads(out.read_text())
    (server,) = [c for c in realm["clients"] if "authorizationSettings" in c]
    return {r["name"] for r in server["authorizationSettings"]["resources"]}


async def test_cluster_key_changes_proxy_and_policies_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PROXY_CLUSTER_KEY` renames the proxy's resources and those `policies` provisions alike."""
    env = {
        "PROXY_PROMETHEUS_BASE_URL": "http://127.0.0.1:9",
        "PROXY_AUTH_BASE_URL": "http://127.0.0.1:9",
        "PROXY_AUTH_REALM": "nerc",
        "PROXY_AUTH_CLIENT_ID": "prom-keycloak-proxy",
        "PROXY_AUTH_CLIENT_SECRET": "s",
        "PROXY_ACM_HUB": "moc",
    }
    for key in ("CLUSTER", "CL"):
        monkeypatch.setenv("PROXY_CLUSTER_KEY", key)
        settings = load_settings({}, {**env, "PROXY_CLUSTER_KEY": key})
        async with aiohttp.ClientSession() as session:
            proxy_names = Authorizer(settings, KeycloakClient(settings, session)).names
        provisioned = _exported_resources(tmp_path)
        wanted = proxy_names.needed({"nerc-ocp-prod"}, {"nerc-ocp-test": {"team-a"}})
        assert f"HUB-moc-{key}-nerc-ocp-prod" in wanted
        assert set(wanted) - {"HUB"} <= provisioned
        assert all(proxy_names.parse(name) is not None for name in provisioned)


def test_policies_key_flag_and_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--cluster-key` overrides the environment; a key that breaks the syntax is a usage error."""
    assert policies_main(["export", str(DEMO_POLICY), "--cluster-key", "CL", "-o", str(tmp_path / "x")]) == 0
    assert "HUB-moc-CL-nerc-ocp-prod" in (tmp_path / "x").read_text()
    assert policies_main(["export", str(DEMO_POLICY), "--cluster-key", "C#L"]) == 2
    assert "unusable resource-name part" in capsys.readouterr().err
