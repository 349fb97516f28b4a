"""Fuzzing the whole request path against the running proxy and the real Prometheus.

Hypothesis generates batches of requests: grammar-built and random PromQL, random `match[]`,
parameters in the URL, the body or both, random methods, paths and headers, for every demo
identity (and none). Each batch is sent concurrently to the proxy (its own process, so the two
cores are both used). The oracle is data: every series, label name or label value in every 200
answer must lie inside the caller's grant (SPEC §4.3), computed from what the real Prometheus
holds, rule outputs included. A 500 `internal` answer is a failure too.

Reproduce with `FUZZ_SEED=<seed printed by the run>`; `FUZZ_REQUESTS` sets the request count
(default 20,000). Hypothesis shrinks a failing batch to one minimal request, printed as curl.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from yarl import URL

from proxy.demo.prometheus import PrometheusServer
from proxy.emulator import ThreadedEmulatorServer
from tests.support.oracle import Grant, visible
from tests.support.soak import ProxyProcess
from tests.support.stack import CLIENT_SECRETS, TokenFor, proxy_environ

pytestmark = [pytest.mark.prometheus, pytest.mark.slow, pytest.mark.xdist_group("fuzz")]

SEED = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**32))
TOTAL = int(os.environ.get("FUZZ_REQUESTS", "20000"))
BATCH = 40
CONCURRENCY = 24

CLUSTERS = ("nerc-ocp-prod", "nerc-ocp-test")
PROJECTS = ("team-a", "team-b", "team-c", "nvidia-gpu-operator", "openshift-monitoring")
GRANTS: dict[str, Grant] = {
    "alice": Grant.of_projects("nerc-ocp-prod", "team-a"),
    "bob": Grant.of_clusters("nerc-ocp-test"),
    "carol": Grant(clusters={"nerc-ocp-prod"}, projects={"nerc-ocp-test": {"team-b"}}),
    "dave": Grant.hub(),
    "eve": Grant.nothing(),
    "researcher-team-a": Grant(
        projects={"nerc-ocp-prod": {"team-a"}, "nerc-ocp-test": {"team-a"}}
    ),
    "researcher-basic": Grant(projects={"nerc-ocp-prod": {"team-a"}, "nerc-ocp-test": {"team-a"}}),
}
ANONYMOUS = ("none", "garbage", "query-token", "cookie-token")
IDENTITIES = tuple(GRANTS) + ANONYMOUS
# Answers to these paths carry no series data and need no authentication.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz"})
# Functions whose output labels the query itself makes up (SPEC §9: not leaks).
MADE_UP = re.compile(r"label_replace|label_join|absent|count_values|group_left|group_right|info\(")

METRICS = (
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "kube_pod_info",
    "kube_node_info", "vllm:request_success_total", "vllm:num_requests_running", "up",
    "cluster:cpu_cores:sum", "gpu:fb_used:gib", "ALERTS", "namespace:vllm_num_requests_running:sum",
)
LABELS = ("cluster", "namespace", "exported_namespace", "__name__", "pod", "gpu", "job", "Hostname")
ROUTES = (
    "/api/v1/query", "/api/v1/query_range", "/api/v1/query_exemplars", "/api/v1/series",
    "/api/v1/labels", "/api/v1/label/{}/values", "/federate", "/api/v1/rules", "/api/v1/alerts",
    "/api/v1/metadata", "/api/v1/status/buildinfo", "/api/v1/format_query", "/",
)


# ------------------------------------------------------------------ strategies


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


label_values = st.one_of(
    st.sampled_from(CLUSTERS + PROJECTS + ("", ".*", ".+", "nerc-ocp-.*", "team-a|team-b",
                                           "(?i)TEAM-A", "team-a|", "nerc-ocp-prod|nerc-ocp-test",
                                           "team-a,team-b", "team-a#GET", "HUB")),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8),
)
matchers = st.builds(
    lambda name, op, value: f"{name}{op}{_quote(value)}",
    st.sampled_from(LABELS),
    st.sampled_from(("=", "!=", "=~", "!~")),
    label_values,
)


@st.composite
def selectors(draw: st.DrawFn) -> str:
    """A vector selector with 0–3 matchers, with or without a metric name."""
    name = draw(st.sampled_from((*METRICS, "")))
    ms = draw(st.lists(matchers, max_size=3))
    if not name and not ms:
        ms = [draw(matchers)]
    return f"{name}{{{', '.join(ms)}}}" if ms or draw(st.booleans()) else name


ranges = st.sampled_from(("[1m]", "[5m]", "[30s]", "[1h]"))
RANGE_FUNCS = ("rate", "irate", "increase", "avg_over_time", "max_over_time", "count_over_time",
               "last_over_time", "delta", "deriv", "absent_over_time", "quantile_over_time")
AGGS = ("sum", "avg", "max", "min", "count", "group", "stddev")
FUNCS = ("abs", "ceil", "sort", "sort_desc", "timestamp", "absent", "scalar", "vector")
BINOPS = ("+", "-", "*", "/", "%", ">", "<", "==", "!=", "> bool", "and", "or", "unless", "^")


def _expr(leaf: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.builds(lambda f, s, r: (f"{f}({'0.5, ' if f == 'quantile_over_time' else ''}"
                                       f"{s}{r})"),
                      st.sampled_from(RANGE_FUNCS), selectors(), ranges),
            st.builds(lambda a, by, e: f"{a} {by}({e})", st.sampled_from(AGGS),
                      st.sampled_from(("", "by (cluster) ", "by (namespace, cluster) ",
                                       "without (pod) ")), inner),
            st.builds(lambda f, e: f"{f}({e})", st.sampled_from(FUNCS), inner),
            st.builds(lambda a, op, m, b: f"{a} {op} {m}{b}", inner, st.sampled_from(BINOPS),
                      st.sampled_from(("", "on(cluster) ", "ignoring(pod) ",
                                       "on(cluster) group_left ")), inner),
            st.builds(lambda k, e: f"topk({k}, {e})", st.integers(1, 3), inner),
            st.builds(lambda e, o: f"{e} offset {o}", selectors(), st.sampled_from(("5m", "-1m"))),
            st.builds(lambda e: f"max_over_time(({e})[10m:1m])", inner),
            st.builds(lambda e: f"({e})", inner),
            st.builds(lambda e: f"-{e}", inner),
            st.builds(lambda e: f'label_replace({e}, "cluster", "nerc-ocp-test", "", "")', inner),
            st.builds(lambda e, t: f"{e} @ {t}", selectors(), st.sampled_from(("start()", "0",
                                                                               "-1"))),
        )

    return st.recursive(leaf, extend, max_leaves=6)


grammar_queries = _expr(st.one_of(selectors(), st.sampled_from(("1", "1+1", "vector(1)",
                                                                 "time()", "2.5e3"))))
TOKENS = ('{', '}', '(', ')', '[', ']', '"', "'", "`", ",", "=", "=~", "!=", "!~", " or ",
          " and ", " by ", "sum", "rate", "@", "offset", "5m", "1", "cluster", "namespace",
          '"nerc-ocp-test"', "\\", "#", "\x00", "é", "\u2028", " ", "|", ".*", ":", "__name__")
random_queries = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=24).map("".join),
    st.text(max_size=40),
)
queries = st.one_of(grammar_queries, grammar_queries, random_queries)


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request, as sent (path and query string already percent-encoded)."""

    identity: str
    method: str
    path: str
    query_string: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...]

    def curl(self, base: str) -> str:
        """A curl command reproducing the request (the token shown as a placeholder)."""
        parts = [f"curl -sS -X {self.method}"]
        for k, v in self.headers:
            parts.append(f"-H {json.dumps(f'{k}: {v}')}")
        parts.append(f"-H 'Authorization: <{self.identity}>'")
        if self.body is not None:
            parts.append(f"--data-binary {json.dumps(self.body.decode('latin-1'))}")
        qs = f"?{self.query_string}" if self.query_string else ""
        parts.append(json.dumps(f"{base}{self.path}{qs}"))
        return " ".join(parts)


