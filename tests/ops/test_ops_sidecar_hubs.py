"""The three-hub sidecar example: valid Kubernetes, a hub list the proxy accepts, one Secret per hub."""

from __future__ import annotations

import pytest
import yaml

from proxy.hubs import HubConfig, problems

from .conftest import CHART, KUBE_VERSIONS, Doc, env_map, validate_k8s

EXAMPLE = CHART / "examples" / "sidecar-hubs.yaml"
NERC_HUBS = ["moc", "innabox-dev", "open-sovereign-ai-cloud"]


@pytest.fixture(name="docs", scope="module")
def _docs() -> dict[str, Doc]:
    """The example's documents by kind (one ConfigMap, one Deployment)."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text(encoding="utf-8")) if d]
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "Deployment"]
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_example_is_valid_kubernetes(docs: dict[str, Doc], version: str) -> None:
    """Both documents validate against the strict Kubernetes schema."""
    pytest.importorskip("kubernetes_validate")
    for doc in docs.values():
        validate_k8s(doc, version)


def test_one_container_serves_the_three_nerc_hubs(docs: dict[str, Doc]) -> None:
    """The config lists moc, innabox-dev and open-sovereign-ai-cloud, valid for the proxy, default moc."""
    config = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])
    hubs = [HubConfig.model_validate(entry) for entry in config["hubs"]]
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    proxies = [
        c for c in pod["initContainers"] + pod["containers"] if c["image"].split(":")[0].endswith("proxy")
    ]

    assert [h.name for h in hubs] == NERC_HUBS
    assert config["default_hub"] == "moc"
    assert problems({"default_hub": "moc", "auth_client_id": "prom-keycloak-proxy"}, hubs, ("HUB",)) == [
        f"hubs[{i}] ({h}).{f}: file /etc/prom-keycloak-proxy/hubs/{h}/{n} is not readable"
        for i, h in enumerate(NERC_HUBS)
        for f, n in (
            ("prometheus_ca_cert", "ca.crt"),
            ("prometheus_tls_cert", "tls.crt"),
            ("prometheus_tls_key", "tls.key"),
        )
    ]  # only the files are missing here: they exist in the pod
    assert len(proxies) == 1


def test_each_hub_has_its_own_secret_mounted_where_the_config_points(docs: dict[str, Doc]) -> None:
    """Every hub's files live in a read-only mount of that hub's own Secret; no top-level upstream."""
    config = yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["initContainers"] if c["name"] == "prom-keycloak-proxy")
    env = env_map(sidecar)
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    assert not {k for k in env if k.startswith("PROXY_PROMETHEUS_") or k == "PROXY_ACM_HUB"}
    config_mount = mounts[env["PROXY_CONFIG"]["value"].rsplit("/", 1)[0]]
    assert volumes[config_mount["name"]]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    secrets = set()
    for entry in config["hubs"]:
        for key in ("prometheus_ca_cert", "prometheus_tls_cert", "prometheus_tls_key"):
            mount = mounts[entry[key].rsplit("/", 1)[0]]
            assert mount["readOnly"] is True
            secrets.add((entry["name"], volumes[mount["name"]]["secret"]["secretName"]))
    assert len(secrets) == 3 and len({s for _, s in secrets}) == 3
