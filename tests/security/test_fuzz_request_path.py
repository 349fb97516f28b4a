"""Fuzzing the whole request path against the running proxy and the real Prometheus.

Hypothesis generates batches of requests: grammar-built and random PromQL, random `match[]`,
parameters in the URL, the body or both, random methods, paths and headers, for every demo
identity (and none). Each batch is sent concurrently to the proxy (its own process, so the two
cores are both used). The oracle is data: every series, label name or label value in every 200
answer must lie inside the caller's grant (docs/authorization.md), computed from what the real Prometheus
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from yarl import URL

from keycloak_emulator import ThreadedEmulatorServer
from proxy_demo.prometheus import PrometheusServer
from tests.support.oracle import Grant, visible
from tests.support.soak import ProxyProcess
from tests.support.stack import CLIENT_SECRETS, TokenFor, proxy_environ

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]

SEED = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().randrange(2**32))
TOTAL = int(os.environ.get("FUZZ_REQUESTS", "20000"))
HYPOTHESIS_REQUESTS = 1000
HYPOTHESIS_BATCH = 10
CONCURRENCY = 24
DISCONNECTED = -1  # the proxy closed the connection without an answer

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
# Functions whose output labels the query itself makes up (docs/testing.md: not leaks).
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


# ------------------------------------------------------------------ the generator
#
# One grammar, two sources of choices: `random.Random(seed)` for the bulk (microseconds per
# request) and Hypothesis' `st.data()` for a smaller run that Hypothesis can shrink.


class Source(Protocol):
    """Where the grammar's choices come from."""

    def choice(self, options: Sequence[str]) -> str:
        """One of `options`."""

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high]."""

    def text(self, max_size: int) -> str:
        """Arbitrary Unicode text."""


class RandomSource:
    """Choices from a seeded `random.Random` (fast, reproducible by seed)."""

    ALPHABET = "abcXYZ09_-.:,;|#{}()[]\"'`=~!\x00\n é€\u2028\U0001f600"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choice(self, options: Sequence[str]) -> str:
        """One of `options`, uniformly."""
        return self.rng.choice(options)

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high]."""
        return self.rng.randint(low, high)

    def text(self, max_size: int) -> str:
        """Text over a small hostile alphabet."""
        return "".join(self.rng.choice(self.ALPHABET) for _ in range(self.rng.randint(0, max_size)))


class HypothesisSource:
    """Choices drawn through Hypothesis (slow, but shrinkable)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, options: Sequence[str]) -> str:
        """One of `options` (shrinks towards the first)."""
        return str(self.data.draw(st.sampled_from(options)))

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high] (shrinks towards `low`)."""
        return int(self.data.draw(st.integers(low, high)))

    def text(self, max_size: int) -> str:
        """Any Unicode text without surrogates."""
        return str(self.data.draw(st.text(alphabet=st.characters(codec="utf-8"),
                                          max_size=max_size)))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


VALUES = CLUSTERS + PROJECTS + ("", ".*", ".+", "nerc-ocp-.*", "team-a|team-b", "(?i)TEAM-A",
                                "team-a|", "nerc-ocp-prod|nerc-ocp-test", "team-a,team-b",
                                "team-a#GET", "HUB", "nerc-ocp-prod\\", "team-a\"")
RANGES = ("[1m]", "[5m]", "[30s]", "[1h]")
RANGE_FUNCS = ("rate", "irate", "increase", "avg_over_time", "max_over_time", "count_over_time",
               "last_over_time", "delta", "deriv", "absent_over_time", "quantile_over_time")
AGGS = ("sum", "avg", "max", "min", "count", "group", "stddev")
FUNCS = ("abs", "ceil", "sort", "sort_desc", "timestamp", "absent", "scalar", "vector")
BINOPS = ("+", "-", "*", "/", "%", ">", "<", "==", "!=", "> bool", "and", "or", "unless", "^")
MODIFIERS = ("", "on(cluster) ", "ignoring(pod) ", "on(cluster) group_left ")
GROUPINGS = ("", "by (cluster) ", "by (namespace, cluster) ", "without (pod) ")
LEAVES = ("1", "1+1", "vector(1)", "time()", "2.5e3")
TOKENS = ("{", "}", "(", ")", "[", "]", '"', "'", "`", ",", "=", "=~", "!=", "!~", " or ",
          " and ", " by ", "sum", "rate", "@", "offset", "5m", "1", "cluster", "namespace",
          '"nerc-ocp-test"', "\\", "#", "\x00", "é", "\u2028", " ", "|", ".*", ":", "__name__",
          "DCGM_FI_DEV_GPU_UTIL", "}[5m:1m]", "on(", "group_left", "@ -1")


