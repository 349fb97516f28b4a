"""docker-compose.yaml and deploy/compose/: images, ports, mounts, configs, certs, sample data."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from proxy_demo.policy import DEMO_POLICY

from .conftest import REPO, Doc

COMPOSE_FILE = REPO / "docker-compose.yaml"
COMPOSE_DIR = REPO / "deploy" / "compose"
REALM = COMPOSE_DIR / "keycloak" / "realm-nerc.json"
BUILT_IMAGE = "prom-keycloak-proxy:local"
EXPECTED_PORTS = {
    "keycloak": ["8180:8080"],
    "prometheus": ["9090:9090"],
    "proxy": ["8080:8080", "9091:9091"],
    "grafana": ["3000:3000"],
}


def _load_script(relative: str) -> ModuleType:
    """Import one of the compose helper scripts by path."""
    path = COMPOSE_DIR / relative
    name = f"compose_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(name="compose", scope="module")
def _compose() -> Doc:
    """The parsed compose file."""
    doc: Doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(name="services", scope="module")
def _services(compose: Doc) -> dict[str, Doc]:
    """The compose services by name."""
    services: dict[str, Doc] = compose["services"]
    return services


def _bind_sources(service: Doc) -> list[str]:
    """Return the host paths a service bind-mounts (short syntax, relative paths)."""
    sources = []
    for volume in service.get("volumes", []):
        source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith((".", "/")):
            sources.append(source)
    return sources


def test_docker_compose_config_accepts_the_file() -> None:
    """`docker compose config` (client-side only) accepts the file, where the plugin exists."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )

    assert result.returncode == 0, result.stderr


def test_the_whole_stack_is_there(services: dict[str, Doc]) -> None:
    """Keycloak, Prometheus, the proxy and Grafana run, plus the one-shot setup services."""
    assert {"keycloak", "prometheus", "proxy", "grafana"} <= set(services)
    assert {"certs", "sample-backfill", "prometheus-backfill", "sample-exporter"} <= set(services)


def test_every_image_is_pinned(services: dict[str, Doc]) -> None:
    """Every service names an image with an explicit version tag (never `latest`)."""
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image}"


def test_keycloak_is_real_and_imports_the_realm(services: dict[str, Doc]) -> None:
    """Keycloak 26 in dev mode imports the realm directory holding realm-nerc.json."""
    keycloak = services["keycloak"]
    mounts = [v for v in keycloak["volumes"] if v.endswith(":/opt/keycloak/data/import:ro")]

    assert re.fullmatch(r"quay\.io/keycloak/keycloak:26\.[0-9.]+", keycloak["image"])
    assert keycloak["command"] == ["start-dev", "--import-realm"]
    assert len(mounts) == 1
    assert (REPO / mounts[0].split(":")[0] / "realm-nerc.json").is_file()


def test_the_proxy_image_is_built_once_and_reused(services: dict[str, Doc]) -> None:
    """Only `proxy` builds the image; services reusing it never try to pull it."""
    builders = [name for name, s in services.items() if "build" in s]

    assert builders == ["proxy"]
    assert services["proxy"]["build"]["dockerfile"] == "Dockerfile"
    for name, service in services.items():
        if service["image"] == BUILT_IMAGE and name != "proxy":
            assert service["pull_policy"] == "never", name


def test_published_ports(services: dict[str, Doc]) -> None:
    """The laptop-facing ports are the documented ones."""
    for name, ports in EXPECTED_PORTS.items():
        assert ports == services[name]["ports"], name


def test_every_bind_mount_and_secret_file_exists(compose: Doc, services: dict[str, Doc]) -> None:
    """Every host path the stack mounts is in the repository."""
    for name, service in services.items():
        for source in _bind_sources(service):
            assert (REPO / source).exists(), f"{name}: {source}"
    for name, secret in compose["secrets"].items():
        assert (REPO / secret["file"]).is_file(), name


def test_named_volumes_secrets_and_dependencies_are_declared(compose: Doc, services: dict[str, Doc]) -> None:
    """Named volumes, secrets and depends_on targets all refer to declared objects."""
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: {source}"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], f"{name}: {secret}"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name}: {dependency}"


