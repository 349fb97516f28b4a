"""Handler tests: the real application (`create_app`) with fake Keycloak-facing services and a
real loopback upstream that records exactly what the proxy forwarded."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from pytest_aiohttp import AiohttpClient, AiohttpServer

from proxy import errors
from proxy.app import create_app
from proxy.authn import Identity
from proxy.caches import MetricNames
from proxy.config import Settings
from proxy.context import RequestContext
from proxy.promql.scope import Holdings
from proxy.services import Services, limits_of, model_of, scheduler_of
from proxy.upstream import Upstream
from tests.support.proxy_server import make_settings

HUB = "hub-a"
# What each caller holds (the fake Keycloak's answer to "everything held").
HELD: dict[str, Holdings] = {
    "alice": Holdings(projects={"c1": frozenset({"team-a"})}),
    "carol": Holdings(clusters=frozenset({"c2"})),
    "admin": Holdings.everything(),
    "nobody": Holdings.nothing(),
}


def bearer(subject: str) -> dict[str, str]:
    """The Authorization header the fake authenticator accepts for `subject`."""
    return {"Authorization": f"Bearer {subject}"}


class FakeAuthn:
    """Accepts `Bearer <subject>` for the subjects of HELD; 401 for anything else."""

    ready = True

    async def authenticate(self, authorization: str | None) -> Identity:
        """The identity named by the header."""
        if authorization is None or not authorization.startswith("Bearer "):
            raise errors.Unauthorized("missing bearer token")
        subject = authorization.removeprefix("Bearer ")
        if subject not in HELD:
            raise errors.Unauthorized("token rejected")
        return Identity(subject, subject, f"h-{subject}", time.time() + 3600, {})

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to stop."""


@dataclass
class FakeAuthz:
    """Keycloak's UMA answers: exact names grant only what is held by that very name (a hub-wide
    grant is not a cluster's name), "everything" answers HELD. Records every question."""

    asked: list[tuple[str, frozenset[str] | None]] = field(default_factory=list)

    async def holdings(
        self, identity: Identity, clusters: frozenset[str] | None, projects: Mapping[str, frozenset[str]]
    ) -> Holdings:
        """What `identity` holds among the named clusters/projects (all when `clusters` is None)."""
        self.asked.append((identity.subject, clusters))
        held = HELD[identity.subject]
        if clusters is None:
            return held
        granted = {
            c: frozenset(p for p in projects.get(c, ()) if p in held.projects.get(c, ())) for c in clusters
        }
        return Holdings(
            clusters=frozenset(c for c in clusters if c in held.clusters),
            projects={c: ps for c, ps in granted.items() if ps},
        )


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    form: list[tuple[str, str]] | None
    headers: CIMultiDictProxy[str]


@dataclass
class FakeUpstream:
    """A loopback Prometheus stand-in: records requests, answers per path (default: success)."""

    seen: list[Seen] = field(default_factory=list)
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    gzipped: bool = False

    def app(self) -> web.Application:
        """The aiohttp application serving every path."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = [tuple(p.split("=", 1)) for p in body.decode().split("&")] if body else None
        self.seen.append(
            Seen(
                request.method,
                request.path,
                list(request.rel_url.query.items()),
                [(_unquote(k), _unquote(v)) for k, v in form] if form else None,
                request.headers,
            )
        )
        status, doc = self.answers.get(request.path, (200, {"status": "success", "data": []}))
        raw = json.dumps(doc).encode()
        headers = {"Content-Type": "application/json"}
        if self.gzipped:
            raw, headers["Content-Encoding"] = gzip.compress(raw), "gzip"
        return web.Response(body=raw, status=status, headers=headers)

    @property
    def last(self) -> Seen:
        """The last request received."""
        return self.seen[-1]


def _unquote(text: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(text)


@dataclass
class Harness:
    """The proxy under test, its fakes, and the contexts of the requests it finished."""

    client: TestClient[web.Request, web.Application]
    upstream: FakeUpstream
    authz: FakeAuthz
    settings: Settings
    done: list[RequestContext]


Make = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_proxy(aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer) -> Make:
    """Build a proxy (env overrides as keyword arguments) in front of a fresh fake upstream."""

    async def make(**env: str) -> Harness:
        upstream = FakeUpstream()
        server: TestServer = await aiohttp_server(upstream.app())
        settings = make_settings(
            {
                "PROXY_PROMETHEUS_BASE_URL": str(server.make_url("")).rstrip("/"),
                "PROXY_AUTH_BASE_URL": "http://127.0.0.1:9",
                "PROXY_AUTH_REALM": "realm",
                "PROXY_AUTH_CLIENT_ID": "resource-server",
                "PROXY_AUTH_CLIENT_SECRET": "not-used-by-the-fakes",
                "PROXY_ACM_HUB": HUB,
                "PROXY_PROJECT_LABELS": "namespace",
                **env,
            }
        )
        authz = FakeAuthz()
        done: list[RequestContext] = []
        services = Services(
            settings=settings,
            upstream=Upstream(settings),
            authn=FakeAuthn(),
            authz=authz,
            scheduler=scheduler_of(settings),
            limits=limits_of(settings),
            model=model_of(settings),
            metric_names=MetricNames(settings.authz_cache_ttl),
            request_done=[done.append],
        )
        client = await aiohttp_client(create_app(settings, services=services))
        return Harness(client, upstream, authz, settings, done)

    return make
