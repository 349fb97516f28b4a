"""A small scriptable Keycloak for authz tests: the UMA grant and the Protection API lookup.

Name resolution follows Keycloak (docs/keycloak.md#the-uma-grant): a name resolves to the
caller's own resource and the resource server's (both evaluated); `#GET` evaluates every owner's
GET resources; the first unresolvable name fails the call with 400 invalid_resource while nothing
resolved yet; later ones are skipped. The Protection API lists (paged, sorted by name) with the
owner, scope and name filters.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proxy.authn.identity import Identity, token_hash

REALM = "nerc"
RS = "prom-keycloak-proxy"
UMA = "urn:ietf:params:oauth:grant-type:uma-ticket"


@dataclass(frozen=True)
class Resource:
    """A resource: id, name, owner (RS for the resource server, else a username), scopes."""

    rsid: str
    name: str
    owner: str = RS
    scopes: tuple[str, ...] = ("GET",)


def demo_resources() -> list[Resource]:
    """The demo hub: HUB, HUB-moc, two clusters with three projects each."""
    out = [Resource("id-HUB", "HUB"), Resource("id-HUB-moc", "HUB-moc")]
    for cluster in ("nerc-ocp-prod", "nerc-ocp-test"):
        name = f"HUB-moc-CLUSTER-{cluster}"
        out.append(Resource(f"id-{name}", name))
        for project in ("team-a", "team-b", "team-c"):
            out.append(Resource(f"id-{name}-PROJECT-{project}", f"{name}-PROJECT-{project}"))
    return out


def identity(user: str, lifetime: float = 300, tag: str = "") -> Identity:
    """An identity whose token is `tok-<user>` (`.tag` makes a distinct token of the same user)."""
    token = f"tok-{user}.{tag}" if tag else f"tok-{user}"
    return Identity(user, token, token_hash(token), time.time() + lifetime, {}, None)


@dataclass
class FakeAuthz:
    """State of the fake; tests mutate it between requests."""

    resources: list[Resource] = field(default_factory=demo_resources)
    grants: dict[str, set[str]] = field(default_factory=dict)
    valid_pats: set[str] = field(default_factory=lambda: {"pat-1"})
    pats: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    uma_forms: list[list[tuple[str, str]]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    owner_filter: bool = True
    deep: bool = True

    def grant(self, user: str, *names: str) -> None:
        """Let `user` hold the resource-server resources named."""
        ids = {r.rsid for r in self.resources if r.name in names and r.owner == RS}
        self.grants.setdefault(user, set()).update(ids)

    async def _gate(self, name: str) -> web.Response | None:
        """Count, delay, or force a status."""
        self.calls[name] += 1
        if self.delay.get(name):
            await asyncio.sleep(self.delay[name])
        if name in self.status:
            return web.json_response({"error": "server_error"}, status=self.status[name])
        return None

    async def token(self, request: web.Request) -> web.Response:
        """The UMA grant in permissions mode; client credentials mint PATs pat-1, pat-2, …"""
        form = list((await request.post()).items())
        values = dict(form)
        if values.get("grant_type") == "client_credentials":
            if (values.get("client_id"), values.get("client_secret")) != (RS, "secret"):
                return _error(401, "unauthorized_client", "Invalid client credentials")
            self.pats.append(f"pat-{len(self.pats) + 1}")
            return web.json_response({"access_token": self.pats[-1], "expires_in": 300})
        self.uma_forms.append([(k, str(v)) for k, v in form])
        forced = await self._gate("uma")
        if forced is not None:
            return forced
        auth = request.headers.get("Authorization", "")
        user = auth.removeprefix("Bearer tok-").split(".")[0] if auth.startswith("Bearer tok-") else None
        if user is None or user == "revoked":
            return _error(401, "invalid_grant", "Invalid bearer token")
        if values.get("grant_type") != UMA or values.get("audience") != RS:
            return _error(400, "invalid_request", "bad grant")
        if values.get("response_mode") != "permissions":
            return _error(400, "invalid_request", "test expects permissions mode")
        return self._evaluate(user, [str(v) for k, v in form if k == "permission"])

    def _evaluate(self, user: str, permissions: list[str]) -> web.Response:
        """Resolve and evaluate permissions as Keycloak does."""
        collected: list[Resource] = []
        for permission in permissions:
            name, _, scopes = permission.partition("#")
            if scopes and "GET" not in scopes.split(","):
                return _error(400, "invalid_scope", f"One of the given scopes [{scopes}] is invalid")
            if not name:
                collected += [r for r in self.resources if "GET" in r.scopes]
                continue
            found = [r for r in self.resources if r.name == name and r.owner == user]
            found += [r for r in self.resources if r.name == name and r.owner == RS]
            if not found and not collected:
                return _error(400, "invalid_resource", f"Resource with id [{name}] does not exist.")
            collected += found
        held = self.grants.get(user, set())
        granted = [r for r in collected if r.rsid in held or r.owner == user]
        if not granted:
            return _error(403, "access_denied", "not_authorized")
        return web.json_response([{"rsid": r.rsid, "rsname": r.name, "scopes": ["GET"]} for r in granted])

    async def resource_set(self, request: web.Request) -> web.Response:
        """Protection API lookup by exact name, owner and scope; ids only."""
        self.lookups.append(request.query.get("name", ""))
        forced = await self._gate("resource_set")
        if forced is not None:
            return forced
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_pats:
            return _error(401, "invalid_token", "bad PAT")
        query = request.query
        owner = query.get("owner") if self.owner_filter else None
        name = query.get("name")
        matches = sorted(
            (
                r
                for r in self.resources
                if (name is None or r.name == name)
                and (owner is None or r.owner == owner)
                and (query.get("scope") is None or query["scope"] in r.scopes)
            ),
            key=lambda r: r.name,
        )
        first, size = int(query.get("first", "0")), int(query.get("max", "100"))
        matches = matches[first : first + size]
        if query.get("deep") == "true" and self.deep:
            return web.json_response([_representation(r) for r in matches])
        return web.json_response([r.rsid for r in matches])

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post(f"/realms/{REALM}/protocol/openid-connect/token", self.token)
        app.router.add_get(f"/realms/{REALM}/authz/protection/resource_set", self.resource_set)
        return app

    def permissions(self, index: int = -1) -> list[str]:
        """The `permission` values of one recorded UMA call."""
        return [v for k, v in self.uma_forms[index] if k == "permission"]


def _representation(resource: Resource) -> dict[str, Any]:
    """A deep ResourceRepresentation (owner id and name, scope objects)."""
    return {
        "_id": resource.rsid,
        "name": resource.name,
        "owner": {"id": f"uuid-{resource.owner}", "name": resource.owner},
        "ownerManagedAccess": resource.owner != RS,
        "scopes": [{"id": f"s-{s}", "name": s} for s in resource.scopes],
    }


def _error(status: int, error: str, description: str) -> web.Response:
    """Keycloak's error body."""
    body: dict[str, Any] = {"error": error, "error_description": description}
    return web.json_response(body, status=status)
