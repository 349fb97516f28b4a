"""Throw-away PKI for the demo and the tests: CAs and leaf certificates written to a directory.

Built with trustme. Everything is issued for loopback use only; nothing here is fit for a real
deployment (keys are unencrypted files, CAs are generated per run).
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

CLIENT_IDENTITY = "prom-keycloak-proxy.client"
OTHER_CLIENT_IDENTITY = "stranger.client"
SERVER_IDENTITIES = ("127.0.0.1", "localhost")


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so that a concurrent reader sees the old or the new file, never half.

    Rotation tests replace certificates while the proxy may be re-reading them.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class CertPair:
    """Paths of one leaf certificate (PEM chain) and its private key."""

    cert: Path
    key: Path


class Pki:
    """A CA with server and client certificates, plus an unrelated CA and client for negatives.

    Attributes are file paths: `ca_cert`, `server_cert`, `server_key`, `client_cert`,
    `client_key`, `other_ca_cert`, `other_client_cert`, `other_client_key`. `ca` and
    `other_ca` are the trustme CAs, for issuing more certificates in process.
    """

    def __init__(self, directory: Path | str) -> None:
        """Create the CAs and certificates and write them to `directory` (created if missing)."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA(organization_name="prom-keycloak-proxy demo CA")
        self.other_ca = trustme.CA(organization_name="unrelated CA")

        self.ca_cert = self.directory / "ca.pem"
        self.other_ca_cert = self.directory / "other-ca.pem"
        _write_atomic(self.ca_cert, self.ca.cert_pem.bytes(), 0o644)
        _write_atomic(self.other_ca_cert, self.other_ca.cert_pem.bytes(), 0o644)

        server = self.issue("server", *SERVER_IDENTITIES)
        self.server_cert, self.server_key = server.cert, server.key
        client = self.issue("client", CLIENT_IDENTITY)
        self.client_cert, self.client_key = client.cert, client.key
        other = self.issue("other-client", OTHER_CLIENT_IDENTITY, ca=self.other_ca)
        self.other_client_cert, self.other_client_key = other.cert, other.key

    def issue(
        self,
        name: str,
        *identities: str,
        ca: trustme.CA | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> CertPair:
        """Issue a leaf for `identities` and write `<name>.pem`/`<name>.key` (overwriting)."""
        leaf = (ca or self.ca).issue_cert(
            *identities,
            common_name=identities[0] if identities else name,
            not_before=not_before,
            not_after=not_after,
        )
        pair = CertPair(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        # key first, then cert: a reader that sees the new cert also finds the matching key
        _write_atomic(pair.key, leaf.private_key_pem.bytes())
        _write_atomic(pair.cert, chain, 0o644)
        return pair

    def rotate_client(
        self, *, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
    ) -> CertPair:
        """Write a new client cert/key from the same CA to the same paths (expiry adjustable)."""
        return self.issue("client", CLIENT_IDENTITY, not_before=not_before, not_after=not_after)

    def rotate_server(
        self, *, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None
    ) -> CertPair:
        """Write a new server cert/key from the same CA to the same paths (expiry adjustable)."""
        return self.issue("server", *SERVER_IDENTITIES, not_before=not_before, not_after=not_after)

    def client_context(
        self, *, cert: Path | None = None, key: Path | None = None, ca: Path | None = None
    ) -> ssl.SSLContext:
        """An `SSLContext` trusting our CA and presenting the client certificate (mTLS client)."""
        ctx = ssl.create_default_context(cafile=str(ca or self.ca_cert))
        ctx.load_cert_chain(str(cert or self.client_cert), str(key or self.client_key))
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """An `SSLContext` serving the server certificate (no client certificate required)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        return ctx
