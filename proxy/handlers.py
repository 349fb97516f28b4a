"""Request handlers: the one place that composes authn → promql → authz → rewrite → upstream."""

from __future__ import annotations

import gzip
import json
import math
import re
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import structlog
from aiohttp import web
from multidict import CIMultiDict

from proxy import errors, metrics, promql
from proxy.authn import Authenticator, Identity
from proxy.authz import Authorizer
from proxy.config import Settings
from proxy.durations import parse_duration
from proxy.filters import filter_alerts, filter_metadata, filter_rules
from proxy.params import RequestParams, read_params
from proxy.promql.scope import Holdings, LabelModel, labels_visible
from proxy.scheduler import Scheduler
from proxy.timing import timed
from proxy.upstream import Upstream, UpstreamRequest, read_bounded, stream

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")
# Matches every series; the anchor for injecting a caller's scope where no match[] was given.
ALL_SERIES = '{__name__=~".+"}'
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
FILTERED_BODY_LIMIT = 64 * 1024 * 1024


@dataclass
class Services:
    """Everything a handler needs, built once per application."""

    settings: Settings
    upstream: Upstream
    authn: Authenticator
    authz: Authorizer
    scheduler: Scheduler
    limits: promql.Limits
    model: LabelModel
    extra: dict[str, Any] = field(default_factory=dict)


SERVICES = web.AppKey("services", Services)
LOG_FIELDS = web.RequestKey("log", dict[str, Any])
ADMITTED = web.RequestKey("admitted", bool)


def services(request: web.Request) -> Services:
    """The application's services."""
    return request.app[SERVICES]


def note(request: web.Request, **fields: Any) -> None:
    """Add fields to the request's log line."""
    request.setdefault(LOG_FIELDS, {}).update(fields)


async def authenticate(request: web.Request, svc: Services | None = None) -> Identity:
    """Authenticate the caller and bind the subject to the request's log context."""
    authn = (svc or services(request)).authn
    with timed(request, "authn"):
        identity = await authn.authenticate(request.headers.get("Authorization"))
    note(request, subject=identity.subject)
    structlog.contextvars.bind_contextvars(subject=identity.subject)
    return identity


# Reach of an analysis and its two log fields, by the analysis object: analyses are immutable and
# come from the PromQL analysis cache, so a repeated panel reuses these instead of recomputing
# the union and sorting on every request. The entry holds the analysis itself, so its id cannot be
# reused while the entry lives; few entries (cleared when full), as each keeps a parsed tree (of a
# query of at most PROXY_MAX_QUERY_BYTES) alive beyond the analysis cache's own bounds.
_REACH: dict[int, tuple[promql.Analysis, promql.Reach, tuple[str, ...], tuple[str, ...]]] = {}
_REACH_MAX_ENTRIES = 128


def _reach(analysis: promql.Analysis) -> tuple[promql.Reach, tuple[str, ...], tuple[str, ...]]:
    """`analysis.reach()` with its sorted clusters and namespaces, computed once per analysis."""
    hit = _REACH.get(id(analysis))
    if hit is not None and hit[0] is analysis:
        return hit[1], hit[2], hit[3]
    reach = analysis.reach()
    clusters = tuple(sorted(reach.clusters))
    namespaces = tuple(sorted({p for ps in reach.projects.values() for p in ps}))
    if len(_REACH) >= _REACH_MAX_ENTRIES:
        _REACH.clear()
    _REACH[id(analysis)] = (analysis, reach, clusters, namespaces)
    return reach, clusters, namespaces


async def decide(
    request: web.Request,
    identity: Identity,
    analysis: promql.Analysis,
    narrow: bool,
    apply: Callable[[Holdings, promql.Mode], T],
    svc: Services | None = None,
) -> tuple[T, Holdings]:
    """Ask Keycloak what the analysed request needs and enforce it; returns (result, holdings).

    Exact names first when the request is bounded. A request those names do not fully grant is
    decided again from everything the caller holds: in narrow mode to restrict it to the holdings
    (SPEC §4.3: an unbounded *or partly granted* selector), in deny mode so that the 403 says what
    is missing rather than "you hold nothing" (the exact-names answer only covers those names).
    """
    svc = svc or services(request)
    reach, clusters, namespaces = _reach(analysis)
    note(request, clusters=clusters, namespaces=namespaces)
    mode: promql.Mode = "narrow" if narrow else "deny"
    if analysis.has_selectors and reach.bounded:
        with timed(request, "authz"):
            targeted = await svc.authz.holdings(identity, reach.clusters, reach.projects)
        try:
            result = apply(targeted, "deny")
        except promql.AccessDenied:
            pass  # not fully granted by the exact names: decide from the full holdings
        except promql.PromQLError as exc:
            raise _http_error(request, exc) from exc
        else:
            note(request, decision="allowed")
            return result, targeted
    with timed(request, "authz"):
        everything = await svc.authz.holdings(identity, None, {})
    result = _enforce(request, lambda: apply(everything, mode))
    restricted = narrow and analysis.has_selectors and not everything.hub_wide
    note(request, decision="narrowed" if restricted else "allowed")
    return result, everything


