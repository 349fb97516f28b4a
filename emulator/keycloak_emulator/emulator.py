"""The emulator's state and Python API: realms, tokens, key rotation, counters and faults."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from keycloak_emulator import grants, tokens
from keycloak_emulator.errors import KeycloakError
from keycloak_emulator.form import Form
from keycloak_emulator.keys import generate_key
from keycloak_emulator.realm_import import import_realm
from keycloak_emulator.store import Client, Realm, Resource, User, new_id
from keycloak_emulator.versions import CURRENT, Version, parse

MASTER = "master"
PLACEHOLDER_BASE = "http://keycloak.invalid"


class EmulatorError(Exception):
    """A Python-API call Keycloak would have answered with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Fault:
    """An injected failure for one counter key: wait `delay`, then answer `status` (if set)."""

    key: str
    status: int | None
    delay: float
    remaining: int | None
    realm: str | None
    error: str = "emulator_fault"
    description: str | None = None


class Emulator:
    """One emulated Keycloak holding many realms plus a `master` realm for the admin API."""

    def __init__(
        self,
        *,
        admin_user: str = "admin",
        admin_password: str = "admin",  # noqa: S107 - loopback test server
        hostname: str | None = None,
        keycloak_version: str | Version = CURRENT,
        introspection_audience_check: bool = True,
        evaluation_cost: float = 0.0,
        call_cost: float = 0.0,
        dynamic_hostname: bool = False,
    ) -> None:
        """Keycloak 26.6+ unless `keycloak_version` says otherwise (see `versions`).

        `introspection_audience_check=False` is the server option
        `allow-token-introspection-without-audience-check`. The cost model: every HTTP call
        takes `call_cost` seconds plus `evaluation_cost` per resource a UMA call evaluated (real
        Keycloak's time grows with the resources it evaluates; `#GET` evaluates them all).
        `dynamic_hostname` is hostname v2 without a fixed `hostname`: `iss` follows the Host
        each request arrived with (docs/keycloak.md "issuer").
        """
        self.lock = threading.RLock()
        self.version = keycloak_version if isinstance(keycloak_version, Version) else parse(keycloak_version)
        self.introspection_audience_check = introspection_audience_check
        self.evaluation_cost = evaluation_cost
        self.call_cost = call_cost
        self.dynamic_hostname = dynamic_hostname
        self.realms: dict[str, Realm] = {}
        # Keycloak's `hostname` option: when set, issuers use it instead of the serving URL.
        self.hostname = hostname.rstrip("/") if hostname else None
        self.server_url: str | None = None
        self.clock_offset = 0
        self._stats: dict[str, Counter[str]] = {}
        self._faults: list[Fault] = []
        self.realms[MASTER] = import_realm(
            {
                "realm": MASTER,
                "users": [
                    {
                        "username": admin_user,
                        "firstName": "Admin",
                        "lastName": "Istrator",
                        "email": f"{admin_user}@localhost.invalid",
                        "credentials": [{"type": "password", "value": admin_password}],
                    }
                ],
                "clients": [
                    {
                        "clientId": "admin-cli",
                        "publicClient": True,
                        "standardFlowEnabled": False,
                        "directAccessGrantsEnabled": True,
                    }
                ],
            }
        )

    @classmethod
    def from_files(cls, paths: Iterable[Path], **kwargs: Any) -> Emulator:
        """An emulator serving the realms of these policies files."""
        emu = cls(**kwargs)
        for path in paths:
            emu.load_policies(path)
        return emu

    def load_policies(self, path: Path) -> Realm:
        """Load one policies file (checked) as a realm, replacing a realm of the same name."""
        # Imported here: the policies package is only needed when files are loaded.
        from proxy.policies.loader import load
        from proxy.policies.realm_json import realm_import

        return self.import_realm(realm_import(load(Path(path))))

    def import_realm(self, rep: Mapping[str, Any]) -> Realm:
        """Import a realm representation (Keycloak's realm-import JSON)."""
        realm = import_realm(rep)
        with self.lock:
            self.realms[realm.name] = realm
        return realm

    def realm(self, name: str) -> Realm:
        """The realm called `name`; KeyError if there is none."""
        return self.realms[name]

    # --- time and issuers ------------------------------------------------------------------

    def now(self) -> int:
        """The emulator's clock in epoch seconds (shifted by `advance`)."""
        return int(time.time()) + self.clock_offset

    def advance(self, seconds: int) -> None:
        """Move the emulator's clock forward, e.g. to expire tokens without sleeping."""
        self.clock_offset += seconds

    def base_url(self) -> str:
        """The URL issuers are built from: `hostname`, else the serving URL."""
        return self.hostname or self.server_url or PLACEHOLDER_BASE

    def issuer(self, realm: str, host: str | None = None) -> str:
        """`{base}/realms/{realm}`: the `iss` of tokens issued through a request to `host`."""
        if self.dynamic_hostname and host and not self.hostname:
            return f"http://{host}/realms/{realm}"
        return f"{self.base_url()}/realms/{realm}"

    # --- tokens -------------------------------------------------------------------------------

    def call(
        self,
        realm: str,
        form: Iterable[tuple[str, str]],
        authorization: str | None = None,
        host: str = "127.0.0.1",
        request_host: str | None = None,
    ) -> grants.TokenCall:
        """A token-endpoint call object for `realm` (shared by HTTP and Python paths)."""
        return grants.TokenCall(
            realm=self.realm(realm),
            issuer=self.issuer(realm, request_host),
            form=Form.of(form),
            authorization=authorization,
            host=host,
            now=self.now(),
            version=self.version,
            introspection_audience_check=self.introspection_audience_check,
        )

    def token_request(
        self, realm: str, form: Iterable[tuple[str, str]], authorization: str | None = None
    ) -> Any:
        """Run the token endpoint in-process; raise `EmulatorError` as Keycloak would answer."""
        with self.lock:
            try:
                return grants.token(self.call(realm, form, authorization))
            except KeycloakError as exc:
                raise EmulatorError(exc.status, exc.body) from exc

    def password_token(
        self,
        realm: str,
        username: str,
        password: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        """Password grant through `client_id` (default: the first direct-access client)."""
        client = self._login_client(realm, client_id)
        form = [
            ("grant_type", "password"),
            ("client_id", client.client_id),
            ("username", username),
            ("password", password),
        ]
        secret = client_secret if client_secret is not None else client.secret
        if not client.public and secret:
            form.append(("client_secret", secret))
        if scope:
            form.append(("scope", scope))
        answer: dict[str, Any] = self.token_request(realm, form)
        return answer

    def client_token(
        self, realm: str, client_id: str, secret: str, *, scope: str | None = None
    ) -> dict[str, Any]:
        """Client-credentials grant, as the token endpoint answers it."""
        form = [("grant_type", "client_credentials"), ("client_id", client_id), ("client_secret", secret)]
        if scope:
            form.append(("scope", scope))
        answer: dict[str, Any] = self.token_request(realm, form)
        return answer

    def uma(
        self,
        realm: str,
        bearer: str,
        audience: str,
        permissions: Iterable[str] = (),
        *,
        response_mode: str | None = "permissions",
    ) -> Any:
        """The UMA grant in-process with a bearer token (see docs/keycloak.md)."""
        form = [("grant_type", grants.UMA_GRANT), ("audience", audience)]
        form += [("permission", p) for p in permissions]
        if response_mode:
            form.append(("response_mode", response_mode))
        return self.token_request(realm, form, f"Bearer {bearer}")

    def mint(
        self,
        realm: str,
        claims_overrides: Mapping[str, Any] | None = None,
        *,
        lifetime: int = 300,
        key: Any = None,
        kid: str | None = None,
        headers: Mapping[str, Any] | None = None,
        user: str | None = None,
        client: str | None = None,
        algorithm: str = "RS256",
    ) -> str:
        """Sign a token directly: Keycloak-shaped claims for `user`/`client`, then overrides.

        An override whose value is None removes that claim; `key`/`kid`/`headers`/`algorithm`
        let tests forge tokens (foreign key, unknown kid, `alg` confusion, `jku` headers).
        """
        with self.lock:
            r = self.realm(realm)
            claims = self._base_claims(r, user, client)
            claims["exp"] = int(claims["iat"]) + lifetime
            for name, value in (claims_overrides or {}).items():
                if value is None:
                    claims.pop(name, None)
                else:
                    claims[name] = value
            header: dict[str, Any] = {"kid": kid or r.active_key.kid, **(headers or {})}
            header = {k: v for k, v in header.items() if v is not None}
            signing = r.active_key.private_key if key is None else key
            if algorithm == "none":
                signing = None
            return jwt.encode(claims, signing, algorithm=algorithm, headers=header)

    def _base_claims(self, r: Realm, user: str | None, client: str | None) -> dict[str, Any]:
        now, issuer = self.now(), self.issuer(r.name)
        if user is not None:
            u = _must(r.user_by_username(user), f"user {user}")
            c = r.client_by_client_id(client) if client else self._login_client(r.name, None)
            c = _must(c, f"client {client}")
            return tokens.user_claims(
                r, issuer, u, c, scope=tokens.DEFAULT_SCOPE, session=tokens.new_session(), now=now
            )
        if client is not None:
            c = _must(r.client_by_client_id(client), f"client {client}")
            sa = _must(r.service_account(c), f"service account of {client}")
            return tokens.service_account_claims(
                r, issuer, c, sa, scope=tokens.DEFAULT_SCOPE, now=now, host="127.0.0.1"
            )
        return {"iat": now, "jti": tokens.new_session(), "iss": issuer, "typ": "Bearer"}

    def _login_client(self, realm: str, client_id: str | None) -> Client:
        r = self.realm(realm)
        found = (
            r.client_by_client_id(client_id)
            if client_id is not None
            else next((c for c in r.clients.values() if c.direct_access and c.enabled), None)
        )
        if found is None:
            raise KeyError(f"no client {client_id or 'with direct access grants'} in realm {realm}")
        return found

    def add_user_resource(
        self, realm: str, rs_client_id: str, username: str, name: str, scopes: Iterable[str] = ("GET",)
    ) -> str:
        """Register a resource owned by a user (as UMA resource registration would); its id."""
        with self.lock:
            r = self.realm(realm)
            client = r.client_by_client_id(rs_client_id)
            user = r.user_by_username(username)
            if client is None or client.authz is None or user is None:
                raise KeyError(f"no resource server {rs_client_id} or user {username}")
            rs = client.authz
            scope_ids = [s.id for n in scopes if (s := rs.scope_named(n)) is not None]
            resource = Resource(
                id=new_id(), name=name, owner=user.id, scope_ids=scope_ids, owner_managed_access=True
            )
            rs.resources[resource.id] = resource
            return resource.id

    # --- keys, sessions, users ----------------------------------------------------------------

    def rotate_key(self, realm: str) -> str:
        """Sign from now on with a new key; older keys stay published (and valid) until retired."""
        key = generate_key()
        with self.lock:
            r = self.realm(realm)
            _ = r.active_key  # a rotation always leaves the previous key published
            r.keys.append(key)
        return key.kid

    def retire_keys(self, realm: str) -> list[str]:
        """Unpublish every key but the active one; tokens they signed stop verifying."""
        with self.lock:
            r = self.realm(realm)
            _ = r.active_key
            retired = [k.kid for k in r.keys[:-1]]
            r.keys = r.keys[-1:]
        return retired

    def revoke(self, realm: str, token: str) -> None:
        """Log out the token's session (or revoke a stateless token): it becomes inactive."""
        claims = jwt.decode(token, options={"verify_signature": False})
        with self.lock:
            r = self.realm(realm)
            if claims.get("sid"):
                r.revoked_sessions.add(str(claims["sid"]))
            if claims.get("jti"):
                r.revoked_tokens.add(str(claims["jti"]))

    def set_user_enabled(self, realm: str, username: str, enabled: bool) -> None:
        """Disable or re-enable a user; a disabled user's tokens are rejected server-side."""
        with self.lock:
            user: User = _must(self.realm(realm).user_by_username(username), f"user {username}")
            user.enabled = enabled

    # --- counters and faults ------------------------------------------------------------------

    def count(self, realm: str, key: str, n: int = 1) -> None:
        """Count `n` calls of `key` (e.g. `token.uma`, `certs`) and the `token` total."""
        with self.lock:
            counter = self._stats.setdefault(realm, Counter())
            counter[key] += n
            if key.startswith("token."):
                counter["token"] += n

    def stats(self, realm: str) -> Mapping[str, int]:
        """Calls per endpoint/grant since the last reset; missing keys read as 0."""
        with self.lock:
            return Counter(self._stats.get(realm, Counter()))

    def reset_stats(self) -> None:
        """Zero every counter of every realm."""
        with self.lock:
            self._stats.clear()

    def inject_fault(
        self,
        key: str,
        *,
        status: int | None = 503,
        delay: float = 0.0,
        times: int | None = None,
        realm: str | None = None,
        error: str = "emulator_fault",
        description: str | None = None,
    ) -> None:
        """Make calls of `key` wait `delay` s and/or fail with `status`, `times` times (None: always).

        `error`/`description` shape the body, e.g. the 26.7 regression `400 unauthorized_client
        "Invalid identity"` (keycloak#51250) or 26.5's `invalid_bearer_token` (#50827).
        """
        with self.lock:
            self._faults.append(Fault(key, status, delay, times, realm, error, description))

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self.lock:
            self._faults.clear()

    def take_fault(self, realm: str, key: str) -> Fault | None:
        """The fault that applies to this call, consuming one of its `times`."""
        with self.lock:
            for fault in self._faults:
                if fault.key not in (key, "*") or fault.realm not in (None, realm):
                    continue
                if fault.remaining is not None:
                    if fault.remaining <= 0:
                        continue
                    fault.remaining -= 1
                return fault
        return None


def _must(value: Any, what: str) -> Any:
    if value is None:
        raise KeyError(f"no {what}")
    return value
