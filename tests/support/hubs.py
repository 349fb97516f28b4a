"""Several hubs on the real stack: a second Prometheus (own CA, own data), a realm naming both hubs.

Fixtures (register with `pytest_plugins`, next to `tests.support.fixtures`):
- `second_hub_pki` / `second_hub_series` / `second_hub_prometheus` (session): hub `innabox-dev`,
  a PKI unrelated to the first hub's and the dataset under another seed with a renamed cluster.
- `second_hub_oracles` (session): oracle Prometheus servers over the second hub's data.
- `hubs_emulator_server` / `hubs_emu` (session): the emulator with both hubs' policies merged
  into one realm (demo.yaml + demo-innabox.yaml), separate from the single-hub `emulator_server`.
- `hubs_token_for` (session): tokens of that emulator.
`hubs_config` writes the YAML `hubs:` configuration for any set of upstreams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from proxy_demo.certs import Pki
from proxy_demo.dataset import SECOND_HUB, SECOND_HUB_CLUSTERS, SECOND_HUB_SEED, Series, build_dataset
from proxy_demo.policy import HUB_POLICIES, merged_realm
from proxy_demo.prometheus import Binaries, PrometheusServer
from tests.support.prometheus import OraclePrometheusFactory
from tests.support.proxy_server import ProxyServer, make_settings
from tests.support.stack import CLIENT_SECRETS, POLICY, REALM

FIRST_HUB: str = POLICY["hub"]
HUB_PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"}
HUB_PASSWORDS |= {"dave": "dave-password", "eve": "eve-password", "frank": "frank-password"}


def _tls(upstream: Any) -> tuple[Path, Path, Path]:
    """(CA, client cert, client key) of a Prometheus server or of a stub (through its PKI)."""
    pki: Pki = upstream.pki
    return pki.ca_cert, pki.client_cert, pki.client_key


def hub_entry(name: str, upstream: Any, path: str = "", **extra: Any) -> dict[str, Any]:
    """One `hubs:` entry for an upstream, with its own CA and client certificate."""
    ca, cert, key = _tls(upstream)
    entry = {
        "name": name,
        "prometheus_base_url": upstream.base_url + path,
        "prometheus_ca_cert": str(ca),
        "prometheus_tls_cert": str(cert),
        "prometheus_tls_key": str(key),
    }
    entry.update(extra)
    return entry


def hubs_config(
    directory: Path, entries: list[dict[str, Any]], default_hub: str | None = None, **top: Any
) -> Path:
    """Write a YAML configuration with these hubs and return its path."""
    doc: dict[str, Any] = {"hubs": entries, **top}
    if default_hub is not None:
        doc["default_hub"] = default_hub
    path = directory / "hubs.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def two_hubs_proxy(
    directory: Path, first: PrometheusServer, second: PrometheusServer, keycloak_url: str, **extra: str
) -> ProxyServer:
    """A started proxy serving FIRST_HUB (the default, on `first`) and SECOND_HUB (on `second`),
    `extra` as further `PROXY_*` settings."""
    config = hubs_config(
        directory, [hub_entry(FIRST_HUB, first), hub_entry(SECOND_HUB, second)], default_hub=FIRST_HUB
    )
    return ProxyServer(make_settings(hubs_environ(keycloak_url, config, **extra))).start()


def hubs_environ(keycloak_url: str, config: Path, **extra: str) -> dict[str, str]:
    """The `PROXY_*` environment of a several-hubs proxy: Keycloak from env, hubs from the YAML."""
    env = {
        "PROXY_CONFIG": str(config),
        "PROXY_AUTH_BASE_URL": keycloak_url,
        "PROXY_AUTH_REALM": REALM,
        "PROXY_AUTH_CLIENT_ID": POLICY["resource_server"]["client_id"],
        "PROXY_AUTH_CLIENT_SECRET": POLICY["resource_server"]["secret"],
        "PROXY_SHUTDOWN_TIMEOUT": "2s",
        "PROXY_RATE_PER_SUBJECT": "100000",
        "PROXY_RATE_BURST_PER_SUBJECT": "100000",
        "PROXY_MAX_CONCURRENT_PER_SUBJECT": "1000",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def second_hub_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The second hub's PKI: a CA unrelated to the first hub's."""
    return Pki(tmp_path_factory.mktemp("pki-second-hub"))


@pytest.fixture(scope="session")
def second_hub_series() -> list[Series]:
    """The second hub's data: other values (seed), one cluster renamed, one sharing its name."""
    return build_dataset(seed=SECOND_HUB_SEED, clusters=SECOND_HUB_CLUSTERS)


@pytest.fixture(scope="session")
def second_hub_prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    second_hub_pki: Pki,
    second_hub_series: list[Series],
    prometheus_binaries: Binaries,
) -> Iterator[PrometheusServer]:
    """The second hub's real Prometheus (mTLS with its own CA)."""
    server = PrometheusServer(
        tmp_path_factory.mktemp("prometheus-second-hub"),
        second_hub_pki,
        second_hub_series,
        binaries=prometheus_binaries,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def second_hub_oracles(
    tmp_path_factory: pytest.TempPathFactory,
    second_hub_pki: Pki,
    second_hub_series: list[Series],
    prometheus_binaries: Binaries,
    second_hub_prometheus: PrometheusServer,
) -> Iterator[OraclePrometheusFactory]:
    """Per-grant oracle servers over the second hub's data."""
    factory = OraclePrometheusFactory(
        tmp_path_factory.mktemp("oracles-second-hub"),
        second_hub_pki,
        second_hub_series,
        binaries=prometheus_binaries,
        full=second_hub_prometheus,
    )
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="session")
def hubs_emulator_server() -> Iterator[ThreadedEmulatorServer]:
    """The emulator with both hubs' resources and grants in realm `nerc`."""
    emulator = Emulator()
    emulator.import_realm(merged_realm(HUB_POLICIES))
    server = EmulatorServer.start_in_thread(emulator)
    yield server
    server.close()


@pytest.fixture(scope="session")
def hubs_token_for(hubs_emulator_server: ThreadedEmulatorServer) -> Callable[[str], str]:
    """A fresh token of the several-hubs realm for a user (password) or client (credentials)."""
    emu = hubs_emulator_server.emulator

    def get(name: str) -> str:
        if name in HUB_PASSWORDS:
            answer = emu.password_token(REALM, name, HUB_PASSWORDS[name])
        else:
            answer = emu.client_token(REALM, name, CLIENT_SECRETS[name])
        return str(answer["access_token"])

    return get


__all__ = [
    "FIRST_HUB",
    "SECOND_HUB",
    "hub_entry",
    "hubs_config",
    "hubs_environ",
]
