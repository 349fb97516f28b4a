"""Helm chart: lint, render, Kubernetes schema validation and helm-unittest-style assertions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import (
    CHART,
    KUBE_VERSIONS,
    NAMESPACE,
    REQUIRED_VALUES,
    Doc,
    Render,
    env_map,
    load_yaml,
    merge,
    only,
    proxy_container,
    render_chart,
    validate_k8s,
)

helm_python = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

TMP = "/tmp"  # noqa: S108 - the scratch mount the image expects, not a temp file

SECRETISH = re.compile(r"(SECRET|TOKEN|PASSWORD|_KEY)$")

# A hand-written subset of the prometheus-operator ServiceMonitor CRD (kubernetes-validate
# ships no CRD schemas): the fields this chart renders, with their types.
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": {"type": "object"}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}


# A hand-written subset of OpenShift's route.openshift.io/v1 Route (no schema ships with
# kubernetes-validate): the fields this chart renders.
ROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "route.openshift.io/v1"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["to"],
            "properties": {
                "host": {"type": "string"},
                "to": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["kind", "name"],
                    "properties": {
                        "kind": {"const": "Service"},
                        "name": {"type": "string"},
                        "weight": {"type": "integer"},
                    },
                },
                "port": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"targetPort": {"type": ["string", "integer"]}},
                },
                "tls": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["termination"],
                    "properties": {
                        "termination": {"enum": ["edge", "reencrypt", "passthrough"]},
                        "insecureEdgeTerminationPolicy": {"enum": ["Redirect", "None", "Allow"]},
                    },
                },
            },
        },
    },
}
VALUES_SETS = ["default", "prod", "single"]


@pytest.fixture(name="values_sets", scope="module")
def _values_sets(prod_values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The values files CI renders: defaults + required values, production-like, single replica + exposure."""
    required = load_yaml(REQUIRED_VALUES)
    single = merge(required, load_yaml(CHART / "ci" / "single-replica-values.yaml"))
    return {"default": required, "prod": prod_values, "single": single}


@pytest.mark.parametrize("which", VALUES_SETS)
def test_lint_strict_is_clean(which: str, values_sets: dict[str, dict[str, Any]]) -> None:
    """`helm lint --strict` finds no warning or error for either values file."""
    report = helm_python.lint(
        CHART, values_sets[which], strict=True, kube_version="v1.30.0", namespace=NAMESPACE
    )

    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("which", VALUES_SETS)
def test_every_document_is_valid_kubernetes(
    which: str, version: str, render: Render, values_sets: dict[str, dict[str, Any]]
) -> None:
    """Every rendered document validates against the strict Kubernetes schema (CRDs by hand)."""
    import jsonschema

    docs = render(values_sets[which], kube_version=version)
    kinds = set()
    for doc in docs:
        kinds.add(doc["kind"])
        if doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
            continue
        if doc["kind"] == "Route":
            jsonschema.validate(doc, ROUTE_SCHEMA)
            continue
        validate_k8s(doc, version)

    assert {"Deployment", "Service", "ServiceAccount"} <= kinds
    expected = {
        "default": {"PodDisruptionBudget"},
        "prod": {"Route", "HorizontalPodAutoscaler"},
        "single": {"Ingress", "Route"},
    }
    assert expected[which] <= kinds