def _mode(svc: Services) -> promql.Mode:
    return svc.settings.enforce_mode


def _http_error(request: web.Request, exc: promql.PromQLError) -> errors.ProxyError:
    """The HTTP error for a PromQL engine error, counted and noted on the request's log line."""
    if isinstance(exc, promql.QueryLimitError | promql.QuerySyntaxError):
        reason = exc.limit if isinstance(exc, promql.QueryLimitError) else "syntax"
        metrics.QUERY_REJECTIONS.labels(reason).inc()
    decision = "denied" if isinstance(exc, promql.AccessDenied) else "refused"
    note(request, decision=decision)
    if isinstance(exc, promql.VerificationFailed):
        log.error("rewrite_not_verified", error=str(exc))
    return errors.from_promql(exc)


def _enforce(request: web.Request, call: Callable[[], T]) -> T:
    """Run a PromQL engine step, mapping its typed errors to HTTP errors."""
    try:
        return call()
    except promql.PromQLError as exc:
        raise _http_error(request, exc) from exc


def _parse_time(value: str) -> float | None:
    """Prometheus' time formats: unix seconds or RFC 3339; None when unparseable."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _parse_step(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        try:
            return parse_duration(value)
        except ValueError:
            return None


def check_range(svc: Services, params: RequestParams) -> None:
    """Fair use of a shared upstream: bounded range length and points per series (SPEC §12)."""
    start_s = params.single("start", required=False)
    end_s = params.single("end", required=False)
    step_s = params.single("step", required=False)
    if start_s is None or end_s is None or step_s is None:
        return  # Prometheus itself answers the missing-parameter error
    start, end, step = _parse_time(start_s), _parse_time(end_s), _parse_step(step_s)
    if start is None or end is None or step is None or not all(map(math.isfinite, (start, end, step))):
        return
    if step > 0 and (end - start) / step > svc.settings.max_points:
        raise errors.BadRequest(
            f"exceeded maximum resolution of {svc.settings.max_points} points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )


def _cap_timeout(svc: Services, url: list[tuple[str, str]], body: list[tuple[str, str]]) -> None:
    """A caller's `timeout` parameter never exceeds the proxy's upstream timeout."""
    cap = svc.settings.prometheus_timeout
    for params in (url, body):
        for i, (key, value) in enumerate(params):
            if key != "timeout":
                continue
            try:
                asked = parse_duration(value)
            except ValueError:
                continue
            if asked > cap:
                params[i] = (key, f"{int(cap * 1000)}ms")


@asynccontextmanager
async def admitted(
    request: web.Request, identity: Identity, svc: Services | None = None
) -> AsyncIterator[None]:
    """Hold the request's one upstream admission (docs: fair use) for the block; nested use inside
    the same request (several upstream calls, fan-out branches) takes no second one."""
    if request.get(ADMITTED):
        yield
        return
    svc = svc or services(request)
    async with svc.scheduler.admission(svc.settings.acm_hub, identity.subject) as waited:
        note(request, queue_ms=round(waited * 1000, 3))
        request[ADMITTED] = True
        try:
            yield
        finally:
            request[ADMITTED] = False


async def _forward(
    request: web.Request, built: UpstreamRequest, identity: Identity, svc: Services | None = None
) -> web.StreamResponse:
    """Send a built request upstream under the caller's fair-use share and stream the answer."""
    svc = svc or services(request)
    async with admitted(request, identity, svc):
        response = await svc.upstream.send(built, svc.upstream.headers_for(request, built.form is not None))
        return await stream(request, response)


