"""The services a handler uses, typed, built once per application (tests pass fakes instead)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp import web

from proxy import keycloak, promql
from proxy.authn import Authenticator, Identity
from proxy.authz import Authorizer
from proxy.caches import MetricNames
from proxy.config import Settings
from proxy.context import RequestContext
from proxy.keycloak_client import KeycloakClient
from proxy.promql.scope import Holdings, LabelModel
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

    async def start(self) -> None:
        """Open the upstream session and start authentication's background work."""
        await self.upstream.start()
        await self.authn.start()

    async def close(self) -> None:
        """Stop and close everything `start` opened."""
        await self.authn.close()
        await self.upstream.close()
        if self.keycloak_session is not None:
            await self.keycloak_session.close()


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    """The application's services."""
    return request.app[SERVICES]


def limits_of(settings: Settings) -> promql.Limits:
    """The PromQL guard's limits from the settings."""
    return promql.Limits(
        max_bytes=settings.max_query_bytes,
        max_depth=settings.max_query_depth,
        max_operators=settings.max_query_operators,
        max_regex_cost=settings.max_regex_cost,
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


def build_services(settings: Settings) -> Services:
    """Construct the real services (sessions are opened in `Services.start`)."""
    kc_session = keycloak.create_session(settings)
    kc = KeycloakClient(settings, kc_session)
    return Services(
        settings=settings,
        upstream=Upstream(settings),
        authn=Authenticator(settings, kc),
        authz=Authorizer(settings, kc),
        scheduler=scheduler_of(settings),
        limits=limits_of(settings),
        model=model_of(settings),
        metric_names=MetricNames(settings.authz_cache_ttl),
        keycloak_session=kc_session,
    )
