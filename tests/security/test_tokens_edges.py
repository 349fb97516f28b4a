"""Token edge cases against the running proxy (beyond the Keycloak unit tests).

A private emulator (so keys can be rotated and retired, realms added and secrets changed without
disturbing other tests) and a proxy in front of it and the real Prometheus.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from keycloak_emulator import Emulator, EmulatorServer, ThreadedEmulatorServer
from keycloak_emulator.keys import SigningKey, generate_key
from proxy.policies.loader import load
from proxy.policies.realm_json import realm_import
from proxy_demo.policy import DEMO_POLICY
from proxy_demo.prometheus import PrometheusServer
from tests.support.proxy_server import ProxyServer, make_settings
from tests.support.stack import REALM, proxy_environ

pytestmark = [pytest.mark.prometheus]

COLON_SECRET = "s3:cr:et::with-colons"
QUERY = {"query": 'DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod",exported_namespace="team-a"}'}


class EncryptionKey(SigningKey):
    """An RSA key published as an encryption key (`use: enc`, RSA-OAEP), as Keycloak does."""

    def jwk(self) -> dict[str, Any]:
        """The JWK with `use: enc`."""
        return {**super().jwk(), "use": "enc", "alg": "RSA-OAEP"}


@dataclass
class Private:
    """Private emulator and proxy."""

    emu: Emulator
    server: ThreadedEmulatorServer
    proxy: ProxyServer

    def get(self, authorization: str | None, **kwargs: Any) -> requests.Response:
        """A query with the given Authorization header (or none)."""
        headers = {"Authorization": authorization} if authorization else {}
        headers.update(kwargs.pop("headers", {}))
        return requests.get(f"{self.proxy.base_url}/api/v1/query", params={**QUERY,
                            **kwargs.pop("params", {})}, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def private(prometheus: PrometheusServer) -> Iterator[Private]:
    """Emulator with a second realm and a colon secret; a proxy for realm `nerc`."""
    emu = Emulator.from_files([DEMO_POLICY])
    other = realm_import(load(Path(DEMO_POLICY)))
    other["realm"] = "other-realm"
    emu.import_realm(other)
    client = emu.realm(REALM).client_by_client_id("researcher-team-a")
    assert client is not None
    client.secret = COLON_SECRET
    server = EmulatorServer.start_in_thread(emu)
    proxy = ProxyServer(make_settings(proxy_environ(prometheus, server.base_url))).start()
    try:
        yield Private(emu, server, proxy)
    finally:
        proxy.stop()
        server.close()


def test_token_from_a_rotated_out_key_is_401(private: Private, prometheus: PrometheusServer) -> None:
    """Rotate, retire the old key: a proxy that reads the JWKS then rejects old-key tokens."""
    old = private.emu.mint(REALM, user="alice")
    assert private.get(f"Bearer {old}").status_code == 200
    private.emu.rotate_key(REALM)
    private.emu.retire_keys(REALM)
    new = private.emu.mint(REALM, user="alice")
    fresh = ProxyServer(make_settings(proxy_environ(prometheus, private.server.base_url))).start()
    try:
        for base in (fresh.base_url,):
            r = requests.get(f"{base}/api/v1/query", params=QUERY,
                             headers={"Authorization": f"Bearer {old}"}, timeout=30)
            assert r.status_code == 401, r.text
            r = requests.get(f"{base}/api/v1/query", params=QUERY,
                             headers={"Authorization": f"Bearer {new}"}, timeout=30)
            assert r.status_code == 200, r.text
    finally:
        fresh.stop()
    # the long-running proxy learns the new kid on first sight
    assert private.get(f"Bearer {new}").status_code == 200


def test_token_minted_for_another_realm_is_401(private: Private) -> None:
    """Same Keycloak, same user name, other realm: other issuer and keys → 401."""
    foreign = private.emu.mint("other-realm", user="alice")
    r = private.get(f"Bearer {foreign}")
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")


def test_token_for_another_realm_with_our_kid_is_401(private: Private) -> None:
    """Signed by the other realm's key but claiming our active kid: the signature fails."""
    other_key = private.emu.realm("other-realm").active_key
    ours = private.emu.realm(REALM).active_key.kid
    forged = private.emu.mint(REALM, user="alice", key=other_key.private_key, kid=ours)
    assert private.get(f"Bearer {forged}").status_code == 401


def test_kid_pointing_at_an_encryption_key_is_401(private: Private) -> None:
    """The JWKS publishes an encryption key; a token signed with it (its kid) is refused."""
    realm = private.emu.realm(REALM)
    plain = generate_key()
    enc = EncryptionKey(kid="enc-" + plain.kid[:20], private_key=plain.private_key)
    realm.keys.insert(0, enc)
    try:
        token = private.emu.mint(REALM, user="alice", key=enc.private_key, kid=enc.kid)
        assert private.get(f"Bearer {token}").status_code == 401
    finally:
        realm.keys.remove(enc)


@pytest.mark.parametrize(("size", "expected"), [(8 * 1024, {200}), (16 * 1024 - 200, {200}),
                                                 (17 * 1024, {401}), (60 * 1024, {401}),
                                                 (90 * 1024, {400, 401})])
def test_large_tokens(private: Private, size: int, expected: set[int]) -> None:
    """Tokens up to 16 KiB authenticate; larger ones are refused: 401 (aiohttp's 400 past 64 KiB).

    Checked on buildinfo (authentication only): the emulator, like a Keycloak with the default
    8 KiB header limit, answers 400 to a UMA call carrying a > 8 KiB token (→ 503, docs/keycloak.md).
    """
    base = len(private.emu.mint(REALM, {"pad": ""}, user="alice"))
    token = private.emu.mint(REALM, {"pad": "p" * ((size - base) * 3 // 4)}, user="alice")
    assert abs(len(token) - size) < 64
    r = requests.get(f"{private.proxy.base_url}/api/v1/status/buildinfo",
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code in expected, (len(token), r.status_code, r.text[:200])


@pytest.mark.parametrize("where", ["access_token", "token", "id_token", "bearer"])
def test_token_in_query_string_is_ignored(private: Private, where: str) -> None:
    """A valid token in the query string authenticates nothing: 401 Bearer challenge."""
    token = private.emu.mint(REALM, user="alice")
    r = private.get(None, params={where: token})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")


def test_token_in_cookies_is_ignored(private: Private) -> None:
    """Tokens in cookies (Grafana session-like names too) authenticate nothing: 401."""
    token = private.emu.mint(REALM, user="alice")
    cookie = f"access_token={token}; Authorization=Bearer%20{token}; KEYCLOAK_IDENTITY={token}"
    r = private.get(None, headers={"Cookie": cookie, "X-Id-Token": token,
                                   "X-Forwarded-Access-Token": token})
    assert r.status_code == 401


def test_basic_auth_with_colons_in_the_secret(private: Private) -> None:
    """Basic splits at the first colon: a secret containing colons works; a prefix does not."""
    good = base64.b64encode(f"researcher-team-a:{COLON_SECRET}".encode()).decode()
    assert private.get(f"Basic {good}").status_code == 200
    prefix = base64.b64encode(f"researcher-team-a:{COLON_SECRET.split(':')[0]}".encode()).decode()
    assert private.get(f"Basic {prefix}").status_code == 401


def test_unrelated_rsa_key_with_unknown_kid_is_401(private: Private) -> None:
    """A token signed by a key nobody published, under a fresh kid: 401 (after one refetch)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = private.emu.mint(REALM, user="alice", key=key, kid="never-published")
    assert private.get(f"Bearer {token}").status_code == 401