def test_strict_validation_catches_a_typo() -> None:
    """The validator used above really rejects unknown fields (so a pass means something)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80, "targetprot": 8080}]},
    }

    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(doc, "1.30.0")


def test_default_values_render_the_expected_kinds(render: Render) -> None:
    """Defaults: Deployment with 2 replicas, PDB and NetworkPolicy; no HPA, no ServiceMonitor."""
    docs = render()
    kinds = sorted(d["kind"] for d in docs)

    assert kinds == [
        "Deployment",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    assert only(docs, "Deployment")["spec"]["replicas"] == 2


def test_prod_values_render_hpa_and_servicemonitor(render: Render, prod_values: Doc) -> None:
    """Prod: the HPA owns the replica count (≥ 2) and the ServiceMonitor is rendered."""
    docs = render(prod_values)
    hpa = only(docs, "HorizontalPodAutoscaler")
    deployment = only(docs, "Deployment")
    monitor = only(docs, "ServiceMonitor")

    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert deployment["metadata"]["name"] == hpa["spec"]["scaleTargetRef"]["name"]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


@pytest.mark.parametrize("which", ["default", "prod"])
def test_pod_and_container_are_hardened(
    which: str, render: Render, values_sets: dict[str, dict[str, Any]]
) -> None:
    """Non-root numeric UID, read-only root FS, no capabilities, seccomp, no API token."""
    deployment = only(render(values_sets[which]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = proxy_container(deployment)
    psc, csc = pod["securityContext"], container["securityContext"]

    assert psc["runAsNonRoot"] is True
    assert isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in csc["capabilities"]
    assert pod["automountServiceAccountToken"] is False
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": TMP} in container["volumeMounts"]


@pytest.mark.parametrize("which", ["default", "prod"])
def test_probes_use_the_metrics_port(
    which: str, render: Render, values_sets: dict[str, dict[str, Any]]
) -> None:
    """Liveness hits /healthz and readiness /readyz, both on the metrics port."""
    container = proxy_container(only(render(values_sets[which]), "Deployment"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    assert ports == {"http": 8080, "metrics": 9091}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["startupProbe"]["httpGet"]["port"] == "metrics"


def test_graceful_shutdown_fits_the_grace_period(render: Render) -> None:
    """preStop sleep plus the proxy's 25 s drain end before Kubernetes kills the pod."""
    deployment = only(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    sleep = proxy_container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]

    assert pod["terminationGracePeriodSeconds"] > sleep + 25


def test_soft_anti_affinity_by_default_and_hard_on_request(render: Render) -> None:
    """Pods spread over nodes: preferred by default, required with podAntiAffinityPreset=hard."""
    soft = only(render(), "Deployment")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    hard = only(render({"podAntiAffinityPreset": "hard"}), "Deployment")["spec"]["template"]["spec"][
        "affinity"
    ]["podAntiAffinity"]
    none = only(render({"podAntiAffinityPreset": "none"}), "Deployment")["spec"]["template"]["spec"]

    term = soft["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert (
        (hard["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"]) == "kubernetes.io/hostname"
    )
    assert "affinity" not in none