def _encode(pairs: Sequence[tuple[str, str]], raw_bytes: bool) -> str:
    out = "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)
    return out + ("&x=%ff%fe" if raw_bytes else "")


@st.composite
def paths(draw: st.DrawFn) -> str:
    """A route path, sometimes mangled (normalisation tricks) or random."""
    base = draw(st.sampled_from(ROUTES))
    if "{}" in base:
        base = base.format(draw(st.sampled_from(
            ("cluster", "namespace", "__name__", "job", "a%2Fb", "..", "bad-name", "%00"))))
    mangle = draw(st.sampled_from(("none",) * 8 + ("slash", "dot", "dotdot", "upper", "semi",
                                                     "encoded", "random")))
    if mangle == "slash":
        return base + "/"
    if mangle == "dot":
        return base.replace("/v1/", "/./v1/")
    if mangle == "dotdot":
        return base.replace("/v1/", "/v1/x/../")
    if mangle == "upper":
        return base.upper()
    if mangle == "semi":
        return base + ";jsessionid=1"
    if mangle == "encoded":
        return base.replace("/v1/", "%2Fv1%2F").replace("query", "%71uery")
    if mangle == "random":
        return "/" + quote(draw(st.text(max_size=12)), safe="/")
    return base


@st.composite
def fuzz_requests(draw: st.DrawFn) -> FuzzRequest:
    """One request: identity, method, path, parameters in URL/body/both, headers."""
    identity = draw(st.sampled_from(IDENTITIES))
    method = draw(st.sampled_from(("GET",) * 5 + ("POST",) * 5 + ("PUT", "HEAD", "DELETE",
                                                                     "OPTIONS", "PATCH")))
    path = draw(paths())
    params: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(1, 2)) if draw(st.integers(0, 9)) else 0):
        params.append(("query", draw(queries)))
    for _ in range(draw(st.integers(0, 3))):
        params.append(("match[]", draw(st.one_of(selectors(), random_queries))))
    now = int(time.time())
    for name in draw(st.lists(st.sampled_from(("time", "start", "end", "step", "timeout",
                                               "limit", "metric", "dedup")), max_size=4,
                              unique=True)):
        params.append((name, draw(st.sampled_from((
            str(now), str(now - 3600), str(now + 60), "60", "15s", "0", "-1", "1e12", "abc",
            "2024-01-01T00:00:00Z", "1767267012345", "NaN", "10m")))))
    placement = draw(st.sampled_from(("url", "body", "split", "both")))
    url_params: list[tuple[str, str]] = []
    body_params: list[tuple[str, str]] = []
    for pair in params:
        where = placement if placement != "split" else draw(st.sampled_from(("url", "body")))
        if where in ("url", "both"):
            url_params.append(pair)
        if where in ("body", "both"):
            body_params.append(pair)
    raw = draw(st.integers(0, 30)) == 0
    headers: list[tuple[str, str]] = []
    body: bytes | None = None
    if body_params or draw(st.integers(0, 9)) == 0:
        body = _encode(body_params, raw).encode("ascii")
        ctype = draw(st.sampled_from((
            "application/x-www-form-urlencoded",) * 6 + (
            "application/x-www-form-urlencoded; charset=utf-8",
            "application/x-www-form-urlencoded; charset=cp037", "multipart/form-data; boundary=x",
            "application/json", "text/plain", "")))
        if ctype:
            headers.append(("Content-Type", ctype))
        if draw(st.integers(0, 15)) == 0:
            headers.append(("Content-Encoding", draw(st.sampled_from(("gzip", "deflate", "br")))))
    for name, values in (
        ("X-HTTP-Method-Override", ("GET", "POST", "DELETE")),
        ("Accept-Encoding", ("gzip", "identity", "br, gzip")),
        ("X-Scope-OrgID", ("nerc-ocp-test",)),
        ("THANOS-TENANT", ("nerc-ocp-test",)),
        ("X-Forwarded-For", ("10.0.0.1",)),
    ):
        if draw(st.integers(0, 6)) == 0:
            headers.append((name, draw(st.sampled_from(values))))
    return FuzzRequest(identity, method, path, _encode(url_params, raw and body is None), body,
                       tuple(headers))


