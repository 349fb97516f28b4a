"""The documented sidecar example: valid Kubernetes, loopback-only, secrets as files."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from .conftest import CHART, KUBE_VERSIONS, Doc, env_map, validate_k8s

TMP = "/tmp"  # noqa: S108 - the scratch mount the image expects, not a temp file

EXAMPLE = CHART / "examples" / "sidecar.yaml"


@pytest.fixture(name="workload", scope="module")
def _workload() -> Doc:
    """The single Deployment of the sidecar example."""
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text(encoding="utf-8")) if d]
    assert len(docs) == 1
    doc: Doc = docs[0]
    return doc


@pytest.fixture(name="sidecar", scope="module")
def _sidecar(workload: Doc) -> Doc:
    """The proxy container added to the portal's pod."""
    init: list[Doc] = workload["spec"]["template"]["spec"]["initContainers"]
    return next(c for c in init if c["name"] == "prom-keycloak-proxy")


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_example_is_valid_kubernetes(workload: Doc, version: str) -> None:
    """The example validates against the strict Kubernetes schema."""
    validate_k8s(workload, version)


def test_proxy_is_a_native_sidecar_next_to_the_portal(workload: Doc, sidecar: Doc) -> None:
    """The proxy runs as a restartable init container beside the portal's own container."""
    names = [c["name"] for c in workload["spec"]["template"]["spec"]["containers"]]

    assert sidecar["restartPolicy"] == "Always"
    assert "portal" in names


def test_proxy_listens_on_loopback_only(workload: Doc, sidecar: Doc) -> None:
    """The proxy port is 127.0.0.1; only metrics/health are exposed; the portal uses loopback."""
    env = env_map(sidecar)
    portal = workload["spec"]["template"]["spec"]["containers"][0]

    assert env["PROXY_LISTEN"]["value"].startswith("127.0.0.1:")
    assert [p["containerPort"] for p in sidecar["ports"]] == [9091]
    assert env_map(portal)["PROMETHEUS_URL"]["value"] == "http://127.0.0.1:8080"


def test_probes_reach_the_metrics_port(sidecar: Doc) -> None:
    """Kubelet probes use the metrics port, which is the one not bound to loopback."""
    env = env_map(sidecar)

    assert env["PROXY_METRICS_LISTEN"]["value"].startswith("0.0.0.0:")
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["readinessProbe"]["httpGet"]["port"] == "proxy-metrics"


def test_secrets_come_from_the_pods_secrets_as_files(workload: Doc, sidecar: Doc) -> None:
    """Client secret and mTLS files are mounted from the portal's Secrets; env holds paths only."""
    env = env_map(sidecar)
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in sidecar["volumeMounts"]}

    file_vars = [
        "PROXY_AUTH_CLIENT_SECRET_FILE",
        "PROXY_PROMETHEUS_CA_CERT",
        "PROXY_PROMETHEUS_TLS_CERT",
        "PROXY_PROMETHEUS_TLS_KEY",
    ]
    for name in file_vars:
        path = env[name]["value"]
        directory = path.rsplit("/", 1)[0]
        mount = mounts[directory]
        assert mount["readOnly"] is True
        assert "secret" in volumes[mount["name"]], name
    assert "PROXY_AUTH_CLIENT_SECRET" not in env
    assert all("valueFrom" not in e for e in sidecar["env"])


def test_sidecar_is_hardened(workload: Doc, sidecar: Doc) -> None:
    """Non-root numeric UID, read-only root FS with a /tmp emptyDir, no capabilities."""
    sc: dict[str, Any] = sidecar["securityContext"]
    pod = workload["spec"]["template"]["spec"]

    assert sc["runAsNonRoot"] is True
    assert isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert any(m["mountPath"] == TMP for m in sidecar["volumeMounts"])
    assert pod["terminationGracePeriodSeconds"] > 25


def test_sidecar_image_is_the_charts_image(sidecar: Doc) -> None:
    """The example uses the chart's image repository, so both stay in step."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

    assert sidecar["image"].startswith(values["image"]["repository"] + ":")