async def query(request: web.Request) -> web.StreamResponse:
    """`/api/v1/query`, `query_range`, `query_exemplars`: analyse, authorize, rewrite, forward."""
    svc = services(request)
    identity = await authenticate(request, svc)
    params = await read_params(request, svc.settings.max_body_bytes)
    text = params.single("query")
    assert text is not None
    if route_name(request) == "query_range":
        check_range(svc, params)
    analysis = _enforce(request, lambda: promql.analyse_query(text, svc.limits, svc.model))
    rewritten, _ = await decide(
        request,
        identity,
        analysis,
        _mode(svc) == "narrow",
        lambda held, mode: promql.enforce_query(analysis, held, mode),
        svc,
    )
    url, body = params.replaced("query", [rewritten])
    _cap_timeout(svc, url, body)
    built = UpstreamRequest(
        request.method, route_path(request), tuple(url), tuple(body) if params.had_body else None
    )
    return await _forward(request, built, identity, svc)


async def scoped_matches(request: web.Request, identity: Identity, matches: list[str]) -> list[str] | None:
    """The verified `match[]` list for the caller; None when nothing needs to be added."""
    svc = services(request)
    injected = not matches
    analysis = _enforce(
        request,
        lambda: promql.analyse_selectors(matches or [ALL_SERIES], svc.limits, svc.model),
    )
    # Scope injection narrows by construction; explicit selectors follow the configured mode.
    narrow = injected or _mode(svc) == "narrow"
    result, holdings = await decide(
        request,
        identity,
        analysis,
        narrow,
        lambda held, mode: promql.enforce_selectors(analysis, held, mode),
    )
    if injected and holdings.hub_wide:
        return None
    return result


async def selectors(request: web.Request) -> web.StreamResponse:
    """`series`, `labels`, `label/<name>/values`, `federate`: every `match[]` enforced."""
    svc = services(request)
    identity = await authenticate(request)
    params = await read_params(request, svc.settings.max_body_bytes)
    name = request.match_info.get("name")
    if name is not None and not LABEL_NAME.match(name):
        raise errors.BadRequest(f"invalid label name {name!r}")
    enforced = await scoped_matches(request, identity, params.all("match[]"))
    if enforced is None and route_name(request) in MATCH_REQUIRED_UPSTREAM:
        enforced = [ALL_SERIES]  # a hub-wide caller's scope is everything: same answer shape for all
    url, body = params.replaced("match[]", enforced if enforced is not None else [])
    if enforced is None:
        url, body = list(params.url), list(params.body)
    method = request.method
    if ROUTE_GET_ONLY_UPSTREAM.get(route_name(request), False):
        url, body, method = url + body, [], "GET"
    form = tuple(body) if params.had_body and method == "POST" else None
    built = UpstreamRequest(method, route_path(request), tuple(url), form)
    return await _forward(request, built, identity)


# Routes where Prometheus selects nothing (400 or empty) without match[]: the scope is always injected.
MATCH_REQUIRED_UPSTREAM = frozenset({"series", "federate"})
# Routes Prometheus only serves with GET: a POST from the caller is sent upstream as GET.
ROUTE_GET_ONLY_UPSTREAM = {"label_values": True, "federate": True}


def route_name(request: web.Request) -> str:
    """The route table's name of the matched route ("" when none matched)."""
    resource = request.match_info.route.resource
    return (resource.name or "") if resource is not None else ""


def route_path(request: web.Request) -> str:
    """The upstream path: from the route table, with `<name>` re-encoded."""
    info = request.match_info.route.resource
    assert info is not None
    canonical = info.canonical
    name = request.match_info.get("name")
    return canonical.replace("{name}", name) if name is not None else canonical


def _decode_json(raw: bytes, encoding: str) -> Any:
    """Decode a (possibly gzip/deflate) upstream JSON body; 502 when it is not JSON."""
    try:
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        elif encoding not in ("", "identity"):
            raise ValueError(encoding)
        return json.loads(raw)
    except (OSError, ValueError, zlib.error) as exc:
        raise errors.UpstreamUnavailable("upstream answer could not be decoded") from exc


async def _filtered(
    request: web.Request,
    identity: Identity,
    built: UpstreamRequest,
    transform: Callable[[Any], Any],
) -> web.StreamResponse:
    """Fetch a JSON answer, apply `transform` to its `data` on success, pass errors through."""
    svc = services(request)
    async with admitted(request, identity, svc):
        response = await svc.upstream.send(built, _filter_headers(request, svc))
        status, encoding = response.status, response.headers.get("Content-Encoding", "")
        raw = await read_bounded(response, FILTERED_BODY_LIMIT)
    doc = _decode_json(raw, encoding.lower())
    if status == 200 and isinstance(doc, dict) and doc.get("status") == "success":
        doc = {**doc, "data": transform(doc.get("data"))}
    return web.json_response(doc, status=status)