def gen_value(src: Source) -> str:
    """A label value: tenancy names, regex tricks, or random text."""
    return src.choice(VALUES) if src.integer(0, 4) else src.text(8)


def gen_selector(src: Source) -> str:
    """A vector selector with 0–3 matchers, with or without a metric name."""
    name = src.choice((*METRICS, ""))
    ms = [f"{src.choice(LABELS)}{src.choice(('=', '!=', '=~', '!~'))}{_quote(gen_value(src))}"
          for _ in range(src.integer(0 if name else 1, 3))]
    return f"{name}{{{', '.join(ms)}}}" if ms or src.integer(0, 1) else name


def gen_expr(src: Source, depth: int = 0) -> str:
    """A PromQL expression from a grammar of the constructs the proxy must handle."""
    kind = src.integer(0, 3 if depth >= 3 else 14)
    if kind <= 1:
        return gen_selector(src)
    if kind == 2:
        return src.choice(LEAVES)
    if kind == 3:
        f = src.choice(RANGE_FUNCS)
        arg = "0.5, " if f == "quantile_over_time" else ""
        return f"{f}({arg}{gen_selector(src)}{src.choice(RANGES)})"
    sub = gen_expr(src, depth + 1)
    if kind == 4:
        return f"{src.choice(AGGS)} {src.choice(GROUPINGS)}({sub})"
    if kind == 5:
        return f"{src.choice(FUNCS)}({sub})"
    if kind in (6, 7):
        return f"{sub} {src.choice(BINOPS)} {src.choice(MODIFIERS)}{gen_expr(src, depth + 1)}"
    if kind == 8:
        return f"topk({src.integer(1, 3)}, {sub})"
    if kind == 9:
        return f"{gen_selector(src)} offset {src.choice(('5m', '-1m', '1ms'))}"
    if kind == 10:
        return f"max_over_time(({sub})[10m:1m])"
    if kind == 11:
        return f"({sub})"
    if kind == 12:
        return f"-{sub}"
    if kind == 13:
        return f'label_replace({sub}, "cluster", "nerc-ocp-test", "", "")'
    return f"{gen_selector(src)} @ {src.choice(('start()', '0', '-1', 'end()'))}"


def gen_query(src: Source) -> str:
    """Grammar-built PromQL most of the time, token soup or random text otherwise."""
    kind = src.integer(0, 5)
    if kind <= 3:
        return gen_expr(src)
    if kind == 4:
        return "".join(src.choice(TOKENS) for _ in range(src.integer(0, 24)))
    return src.text(40)


@dataclass(frozen=True)
class FuzzRequest:
    """One generated request, as sent (path and query string already percent-encoded)."""

    identity: str
    method: str
    path: str
    url_params: tuple[tuple[str, str], ...]
    body_params: tuple[tuple[str, str], ...] | None
    headers: tuple[tuple[str, str], ...]
    raw_bytes: bool = False

    @property
    def query_string(self) -> str:
        """The encoded URL parameters (plus a non-UTF-8 one when `raw_bytes`)."""
        return _encode(self.url_params, self.raw_bytes and self.body_params is None)

    @property
    def body(self) -> bytes | None:
        """The encoded form body, if any."""
        if self.body_params is None:
            return None
        return _encode(self.body_params, self.raw_bytes).encode("ascii")

    def curl(self, base: str) -> str:
        """A curl command reproducing the request (the credential shown as a placeholder)."""
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


def gen_path(src: Source) -> str:
    """A route path, sometimes mangled (normalisation tricks) or random."""
    base = src.choice(ROUTES)
    if "{}" in base:
        base = base.format(src.choice(
            ("cluster", "namespace", "__name__", "job", "a%2Fb", "..", "bad-name", "%00")))
    mangle = src.choice(("none",) * 40 + ("slash", "dot", "dotdot", "upper", "semi", "encoded",
                                          "random"))
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
        return "/" + quote(src.text(12), safe="/")
    return base


PARAM_VALUES = ("{now}", "{hour_ago}", "{soon}", "60", "15s", "0", "-1", "1e12", "abc",
                "2024-01-01T00:00:00Z", "1767267012345", "NaN", "10m")
CONTENT_TYPES = ("application/x-www-form-urlencoded",) * 8 + (
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/x-www-form-urlencoded; charset=cp037", "multipart/form-data; boundary=x",
    "application/json", "text/plain", "")
