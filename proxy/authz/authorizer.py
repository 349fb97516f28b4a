"""The authorizer the route layer calls: identity and needed scope in, `Holdings` out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import aiohttp
import structlog

from proxy.authn.identity import Identity
from proxy.authz.decisions import HOLDINGS, DecisionCache, Key
from proxy.authz.names import Parsed, ResourceNames
from proxy.authz.resources import ResourceResolver, ServiceTokens
from proxy.authz.uma import Grant, UmaClient, UnknownResource
from proxy.config import Settings
from proxy.errors import KeycloakUnavailable
from proxy.keycloak import Endpoints
from proxy.promql.scope import Holdings
from proxy.singleflight import SingleFlight

log = structlog.get_logger(__name__)


class Authorizer:
    """What a caller holds, from Keycloak's UMA grant; cached and single-flight per question."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession, authn: ServiceTokens) -> None:
        """`authn` provides the proxy's own token for the Protection API."""
        endpoints = Endpoints.from_settings(settings)
        self._timeout = settings.auth_timeout
        self._max_names = settings.max_uma_names
        self.names = ResourceNames(
            settings.hub_key, settings.acm_hub, settings.cluster_key, settings.project_key
        )
        self.resolver = ResourceResolver(
            session,
            endpoints,
            authn,
            settings.auth_client_id,
            self._timeout,
            maxsize=settings.authz_cache_size,
        )
        self._uma = UmaClient(session, endpoints, settings.auth_client_id, settings.auth_realm, self._timeout)
        self._decisions = DecisionCache(
            settings.authz_cache_ttl, settings.authz_deny_cache_ttl, settings.authz_cache_size
        )
        self._flight: SingleFlight[Key, Holdings] = SingleFlight()

    async def close(self) -> None:
        """Nothing runs in the background; present for symmetry with the authenticator."""

    async def holdings(
        self,
        identity: Identity,
        clusters: frozenset[str] | None,
        projects: Mapping[str, frozenset[str]],
    ) -> Holdings:
        """What the caller holds among the named clusters/projects (everything if `clusters` is None)."""
        if clusters is None:
            return await self._answer(identity, HOLDINGS, None)
        names = self.names.needed(clusters, projects)
        if len(names) > self._max_names:
            return await self._answer(identity, HOLDINGS, None)
        return await self._answer(identity, tuple(sorted(names)), names)

    async def _answer(self, identity: Identity, asked: tuple[str, ...], names: list[str] | None) -> Holdings:
        """Cached answer, or one shared Keycloak round for every concurrent identical question."""
        key: Key = (identity.token_hash, asked)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        return await self._flight.do(key, lambda: self._ask(identity, key, names))

    async def _ask(self, identity: Identity, key: Key, names: list[str] | None) -> Holdings:
        """Resolve, ask, interpret, cache; any doubt is KeycloakUnavailable and is not cached."""
        try:
            async with asyncio.timeout(self._timeout):
                if names is None:
                    held = await self._everything(identity)
                else:
                    held = await self._targeted(identity, names)
        except TimeoutError:
            raise KeycloakUnavailable("Keycloak did not answer in time") from None
        self._decisions.put(key, held, identity.exp)
        return held

    async def _targeted(self, identity: Identity, names: list[str]) -> Holdings:
        """Ask exactly the names that exist; grants count only by the ids resolved for them."""
        ids = await self.resolver.resolve(names)
        existing = [name for name in names if name in ids]
        if not existing:
            return Holdings.nothing()
        grants = await self._granted(identity, existing)
        by_id = {rsid: name for name, rsid in ids.items()}
        return self.names.holdings(by_id[g.rsid] for g in grants if g.rsid in by_id)

    async def _everything(self, identity: Identity) -> Holdings:
        """Every GET grant on this hub, each confirmed to be a resource-server resource."""
        grants = await self._granted(identity, None)
        claimed: dict[str, set[str]] = {}
        for grant in grants:
            if grant.rsname is not None and self.names.parse(grant.rsname) is not None:
                claimed.setdefault(grant.rsname, set()).add(grant.rsid)
        hub_level = [n for n in claimed if self.names.parse(n) == Parsed()]
        if hub_level and await self._confirmed(hub_level, claimed):
            return Holdings.everything()
        return self.names.holdings(await self._confirmed(list(claimed), claimed))

    async def _confirmed(self, names: list[str], claimed: Mapping[str, set[str]]) -> list[str]:
        """Names whose granted id is the resource server's own resource of that name."""
        ids = await self.resolver.resolve(names)
        return [name for name in names if ids.get(name) in claimed[name]]

    async def _granted(self, identity: Identity, names: Sequence[str] | None) -> list[Grant]:
        """The UMA call; stale resolutions are forgotten so the next request resolves afresh."""
        try:
            return await self._uma.granted(identity.token, names)
        except UnknownResource as exc:
            self.resolver.forget(names or ())
            raise KeycloakUnavailable(str(exc)) from None
