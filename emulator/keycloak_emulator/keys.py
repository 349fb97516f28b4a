"""RSA signing keys of a realm and their JWKS form."""

from __future__ import annotations

import base64
import datetime
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SigningKey:
    """One RSA key pair with its key id; `use` is `sig` (RS256) or `enc` (RSA-OAEP)."""

    kid: str
    private_key: rsa.RSAPrivateKey
    use: str = "sig"
    _cert: list[bytes] = field(default_factory=list, compare=False, repr=False)

    def certificate_der(self) -> bytes:
        """The key's self-signed certificate (Keycloak's generated key providers make one), DER."""
        if not self._cert:
            self._cert.append(_self_signed(self.private_key))
        return self._cert[0]

    @property
    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_base64(self) -> str:
        """The public key as Keycloak's realm summary shows it: base64 DER, no PEM armour."""
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    def jwk(self) -> dict[str, Any]:
        """The public JWK as Keycloak's certs endpoint publishes it (docs/keycloak.md)."""
        numbers = self.private_key.public_key().public_numbers()
        der = self.certificate_der()
        return {
            "kid": self.kid,
            "kty": "RSA",
            "alg": "RS256" if self.use == "sig" else "RSA-OAEP",
            "use": self.use,
            "n": _b64int(numbers.n),
            "e": _b64int(numbers.e),
            "x5c": [base64.b64encode(der).decode()],
            "x5t": _b64url(hashlib.sha1(der).digest()),  # noqa: S324 - x5t is SHA-1 by definition
            "x5t#S256": _b64url(hashlib.sha256(der).digest()),
        }


def generate_key(use: str = "sig") -> SigningKey:
    """A fresh 2048-bit RSA key; the kid is the key's thumbprint, like Keycloak's."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()[:43]
    return SigningKey(kid=kid, private_key=private, use=use)


def _self_signed(private: rsa.RSAPrivateKey) -> bytes:
    """A self-signed certificate for the key, as Keycloak's `rsa-generated` providers publish."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keycloak-emulator")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64int(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