# ------------------------------------------------------------------ the oracle


@dataclass
class Truth:
    """Every series the real Prometheus holds (rule outputs included), refreshed on demand."""

    prometheus: PrometheusServer
    series: list[dict[str, str]]

    @classmethod
    def load(cls, prometheus: PrometheusServer) -> Truth:
        """Read every series of the dataset window from Prometheus directly (mTLS)."""
        truth = cls(prometheus, [])
        truth.refresh()
        return truth

    def refresh(self) -> None:
        """Re-read (alerts change state while the fuzzer runs)."""
        now = time.time()
        data = self.prometheus.api("/api/v1/series", {
            "match[]": '{__name__=~".+"}', "start": str(now - 8 * 3600), "end": str(now + 8 * 3600),
        })
        self.series = [dict(s) for s in data]

    def visible(self, grant: Grant) -> list[dict[str, str]]:
        """The series `grant` may see."""
        return [s for s in self.series if visible(s, grant)]


def _within(labels: Mapping[str, str], grant: Grant, seen: Sequence[Mapping[str, str]]) -> bool:
    """A result series is in the grant: stored labels visible, or a projection of a visible one."""
    if "__name__" in labels:
        return visible(labels, grant)
    items = labels.items()
    return not labels or any(all(s.get(k) == v for k, v in items) for s in seen)


