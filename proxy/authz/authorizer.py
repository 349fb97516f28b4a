"""The authorizer the route layer calls: identity, hub and needed scope in, `Holdings` out.

One authorizer per resource-server client serves every hub whose resources that client owns
(docs: several hubs): the holdings call ("everything this token holds") is made once per token
and split by resource-name prefix into each hub's holdings; `HUB` grants every one of them.
Decisions, caches and single-flight are keyed by hub, so no answer for one hub serves another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import structlog

from proxy.authn.identity import Identity
from proxy.authz import uma
from proxy.authz.catalog import ResourceCatalog
from proxy.authz.decisions import HOLDINGS, DecisionCache, Key
from proxy.authz.uma import Grant, UnknownResource
from proxy.config import Settings
from proxy.errors import KeycloakUnavailable, Unauthorized
from proxy.keycloak_client import KeycloakClient
from proxy.naming import Keys, Parsed, ResourceNames
from proxy.promql.scope import Holdings
from proxy.singleflight import SingleFlight

log = structlog.get_logger(__name__)

ByHub = dict[str, Holdings]
# More names than PROXY_MAX_UMA_NAMES are asked in several calls, at most this many; beyond, the
# holdings call answers (docs/keycloak.md#large-realms-and-keycloaks-load).
MAX_UMA_CALLS = 4
Renew = Callable[[Identity], Awaitable[Identity | None]]


def holdings_key(identity: Identity, hub: str) -> Key:
    """Cache key of one hub's share of the holdings call."""
    return (identity.token_hash, (*HOLDINGS, hub))


