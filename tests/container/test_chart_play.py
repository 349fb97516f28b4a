"""The chart's rendered Deployment and Secrets run with `podman kube play` on the built image:
probes answer from the host, runAsUser / read-only root / env are in effect, a query answers.

What podman 4.3 cannot run, and how the test deals with it:
- probes: podman turns them into health checks run by systemd timers executing `curl` inside
  the container (no systemd here, no curl in the image), so the probe endpoints are checked
  from the host instead;
- `ports`: with `--network=host` podman refuses container ports ("PortMappings can only be
  used with Bridge or slirp4netns networking"), so they are dropped before playing (the
  proxy listens on the ports PROXY_LISTEN / PROXY_METRICS_LISTEN name, which the chart sets
  from the same values);
- Secret volumes: podman 4.3 writes a Secret's `data` into the files verbatim, i.e. still
  base64-encoded (it rejects decoded `data` and ignores `stringData`), and it crashes on a
  secret volume whose `optional` is unset (the chart spells `optional: false`). So each
  rendered Secret is played as a ConfigMap of the same name and content, mounted at the same
  path with the same items; everything else of the Deployment is played as rendered.
- named volumes and secrets outlive `podman kube down`: the test removes them."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.ops.conftest import CHART, iter_docs, load_yaml, merge, render_chart
from tests.support.proxy_server import free_port
from tests.support.stack import POLICY, REALM, TokenFor

from .podman import CONTAINERS_CONF, get, logs, podman, wait_for

helm_python = pytest.importorskip("helm_python")

# What `podman kube play` runs; the other kinds (Service, NetworkPolicy, PDB …) need a cluster.
PLAYED_KINDS = {"Deployment", "Secret", "ConfigMap"}


def chart_values(
    image: str, prometheus: PrometheusServer, keycloak_url: str, ports: tuple[int, int]
) -> dict[str, Any]:
    """Production-like values pointing at the host's Prometheus and emulator, on free ports."""
    repository, _, tag = image.rpartition(":")
    prod = load_yaml(CHART / "ci" / "prod-values.yaml")
    test_values = {
        "replicaCount": 1,
        "autoscaling": {"enabled": False},
        "image": {"repository": repository, "tag": tag, "digest": "", "pullPolicy": "IfNotPresent"},
        "containerPorts": {"http": ports[0], "metrics": ports[1]},
        "config": {
            "prometheus_base_url": prometheus.base_url,
            "auth_base_url": keycloak_url,
            "auth_realm": REALM,
            "auth_client_id": POLICY["resource_server"]["client_id"],
            "auth_issuer": "",
            "auth_audiences": [],
            "acm_hub": POLICY["hub"],
        },
        "auth": {"existingSecret": "", "clientSecret": POLICY["resource_server"]["secret"]},
        "upstreamTLS": {
            "enabled": True,
            "existingSecret": "",
            "ca": prometheus.ca.read_text(encoding="utf-8"),
            "cert": prometheus.client_cert.read_text(encoding="utf-8"),
            "key": prometheus.client_key.read_text(encoding="utf-8"),
        },
        "keycloakTLS": {"existingConfigMap": ""},
        "tls": {"enabled": False},
        "route": {"enabled": False},
        "extraEnv": [],
    }
    values: dict[str, Any] = merge(prod, test_values)
    return values


def playable(doc: dict[str, Any]) -> dict[str, Any]:
    """What podman 4.3 can play (module docstring): Secrets as ConfigMaps, no container ports."""
    if doc["kind"] == "Secret":
        data = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"], "data": data}
    if doc["kind"] == "Deployment":
        for container in doc["spec"]["template"]["spec"]["containers"]:
            container.pop("ports")
        for volume in doc["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                secret = volume.pop("secret")
                volume["configMap"] = {
                    "name": secret["secretName"],
                    **{k: v for k, v in secret.items() if k in ("items", "defaultMode")},
                }
    return doc


@pytest.fixture
def played(
    image: str,
    prometheus: PrometheusServer,
    emulator: ThreadedEmulatorServer,
    tmp_path: Path,
) -> Iterator[tuple[list[dict[str, Any]], str, str, str]]:
    """The rendered manifests played with podman: (documents, container name, proxy URL, metrics URL)."""
    ports = (free_port(), free_port())
    values = chart_values(image, prometheus, emulator.base_url, ports)
    chart = helm_python.Chart.load(CHART)
    release = f"play{os.getpid()}"  # names of pods, secrets and volumes never clash with a leftover
    docs = list(iter_docs(render_chart(chart, values, name=release)))
    played_docs = [d for d in docs if d.get("kind") in PLAYED_KINDS]
    played_docs.sort(key=lambda d: d["kind"] == "Deployment")  # Secrets exist before the pod mounts them
    played_docs = [playable(d) for d in played_docs]
    manifest = tmp_path / "manifests.yaml"
    manifest.write_text(yaml.safe_dump_all(played_docs), encoding="utf-8")
    conf = tmp_path / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    podman("kube", "play", "--network=host", str(manifest), env=env, timeout=180)
    try:
        names = podman("ps", "-a", "--format", "{{.Names}}", env=env).split()
        deployment = next(d for d in played_docs if d["kind"] == "Deployment")["metadata"]["name"]
        container = next(n for n in names if n.startswith(deployment) and n.endswith("-proxy"))
        yield played_docs, container, f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    finally:
        print(podman("ps", "-a", "--format", "{{.Names}} {{.Status}}", env=env, check=False))
        if "container" in locals():
            print(logs(container)[-3000:])
        if not os.environ.get("KEEP_PLAYED"):
            podman("kube", "down", str(manifest), env=env, check=False)
            volumes = [d["metadata"]["name"] for d in played_docs if d["kind"] == "ConfigMap"]
            podman("volume", "rm", "-f", *volumes, "tmp", check=False)


def test_kube_play_of_the_rendered_chart_answers(
    played: tuple[list[dict[str, Any]], str, str, str], token_for: TokenFor
) -> None:
    """Probes answer from the host; UID, read-only root and env from the chart apply; a query answers."""
    docs, container, base, metrics = played
    assert {d["kind"] for d in docs} == {"Deployment", "ConfigMap"}
    wait_for(f"{metrics}/healthz", timeout=30)
    wait_for(f"{metrics}/readyz", timeout=60)
    assert get(f"{metrics}/metrics")[0] == 200

    info = json.loads(podman("inspect", container))[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    uid = podman("exec", container, "python", "-c", "import os; print(os.getuid())").strip()
    assert uid == "10001"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["PROXY_AUTH_CLIENT_SECRET_FILE"] == "/etc/prom-keycloak-proxy/auth/client-secret"
    assert env["PROXY_PROMETHEUS_TLS_KEY"] == "/etc/prom-keycloak-proxy/upstream-tls/tls.key"
    assert env["PROXY_ENFORCE_MODE"] == "narrow"
    assert "PROXY_AUTH_CLIENT_SECRET" not in env

    status, body = get(
        f"{base}/api/v1/query?query=DCGM_FI_DEV_GPU_UTIL",
        headers={"Authorization": f"Bearer {token_for('alice')}"},
    )
    assert status == 200, body[:500]
    result = json.loads(body)["data"]["result"]
    assert result and {
        r["metric"].get("exported_namespace", r["metric"].get("namespace")) for r in result
    } == {"team-a"}
    assert get(f"{base}/api/v1/query?query=up")[0] == 401
