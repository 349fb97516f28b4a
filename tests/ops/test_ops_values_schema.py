"""values.schema.json: valid itself, accepts the shipped values, rejects bad ones."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from .conftest import CHART, Render, load_yaml

helm_python = pytest.importorskip("helm_python")

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))

BAD_VALUES: dict[str, dict[str, Any]] = {
    "no replica": {"replicaCount": 0},
    "typo under config": {"config": {"enforce_mod": "deny"}},
    "chart-managed config file": {"config": {"config": "/etc/proxy.yaml"}},
    "total that is no limit": {"totals": {"max_body_bytes": 10}},
    "route with an unknown termination": {"route": {"tls": {"termination": "plain"}}},
    "replicas as a string": {"replicaCount": "two"},
    "writable root FS": {"securityContext": {"readOnlyRootFilesystem": False}},
    "privilege escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "added capability": {"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_RAW"]}}},
    "root pod": {"podSecurityContext": {"runAsNonRoot": False}},
    "client secret in config": {"config": {"auth_client_secret": "x"}},
    "upstream token in config": {"config": {"prometheus_token": "x"}},
    "cache HMAC key in config": {"config": {"cache_hmac_key": "x" * 32}},
    "unknown cache backend": {"config": {"cache": "etcd"}},
    "cache address without port": {"config": {"cache_address": "redis.cache.svc"}},
    "listen address in config": {"config": {"listen": "0.0.0.0:1"}},
    "unknown enforce mode": {"config": {"enforce_mode": "allow"}},
    "bad duration": {"config": {"authz_cache_ttl": "one minute"}},
    "hub not a Kubernetes name": {"config": {"acm_hub": "Hub#1"}},
    "base URL without scheme": {"config": {"prometheus_base_url": "thanos:9091"}},
    "camelCase config key": {"config": {"authBaseUrl": "https://kc"}},
    "unknown top-level key": {"replicas": 3},
    "bad pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad digest": {"image": {"digest": "latest"}},
    "secret in extraEnv": {"extraEnv": [{"name": "PROXY_AUTH_CLIENT_SECRET", "value": "x"}]},
    "HPA minimum of one": {"autoscaling": {"minReplicas": 1}},
    "TLS without a Secret": {"tls": {"enabled": True}},
    "grace period below drain": {"terminationGracePeriodSeconds": 20},
    "unknown anti-affinity preset": {"podAntiAffinityPreset": "sometimes"},
    "typo in auth": {"auth": {"existingSecretName": "x"}},
}


def test_schema_is_valid_draft7() -> None:
    """The schema itself is a valid JSON Schema (draft-07, what Helm uses)."""
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_schema_accepts_the_shipped_values(chart: Any) -> None:
    """values.yaml and every ci/*-values.yaml pass the schema."""
    chart.validate_schema({})
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        chart.validate_schema(load_yaml(path))


def test_every_default_value_is_described_by_the_schema() -> None:
    """Each top-level key of values.yaml is declared (additionalProperties is false)."""
    defaults = load_yaml(CHART / "values.yaml")

    assert set(defaults) <= set(SCHEMA["properties"])


@pytest.mark.parametrize("values", BAD_VALUES.values(), ids=list(BAD_VALUES))
def test_schema_rejects_bad_values(values: dict[str, Any], chart: Any) -> None:
    """Helm refuses each bad value through values.schema.json."""
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(values)


def test_config_schema_lists_exactly_the_proxy_options() -> None:
    """`config:` accepts every option of proxy.config.Settings except secrets and chart-managed ones."""
    from proxy.config import Settings

    chart_managed = {
        "auth_client_secret",
        "prometheus_token",
        "prometheus_tls_key",
        "tls_key",
        "listen",
        "metrics_listen",
        "prometheus_ca_cert",
        "prometheus_tls_cert",
        "tls_cert",
        "auth_ca_cert",
        "prometheus_tls_server_name",
        "cache_password",  # resultsCache.* mounts these from a Secret
        "cache_hmac_key",
        "cache_ca_cert",
        "cache_tls_cert",
        "cache_tls_key",
        "hubs",  # YAML only: the chart's own `hubs:` value renders it
        "default_hub",
    }
    config = SCHEMA["properties"]["config"]
    assert config["additionalProperties"] is False
    missing = set(Settings.model_fields) - chart_managed - set(config["properties"])
    unknown = set(config["properties"]) - set(Settings.model_fields)
    assert not missing, f"add these proxy options to values.schema.json's config: {sorted(missing)}"
    assert not unknown, f"values.schema.json's config lists options the proxy lacks: {sorted(unknown)}"


def test_render_refuses_a_typo_under_config(render: Render) -> None:
    """`enforce_mod: deny` fails the render, naming the key, instead of silently staying narrow."""
    with pytest.raises(helm_python.HelmError, match="enforce_mod"):
        render({"config": {"enforce_mod": "deny"}})


def test_render_enforces_the_schema(render: Render) -> None:
    """Rendering (helm install/template) with a bad value fails instead of producing manifests."""
    with pytest.raises(helm_python.HelmError):
        render({"replicaCount": "two"})