def _filter_headers(request: web.Request, svc: Services) -> CIMultiDict[str]:
    headers = svc.upstream.headers_for(request, False)
    headers.popall("Accept-Encoding", None)
    headers["Accept-Encoding"] = "gzip"
    return headers


async def rules(request: web.Request) -> web.StreamResponse:
    """`/api/v1/rules` and `/api/v1/alerts`: the upstream answer filtered to the caller's grant."""
    svc = services(request)
    identity = await authenticate(request)
    params = await read_params(request, svc.settings.max_body_bytes)
    with timed(request, "authz"):
        holdings = await svc.authz.holdings(identity, None, {})
    if not holdings.holds_anything():
        raise errors.Forbidden("you hold no permission on this hub")
    note(request, decision="filtered")

    def visible(labels: Any) -> bool:
        return labels_visible(labels, holdings, svc.model)

    is_alerts = route_name(request) == "alerts"

    def transform(data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return filter_alerts(data, visible) if is_alerts else filter_rules(data, visible, holdings.hub_wide)

    built = UpstreamRequest("GET", route_path(request), params.url)
    return await _filtered(request, identity, built, transform)


async def metadata(request: web.Request) -> web.StreamResponse:
    """`/api/v1/metadata` limited to the metric names visible to the caller."""
    svc = services(request)
    identity = await authenticate(request)
    params = await read_params(request, svc.settings.max_body_bytes)
    async with admitted(request, identity, svc):
        names = await visible_metric_names(request, identity)
        built = UpstreamRequest("GET", route_path(request), params.url)
        return await _filtered(request, identity, built, lambda data: filter_metadata(data or {}, names))


async def visible_metric_names(request: web.Request, identity: Identity) -> frozenset[str] | None:
    """Metric names in the caller's scope (None for hub-wide holders), cached per token."""
    svc = services(request)
    cache: dict[str, tuple[float, frozenset[str] | None]] = svc.extra.setdefault("metric_names", {})
    hit = cache.get(identity.token_hash)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    enforced = await scoped_matches(request, identity, [])
    names: frozenset[str] | None = None
    if enforced is not None:
        built = UpstreamRequest(
            "GET", "/api/v1/label/__name__/values", tuple(("match[]", m) for m in enforced)
        )
        async with admitted(request, identity, svc):
            response = await svc.upstream.send(built, _filter_headers(request, svc))
            encoding = response.headers.get("Content-Encoding", "").lower()
            raw = await read_bounded(response, FILTERED_BODY_LIMIT)
        doc = _decode_json(raw, encoding)
        if response.status != 200 or not isinstance(doc, dict):
            raise errors.UpstreamUnavailable("upstream could not list metric names")
        names = frozenset(str(n) for n in doc.get("data") or [])
    if len(cache) > 10000:
        cache.clear()
    ttl = min(svc.settings.authz_cache_ttl, max(0.0, identity.exp - time.time()))
    cache[identity.token_hash] = (time.monotonic() + ttl, names)
    return names


async def passthrough(request: web.Request) -> web.StreamResponse:
    """Authenticated endpoints without series data (buildinfo, format_query, parse_query)."""
    svc = services(request)
    identity = await authenticate(request)
    params = await read_params(request, svc.settings.max_body_bytes)
    if not identity.subject:
        raise errors.Unauthorized("no subject")
    note(request, decision="passthrough")
    form = params.body if params.had_body else None
    built = UpstreamRequest(request.method, route_path(request), params.url, form)
    return await _forward(request, built, identity)


async def root(request: web.Request) -> web.StreamResponse:
    """`GET /`: a short text, for prometheus-api-client's connection check."""
    return web.Response(text="prom-keycloak-proxy: authorizing PromQL proxy\n")


async def healthz(request: web.Request) -> web.StreamResponse:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Readiness: configuration loaded and the JWKS fetched once."""
    svc = services(request)
    if not svc.authn.ready:
        return web.json_response({"status": "not ready", "reason": "JWKS not fetched yet"}, status=503)
    return web.json_response({"status": "ready"})