_FEDERATE_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? ')
_FEDERATE_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _federate_series(text: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        m = _FEDERATE_LINE.match(line)
        if m is None or line.startswith("#"):
            continue
        labels = {k: bytes(v, "utf-8").decode("unicode_escape") for k, v in
                  _FEDERATE_LABEL.findall(m.group(2) or "")}
        labels["__name__"] = m.group(1)
        out.append(labels)
    return out


def leaks(request: FuzzRequest, status: int, body: bytes, truth: Truth) -> list[str]:
    """What is wrong with this answer (empty when it is fine)."""
    if status == 500 and b'"internal"' in body:
        return ["500 internal error (unhandled or unverified rewrite)"]
    if status != 200 or not body:
        return []
    decoded_path = unquote(request.path)
    if request.identity in ANONYMOUS:
        return [] if decoded_path in PUBLIC_PATHS else ["unauthenticated 200 on a data path"]
    grant = GRANTS[request.identity]
    seen = truth.visible(grant)
    if decoded_path.rstrip("/").endswith("federate") or not body.lstrip().startswith(b"{"):
        bad = [s for s in _federate_series(body.decode("utf-8", "replace")) if not visible(s, grant)]
        return [f"federate leaked {bad[:3]}"] if bad else []
    doc = json.loads(body)
    data = doc.get("data") if isinstance(doc, dict) else None
    qtext = " ".join(unquote(x) for x in (request.query_string, (request.body or b"").decode()))
    problems: list[str] = []
    if isinstance(data, dict) and "resultType" in data:
        if MADE_UP.search(qtext):
            return []
        if data["resultType"] in ("vector", "matrix"):
            bad = [r["metric"] for r in data["result"] if not _within(r["metric"], grant, seen)]
            if bad:
                problems.append(f"query result outside the grant: {bad[:3]}")
    elif isinstance(data, dict) and "groups" in data:
        for group in data["groups"]:
            for rule in group.get("rules", []):
                bad = [a["labels"] for a in rule.get("alerts", []) if not visible(a["labels"], grant)]
                if bad:
                    problems.append(f"rules leaked alerts {bad[:3]}")
    elif isinstance(data, dict) and "alerts" in data:
        bad = [a["labels"] for a in data["alerts"] if not visible(a["labels"], grant)]
        if bad:
            problems.append(f"alerts leaked {bad[:3]}")
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        for item in data:
            labels = item.get("seriesLabels", item)  # exemplars carry seriesLabels
            if not visible(labels, grant):
                problems.append(f"series leaked {labels}")
                break
    elif isinstance(data, list):
        m = re.search(r"/label/([^/]+)/values", decoded_path)
        if m:
            allowed = {s[m.group(1)] for s in seen if m.group(1) in s}
        elif "labels" in decoded_path.lower():
            allowed = {k for s in seen for k in s}
        else:
            allowed = {v for s in seen for kv in s.items() for v in kv}
        extra = set(map(str, data)) - allowed
        if extra:
            problems.append(f"label names/values outside the grant: {sorted(extra)[:5]}")
    elif isinstance(data, dict) and "metadata" in decoded_path.lower():
        names = {s["__name__"] for s in seen}
        extra = set(data) - names
        if extra:
            problems.append(f"metadata for invisible metrics {sorted(extra)[:5]}")
    return problems


# ------------------------------------------------------------------ the harness


@dataclass
class Harness:
    """The proxy process, the event loop and client session, credentials and the truth."""

    proxy: ProxyProcess
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    auth: dict[str, str]
    truth: Truth
    sent: int = 0
    statuses: dict[int, int] | None = None


@pytest.fixture(scope="module")
def harness(
    prometheus: PrometheusServer,
    emulator_server: ThreadedEmulatorServer,
    token_for: TokenFor,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    """A proxy process in front of the real Prometheus, and a fast async client."""
    env = proxy_environ(prometheus, emulator_server.base_url, PROXY_LOG_LEVEL="error")
    proxy = ProxyProcess(env, Path(tmp_path_factory.mktemp("fuzz")) / "proxy.log").start()
    secret = CLIENT_SECRETS["researcher-team-a"]
    basic = base64.b64encode(f"researcher-team-a:{secret}".encode()).decode()
    auth = {name: f"Bearer {token_for(name)}" for name in GRANTS if name != "researcher-basic"}
    auth["researcher-basic"] = f"Basic {basic}"
    auth["garbage"] = "Bearer not.a.jwt"
    loop = asyncio.new_event_loop()

    async def make_session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONCURRENCY, force_close=False),
            timeout=aiohttp.ClientTimeout(total=60),
            auto_decompress=True,
        )

    session = loop.run_until_complete(make_session())
    try:
        yield Harness(proxy, loop, session, auth, Truth.load(prometheus), statuses={})
    finally:
        loop.run_until_complete(session.close())
        loop.close()
        proxy.stop()