@pytest.mark.parametrize("which", ["default", "prod"])
def test_selectors_match_the_pods_and_exclude_the_chart_version(
    which: str, render: Render, values_sets: dict[str, dict[str, Any]]
) -> None:
    """Service, PDB, NetworkPolicy select the pods by stable labels only."""
    docs = render(values_sets[which])
    deployment = only(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        only(docs, "Service")["spec"]["selector"],
        only(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        only(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    ]

    for selector in selectors:
        assert "helm.sh/chart" not in selector
        assert "app.kubernetes.io/version" not in selector
        assert selector.items() <= pod_labels.items()


def test_config_values_become_proxy_env(render: Render) -> None:
    """`config:` keys map to PROXY_<KEY>; lists are comma-joined; empty values are left out."""
    values = {
        "config": {
            "prometheus_base_url": "https://thanos:9091/api/metrics/v1/default",
            "auth_audiences": ["grafana", "portal"],
            "max_uma_names": 32,
            "auth_introspect": True,
            "auth_issuer": "",
        }
    }
    env = env_map(proxy_container(only(render(values), "Deployment")))

    assert env["PROXY_PROMETHEUS_BASE_URL"]["value"] == "https://thanos:9091/api/metrics/v1/default"
    assert env["PROXY_AUTH_AUDIENCES"]["value"] == "grafana,portal"
    assert env["PROXY_MAX_UMA_NAMES"]["value"] == "32"
    assert env["PROXY_AUTH_INTROSPECT"]["value"] == "true"
    assert "PROXY_AUTH_ISSUER" not in env
    assert "PROXY_AUTH_ALLOWED_AZP" not in env
    assert env["PROXY_LISTEN"]["value"] == "0.0.0.0:8080"
    assert env["PROXY_METRICS_LISTEN"]["value"] == "0.0.0.0:9091"


@pytest.mark.parametrize("which", ["default", "prod"])
def test_no_secret_value_in_env(which: str, render: Render, values_sets: dict[str, dict[str, Any]]) -> None:
    """No env entry carries a secret in plaintext: secrets are files (`*_FILE`) or paths."""
    container = proxy_container(only(render(values_sets[which]), "Deployment"))

    for entry in container["env"]:
        if SECRETISH.search(entry["name"]):
            assert "value" not in entry or entry["value"].startswith("/etc/"), entry
        assert "secretKeyRef" not in entry.get("valueFrom", {}), entry


def test_inline_client_secret_goes_to_a_secret_mounted_as_a_file(render: Render, render_raw: Any) -> None:
    """auth.clientSecret creates a Secret; the pod reads it from a file, not from env."""
    values = {"auth": {"existingSecret": "", "clientSecret": "s3cr3t-value"}}
    docs = render(values)
    raw = render_raw(values)
    secret = only(docs, "Secret")
    deployment = only(docs, "Deployment")
    env = env_map(proxy_container(deployment))
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}

    assert "client-secret" in secret["data"]
    assert "s3cr3t-value" not in raw["prom-keycloak-proxy/templates/deployment.yaml"]
    assert (env["PROXY_AUTH_CLIENT_SECRET_FILE"]["value"]) == "/etc/prom-keycloak-proxy/auth/client-secret"
    assert secret["metadata"]["name"] == volumes["auth"]["secret"]["secretName"]
    assert "PROXY_AUTH_CLIENT_SECRET" not in env


def test_existing_secrets_are_mounted_and_env_points_at_the_files(render: Render, prod_values: Doc) -> None:
    """Prod: client secret and upstream mTLS files come from existing Secrets, mounted read-only."""
    docs = render(prod_values)
    deployment = only(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = proxy_container(deployment)
    env = env_map(container)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}

    assert [d for d in docs if d["kind"] == "Secret"] == []
    assert volumes["upstream-tls"]["secret"]["secretName"] == "observability-grafana-certs"
    assert volumes["auth"]["secret"]["secretName"] == "prom-keycloak-proxy-keycloak"
    tls_dir = mounts["upstream-tls"]["mountPath"]
    assert mounts["upstream-tls"]["readOnly"] is True
    assert f"{tls_dir}/ca.crt" == env["PROXY_PROMETHEUS_CA_CERT"]["value"]
    assert f"{tls_dir}/tls.crt" == env["PROXY_PROMETHEUS_TLS_CERT"]["value"]
    assert f"{tls_dir}/tls.key" == env["PROXY_PROMETHEUS_TLS_KEY"]["value"]
    assert env["PROXY_AUTH_CA_CERT"]["value"].startswith(mounts["keycloak-ca"]["mountPath"])
    assert env["PROXY_TLS_CERT"]["value"].startswith(mounts["tls"]["mountPath"])


def test_upstream_tls_without_client_cert_sets_only_the_ca(render: Render) -> None:
    """upstreamTLS with certKey empty (CA only) sets no client cert/key variables."""
    values = {"upstreamTLS": {"enabled": True, "existingSecret": "ca-only", "certKey": ""}}
    env = env_map(proxy_container(only(render(values), "Deployment")))

    assert "PROXY_PROMETHEUS_CA_CERT" in env
    assert "PROXY_PROMETHEUS_TLS_CERT" not in env
    assert "PROXY_PROMETHEUS_TLS_KEY" not in env


def test_chart_managed_config_keys_are_refused(render: Render) -> None:
    """Setting a secret or a chart-managed option through `config:` fails the install."""
    with pytest.raises(helm_python.HelmError):
        render({"config": {"auth_client_secret": "x"}})


def test_networkpolicy_restricts_ingress_and_optionally_egress(render: Render, prod_values: Doc) -> None:
    """Default: ingress rules on both ports only. Prod: ingress from Grafana, egress DNS + listed."""
    default = only(render(), "NetworkPolicy")["spec"]
    prod = only(render(prod_values), "NetworkPolicy")["spec"]

    assert default["policyTypes"] == ["Ingress"]
    assert prod["policyTypes"] == ["Ingress", "Egress"]
    assert prod["ingress"][0]["ports"][0]["port"] == "http"
    assert prod["ingress"][0]["from"]
    dns = prod["egress"][0]["ports"]
    assert {"port": 53, "protocol": "UDP"} in dns
    assert len(prod["egress"]) == 1 + len(prod_values["networkPolicy"]["egress"]["to"])


def test_image_digest_wins_over_tag(render: Render, prod_values: Doc) -> None:
    """image.digest pins the image; otherwise the tag defaults to appVersion."""
    prod_image = proxy_container(only(render(prod_values), "Deployment"))["image"]
    default_image = proxy_container(only(render(), "Deployment"))["image"]

    assert prod_image.endswith("@" + prod_values["image"]["digest"])
    assert default_image.endswith(":" + str(helm_python.Chart.load(CHART).metadata["appVersion"]))


def test_render_without_required_values_fails_listing_them_all(chart: Any) -> None:
    """Bare defaults: the render fails with one message naming every missing required value."""
    with pytest.raises(helm_python.HelmError) as caught:
        render_chart(chart, {})
    message = str(caught.value)
    for name in (
        "config.prometheus_base_url",
        "config.auth_base_url",
        "config.auth_realm",
        "config.auth_client_id",
        "config.acm_hub",
        "auth.existingSecret",
    ):
        assert name in message
    assert "missing required values" in message


def test_render_names_the_one_missing_value(chart: Any) -> None:
    """Everything but the realm given: the message names only the realm."""
    values = merge(load_yaml(REQUIRED_VALUES), {"config": {"auth_realm": ""}})
    with pytest.raises(helm_python.HelmError, match=r"missing required values: config\.auth_realm \("):
        render_chart(chart, values)


def test_notes_point_at_the_service_and_stay_quiet_for_prod(render_raw: Any, prod_values: Doc) -> None:
    """Prod NOTES name the HTTPS service URL and warn about nothing."""
    prod_notes = render_raw(prod_values)["prom-keycloak-proxy/templates/NOTES.txt"]

    assert "WARNING" not in prod_notes
    assert "https://prom-keycloak-proxy.observability.svc:8080" in prod_notes


def test_single_replica_drops_the_pdb_and_warns(render: Render, render_raw: Any) -> None:
    """replicaCount 1: accepted, no PodDisruptionBudget or HPA, and NOTES warns."""
    values = {"replicaCount": 1}
    docs = render(values)
    kinds = {d["kind"] for d in docs}

    assert only(docs, "Deployment")["spec"]["replicas"] == 1
    assert "PodDisruptionBudget" not in kinds and "HorizontalPodAutoscaler" not in kinds
    assert "WARNING: a single replica" in render_raw(values)["prom-keycloak-proxy/templates/NOTES.txt"]
    assert "PodDisruptionBudget" in {d["kind"] for d in render()}


def test_hpa_is_off_by_default(render: Render) -> None:
    """No HorizontalPodAutoscaler unless autoscaling.enabled; the Deployment then sets replicas."""
    docs = render()
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in docs}
    assert only(docs, "Deployment")["spec"]["replicas"] == 2


