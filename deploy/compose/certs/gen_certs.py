"""Write a throwaway CA, a Prometheus server certificate and a proxy client certificate."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)
SERVER_NAMES = ("prometheus", "localhost")
CLIENT_NAME = "prom-keycloak-proxy"


def _name(common_name: str) -> x509.Name:
    """Return a subject/issuer name with only a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    """Return a fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Return a self-signed CA key and certificate."""
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("prom-keycloak-proxy compose CA"))
        .issuer_name(_name("prom-keycloak-proxy compose CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    dns_names: tuple[str, ...],
    *,
    server: bool,
    now: datetime.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Return a key and a CA-signed server or client certificate."""
    key = _key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    if server:
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(path: Path, data: bytes) -> None:
    """Write a PEM file readable by the compose services' different UIDs (demo only)."""
    path.write_bytes(data)
    path.chmod(0o644)


def write_all(out: Path, *, force: bool = False) -> bool:
    """Write ca.crt, prometheus.{crt,key}, proxy.{crt,key} into out; False if already there."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "ca.crt").exists() and not force:
        return False
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca_cert = make_ca(now)
    pairs = {
        "prometheus": make_leaf(ca_key, ca_cert, "prometheus", SERVER_NAMES, server=True, now=now),
        "proxy": make_leaf(ca_key, ca_cert, CLIENT_NAME, (CLIENT_NAME,), server=False, now=now),
    }
    _write(out / "ca.crt", ca_cert.public_bytes(serialization.Encoding.PEM))
    for stem, (key, cert) in pairs.items():
        _write(out / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM))
        _write(
            out / f"{stem}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: gen_certs.py OUT_DIR [--force]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="directory to write the PEM files into")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    written = write_all(args.out, force=args.force)
    print(f"certificates {'written to' if written else 'already present in'} {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