EXTRA_HEADERS = (
    ("X-HTTP-Method-Override", ("GET", "POST", "DELETE")),
    ("Accept-Encoding", ("gzip", "identity", "br, gzip")),
    ("X-Scope-OrgID", ("nerc-ocp-test",)),
    ("THANOS-TENANT", ("nerc-ocp-test",)),
    ("X-Forwarded-For", ("10.0.0.1",)),
)


def gen_request(src: Source) -> FuzzRequest:
    """One request: identity, method, path, parameters in URL/body/both, headers."""
    identity = src.choice(tuple(GRANTS) * 4 + ANONYMOUS)
    method = src.choice(("GET",) * 12 + ("POST",) * 12 + ("PUT", "DELETE", "OPTIONS", "PATCH"))
    path = gen_path(src)
    params: list[tuple[str, str]] = []
    for _ in range(src.integer(1, 2) if src.integer(0, 9) else 0):
        params.append(("query", gen_query(src)))
    for _ in range(src.integer(0, 3) if src.integer(0, 2) == 0 else 0):
        params.append(("match[]", gen_selector(src) if src.integer(0, 3) else gen_query(src)))
    now = int(time.time())
    marks = {"now": now, "hour_ago": now - 3600, "soon": now + 60}
    for _ in range(src.integer(0, 4)):
        name = src.choice(("time", "start", "end", "step", "timeout", "limit", "metric", "dedup"))
        params.append((name, src.choice(PARAM_VALUES).format(**marks)))
    placement = src.choice(("url", "url", "body", "body", "split", "both"))
    url_params: list[tuple[str, str]] = []
    body_params: list[tuple[str, str]] = []
    for pair in params:
        where = placement if placement != "split" else src.choice(("url", "body"))
        if where in ("url", "both"):
            url_params.append(pair)
        if where in ("body", "both"):
            body_params.append(pair)
    headers: list[tuple[str, str]] = []
    has_body = bool(body_params) or src.integer(0, 9) == 0
    if has_body:
        ctype = src.choice(CONTENT_TYPES)
        if ctype:
            headers.append(("Content-Type", ctype))
        if src.integer(0, 15) == 0:
            headers.append(("Content-Encoding", src.choice(("gzip", "deflate", "br"))))
    for name, values in EXTRA_HEADERS:
        if src.integer(0, 6) == 0:
            headers.append((name, src.choice(values)))
    return FuzzRequest(identity, method, path, tuple(url_params),
                       tuple(body_params) if has_body else None, tuple(headers),
                       raw_bytes=src.integer(0, 30) == 0)


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
    limiter: asyncio.Semaphore
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    disconnects: list[str] = field(default_factory=list)


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
    limiter = asyncio.Semaphore(CONCURRENCY)
    try:
        yield Harness(proxy, loop, session, auth, Truth.load(prometheus), limiter)
    finally:
        loop.run_until_complete(session.close())
        loop.close()
        proxy.stop()


async def _send(h: Harness, req: FuzzRequest) -> tuple[int, bytes]:
    headers = dict(req.headers)
    token = h.auth["alice"]
    if req.identity in h.auth:
        headers["Authorization"] = h.auth[req.identity]
    elif req.identity == "cookie-token":
        headers["Cookie"] = f"access_token={token.split()[-1]}; Authorization={token}"
    qs = req.query_string
    if req.identity == "query-token":
        qs = "&".join(x for x in (qs, f"access_token={token.split()[-1]}") if x)
    url = URL(f"{h.proxy.base_url}{req.path}" + (f"?{qs}" if qs else ""), encoded=True)
    async with h.limiter:
        for attempt in (1, 2):  # a pooled keep-alive connection may have been closed meanwhile
            try:
                async with h.session.request(req.method, url, data=req.body, headers=headers,
                                             skip_auto_headers=("Content-Type",)) as r:
                    return r.status, await r.read()
            except aiohttp.ClientError as exc:
                if attempt == 2:
                    h.disconnects.append(f"{type(exc).__name__}: {req.curl(h.proxy.base_url)}")
    return DISCONNECTED, b""


def _problems(h: Harness, req: FuzzRequest, status: int, body: bytes) -> list[str]:
    problems = leaks(req, status, body, h.truth)
    if problems:
        h.truth.refresh()  # alerts may have started firing since the truth was read
        problems = leaks(req, status, body, h.truth)
    return problems