def test_default_resources_are_set(render: Render) -> None:
    """The container has memory/CPU requests and a memory limit by default (no CPU limit)."""
    resources = proxy_container(only(render(), "Deployment"))["resources"]

    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"] and "cpu" not in resources["limits"]


@pytest.mark.parametrize(
    ("version", "action"), [("1.29.0", "exec"), ("1.30.0", "sleep"), ("1.33.0", "sleep")]
)
def test_prestop_uses_the_sleep_action_only_where_it_is_on(render: Render, version: str, action: str) -> None:
    """1.29 (sleep action alpha, off) gets an exec of the image's Python; 1.30+ the sleep action."""
    pre_stop = proxy_container(only(render(kube_version=version), "Deployment"))["lifecycle"]["preStop"]

    assert set(pre_stop) == {action}
    if action == "exec":
        assert pre_stop["exec"]["command"][:2] == ["/opt/venv/bin/python", "-c"]
        assert "time.sleep(5)" in pre_stop["exec"]["command"][2]
    else:
        assert pre_stop["sleep"] == {"seconds": 5}


def test_totals_are_divided_by_replicas_times_workers(render: Render, prod_values: Doc) -> None:
    """totals: 40 over 2 replicas × 2 workers → 10 per process; a key set under config: wins."""
    values = {
        "totals": {"max_concurrent_per_subject": 40, "rate_burst_per_subject": 3},
        "config": {"workers": 2},
    }
    env = env_map(proxy_container(only(render(values), "Deployment")))
    assert env["PROXY_MAX_CONCURRENT_PER_SUBJECT"]["value"] == "10"
    assert env["PROXY_RATE_BURST_PER_SUBJECT"]["value"] == "1"  # never below 1

    overridden = {**values, "config": {"workers": 2, "max_concurrent_per_subject": 7}}
    env = env_map(proxy_container(only(render(overridden), "Deployment")))
    assert env["PROXY_MAX_CONCURRENT_PER_SUBJECT"]["value"] == "7"

    prod_env = env_map(proxy_container(only(render(prod_values), "Deployment")))
    assert prod_env["PROXY_RATE_BURST_PER_SUBJECT"]["value"] == "200"  # 2000 / (maxReplicas 10 × 1)


