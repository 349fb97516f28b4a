"""Rotation without restart: the client secret (Keycloak and the mounted file), the listener certificate."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from proxy.server import _listener_ssl, _reload_listener_cert
from proxy_demo.certs import Pki
from proxy_demo.policy import DEMO_POLICY
from tests.support.identities import PROD
from tests.support.proxy_server import make_settings
from tests.support.stack import PASSWORDS, POLICY, REALM, ProxyFactory

QUERY = f'DCGM_FI_DEV_GPU_UTIL{{cluster="{PROD}",exported_namespace="team-a"}}'
CLIENT_ID = POLICY["resource_server"]["client_id"]
OLD_SECRET = POLICY["resource_server"]["secret"]
NEW_SECRET = "rotated-client-secret-0123456789"


@pytest.fixture
def own_keycloak() -> Iterator[ThreadedEmulatorServer]:
    """A private emulator with the demo realm, whose client secret this test rotates."""
    server = EmulatorServer.start_in_thread(Emulator.from_files([DEMO_POLICY]))
    yield server
    server.close()


def _rotate_in_keycloak(base_url: str, secret: str) -> None:
    """Set the resource-server client's secret through the Admin REST API, as an operator would."""
    login = requests.post(
        f"{base_url}/realms/master/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "admin-cli", "username": "admin", "password": "admin"},
        timeout=10,
    )
    login.raise_for_status()
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    admin = f"{base_url}/admin/realms/{REALM}/clients"
    (client,) = requests.get(admin, params={"clientId": CLIENT_ID}, headers=headers, timeout=10).json()
    client["secret"] = secret
    requests.put(f"{admin}/{client['id']}", json=client, headers=headers, timeout=10).raise_for_status()


def _renamed_file(root: Path) -> tuple[Path, Callable[[str], None]]:
    """A plain secret file, rotated by writing a new file and renaming it over the old one."""
    path = root / "client-secret"
    path.write_text(OLD_SECRET + "\n")

    def rotate(secret: str) -> None:
        fresh = root / "client-secret.tmp"
        fresh.write_text(secret + "\n")
        os.replace(fresh, path)

    return path, rotate


def _kubernetes_volume(root: Path) -> tuple[Path, Callable[[str], None]]:
    """A Secret volume laid out as the kubelet does: `key -> ..data/key`, `..data -> ..<version>`;
    rotated by a new version directory and an atomic rename of a new `..data` symlink."""
    versions = iter(range(1, 100))

    def publish(secret: str) -> None:
        version = root / f"..2026_12_06_{next(versions)}"
        version.mkdir()
        (version / "client-secret").write_text(secret + "\n")
        (root / "..data_tmp").symlink_to(version.name)
        os.replace(root / "..data_tmp", root / "..data")

    publish(OLD_SECRET)
    (root / "client-secret").symlink_to("..data/client-secret")
    return root / "client-secret", publish


def _query(own_keycloak: ThreadedEmulatorServer, base_url: str) -> requests.Response:
    """One query with a freshly minted token (so introspection cannot answer from its cache)."""
    token = own_keycloak.emulator.password_token(REALM, "alice", PASSWORDS["alice"])["access_token"]
    return requests.get(
        f"{base_url}/api/v1/query",
        params={"query": QUERY},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


@pytest.mark.parametrize("layout", [_renamed_file, _kubernetes_volume], ids=["rename", "kubernetes-symlink"])
def test_rotated_client_secret_is_used_without_restart(
    own_keycloak: ThreadedEmulatorServer,
    proxy_factory: ProxyFactory,
    tmp_path: Path,
    layout: Callable[[Path], tuple[Path, Callable[[str], None]]],
) -> None:
    """Introspection (the proxy's own credentials) fails once Keycloak has the new secret, and
    succeeds again within the reload interval of the mounted file changing, same process."""
    path, rotate = layout(tmp_path)
    proxy = proxy_factory(
        keycloak_url=own_keycloak.base_url,
        PROXY_AUTH_CLIENT_SECRET="",
        PROXY_AUTH_CLIENT_SECRET_FILE=str(path),
        PROXY_AUTH_INTROSPECT="true",
        PROXY_CERT_RELOAD_INTERVAL="1s",
    )
    assert _query(own_keycloak, proxy.base_url).status_code == 200
    _rotate_in_keycloak(own_keycloak.base_url, NEW_SECRET)
    time.sleep(1.5)  # past the interval: the unchanged file is checked and still holds the old one
    refused = _query(own_keycloak, proxy.base_url)
    assert refused.status_code == 503, refused.text
    rotate(NEW_SECRET)
    deadline = time.monotonic() + 10
    while (answer := _query(own_keycloak, proxy.base_url)).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert answer.json()["data"]["result"], "the answer carries alice's series"


async def _served_certificate(port: int, ca: Path) -> bytes:
    """The DER certificate a TLS handshake with 127.0.0.1:`port` presents."""
    client = ssl.create_default_context(cafile=str(ca))
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return bytes(der)


def _der(pem_file: Path) -> bytes:
    """The first certificate of a PEM file, as DER."""
    return ssl.PEM_cert_to_DER_cert(
        pem_file.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )


async def test_listener_certificate_rotation_reaches_new_handshakes(pki_factory: Callable[[], Pki]) -> None:
    """A listener certificate rewritten on disk is presented to new handshakes within the interval."""
    pki = pki_factory()
    pair = pki.issue("listener", "127.0.0.1")
    settings = make_settings(
        {
            **proxy_environ_for_listener(),
            "PROXY_TLS_CERT": str(pair.cert),
            "PROXY_TLS_KEY": str(pair.key),
            "PROXY_CERT_RELOAD_INTERVAL": "200ms",
        }
    )
    tls = _listener_ssl(settings)
    assert tls is not None
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    reloader = asyncio.create_task(_reload_listener_cert(settings, tls))
    try:
        first = await _served_certificate(port, pki.ca_cert)
        assert first == _der(pair.cert)
        pki.issue("listener", "127.0.0.1", "rotated.example")
        deadline = time.monotonic() + 5
        while (served := await _served_certificate(port, pki.ca_cert)) == first:
            assert time.monotonic() < deadline, "the rotated certificate was never served"
            await asyncio.sleep(0.1)
        assert served == _der(pair.cert)
    finally:
        reloader.cancel()
        server.close()
        await server.wait_closed()


def proxy_environ_for_listener() -> dict[str, str]:
    """The required options, pointing nowhere (only the listener is started)."""
    return {
        "PROXY_PROMETHEUS_BASE_URL": "https://prometheus.invalid",
        "PROXY_AUTH_BASE_URL": "https://keycloak.invalid",
        "PROXY_AUTH_REALM": REALM,
        "PROXY_AUTH_CLIENT_ID": CLIENT_ID,
        "PROXY_AUTH_CLIENT_SECRET": OLD_SECRET,
        "PROXY_ACM_HUB": "moc",
    }