def _send_batch(h: Harness, batch: Sequence[FuzzRequest]) -> list[tuple[int, bytes]]:
    async def run() -> list[tuple[int, bytes]]:
        return list(await asyncio.gather(*(_send(h, r) for r in batch)))

    answers = h.loop.run_until_complete(run())
    h.sent += len(batch)
    for status, _ in answers:
        h.statuses[status] = h.statuses.get(status, 0) + 1
    return answers


def _with(req: FuzzRequest, field_name: str, pairs: tuple[tuple[str, str], ...]) -> FuzzRequest:
    if field_name == "url_params":
        return replace(req, url_params=pairs)
    return replace(req, body_params=pairs)


def _variants(req: FuzzRequest) -> Iterator[FuzzRequest]:
    """Simpler versions of `req`: one header, parameter or chunk of a value fewer."""
    for i in range(len(req.headers)):
        yield replace(req, headers=req.headers[:i] + req.headers[i + 1:])
    if req.raw_bytes:
        yield replace(req, raw_bytes=False)
    if req.body_params is not None and not req.body_params:
        yield replace(req, body_params=None)
    for field_name in ("url_params", "body_params"):
        pairs: tuple[tuple[str, str], ...] = getattr(req, field_name) or ()
        for i in range(len(pairs)):
            yield _with(req, field_name, pairs[:i] + pairs[i + 1:])
        for i, (key, value) in enumerate(pairs):
            size = len(value) // 2
            while size >= 1:
                for cut in range(0, len(value), size):
                    shorter = value[:cut] + value[cut + size:]
                    yield _with(req, field_name, (*pairs[:i], (key, shorter), *pairs[i + 1:]))
                size //= 2


def minimize(h: Harness, req: FuzzRequest) -> FuzzRequest:
    """Greedy delta debugging: the smallest request that still fails the oracle."""
    for _ in range(500):
        for candidate in _variants(req):
            (status, body), = _send_batch(h, [candidate])
            if _problems(h, candidate, status, body):
                req = candidate
                break
        else:
            return req
    return req


def _check(h: Harness, batch: Sequence[FuzzRequest], shrink: bool) -> None:
    answers = _send_batch(h, batch)
    for req, (status, body) in zip(batch, answers, strict=True):
        problems = _problems(h, req, status, body)
        if not problems:
            continue
        small = minimize(h, req) if shrink else req
        (status, body), = _send_batch(h, [small])
        raise AssertionError(
            f"FUZZ_SEED={SEED}: {small.identity} got {status}: {_problems(h, small, status, body)}\n"
            f"minimal reproduction: {small.curl(h.proxy.base_url)}\nanswer: {body[:600]!r}"
        )


def _report(h: Harness, label: str, started: float, before: int = 0) -> None:
    elapsed = time.monotonic() - started
    sent = h.sent - before
    print(f"\n{label}: FUZZ_SEED={SEED}: {sent} requests in {elapsed:.1f}s ({sent / elapsed:.0f}/s); "
          f"all fuzz requests so far {h.sent}, statuses {dict(sorted(h.statuses.items()))}")
    for line in h.disconnects[:5]:
        print(f"  closed without an answer: {line[:400]}")


def test_fuzz_seeded_request_path_never_leaks(harness: Harness) -> None:
    """Seeded grammar/random requests (≥ 20,000 in all): no 200 answer leaves the grant."""
    started = time.monotonic()
    rng = random.Random(SEED)
    src = RandomSource(rng)
    todo = TOTAL - HYPOTHESIS_REQUESTS
    print(f"\nfuzz seed: FUZZ_SEED={SEED}")
    while todo > 0:
        batch = [gen_request(src) for _ in range(min(CONCURRENCY * 8, todo))]
        todo -= len(batch)
        _check(harness, batch, shrink=True)
    _report(harness, "seeded fuzz", started)


def test_fuzz_hypothesis_request_path_never_leaks(harness: Harness) -> None:
    """The same grammar driven by Hypothesis (shrinkable): no 200 answer leaves the grant."""
    started = time.monotonic()
    before = harness.sent

    @seed(SEED)
    @settings(max_examples=HYPOTHESIS_REQUESTS // HYPOTHESIS_BATCH, deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        src = HypothesisSource(data)
        _check(harness, [gen_request(src) for _ in range(HYPOTHESIS_BATCH)], shrink=False)

    run()
    _report(harness, "hypothesis fuzz", started, before)
    assert harness.sent - before >= HYPOTHESIS_REQUESTS
