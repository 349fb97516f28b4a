"""How `policies apply` and `report --live` log in to Keycloak's admin API, and what their
failures mean to the person at the terminal (one line each, no traceback).

Two logins: the master realm's admin user with its password (file or environment, never a
flag), or a service-account client holding the `realm-management` roles `manage-clients`,
`manage-authorization`, `manage-users` and `view-users` in the target realm (no master-realm
password on the operator's machine or in CI)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import requests
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakConnectionError, KeycloakError

ENV_HELP = (
    "KEYCLOAK_URL, KEYCLOAK_ADMIN + KEYCLOAK_ADMIN_PASSWORD, "
    "or KEYCLOAK_ADMIN_CLIENT_ID + KEYCLOAK_ADMIN_CLIENT_SECRET"
)


class UsageError(Exception):
    """Missing or contradictory connection options: exit code 2."""


class KeycloakFailure(Exception):
    """Keycloak could not be reached, refused the login or the call: exit code 1."""


def add_options(sp: argparse.ArgumentParser) -> None:
    """Options naming the Keycloak whose admin API is used, and how to log in."""
    sp.add_argument(
        "--server-url", default=os.environ.get("KEYCLOAK_URL"), help="Keycloak base URL (env KEYCLOAK_URL)"
    )
    sp.add_argument("--realm", help="realm (default: the file's)")
    sp.add_argument("--client-id", help="resource-server client id (default: the file's)")
    sp.add_argument(
        "--admin-user",
        default=os.environ.get("KEYCLOAK_ADMIN"),
        help="master-realm admin (env KEYCLOAK_ADMIN)",
    )
    sp.add_argument(
        "--admin-password-file",
        type=Path,
        help="file holding the admin password (else env KEYCLOAK_ADMIN_PASSWORD; never a flag: "
        "flags show up in process lists)",
    )
    sp.add_argument(
        "--admin-client-id",
        default=os.environ.get("KEYCLOAK_ADMIN_CLIENT_ID"),
        help="instead of the admin user: a service-account client with realm-management roles "
        "(env KEYCLOAK_ADMIN_CLIENT_ID)",
    )
    sp.add_argument(
        "--admin-client-secret-file",
        type=Path,
        help="file holding that client's secret (else env KEYCLOAK_ADMIN_CLIENT_SECRET)",
    )
    sp.add_argument(
        "--admin-realm",
        help="realm of the admin user or client (default: master for the user, the target realm "
        "for a client)",
    )
    sp.add_argument("--ca-cert", help="CA bundle for Keycloak's TLS certificate")
    sp.add_argument("--insecure", action="store_true", help="do not verify Keycloak's certificate")


@dataclass(frozen=True)
class Login:
    """Who logs in where: exactly one of (user, password) and (client_id, client_secret)."""

    server_url: str
    realm: str
    login_realm: str
    user: str | None = None
    password: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    @property
    def who(self) -> str:
        """`admin user 'x'` or `client 'y'`, for messages."""
        return f"admin user {self.user!r}" if self.user else f"client {self.client_id!r}"


def _secret(path: Path | None, env: str, flag: str) -> str | None:
    """A secret from a file (UsageError when unreadable) or the environment."""
    if path is None:
        return os.environ.get(env) or None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None


def login_of(args: argparse.Namespace, realm: str) -> Login:
    """The login the options and environment describe; UsageError naming what is missing."""
    if not args.server_url:
        raise UsageError(f"{args.command} needs --server-url (or {ENV_HELP})")
    if args.admin_client_id:
        secret = _secret(
            args.admin_client_secret_file, "KEYCLOAK_ADMIN_CLIENT_SECRET", "--admin-client-secret-file"
        )
        if not secret:
            raise UsageError(f"--admin-client-id needs --admin-client-secret-file (or {ENV_HELP})")
        return Login(
            args.server_url,
            realm,
            args.admin_realm or realm,
            client_id=args.admin_client_id,
            client_secret=secret,
        )
    password = _secret(args.admin_password_file, "KEYCLOAK_ADMIN_PASSWORD", "--admin-password-file")
    missing = [
        flag
        for flag, value in (("--admin-user", args.admin_user), ("--admin-password-file", password))
        if not value
    ]
    if missing:
        raise UsageError(f"{args.command} needs {' and '.join(missing)} (or {ENV_HELP})")
    return Login(
        args.server_url, realm, args.admin_realm or "master", user=args.admin_user, password=password
    )


def connect(login: Login, verify: bool | str) -> KeycloakAdmin:
    """An admin client for `login.realm`; it fetches its token on the first call."""
    if login.client_id:
        return KeycloakAdmin(
            server_url=login.server_url.rstrip("/") + "/",
            realm_name=login.realm,
            user_realm_name=login.login_realm,
            client_id=login.client_id,
            client_secret_key=login.client_secret,
            grant_type="client_credentials",
            verify=verify,
        )
    return KeycloakAdmin(
        server_url=login.server_url.rstrip("/") + "/",
        username=login.user,
        password=login.password,
        realm_name=login.realm,
        user_realm_name=login.login_realm,
        client_id="admin-cli",
        verify=verify,
    )


def explain(exc: BaseException, login: Login) -> KeycloakFailure:
    """One line saying what went wrong with Keycloak, for an exception from python-keycloak/requests."""
    url = login.server_url
    # Keycloak answers bad credentials with 401 invalid_grant (user) or invalid_client; some
    # versions and proxies use 400: the OAuth error code decides, not the status alone.
    refused = isinstance(exc, KeycloakAuthenticationError) or (
        isinstance(exc, KeycloakError) and any(e in _first_line(exc) for e in _LOGIN_ERRORS)
    )
    if refused:
        assert isinstance(exc, KeycloakError)
        return KeycloakFailure(
            f"Keycloak at {url} refused the login of {login.who} in realm {login.login_realm!r} "
            f"({exc.response_code}): wrong name, password or secret?"
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return KeycloakFailure(
            f"TLS to Keycloak at {url} failed ({_first_line(exc)}); use --ca-cert or --insecure"
        )
    if isinstance(
        exc, KeycloakConnectionError | requests.exceptions.ConnectionError | requests.exceptions.Timeout
    ):
        return KeycloakFailure(f"cannot reach Keycloak at {url}: {_first_line(exc)}")
    if isinstance(exc, KeycloakError):
        code = exc.response_code
        hint = {
            403: f": {login.who} lacks the realm-management roles for realm {login.realm!r}",
            404: f": does realm {login.realm!r} exist?",
        }.get(code or 0, "")
        return KeycloakFailure(f"Keycloak at {url} answered {code}{hint} ({_first_line(exc)})")
    return KeycloakFailure(f"Keycloak at {url}: {_first_line(exc)}")


_LOGIN_ERRORS = ('"invalid_grant"', '"invalid_client"', '"unauthorized_client"')


def _first_line(exc: BaseException) -> str:
    """The useful part of a library error message, on one line and not too long."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KeycloakError) and exc.error_message:
        raw = exc.error_message
        text = " ".join((raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).split())
    return text[:200] or type(exc).__name__
