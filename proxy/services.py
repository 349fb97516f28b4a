"""The services a handler uses, typed, built once per application (tests pass fakes instead)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

import aiohttp
from aiohttp import web

from proxy import context, keycloak, promql
from proxy.audit.writer import AuditWriter
from proxy.authn import Authenticator, Identity
from proxy.authz import Authorizer
from proxy.authz.authorizer import HubAuthz
from proxy.caches import MetricNames
from proxy.config import Settings
from proxy.context import RequestContext
from proxy.hubs import Hub, default_hub_of, hubs_of
from proxy.keycloak_client import KeycloakClient
from proxy.promql.scope import Holdings, LabelModel
from proxy.results.backends import build_backend
from proxy.results.cache import ResultsCache
from proxy.scheduler import Scheduler
from proxy.upstream import Upstream


class Authn(Protocol):
    """Who the caller is (`proxy.authn.Authenticator`)."""

    @property
    def ready(self) -> bool:
        """True once requests can be authenticated."""

    async def authenticate(self, authorization: str | None) -> Identity:
        """The caller's identity from the Authorization header, or Unauthorized."""

    async def start(self) -> None:
        """Begin background work (key fetching)."""

    async def close(self) -> None:
        """Stop background work."""


Names = frozenset[str]
Projects = Mapping[str, Names]


class Authz(Protocol):
    """What the caller holds (`proxy.authz.Authorizer`)."""

    async def holdings(self, identity: Identity, clusters: Names | None, projects: Projects) -> Holdings:
        """Holdings among the named clusters/projects (everything held when `clusters` is None)."""


# Called with every finished request's context (status and duration set), after its log line:
# where one audit event per request is written.
RequestDone = Callable[[RequestContext], None]


@dataclass(eq=False)
class Services:
    """Everything a handler needs."""

    settings: Settings
    upstream: Upstream
    authn: Authn
    authz: Authz
    scheduler: Scheduler
    limits: promql.Limits
    model: LabelModel
    metric_names: MetricNames
    keycloak_session: aiohttp.ClientSession | None = None
    request_done: list[RequestDone] = field(default_factory=list)
    # Several hubs (docs: several hubs): each hub's view of these services, differing only in
    # its upstream, its authorizer view and its metric-names cache. Empty: one hub, this one.
    by_hub: dict[str, Services] = field(default_factory=dict)
    # Everything the caller holds on every hub (whoami); one holdings call per resource server.
    authorizers: tuple[Authorizer, ...] = ()
    # The audit writer (None: PROXY_AUDIT_LOG=off), installed by `proxy.audit.setup.install`.
    audit: AuditWriter | None = None
    # The results cache (docs/caching.md), shared by every hub (its keys name the hub); None: off.
    results: ResultsCache | None = None

    def upstreams(self) -> list[Upstream]:
        """Every hub's upstream, once."""
        found = {id(self.upstream): self.upstream}
        found.update((id(view.upstream), view.upstream) for view in self.by_hub.values())
        return list(found.values())

    async def holdings_by_hub(self, identity: Identity) -> dict[str, Holdings]:
        """What the caller holds on each configured hub."""
        out: dict[str, Holdings] = {}
        for authorizer in self.authorizers:
            out.update(await authorizer.holdings_by_hub(identity))
        return out

    async def start(self) -> None:
        """Open every hub's upstream session and start authentication's background work."""
        for upstream in self.upstreams():
            await upstream.start()
        await self.authn.start()

    async def close(self) -> None:
        """Stop and close everything `start` opened."""
        await self.authn.close()
        for authorizer in self.authorizers:
            await authorizer.close()
        for upstream in self.upstreams():
            await upstream.close()
        if self.keycloak_session is not None:
            await self.keycloak_session.close()
        if self.results is not None:
            await self.results.close()


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    """The services of the request's hub (the route table put the hub on the request context)."""
    svc = request.app[SERVICES]
    if svc.by_hub:
        ctx = context.current()
        if ctx is not None:
            return svc.by_hub.get(ctx.hub, svc)
    return svc


def limits_of(settings: Settings) -> promql.Limits:
    """The PromQL guard's limits from the settings."""
    return promql.Limits(
        max_bytes=settings.max_query_bytes,
        max_depth=settings.max_query_depth,
        max_operators=settings.max_query_operators,
        max_regex_cost=settings.max_regex_cost,
        max_rewrite_bytes=settings.max_rewrite_bytes,
    )


def model_of(settings: Settings) -> LabelModel:
    """Which labels name clusters and projects, from the settings."""
    return LabelModel(
        cluster_label=settings.cluster_label,
        project_labels=settings.project_labels,
        project_label_metrics=dict(settings.project_label_metrics),
    )


def scheduler_of(settings: Settings) -> Scheduler:
    """The fair scheduler of upstream admissions, from the settings (docs: fair use)."""
    return Scheduler(
        hub_capacity=settings.max_upstream_concurrency,
        per_subject=settings.max_concurrent_per_subject,
        max_queued=settings.max_queued_per_subject,
        max_wait=settings.max_queue_wait,
        rate=settings.rate_per_subject,
        burst=settings.rate_burst_per_subject,
    )


def _authorizers(settings: Settings, kc: KeycloakClient, hubs: tuple[Hub, ...]) -> dict[str, HubAuthz]:
    """One authorizer per resource-server client, serving every hub that client's resources name."""
    by_client: dict[str, list[Hub]] = {}
    for hub in hubs:
        by_client.setdefault(hub.client_id, []).append(hub)
    views: dict[str, HubAuthz] = {}
    for client_id, members in by_client.items():
        own = kc
        if client_id != kc.client_id:
            own = KeycloakClient(
                settings, kc.session, client_id=client_id, secret=members[0].client_secret, load=kc.load
            )
        authorizer = Authorizer(settings, own, hubs=[hub.name for hub in members])
        views.update((hub.name, HubAuthz(authorizer, hub.name)) for hub in members)
    return views


def results_of(settings: Settings) -> ResultsCache | None:
    """The results cache on its configured backend; None when `PROXY_CACHE=off`."""
    backend = build_backend(settings)
    return None if backend is None else ResultsCache(settings, backend)


def build_services(settings: Settings) -> Services:
    """Construct the real services (sessions are opened in `Services.start`): one upstream and
    one authorizer view per hub, everything else shared."""
    kc_session = keycloak.create_session(settings)
    kc = KeycloakClient(settings, kc_session)
    hubs = hubs_of(settings)
    authz = _authorizers(settings, kc, hubs)
    authn = Authenticator(settings, kc)
    for view in authz.values():
        view.authorizer.renew = authn.basic.renew
    upstreams = {hub.name: Upstream(settings, hub) for hub in hubs}
    first = default_hub_of(settings) or hubs[0].name
    root = Services(
        settings=settings,
        upstream=upstreams[first],
        authn=authn,
        authz=authz[first],
        scheduler=scheduler_of(settings),
        limits=limits_of(settings),
        model=model_of(settings),
        metric_names=MetricNames(settings.authz_cache_ttl),
        keycloak_session=kc_session,
        authorizers=tuple({id(v.authorizer): v.authorizer for v in authz.values()}.values()),
        results=results_of(settings),
    )
    if len(hubs) > 1:
        root.by_hub = {
            hub.name: root
            if hub.name == first
            else replace(
                root,
                upstream=upstreams[hub.name],
                authz=authz[hub.name],
                metric_names=MetricNames(settings.authz_cache_ttl),
            )
            for hub in hubs
        }
    return root
