"""The throw-away PKI: files, chains, mTLS handshakes and in-place rotation."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509

from proxy_demo.certs import Pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A PKI for this module."""
    return Pki(tmp_path_factory.mktemp("pki"))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, host: str) -> str:
    """Run one TLS handshake over a socketpair; return "ok" or the error class name."""
    a, b = socket.socketpair()
    result: dict[str, str] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.recv(1)
            result["server"] = "ok"
        except (ssl.SSLError, OSError) as exc:
            result["server"] = type(exc).__name__

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=host) as c:
            c.sendall(b"x")
            c.recv(1)  # TLS 1.3 reports a rejected client certificate only on read
    except (ssl.SSLError, OSError) as exc:
        result["client"] = type(exc).__name__
    t.join(5)
    return "ok" if result.get("server") == "ok" and "client" not in result else "refused"


def _mtls_server(pki: Pki) -> ssl.SSLContext:
    ctx = pki.server_context()
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(str(pki.ca_cert))
    return ctx


def test_files_exist_and_are_pem(pki: Pki) -> None:
    """Every documented path exists; keys are private to the owner."""
    for path in (
        pki.ca_cert,
        pki.server_cert,
        pki.server_key,
        pki.client_cert,
        pki.client_key,
        pki.other_ca_cert,
        pki.other_client_cert,
        pki.other_client_key,
    ):
        assert path.read_bytes().startswith(b"-----BEGIN ")
    assert pki.client_key.stat().st_mode & 0o077 == 0


def test_server_cert_names_loopback(pki: Pki) -> None:
    """The server certificate is for 127.0.0.1 and localhost."""
    san = _cert(pki.server_cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_mutual_tls_with_our_client(pki: Pki, host: str) -> None:
    """Our client certificate completes an mTLS handshake against our server."""
    assert _handshake(_mtls_server(pki), pki.client_context(), host) == "ok"


def test_client_from_other_ca_is_refused(pki: Pki) -> None:
    """A client certificate from the unrelated CA does not pass a server trusting ours."""
    ctx = pki.client_context(cert=pki.other_client_cert, key=pki.other_client_key)
    assert _handshake(_mtls_server(pki), ctx, "localhost") == "refused"


def test_other_ca_does_not_trust_our_server(pki: Pki) -> None:
    """A client trusting only the unrelated CA refuses our server."""
    ctx = pki.client_context(ca=pki.other_ca_cert)
    assert _handshake(_mtls_server(pki), ctx, "localhost") == "refused"


def test_rotate_client_rewrites_the_same_paths(tmp_path: Path) -> None:
    """Rotation writes a new certificate and key to the same files, still signed by our CA."""
    pki = Pki(tmp_path)
    old_serial = _cert(pki.client_cert).serial_number
    old_key = pki.client_key.read_bytes()
    pair = pki.rotate_client()
    assert (pair.cert, pair.key) == (pki.client_cert, pki.client_key)
    assert _cert(pki.client_cert).serial_number != old_serial
    assert pki.client_key.read_bytes() != old_key
    assert _handshake(_mtls_server(pki), pki.client_context(), "localhost") == "ok"


def test_rotate_client_can_issue_an_expired_certificate(tmp_path: Path) -> None:
    """An expired client certificate is written on request and then refused by the server."""
    pki = Pki(tmp_path)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    pki.rotate_client(not_before=past - dt.timedelta(days=1), not_after=past)
    assert _cert(pki.client_cert).not_valid_after_utc < dt.datetime.now(dt.UTC)
    assert _handshake(_mtls_server(pki), pki.client_context(), "localhost") == "refused"


def test_rotate_server_changes_the_served_certificate(tmp_path: Path) -> None:
    """Server rotation rewrites server.pem with a new certificate for the same names."""
    pki = Pki(tmp_path)
    before = _cert(pki.server_cert).serial_number
    pki.rotate_server()
    assert _cert(pki.server_cert).serial_number != before
    assert _handshake(_mtls_server(pki), pki.client_context(), "127.0.0.1") == "ok"


def test_no_temporary_files_left(tmp_path: Path) -> None:
    """Atomic writes leave only the final files behind."""
    pki = Pki(tmp_path)
    pki.rotate_client()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
