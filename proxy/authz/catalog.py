"""Resource names → ids of the resource server's own GET resources, from one bulk listing.

Names are resolved before they are asked for: Keycloak fails the whole UMA call when the first
name is unknown, and a grant only counts for an id resolved here (a user-owned resource that
happens to be named `HUB-moc` must never grant anything). Instead of one Protection API call per
name, the catalog reads every server-owned resource with scope GET in one deep, owner- and
scope-filtered listing (paged), refreshed in the background; a name it does not know triggers a
re-read at most once per `recheck_after`, so unknown names cannot multiply Keycloak calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from proxy import caches
from proxy.keycloak import Reply, unexpected
from proxy.singleflight import SingleFlight

log = structlog.get_logger(__name__)

SCOPE = "GET"
# Resources change rarely (provisioning): the whole table is re-read every 5 minutes, and a name
# it lacks re-reads it after a minute, so a newly provisioned project works within a minute.
REFRESH_EVERY = 300.0
RECHECK_AFTER = 60.0
PAGE = 1000

Fetch = Callable[[Mapping[str, str]], Awaitable[Reply]]


@dataclass(frozen=True)
class _Table:
    """One complete listing: name → id, and when it was read."""

    ids: Mapping[str, str] = field(default_factory=dict)
    read_at: float = float("-inf")


class ResourceCatalog:
    """Every resource-server-owned resource with scope GET, by exact name."""

    def __init__(
        self,
        fetch: Fetch,
        owner: str,
        *,
        maxsize: int = 100_000,
        page: int = PAGE,
        refresh_every: float = REFRESH_EVERY,
        recheck_after: float = RECHECK_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`fetch(params)` is one Protection API `resource_set` GET with the proxy's token;
        `owner` is the resource-server client id (only its resources count)."""
        self._fetch = fetch
        self._owner = owner
        self._maxsize = maxsize
        self._page = page
        self._refresh_every = refresh_every
        self._recheck_after = recheck_after
        self._clock = clock
        self._table = _Table()
        self._stale = False
        self._flight: SingleFlight[str, _Table] = SingleFlight()
        self._background: asyncio.Task[None] | None = None
        self.listings = 0
        self.pages = 0

    async def resolve(self, names: Sequence[str]) -> dict[str, str]:
        """Ids of the names that are resource-server resources with scope GET."""
        table = self._table
        age = self._clock() - table.read_at
        missing = [n for n in names if n not in table.ids]
        if table.read_at == float("-inf") or self._stale or (missing and age >= self._recheck_after):
            table = await self._flight.do("listing", self._read)
        elif age >= self._refresh_every:
            self._refresh_in_background()
        found = {n: table.ids[n] for n in dict.fromkeys(names) if n in table.ids}
        caches.RESOURCE.lookup(len(found) == len(set(names)))
        return found

    def forget(self, names: Iterable[str]) -> None:
        """Keycloak said a resolved resource does not exist: the next question re-reads the table."""
        del names
        self._stale = True

    async def close(self) -> None:
        """Stop a background refresh."""
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._background
            self._background = None

    def _refresh_in_background(self) -> None:
        """Re-read without making anyone wait; failures keep the old table."""
        if self._background is not None and not self._background.done():
            return

        async def refresh() -> None:
            try:
                await self._flight.do("listing", self._read)
            except Exception as exc:  # logged; the old table stays in use
                log.warning("resource_catalog_refresh_failed", error=str(exc))

        self._background = asyncio.create_task(refresh())

    async def _read(self) -> _Table:
        """Read every page of the listing and swap the table in."""
        self.listings += 1
        ids: dict[str, str] = {}
        ambiguous: set[str] = set()
        first = 0
        while True:
            params = {
                "owner": self._owner,
                "scope": SCOPE,
                "deep": "true",
                "first": str(first),
                "max": str(self._page),
            }
            reply = await self._fetch(params)
            self.pages += 1
            if reply.status != 200 or not isinstance(reply.body, list):
                if reply.status == 403:
                    log.error("protection_api_forbidden", hint="the proxy's client needs uma_protection")
                raise unexpected("resource_set", reply)
            for item in reply.body:
                entry = self._entry(item)
                if entry is None:
                    continue
                name, rsid = entry
                if ids.get(name, rsid) != rsid:
                    ambiguous.add(name)
                ids[name] = rsid
            first += len(reply.body)
            if len(reply.body) < self._page:
                break
            if first >= self._maxsize:
                log.warning("resource_catalog_truncated", kept=first)
                break
        for name in ambiguous:
            # Two resources of one name: which one a grant means is unclear, so neither counts.
            log.warning("resource_name_ambiguous", name=name)
            del ids[name]
        self._table, self._stale = _Table(ids, self._clock()), False
        caches.RESOURCE.entries = len(ids)
        return self._table

    def _entry(self, item: object) -> tuple[str, str] | None:
        """(name, id) of a representation that is the server's own and has scope GET."""
        if not isinstance(item, dict):
            return None
        name, rsid, owner = item.get("name"), item.get("_id", item.get("id")), item.get("owner")
        if not isinstance(name, str) or not name or not isinstance(rsid, str) or not rsid:
            return None
        # The listing is filtered by owner id on the server; the name is checked again in case a
        # server ignores the filter (a user-owned resource shows its user's name here).
        owner_name = owner.get("name") if isinstance(owner, dict) else owner
        if owner_name != self._owner:
            return None
        if SCOPE not in _scope_names(item.get("scopes")):
            return None
        return name, rsid


def _scope_names(scopes: object) -> set[str]:
    """Scope names of a representation (objects with `name`, or plain strings)."""
    if not isinstance(scopes, list):
        return set()
    names = {s.get("name") if isinstance(s, dict) else s for s in scopes}
    return {n for n in names if isinstance(n, str)}
