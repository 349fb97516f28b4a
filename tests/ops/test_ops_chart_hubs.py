"""Helm chart with several hubs: the `hubs:` value becomes the proxy's config and one Secret per hub."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from proxy.hubs import HubConfig

from .conftest import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    Doc,
    Render,
    env_map,
    only,
    proxy_container,
    validate_k8s,
)

helm_python = pytest.importorskip("helm_python")
pytest.importorskip("kubernetes_validate")

DIR = "/etc/prom-keycloak-proxy"
OBSERVATORIUM = "https://observatorium-api.{}.example:8080/api/metrics/v1/default"

THREE_HUBS: dict[str, Any] = {
    "config": {
        "auth_base_url": "https://keycloak.example",
        "auth_realm": "nerc",
        "auth_client_id": "prom-keycloak-proxy",
    },
    "auth": {"existingSecret": "proxy-auth"},
    "defaultHub": "moc",
    "hubs": [
        {"name": "moc", "prometheusBaseUrl": OBSERVATORIUM.format("moc"), "existingSecret": "moc-obs-tls"},
        {
            "name": "innabox-dev",
            "prometheusBaseUrl": OBSERVATORIUM.format("innabox"),
            "existingSecret": "innabox-obs-tls",
            "tokenKey": "token",
            "serverName": "observatorium-api",
        },
        {
            "name": "open-sovereign-ai-cloud",
            "prometheusBaseUrl": OBSERVATORIUM.format("osac"),
            "ca": "CA PEM",
            "cert": "CERT PEM",
            "key": "KEY PEM",
            "authClientId": "osac-proxy",
            "authClientSecret": "osac-secret",
        },
    ],
}


def _values(**changes: Any) -> dict[str, Any]:
    """The three-hub values with top-level changes applied."""
    values = copy.deepcopy(THREE_HUBS)
    values.update(changes)
    return values


def test_three_hubs_lint_clean() -> None:
    """`helm lint --strict` (schema included) finds nothing with three hubs."""
    report = helm_python.lint(CHART, _values(), strict=True, kube_version="v1.30.0", namespace=NAMESPACE)

    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_three_hubs_render_valid_kubernetes(render: Render, version: str) -> None:
    """Every document of the three-hub render validates against the strict Kubernetes schema."""
    for doc in render(_values()):
        if doc["kind"] != "ServiceMonitor":
            validate_k8s(doc, version)


def test_hubs_become_the_proxys_yaml_config(render: Render) -> None:
    """The ConfigMap holds a `hubs:` list the proxy accepts, each hub's files under its own mount."""
    docs = render(_values())
    configmap = only(docs, "ConfigMap")
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    container = proxy_container(only(docs, "Deployment"))
    env = env_map(container)

    assert env["PROXY_CONFIG"]["value"] == f"{DIR}/hubs-config/config.yaml"
    assert "PROXY_PROMETHEUS_BASE_URL" not in env and "PROXY_ACM_HUB" not in env
    assert config["default_hub"] == "moc"
    hubs = {h["name"]: h for h in config["hubs"]}
    assert list(hubs) == ["moc", "innabox-dev", "open-sovereign-ai-cloud"]
    for entry in config["hubs"]:
        HubConfig.model_validate(entry)  # the proxy's own model accepts every rendered entry
        for key in ("prometheus_ca_cert", "prometheus_tls_cert", "prometheus_tls_key"):
            assert entry[key].startswith(f"{DIR}/hubs/{entry['name']}/")
    assert hubs["innabox-dev"]["prometheus_token_file"] == f"{DIR}/hubs/innabox-dev/token"
    assert hubs["innabox-dev"]["prometheus_tls_server_name"] == "observatorium-api"
    osac = hubs["open-sovereign-ai-cloud"]
    assert osac["auth_client_id"] == "osac-proxy"
    assert osac["auth_client_secret_file"] == f"{DIR}/hubs/open-sovereign-ai-cloud/client-secret"
    assert "auth_client_secret" not in osac and "prometheus_token" not in osac


def test_one_secret_volume_per_hub(render: Render) -> None:
    """Each hub's Secret is its own read-only volume; the chart creates one only for inline material."""
    docs = render(_values())
    deployment = only(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in proxy_container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    secret_of = {}
    for hub in ("moc", "innabox-dev", "open-sovereign-ai-cloud"):
        mount = mounts[f"{DIR}/hubs/{hub}"]
        assert mount["readOnly"] is True
        secret_of[hub] = volumes[mount["name"]]["secret"]["secretName"]
    assert secret_of["moc"] == "moc-obs-tls"
    assert secret_of["innabox-dev"] == "innabox-obs-tls"
    created = [d for d in docs if d["kind"] == "Secret"]
    assert [d["metadata"]["name"] for d in created] == [secret_of["open-sovereign-ai-cloud"]]
    assert sorted(created[0]["data"]) == ["ca.crt", "client-secret", "tls.crt", "tls.key"]
    assert "checksum/hubs" in deployment["spec"]["template"]["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"defaultHub": "nowhere"}, "is not one of the hubs"),
        ({"config": {**THREE_HUBS["config"], "prometheus_base_url": "https://x"}}, "cannot be combined"),
        ({"config": {**THREE_HUBS["config"], "acm_hub": "moc"}}, "cannot be combined"),
        ({"upstreamTLS": {"enabled": True, "existingSecret": "x"}}, "cannot be combined"),
    ],
)
def test_render_refuses_what_the_proxy_would_refuse(changes: dict[str, Any], message: str) -> None:
    """An unknown default or top-level upstream options next to `hubs:`: no render."""
    with pytest.raises(Exception, match=message):
        helm_python.Chart.load(CHART).render(_values(**changes), name="p", namespace=NAMESPACE)


@pytest.mark.parametrize("name", ["api", "Moc", "metrics", "-x"])
def test_schema_refuses_bad_hub_names(name: str) -> None:
    """Route names and non-Kubernetes names are refused by values.schema.json."""
    values = _values()
    values["hubs"][0]["name"] = name
    values["defaultHub"] = "innabox-dev"
    report = helm_python.lint(CHART, values, strict=True, kube_version="v1.30.0", namespace=NAMESPACE)

    assert report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]


def test_single_hub_values_render_no_hub_objects(render: Render, prod_values: Doc) -> None:
    """Without `hubs:` nothing hub-related is rendered: the env-only single hub as before."""
    docs = render(prod_values)

    assert not [d for d in docs if d["kind"] == "ConfigMap"]
    assert "PROXY_CONFIG" not in env_map(proxy_container(only(docs, "Deployment")))
