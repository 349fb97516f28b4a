"""Hand-made malicious tokens: the attack table of the bearer verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from .fake_realm import FakeRealm, SigningKey, new_rsa

_ATTACKER = SigningKey("sig-1", new_rsa())
_OTHER_REALM = SigningKey("other-realm-key", new_rsa())


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    """A JWT assembled by hand, with any header, claims and signature bytes."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}" if signature else f"{head}.{body}."


def claims_of(realm: FakeRealm, **extra: Any) -> dict[str, Any]:
    """Valid claims for alice in the fake realm."""
    now = int(time.time())
    return {
        "exp": now + 300,
        "iat": now,
        "iss": realm.issuer,
        "typ": "Bearer",
        "sub": "u-alice",
        "preferred_username": "alice",
        "azp": "grafana",
        **extra,
    }


def alg_none(realm: FakeRealm) -> str:
    """`alg: none` without a signature."""
    return raw_token({"alg": "none", "typ": "JWT", "kid": "sig-1"}, claims_of(realm), b"")


def alg_none_with_junk(realm: FakeRealm) -> str:
    """`alg: none` with a junk signature segment (passes the structure check)."""
    return raw_token({"alg": "none", "kid": "sig-1"}, claims_of(realm), b"junk")


def hs256_public_key(realm: FakeRealm) -> str:
    """HS256 keyed with the realm's public key PEM (the classic algorithm confusion)."""
    pem = (
        realm.keys[0]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "sig-1"}
    unsigned = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims_of(realm)).encode())}"
    mac = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64(mac)}"


def unknown_kid(realm: FakeRealm) -> str:
    """Signed by a key the realm never published."""
    return jwt.encode(claims_of(realm), new_rsa(), "RS256", headers={"kid": "nope"})


def _injected(realm: FakeRealm, header: dict[str, Any]) -> str:
    """Signed by the attacker, claiming the realm's kid, pointing at the attacker's key."""
    return jwt.encode(claims_of(realm), _ATTACKER.private, "RS256", headers={"kid": "sig-1", **header})


def jku_header(realm: FakeRealm) -> str:
    """`jku` naming the attacker's JWKS."""
    return _injected(realm, {"jku": "http://127.0.0.1:1/jwks"})


def x5u_header(realm: FakeRealm) -> str:
    """`x5u` naming the attacker's certificate."""
    return _injected(realm, {"x5u": "http://127.0.0.1:1/cert.pem"})


def jwk_header(realm: FakeRealm) -> str:
    """`jwk` embedding the attacker's public key."""
    return _injected(realm, {"jwk": _ATTACKER.jwk()})


def expired(realm: FakeRealm) -> str:
    """Expired a minute ago."""
    return realm.mint(lifetime=-60)


def not_yet_valid(realm: FakeRealm) -> str:
    """`nbf` two minutes ahead (beyond the 30 s leeway)."""
    return realm.mint({"nbf": int(time.time()) + 120})


def wrong_issuer(realm: FakeRealm) -> str:
    """Signed by the realm's key but naming another issuer."""
    return realm.mint({"iss": "https://keycloak.example/realms/nerc"})


def other_realm(realm: FakeRealm) -> str:
    """A token of another realm: its own key and issuer."""
    claims = claims_of(realm, iss=realm.issuer.replace("/nerc", "/other"))
    return jwt.encode(claims, _OTHER_REALM.private, "RS256", headers={"kid": _OTHER_REALM.kid})


def tampered(realm: FakeRealm) -> str:
    """A valid token whose payload was swapped after signing."""
    head, _, sig = realm.mint().split(".")
    body = b64(json.dumps(claims_of(realm, preferred_username="dave")).encode())
    return f"{head}.{body}.{sig}"


def truncated(realm: FakeRealm) -> str:
    """A valid token cut short."""
    return realm.mint()[:-12]


def two_segments(realm: FakeRealm) -> str:
    """A valid token without its signature segment."""
    return realm.mint().rsplit(".", 1)[0]


def oversized(realm: FakeRealm) -> str:
    """A validly signed token over 16 KB."""
    return realm.mint({"padding": "x" * 17000})


def encryption_kid(realm: FakeRealm) -> str:
    """Signed with the realm's encryption key (use: enc), which never verifies anything."""
    return realm.mint(key=realm.keys[1])


def id_token(realm: FakeRealm) -> str:
    """An ID token (`typ: ID`) is no access token."""
    return realm.mint({"typ": "ID"})


def refresh_token(realm: FakeRealm) -> str:
    """A refresh token (`typ: Refresh`) is no access token."""
    return realm.mint({"typ": "Refresh"})


def no_exp(realm: FakeRealm) -> str:
    """A token without `exp` never expires, so it is refused."""
    return realm.mint({"exp": None})


ATTACKS: dict[str, Callable[[FakeRealm], str]] = {
    "alg-none": alg_none,
    "alg-none-junk-signature": alg_none_with_junk,
    "hs256-with-public-key": hs256_public_key,
    "unknown-kid": unknown_kid,
    "jku-injection": jku_header,
    "x5u-injection": x5u_header,
    "jwk-injection": jwk_header,
    "expired": expired,
    "not-yet-valid": not_yet_valid,
    "wrong-issuer": wrong_issuer,
    "another-realm": other_realm,
    "tampered-payload": tampered,
    "truncated": truncated,
    "missing-signature": two_segments,
    "over-16kb": oversized,
    "encryption-key-kid": encryption_kid,
    "id-token": id_token,
    "refresh-token": refresh_token,
    "no-exp": no_exp,
}