def test_proxy_is_configured_for_mtls_and_keycloak(services: dict[str, Doc]) -> None:
    """The proxy reaches Prometheus over HTTPS with a client certificate and reads its secret from a file."""
    proxy = services["proxy"]
    env: dict[str, str] = proxy["environment"]

    assert env["PROXY_PROMETHEUS_BASE_URL"].startswith("https://prometheus:")
    for var in ("PROXY_PROMETHEUS_CA_CERT", "PROXY_PROMETHEUS_TLS_CERT", "PROXY_PROMETHEUS_TLS_KEY"):
        assert env[var].startswith("/certs/")
    assert "PROXY_AUTH_CLIENT_SECRET" not in env
    assert env["PROXY_AUTH_CLIENT_SECRET_FILE"] == "/run/secrets/proxy-client-secret"
    assert env["PROXY_AUTH_BASE_URL"] == "http://keycloak:8080"
    assert proxy["read_only"] is True
    assert proxy["cap_drop"] == ["ALL"]


def test_prometheus_requires_client_certificates(services: dict[str, Doc]) -> None:
    """Prometheus serves TLS and requires a client certificate signed by the compose CA."""
    web = yaml.safe_load((COMPOSE_DIR / "prometheus" / "web-config.yml").read_text())
    command = services["prometheus"]["command"]

    assert web["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    assert "--web.config.file=/etc/prometheus/web-config.yml" in command


def test_prometheus_scrapes_services_of_the_stack(services: dict[str, Doc]) -> None:
    """Every scrape target is a compose service; the sample job keeps the exporter's labels."""
    config = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    assert jobs["gpu-sample"]["honor_labels"] is True
    for job in jobs.values():
        for static in job["static_configs"]:
            for target in static["targets"]:
                assert target.split(":")[0] in services


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    """promtool checks prometheus.yml and web-config.yml, where Prometheus is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    config = tmp_path / "prometheus.yml"
    config.write_text((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_datasources_go_through_the_proxy(services: dict[str, Doc]) -> None:
    """Both provisioned datasources point at the proxy: forwarded user token, and Basic client."""
    path = COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "prom-keycloak-proxy.yaml"
    datasources = {d["uid"]: d for d in yaml.safe_load(path.read_text())["datasources"]}
    grafana_secrets = services["grafana"]["secrets"]

    assert {"http://proxy:8080"} == {d["url"] for d in datasources.values()}
    assert datasources["pkp-user"]["jsonData"]["oauthPassThru"] is True
    client = datasources["pkp-client"]
    assert client["basicAuth"] is True
    password = client["secureJsonData"]["basicAuthPassword"]
    assert re.fullmatch(r"\$__file\{/run/secrets/([-a-z]+)\}", password)
    assert password[len("$__file{/run/secrets/") : -1] in grafana_secrets


def test_gpu_dashboard_queries_use_the_datasource_variable() -> None:
    """The GPU dashboard is valid JSON, every panel uses ${datasource} and has a query."""
    dashboard: dict[str, Any] = json.loads(
        (COMPOSE_DIR / "grafana" / "dashboards" / "gpu-usage.json").read_text()
    )
    variables = {v["name"] for v in dashboard["templating"]["list"]}

    assert {"datasource", "cluster", "namespace"} <= variables
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert all(t["expr"].strip() for t in panel["targets"])
        assert any("DCGM_" in t["expr"] or "nvidia_com_gpu" in t["expr"] for t in panel["targets"])


def test_realm_import_is_consistent(services: dict[str, Doc]) -> None:
    """The realm's resources, policies, permissions, groups and secrets fit together and the proxy."""
    realm: dict[str, Any] = json.loads(REALM.read_text())
    env = services["proxy"]["environment"]
    clients = {c["clientId"]: c for c in realm["clients"]}
    server = clients[env["PROXY_AUTH_CLIENT_ID"]]
    authz = server["authorizationSettings"]
    resources = {r["name"] for r in authz["resources"]}
    policies = {p["name"]: p for p in authz["policies"]}
    groups = {g["path"] for g in realm["groups"]}
    usernames = {u["username"] for u in realm["users"]}
    hub = env["PROXY_ACM_HUB"]

    assert realm["realm"] == env["PROXY_AUTH_REALM"]
    assert server["authorizationServicesEnabled"] is True
    assert f"HUB-{hub}" in resources
    name_re = re.compile(rf"^HUB(-{hub}(-CLUSTER-[a-z0-9-]+(-PROJECT-[a-z0-9-]+)?)?)?$")
    assert all(name_re.match(r) for r in resources)
    for policy in policies.values():
        if policy["type"] == "scope":
            assert set(json.loads(policy["config"]["resources"])) <= resources
            assert json.loads(policy["config"]["scopes"]) == ["GET"]
            assert set(json.loads(policy["config"]["applyPolicies"])) <= set(policies)
        elif policy["type"] == "group":
            assert {g["path"] for g in json.loads(policy["config"]["groups"])} <= groups
        elif policy["type"] == "client":
            assert set(json.loads(policy["config"]["clients"])) <= set(clients)
        elif policy["type"] == "user":
            assert set(json.loads(policy["config"]["users"])) <= usernames
    for user in realm["users"]:
        assert set(user.get("groups", [])) <= groups
    secrets_dir = COMPOSE_DIR / "secrets"
    assert server["secret"] == (secrets_dir / "proxy-client-secret").read_text()
    assert clients["grafana"]["publicClient"] is True
    assert (
        clients["researcher-team-a"]["secret"]
        == (secrets_dir / "researcher-team-a-client-secret").read_text()
    )


def test_realm_matches_the_demo_policies() -> None:
    """The placeholder realm names what demo/proxy_demo/demo.yaml names (what `policies export` writes)."""
    demo_path = DEMO_POLICY
    if not demo_path.is_file():
        pytest.skip("demo/proxy_demo/demo.yaml is not there")
    demo: dict[str, Any] = yaml.safe_load(demo_path.read_text(encoding="utf-8"))
    realm: dict[str, Any] = json.loads(REALM.read_text())
    clients = {c["clientId"]: c for c in realm["clients"]}
    server = clients[demo["resource_server"]["client_id"]]
    resources = {r["name"] for r in server["authorizationSettings"]["resources"]}
    users = {u["username"]: u for u in realm["users"]}
    hub = demo["hub"]

    assert demo["realm"] == realm["realm"]
    assert demo["resource_server"]["secret"] == server["secret"]
    for cluster, spec in demo["clusters"].items():
        assert f"HUB-{hub}-CLUSTER-{cluster}" in resources
        for project in spec["projects"]:
            assert f"HUB-{hub}-CLUSTER-{cluster}-PROJECT-{project}" in resources
    for user in demo["users"]:
        credentials = users[user["username"]]["credentials"]
        assert [user["password"]] == [c["value"] for c in credentials]
    for client in demo["clients"]:
        assert client["client_id"] in clients
        if "secret" in client:
            assert client["secret"] == clients[client["client_id"]]["secret"]


def test_generated_certificates_form_a_working_mtls_chain(tmp_path: Path) -> None:
    """gen_certs.py writes a CA, a server cert for `prometheus` and a client cert, all chained."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    gen = _load_script("certs/gen_certs.py")
    assert gen.main([str(tmp_path)]) == 0
    assert not gen.write_all(tmp_path), "existing certificates are kept"
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "prometheus.crt").read_bytes())
    client = x509.load_pem_x509_certificate((tmp_path / "proxy.crt").read_bytes())

    for leaf in (server, client):
        leaf.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "prometheus" in sans.get_values_for_type(x509.DNSName)
    client_eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in client_eku
    assert (tmp_path / "proxy.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_sample_exposition_parses_and_carries_tenancy_labels() -> None:
    """The live exporter's text parses and every series has cluster plus a project label."""
    from prometheus_client.parser import text_string_to_metric_families

    gpu = _load_script("sample-data/gpu_metrics.py")
    families = list(text_string_to_metric_families(gpu.exposition(1_700_000_000.0)))
    samples = [s for f in families for s in f.samples]

    assert {f.name for f in families} >= {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"}
    for sample in samples:
        assert sample.labels["cluster"].startswith("nerc-ocp-")
        assert "namespace" in sample.labels
        if sample.name.startswith("DCGM_"):
            assert sample.labels["namespace"] == "nvidia-gpu-operator"
            assert sample.labels["exported_namespace"]
    util = [s.value for s in samples if s.name == "DCGM_FI_DEV_GPU_UTIL"]
    assert all(0 <= v <= 100 for v in util)


def test_sample_backfill_is_valid_openmetrics(tmp_path: Path) -> None:
    """The backfill file parses as OpenMetrics and promtool turns it into blocks when present."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    gpu = _load_script("sample-data/gpu_metrics.py")
    out = tmp_path / "gpu.om"
    assert gpu.main(["backfill", str(out), "--hours", "0.5", "--step", "300"]) == 0
    families = list(text_string_to_metric_families(out.read_text()))  # type: ignore[no-untyped-call]

    assert len(families) == len(gpu.FAMILIES)
    assert all(len(f.samples) > 0 for f in families)
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(out), str(tmp_path / "tsdb")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
