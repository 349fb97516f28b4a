"""Helm chart: the shared results cache's Secret (HMAC key, Redis password, TLS files) as files."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Render, env_map, only, proxy_container

helm_python = pytest.importorskip("helm_python")

REDIS = {
    "config": {"cache": "redis", "cache_address": "redis.cache.svc:6379", "cache_tls": True},
    "resultsCache": {
        "existingSecret": "proxy-results-cache",
        "passwordKey": "password",
        "caKey": "ca.crt",
        "certKey": "tls.crt",
    },
}


def test_shared_cache_secret_is_mounted_and_env_points_at_the_files(render: Render) -> None:
    """The HMAC key, password and TLS files come from one Secret mounted read-only, as `*_FILE`/paths."""
    deployment = only(render(REDIS), "Deployment")
    container = proxy_container(deployment)
    env = {k: v.get("value") for k, v in env_map(container).items()}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    folder = mounts["results-cache"]["mountPath"]
    assert mounts["results-cache"]["readOnly"] is True
    assert volumes["results-cache"]["secret"]["secretName"] == "proxy-results-cache"
    assert env["PROXY_CACHE"] == "redis" and env["PROXY_CACHE_ADDRESS"] == "redis.cache.svc:6379"
    assert env["PROXY_CACHE_HMAC_KEY_FILE"] == f"{folder}/hmac-key"
    assert env["PROXY_CACHE_PASSWORD_FILE"] == f"{folder}/password"
    assert env["PROXY_CACHE_CA_CERT"] == f"{folder}/ca.crt"
    assert env["PROXY_CACHE_TLS_CERT"] == f"{folder}/tls.crt"
    assert env["PROXY_CACHE_TLS_KEY"] == f"{folder}/tls.key"
    assert "PROXY_CACHE_HMAC_KEY" not in env and "PROXY_CACHE_PASSWORD" not in env


def test_in_process_cache_mounts_nothing(render: Render) -> None:
    """The default (in-process) cache needs no Secret: no mount, no cache file variables."""
    container = proxy_container(only(render({}), "Deployment"))
    assert "results-cache" not in {m["name"] for m in container["volumeMounts"]}
    assert not [k for k in env_map(container) if k.startswith("PROXY_CACHE_")]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"config": {"cache": "memcached", "cache_address": "mc:11211"}}, "resultsCache.existingSecret"),
        ({"config": {"cache": "redis"}, "resultsCache": {"existingSecret": "s"}}, "config.cache_address"),
    ],
)
def test_shared_cache_without_its_address_or_secret_fails_the_render(
    values: dict[str, Any], named: str, render: Render
) -> None:
    """memcached/redis without an address or the HMAC key's Secret fails `helm install`, naming it."""
    with pytest.raises(helm_python.HelmError, match=named.replace(".", r"\.")):
        render(values)


@pytest.mark.parametrize("key", ["cache_hmac_key", "cache_password", "cache_tls_key", "cache_ca_cert"])
def test_cache_secrets_and_files_are_refused_under_config(key: str, render: Render) -> None:
    """The HMAC key, the password and the TLS files are never plain `config:` values."""
    with pytest.raises(helm_python.HelmError):
        render({"config": {key: "x"}})
