"""Resource names → ids of the resource server's own resources, via the Protection API.

Names are resolved before they are asked for: Keycloak fails the whole UMA call when the first
name is unknown, and a grant only counts for an id resolved here (a user-owned resource that
happens to be named `HUB-moc` must never grant anything).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import structlog
from cachetools import TLRUCache

from proxy import caches
from proxy.keycloak import Reply, unexpected
from proxy.keycloak_client import KeycloakClient
from proxy.naming import SCOPE
from proxy.singleflight import SingleFlight

log = structlog.get_logger(__name__)

# Resources change rarely (provisioning); unknown names are re-checked sooner so a newly
# provisioned project works within a minute.
KNOWN_TTL = 300.0
UNKNOWN_TTL = 60.0
PARALLEL_LOOKUPS = 8


@dataclass(frozen=True)
class _Entry:
    """A resolved id (None: no such resource-server resource) and when to look again."""

    rsid: str | None
    until: float


class ResourceResolver:
    """Cached, single-flight lookups of resource-server-owned resources by exact name."""

    def __init__(
        self,
        client: KeycloakClient,
        *,
        maxsize: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Only resources owned by the client's resource server count."""
        self._client = client
        self._owner = client.client_id
        self._clock = clock
        self._cache: TLRUCache[str, _Entry] = caches.until_cache(maxsize, clock)
        self._flight: SingleFlight[str, str | None] = SingleFlight()
        self._parallel = asyncio.Semaphore(PARALLEL_LOOKUPS)
        self.lookups = 0

    async def resolve(self, names: Sequence[str]) -> dict[str, str]:
        """Ids of the names that are resource-server resources with scope GET."""
        found: dict[str, str] = {}
        missing: list[str] = []
        for name in dict.fromkeys(names):
            entry = self._cache.get(name)
            caches.RESOURCE.lookup(entry is not None)
            if entry is None:
                missing.append(name)
            elif entry.rsid is not None:
                found[name] = entry.rsid
        looked_up = await asyncio.gather(*(self._resolve_one(name) for name in missing))
        found.update({n: rsid for n, rsid in zip(missing, looked_up, strict=True) if rsid})
        return found

    async def _resolve_one(self, name: str) -> str | None:
        """One name, sharing a lookup already in flight."""
        return await self._flight.do(name, lambda: self._lookup(name))

    def forget(self, names: Iterable[str]) -> None:
        """Drop cached answers (after Keycloak said a resolved resource does not exist)."""
        for name in names:
            self._cache.pop(name, None)

    async def _lookup(self, name: str) -> str | None:
        """One Protection API lookup (the client renews a rejected PAT once)."""
        async with self._parallel:
            reply = await self._ask(name)
        rsid = self._interpret(name, reply)
        ttl = KNOWN_TTL if rsid is not None else UNKNOWN_TTL
        self._cache[name] = _Entry(rsid, self._clock() + ttl)
        caches.RESOURCE.entries = len(self._cache)
        return rsid

    async def _ask(self, name: str) -> Reply:
        """GET resource_set by exact name, owned by the resource server, with scope GET."""
        self.lookups += 1
        # `owner` and `scope` filter server-side; `deep` returns owner and scopes so both are
        # checked here again, in case a server ignores a filter.
        params = {
            "name": name,
            "exactName": "true",
            "owner": self._owner,
            "scope": SCOPE,
            "deep": "true",
        }
        return await self._client.protection("resource_set", self._client.endpoints.resource_set, params)

    def _interpret(self, name: str, reply: Reply) -> str | None:
        """The one matching id; several matches are ambiguous and grant nothing."""
        if reply.status != 200 or not isinstance(reply.body, list):
            if reply.status == 403:
                log.error("protection_api_forbidden", hint="the proxy's client needs uma_protection")
            raise unexpected("resource_set", reply)
        ids = [rsid for item in reply.body if (rsid := self._id_of(name, item)) is not None]
        if len(set(ids)) > 1:
            log.warning("resource_name_ambiguous", name=name, matches=len(ids))
            return None
        return ids[0] if ids else None

    def _id_of(self, name: str, item: object) -> str | None:
        """An id from a plain id list, or from a full representation that fits exactly."""
        if isinstance(item, str):
            return item or None
        if not isinstance(item, dict) or item.get("name") != name:
            return None
        owner = item.get("owner")
        owner_name = owner.get("name") if isinstance(owner, dict) else owner
        if owner is not None and owner_name != self._owner:
            return None
        if "scopes" in item and SCOPE not in _scope_names(item["scopes"]):
            return None
        rsid = item.get("_id", item.get("id"))
        return rsid if isinstance(rsid, str) and rsid else None


def _scope_names(scopes: object) -> set[str]:
    """Scope names of a representation (objects with `name`, or plain strings)."""
    if not isinstance(scopes, list):
        return set()
    names = {s.get("name") if isinstance(s, dict) else s for s in scopes}
    return {n for n in names if isinstance(n, str)}