async def _send(h: Harness, req: FuzzRequest) -> tuple[int, bytes]:
    headers = dict(req.headers)
    token = h.auth.get(req.identity, h.auth["alice"])
    if req.identity in h.auth:
        headers["Authorization"] = h.auth[req.identity]
    elif req.identity == "cookie-token":
        headers["Cookie"] = f"access_token={token.split()[-1]}; Authorization={token}"
    qs = req.query_string
    if req.identity == "query-token":
        qs = "&".join(x for x in (qs, f"access_token={token.split()[-1]}") if x)
    url = URL(f"{h.proxy.base_url}{req.path}" + (f"?{qs}" if qs else ""), encoded=True)
    async with h.session.request(req.method, url, data=req.body, headers=headers,
                                 skip_auto_headers=("Content-Type",)) as r:
        return r.status, await r.read()


async def _run_batch(h: Harness, batch: Sequence[FuzzRequest]) -> list[tuple[int, bytes]]:
    return list(await asyncio.gather(*(_send(h, r) for r in batch)))


def _check(h: Harness, batch: Sequence[FuzzRequest]) -> None:
    answers = h.loop.run_until_complete(_run_batch(h, batch))
    h.sent += len(batch)
    assert h.statuses is not None
    for req, (status, body) in zip(batch, answers, strict=True):
        h.statuses[status] = h.statuses.get(status, 0) + 1
        problems = leaks(req, status, body, h.truth)
        if problems:
            h.truth.refresh()  # alerts may have started firing since the truth was read
            problems = leaks(req, status, body, h.truth)
        if problems:
            raise AssertionError(
                f"FUZZ_SEED={SEED}: {req.identity} got {status}: {problems}\n"
                f"reproduce: {req.curl(h.proxy.base_url)}\nanswer: {body[:600]!r}"
            )


def test_fuzz_request_path_never_leaks(harness: Harness) -> None:
    """20,000 generated requests through the proxy: no 200 answer holds data outside the grant."""
    print(f"\nfuzz seed: FUZZ_SEED={SEED} (requests: {TOTAL}, batch {BATCH})")
    started = time.monotonic()

    @seed(SEED)
    @settings(max_examples=max(1, TOTAL // BATCH), deadline=None, database=None,
              suppress_health_check=list(HealthCheck),
              phases=(Phase.generate, Phase.shrink))
    @given(batch=st.lists(fuzz_requests(), min_size=BATCH, max_size=BATCH))
    def run(batch: list[FuzzRequest]) -> None:
        _check(harness, batch)

    run()
    elapsed = time.monotonic() - started
    print(f"fuzz: {harness.sent} requests in {elapsed:.1f}s "
          f"({harness.sent / elapsed:.0f}/s); statuses {dict(sorted((harness.statuses or {}).items()))}")
    assert harness.sent >= TOTAL
