"""Fixtures for the whole stack: Keycloak emulator + real Prometheus (mTLS) + the proxy server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from proxy_demo.policy import DEMO_POLICY
from proxy_demo.prometheus import PrometheusServer
from tests.support.proxy_server import ProxyServer, make_settings

POLICY: dict[str, Any] = yaml.safe_load(DEMO_POLICY.read_text(encoding="utf-8"))
REALM: str = POLICY["realm"]
PASSWORDS = {u["username"]: u["password"] for u in POLICY["users"]}
CLIENT_SECRETS = {c["client_id"]: c["secret"] for c in POLICY["clients"] if c.get("secret")}

TokenFor = Callable[[str], str]
ProxyFactory = Callable[..., ProxyServer]


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[ThreadedEmulatorServer]:
    """The Keycloak emulator with `demo/proxy_demo/demo.yaml`, as a real HTTP server on loopback."""
    server = EmulatorServer.start_in_thread(Emulator.from_files([DEMO_POLICY]))
    yield server
    server.close()


@pytest.fixture(scope="session")
def emu(emulator_server: ThreadedEmulatorServer) -> Emulator:
    """The emulator's state (tokens, stats, key rotation)."""
    return emulator_server.emulator


def proxy_environ(prometheus: PrometheusServer, keycloak_url: str, **extra: str) -> dict[str, str]:
    """The `PROXY_*` environment pointing the proxy at the test Prometheus and Keycloak."""
    env = {
        "PROXY_PROMETHEUS_BASE_URL": prometheus.base_url,
        "PROXY_PROMETHEUS_CA_CERT": str(prometheus.ca),
        "PROXY_PROMETHEUS_TLS_CERT": str(prometheus.client_cert),
        "PROXY_PROMETHEUS_TLS_KEY": str(prometheus.client_key),
        "PROXY_AUTH_BASE_URL": keycloak_url,
        "PROXY_AUTH_REALM": REALM,
        "PROXY_AUTH_CLIENT_ID": POLICY["resource_server"]["client_id"],
        "PROXY_AUTH_CLIENT_SECRET": POLICY["resource_server"]["secret"],
        "PROXY_ACM_HUB": POLICY["hub"],
        "PROXY_SHUTDOWN_TIMEOUT": "2s",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def proxy_server(
    prometheus: PrometheusServer, emulator_server: ThreadedEmulatorServer
) -> Iterator[ProxyServer]:
    """The proxy (narrow mode, defaults) in front of the full test Prometheus."""
    server = ProxyServer(make_settings(proxy_environ(prometheus, emulator_server.base_url))).start()
    yield server
    server.stop()


@pytest.fixture
def proxy_factory(
    prometheus: PrometheusServer, emulator_server: ThreadedEmulatorServer
) -> Iterator[ProxyFactory]:
    """Start extra proxies with `PROXY_*` overrides; all stopped after the test."""
    started: list[ProxyServer] = []

    def make(
        upstream: PrometheusServer | None = None, keycloak_url: str | None = None, **env: str
    ) -> ProxyServer:
        environ = proxy_environ(upstream or prometheus, keycloak_url or emulator_server.base_url, **env)
        server = ProxyServer(make_settings(environ)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def token_for(emu: Emulator) -> TokenFor:
    """A fresh access token for a demo user (password grant) or client (client credentials)."""

    def get(name: str) -> str:
        if name in PASSWORDS:
            answer = emu.password_token(REALM, name, PASSWORDS[name])
        else:
            answer = emu.client_token(REALM, name, CLIENT_SECRETS[name])
        return str(answer["access_token"])

    return get