class Authorizer:
    """What a caller holds on each hub of one resource-server client, from Keycloak's UMA grant."""

    def __init__(
        self,
        settings: Settings,
        client: KeycloakClient,
        *,
        hubs: Sequence[str] = (),
    ) -> None:
        """Every Keycloak call goes through `client` (its resource-server client: UMA audience,
        Protection API owner and PAT); `hubs` default to the single `PROXY_ACM_HUB`."""
        self._client = client
        self._timeout = settings.auth_timeout
        self._max_names = settings.max_uma_names
        self.hubs = tuple(hubs) or (settings.acm_hub,)
        keys = Keys(settings.hub_key, settings.cluster_key, settings.project_key)
        self.names_of = {hub: ResourceNames(hub, keys) for hub in self.hubs}
        # The first hub's names: what `holdings` answers for when no hub is given.
        self.names = self.names_of[self.hubs[0]]
        self.resolver = ResourceCatalog(
            lambda params: client.protection("resource_set", client.endpoints.resource_set, params),
            client.client_id,
            maxsize=max(settings.authz_cache_size, 100_000),
        )
        # Set by the application: re-mint a Basic caller's token Keycloak refused (docs/keycloak.md).
        self.renew: Renew | None = None
        self._decisions = DecisionCache(
            settings.authz_cache_ttl, settings.authz_deny_cache_ttl, settings.authz_cache_size
        )
        self._flight: SingleFlight[Key, Holdings] = SingleFlight()
        self._everything_flight: SingleFlight[str, ByHub] = SingleFlight()

    async def holdings(
        self,
        identity: Identity,
        clusters: frozenset[str] | None,
        projects: Mapping[str, frozenset[str]],
        hub: str | None = None,
    ) -> Holdings:
        """What the caller holds on `hub` (default: the first) among the named clusters/projects,
        or everything held there when `clusters` is None."""
        hub = hub or self.hubs[0]
        names = self.names_of[hub]
        if clusters is None:
            return await self._held_on(identity, hub)
        needed = names.needed(clusters, projects)
        if len(needed) > self._max_names * MAX_UMA_CALLS:
            return await self._held_on(identity, hub)
        # The names carry `HUB-<hub>`, so the key is the hub's own; it is spelled out anyway.
        key: Key = (identity.token_hash, (hub, *sorted(needed)))
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        if not self._client.load.take_cold(identity.subject):
            # Past this subject's cold decisions for the minute: the holdings call (one per token,
            # cached) answers instead, so a script walking names cannot make a call per name.
            return await self._held_on(identity, hub)
        return await self._flight.do(key, lambda: self._ask_targeted(identity, key, names, needed))

    async def close(self) -> None:
        """Stop the resource catalog's background refresh."""
        await self.resolver.close()

    async def holdings_by_hub(self, identity: Identity) -> ByHub:
        """Everything the caller holds, per hub of this client (one holdings call, cached)."""
        cached = {hub: self._decisions.get(holdings_key(identity, hub)) for hub in self.hubs}
        if all(held is not None for held in cached.values()):
            return {hub: held for hub, held in cached.items() if held is not None}
        return await self._everything_flight.do(identity.token_hash, lambda: self._ask_everything(identity))

    async def _held_on(self, identity: Identity, hub: str) -> Holdings:
        """One hub's share of the holdings call."""
        cached = self._decisions.get(holdings_key(identity, hub))
        if cached is not None:
            return cached
        return (
            await self._everything_flight.do(identity.token_hash, lambda: self._ask_everything(identity))
        )[hub]

    async def _ask_targeted(
        self, identity: Identity, key: Key, names: ResourceNames, needed: list[str]
    ) -> Holdings:
        """Resolve, ask, interpret, cache; any doubt is KeycloakUnavailable and is not cached."""
        try:
            async with asyncio.timeout(self._timeout):
                held = await self._targeted(identity, names, needed)
        except TimeoutError:
            raise KeycloakUnavailable("Keycloak did not answer in time") from None
        self._decisions.put(key, held, identity.exp)
        return held

    async def _ask_everything(self, identity: Identity) -> ByHub:
        """The holdings call, split per hub, each share cached under its own key."""
        try:
            async with asyncio.timeout(self._timeout):
                by_hub = await self._everything(identity)
        except TimeoutError:
            raise KeycloakUnavailable("Keycloak did not answer in time") from None
        for hub, held in by_hub.items():
            self._decisions.put(holdings_key(identity, hub), held, identity.exp)
        return by_hub

    async def _targeted(self, identity: Identity, names: ResourceNames, needed: list[str]) -> Holdings:
        """Ask exactly the names that exist; grants count only by the ids resolved for them."""
        ids = await self.resolver.resolve(needed)
        existing = [name for name in needed if name in ids]
        if not existing:
            return Holdings.nothing()
        size = self._max_names
        chunks = [existing[i : i + size] for i in range(0, len(existing), size)]
        answers = await asyncio.gather(*(self._granted(identity, chunk) for chunk in chunks))
        grants = [grant for answer in answers for grant in answer]
        by_id = {rsid: name for name, rsid in ids.items()}
        return holdings_from(names, (by_id[g.rsid] for g in grants if g.rsid in by_id))

    async def _everything(self, identity: Identity) -> ByHub:
        """Every GET grant, each confirmed to be a resource-server resource, split per hub."""
        grants = await self._granted(identity, None)
        claimed: dict[str, set[str]] = {}
        for grant in grants:
            if grant.rsname is not None and any(
                n.parse(grant.rsname) is not None for n in self.names_of.values()
            ):
                claimed.setdefault(grant.rsname, set()).add(grant.rsid)
        confirmed = await self._confirmed(list(claimed), claimed)
        out: ByHub = {}
        for hub, names in self.names_of.items():
            mine = [name for name in confirmed if names.parse(name) is not None]
            if any(names.parse(name) == Parsed() for name in mine):
                out[hub] = Holdings.everything()
            else:
                out[hub] = holdings_from(names, mine)
        return out

    async def _confirmed(self, names: list[str], claimed: Mapping[str, set[str]]) -> list[str]:
        """Names whose granted id is the resource server's own resource of that name."""
        ids = await self.resolver.resolve(names)
        return [name for name in names if ids.get(name) in claimed[name]]

    async def _granted(self, identity: Identity, names: Sequence[str] | None) -> list[Grant]:
        """The UMA call; stale resolutions are forgotten so the next request resolves afresh."""
        try:
            try:
                return await uma.granted(self._client, identity.token, names, identity.subject)
            except Unauthorized:
                fresh = await self.renew(identity) if self.renew is not None else None
                if fresh is None:
                    raise
                # A token the proxy minted for a Basic caller was refused: minted once more.
                return await uma.granted(self._client, fresh.token, names, identity.subject)
        except UnknownResource as exc:
            self.resolver.forget(names or ())
            raise KeycloakUnavailable(str(exc)) from None


class HubAuthz:
    """One hub's view of an authorizer: what the request pipeline calls for that hub."""

    def __init__(self, authorizer: Authorizer, hub: str) -> None:
        """`hub` must be one of `authorizer.hubs`."""
        self.authorizer = authorizer
        self.hub = hub
        self.names = authorizer.names_of[hub]

    async def holdings(
        self,
        identity: Identity,
        clusters: frozenset[str] | None,
        projects: Mapping[str, frozenset[str]],
    ) -> Holdings:
        """What the caller holds on this hub (see `Authorizer.holdings`)."""
        return await self.authorizer.holdings(identity, clusters, projects, self.hub)


def holdings_from(names: ResourceNames, granted: Iterable[str]) -> Holdings:
    """Holdings from granted names (names of this hub only; hub-level names grant everything)."""
    clusters: set[str] = set()
    projects: dict[str, set[str]] = {}
    for name in granted:
        parsed = names.parse(name)
        if parsed is None:
            continue
        if parsed.cluster is None:
            return Holdings.everything()
        if parsed.project is None:
            clusters.add(parsed.cluster)
        else:
            projects.setdefault(parsed.cluster, set()).add(parsed.project)
    held = {c: frozenset(p) for c, p in projects.items() if c not in clusters}
    return Holdings(clusters=frozenset(clusters), projects=held)