def test_ingress_serves_tls_by_default(render: Render) -> None:
    """ingress.enabled: an Ingress to the http port with a TLS section for the host."""
    values = {"ingress": {"enabled": True, "host": "proxy.apps.example.org"}}
    ingress = only(render(values), "Ingress")["spec"]

    assert ingress["tls"] == [
        {"hosts": ["proxy.apps.example.org"], "secretName": "prom-keycloak-proxy-ingress-tls"}
    ]
    backend = ingress["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "prom-keycloak-proxy", "port": {"name": "http"}}


def test_ingress_needs_a_host(chart: Any) -> None:
    """ingress.enabled without a host fails the render with the missing value named."""
    values = merge(load_yaml(REQUIRED_VALUES), {"ingress": {"enabled": True}})
    with pytest.raises(helm_python.HelmError, match=r"ingress\.host"):
        render_chart(chart, values)


def test_route_is_edge_tls_by_default_and_reencrypts_to_a_tls_proxy(render: Render, prod_values: Doc) -> None:
    """route.enabled: edge TLS with redirect; with the proxy's own TLS (prod) it re-encrypts."""
    route = only(render({"route": {"enabled": True}}), "Route")["spec"]
    assert route["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    assert route["to"] == {"kind": "Service", "name": "prom-keycloak-proxy", "weight": 100}
    assert route["port"] == {"targetPort": "http"}

    prod_route = only(render(prod_values), "Route")["spec"]
    assert prod_route["tls"]["termination"] == "reencrypt"


def test_route_refuses_plain_http_to_a_tls_proxy(chart: Any, prod_values: Doc) -> None:
    """Edge termination in front of a proxy that serves TLS cannot work: the render says so."""
    values = merge(prod_values, {"route": {"tls": {"termination": "edge"}}})
    with pytest.raises(helm_python.HelmError, match="reencrypt or passthrough"):
        render_chart(chart, values)
