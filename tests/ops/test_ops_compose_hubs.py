"""deploy/compose/hubs.yaml: the compose stack with a second hub (its own Prometheus, CA and data)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import load_settings
from proxy.hubs import HubConfig
from proxy_demo.certs import Pki
from proxy_demo.policy import HUB_POLICIES, merged_realm

from .conftest import REPO, Doc
from .test_ops_compose import COMPOSE_DIR, COMPOSE_FILE, _load_script

OVERRIDE = COMPOSE_DIR / "hubs.yaml"
PROXY_HUBS = COMPOSE_DIR / "hubs" / "proxy-hubs.yaml"


def _merged() -> dict[str, Doc]:
    """The services of docker-compose.yaml with the override applied the way compose merges:
    mappings (environment, depends_on) by key, volume lists by target path."""
    base: dict[str, Doc] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"]
    extra: dict[str, Doc] = yaml.safe_load(OVERRIDE.read_text(encoding="utf-8"))["services"]
    out = {name: dict(service) for name, service in base.items()}
    for name, service in extra.items():
        merged = out.setdefault(name, {})
        for key, value in service.items():
            if key in ("environment", "depends_on"):
                merged[key] = {**merged.get(key, {}), **value}
            elif key == "volumes":
                by_target = {v.split(":")[1]: v for v in merged.get("volumes", [])}
                by_target.update({v.split(":")[1]: v for v in value})
                merged[key] = list(by_target.values())
            else:
                merged[key] = value
    return out


def test_override_adds_a_second_hub_with_its_own_ca_and_data() -> None:
    """prometheus-innabox serves mTLS from its own cert volume, fed by its own renamed sample data."""
    services = _merged()
    prom = services["prometheus-innabox"]
    certs = {v.split(":")[0] for v in prom["volumes"] if v.split(":")[1] == "/certs"}
    assert certs == {"certs-innabox"}
    assert "certs" not in {v.split(":")[0] for v in prom["volumes"]}
    assert "--rename" in services["sample-exporter-innabox"]["entrypoint"]
    assert "--rename" in services["sample-backfill-innabox"]["entrypoint"]
    declared = yaml.safe_load(OVERRIDE.read_text(encoding="utf-8"))["volumes"]
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), source
            else:
                assert source in declared or source in yaml.safe_load(COMPOSE_FILE.read_text())["volumes"]
        for dependency in service.get("depends_on", {}):
            assert dependency in services


def test_proxy_switches_to_the_hub_list_and_loads_it(tmp_path: Path, pki: Pki) -> None:
    """The proxy's single-hub variables are emptied, PROXY_CONFIG names the hub list, and the
    configuration loads (certificate paths rewritten to files gen_certs.py writes) with both hubs."""
    proxy = _merged()["proxy"]
    env: dict[str, str] = {k: str(v) for k, v in proxy["environment"].items()}
    mounts = {v.split(":")[1]: v.split(":")[0] for v in proxy["volumes"]}
    assert (
        env["PROXY_CONFIG"].startswith("/compose/hubs/")
        and mounts["/compose/hubs"] == "./deploy/compose/hubs"
    )
    assert env["PROXY_PROMETHEUS_BASE_URL"] == "" and env["PROXY_ACM_HUB"] == ""
    doc = yaml.safe_load(PROXY_HUBS.read_text(encoding="utf-8"))
    volumes = {hub["name"]: mounts[hub["prometheus_ca_cert"].rsplit("/", 1)[0]] for hub in doc["hubs"]}
    assert volumes == {"moc": "certs", "innabox-dev": "certs-innabox"}
    certs = _load_script("certs/gen_certs.py")
    for hub in doc["hubs"]:
        certs.write_all(tmp_path / hub["name"])  # what each hub's `certs*` one-shot writes
        for key in ("prometheus_ca_cert", "prometheus_tls_cert", "prometheus_tls_key"):
            hub[key] = str(tmp_path / hub["name"] / Path(hub[key]).name)
    config = tmp_path / "hubs.yaml"
    config.write_text(yaml.safe_dump(doc))
    env |= {"PROXY_CONFIG": str(config), "PROXY_AUTH_CLIENT_SECRET": "x"}
    env.pop("PROXY_AUTH_CLIENT_SECRET_FILE")
    settings = load_settings({}, env, warn=lambda _m: None)
    assert [h.name for h in settings.hubs] == ["moc", "innabox-dev"] and settings.default_hub == "moc"
    assert all(isinstance(h, HubConfig) for h in settings.hubs)


def test_keycloak_imports_both_hubs_realm() -> None:
    """keycloak-hubs/realm-nerc.json is exactly both hubs' policies merged (no drift)."""
    services = _merged()
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["keycloak"]["volumes"]}
    assert mounts["/opt/keycloak/data/import"] == "./deploy/compose/keycloak-hubs"
    committed = json.loads((COMPOSE_DIR / "keycloak-hubs" / "realm-nerc.json").read_text(encoding="utf-8"))
    assert committed == merged_realm(HUB_POLICIES)
    resources = {r["name"] for r in committed["clients"][0]["authorizationSettings"]["resources"]}
    assert {"HUB", "HUB-moc", "HUB-innabox-dev", "HUB-innabox-dev-CLUSTER-innabox-gpu"} <= resources


def test_second_hub_sample_data_is_renamed_and_shifted() -> None:
    """--rename and --phase give the second hub other clusters and other values."""
    gpu = _load_script("sample-data/gpu_metrics.py")
    try:
        plain = gpu.exposition(1_700_000_000.0)
        gpu.RENAME.update({"nerc-ocp-test": "innabox-gpu"})
        gpu.PHASE[0] = 7.0
        other = gpu.exposition(1_700_000_000.0)
    finally:
        gpu.RENAME.clear()
        gpu.PHASE[0] = 0.0
    assert "innabox-gpu" in other and "nerc-ocp-test" not in other
    assert "nerc-ocp-test" in plain and "innabox-gpu" not in plain
    util: Any = [line for line in other.splitlines() if line.startswith("DCGM_FI_DEV_GPU_UTIL{")]
    assert util and util != [line for line in plain.splitlines() if line.startswith("DCGM_FI_DEV_GPU_UTIL{")]


def test_promtool_accepts_the_second_prometheus_config(tmp_path: Path) -> None:
    """promtool checks the second hub's prometheus.yml, where Prometheus is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    config = tmp_path / "prometheus.yml"
    config.write_text((COMPOSE_DIR / "hubs" / "prometheus-innabox.yml").read_text())
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
