"""The audit trail end to end: a scripted stretch of traffic from several users on several projects
through the real stack (emulator, mTLS Prometheus, proxy), read back through `prom-keycloak-proxy audit`."""

from __future__ import annotations

import base64
import io
import itertools
import json
import time
from pathlib import Path
from typing import Any

import requests

from proxy.audit.cli import main as audit_main
from proxy.audit.event import AuditEvent
from proxy.services import SERVICES
from tests.support.proxy_server import ProxyServer
from tests.support.stack import CLIENT_SECRETS, ProxyFactory, TokenFor

EVENT_KEYS = set(AuditEvent().to_json())
GPU = "DCGM_FI_DEV_GPU_UTIL"
_ids = itertools.count()


def send(proxy: ProxyServer, auth: str | None, path: str, **params: str) -> tuple[str, int]:
    """One request with a fresh X-Request-Id; (request id, status)."""
    rid = f"day-{next(_ids):04d}"
    headers = {"X-Request-Id": rid, "User-Agent": "day-script/1", "X-Grafana-User": "someone"}
    if auth:
        headers["Authorization"] = auth
    r = requests.post(f"{proxy.base_url}{path}", data=params, headers=headers, timeout=30)
    return rid, r.status_code


def settled(check: Any, timeout: float = 5.0) -> bool:
    """Poll until `check()` holds: the hook runs after the answer has reached the client."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def ask(argv: list[str]) -> list[dict[str, Any]]:
    """`prom-keycloak-proxy audit … --format json` as data."""
    out = io.StringIO()
    assert audit_main([*argv, "--format", "json"], out) == 0
    rows: list[dict[str, Any]] = json.loads(out.getvalue())
    return rows


def test_scripted_traffic_read_back(tmp_path: Path, proxy_factory: ProxyFactory, token_for: TokenFor) -> None:
    """Every request kind gives exactly one complete event, and `audit` answers who saw what."""
    log = tmp_path / "audit.log"
    proxy = proxy_factory(PROXY_AUDIT_LOG=str(log))
    bearer = {u: f"Bearer {token_for(u)}" for u in ("alice", "bob", "carol", "dave", "eve")}
    basic = (
        "Basic "
        + base64.b64encode(f"researcher-team-a:{CLIENT_SECRETS['researcher-team-a']}".encode()).decode()
    )
    q, qr, series = "/api/v1/query", "/api/v1/query_range", "/api/v1/series"
    prod_a = f'{GPU}{{cluster="nerc-ocp-prod",exported_namespace="team-a"}}'
    now = str(int(time.time()))
    sent: dict[str, tuple[str, int]] = {}

    def go(label: str, auth: str | None, path: str, **params: str) -> None:
        sent[label] = send(proxy, auth, path, **params)

    # morning
    go("alice-scoped", bearer["alice"], q, query=prod_a)
    go("alice-narrowed", bearer["alice"], q, query=GPU)
    go(
        "alice-denied",
        bearer["alice"],
        q,
        query=f'{GPU}{{cluster="nerc-ocp-prod",exported_namespace="team-b"}}',
    )
    go("alice-invalid", bearer["alice"], q, query="sum(")
    go("bob-range", bearer["bob"], qr, query=f"avg({GPU})", start=str(int(now) - 3600), end=now, step="60")
    go("anon-1", None, q, query=GPU)
    go("anon-2", "Bearer not-a-token", q, query=GPU)
    time.sleep(1.1)
    noon = time.time()
    time.sleep(1.1)
    # afternoon
    go("carol-series", bearer["carol"], series, **{"match[]": f'{{__name__="{GPU}"}}'})
    go("dave-hub", bearer["dave"], q, query=f"count({GPU})")
    go("dave-upstream-error", bearer["dave"], q, query=f"{GPU} / on() {GPU}")
    go("eve-nothing", bearer["eve"], q, query=GPU)
    go("researcher-basic", basic, q, query=prod_a)
    go("carol-fanout", bearer["carol"], q, query=f"{GPU}[5m]")

    svc = proxy.app[SERVICES] if proxy.app is not None else None
    assert svc is not None and svc.audit is not None
    writer = svc.audit
    assert settled(lambda: writer.flush() and writer.written >= len(sent) - 2)
    assert writer.flush(aggregates=True)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e.get("request_id"):
            by_id.setdefault(e["request_id"], []).append(e)

    statuses = {label: status for label, (_, status) in sent.items()}
    assert statuses["alice-scoped"] == 200 and statuses["alice-denied"] == 403
    assert statuses["alice-invalid"] == 400 and statuses["eve-nothing"] == 403
    assert statuses["dave-upstream-error"] == 422 and statuses["researcher-basic"] == 200
    expected = {
        "alice-scoped": "allowed",
        "alice-narrowed": "narrowed",
        "alice-denied": "denied",
        "alice-invalid": "invalid",
        "bob-range": "narrowed",
        "carol-series": "narrowed",
        "dave-hub": "allowed",
        "dave-upstream-error": "allowed",
        "eve-nothing": "denied",
        "researcher-basic": "allowed",
    }
    for label, (rid, status) in sent.items():
        if label.startswith("anon"):
            assert rid not in by_id  # aggregated, below
            continue
        (event,) = by_id[rid]  # exactly one event per request
        assert set(event) == EVENT_KEYS, label
        assert event["status"] == status and event["route"] in ("query", "query_range", "series")
        assert event["unverified"]["user_agent"] == "day-script/1"
        assert event["unverified"]["grafana_user"] == "someone"
        if label in expected:
            assert event["decision"] == expected[label], (label, event)
    assert by_id[sent["dave-upstream-error"][0]][0]["upstream_status"] == 422
    assert by_id[sent["researcher-basic"][0]][0]["auth"] == "basic"
    assert by_id[sent["researcher-basic"][0]][0]["subject"] == "researcher-team-a"
    alice = by_id[sent["alice-scoped"][0]][0]
    assert alice["username"] == "alice" and alice["subject"] != "alice" and alice["auth"] == "bearer"
    assert alice["forwarded"] and alice["reach"] == {
        "hub_wide": False,
        "clusters": [],
        "projects": {"nerc-ocp-prod": ["team-a"]},
    }
    fanout = by_id[sent["carol-fanout"][0]][0]
    assert statuses["carol-fanout"] == 200, fanout
    assert fanout["decision"] == "narrowed" and len(fanout["forwarded"]) >= 2  # one text per branch
    assert fanout["reach"] == {
        "hub_wide": False,
        "clusters": ["nerc-ocp-prod"],
        "projects": {"nerc-ocp-test": ["team-b"]},
    }
    (anon,) = [e for e in events if e["decision"] == "unauthenticated"]
    assert anon["count"] == 2

    files = [str(log)]
    prod_a_readers = ask(["who", "--hub", "moc", "--cluster", "nerc-ocp-prod", "--project", "team-a", *files])
    # People by username; a service account by its subject, the client id.
    seen = {
        (r["subject"] if "service-account" in r["username"] else r["username"], r["via"])
        for r in prod_a_readers
    }
    assert seen == {
        ("alice", "project"),
        ("carol", "cluster-wide"),
        ("dave", "hub-wide"),
        ("researcher-team-a", "project"),
    }, prod_a_readers
    test_readers = ask(["who", "--hub", "moc", "--cluster", "nerc-ocp-test", *files])
    assert {r["username"] for r in test_readers} >= {"bob", "carol", "dave"}
    assert "alice" not in {r["username"] for r in test_readers}
    morning = ask(
        ["who", "--hub", "moc", "--until", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(noon)), *files]
    )
    assert {r["username"] for r in morning} == {"alice", "bob"}
    alice_saw = ask(["subject", "alice", *files])
    assert {r["scope"] for r in alice_saw} == {"project nerc-ocp-prod/team-a"}
    refused = ask(["refusals", *files])
    kinds = {(r["decision"], r["status"]) for r in refused}
    assert {("denied", "403"), ("invalid", "400"), ("unauthenticated", "401")} <= kinds
    assert sum(int(r["count"]) for r in refused if r["decision"] == "unauthenticated") == 2


def test_required_audit_refuses_when_unwritable(proxy_factory: ProxyFactory, token_for: TokenFor) -> None:
    """A full disk (/dev/full): events dropped and counted; with PROXY_AUDIT_REQUIRED, 503s follow."""
    query = {"query": f'{GPU}{{cluster="nerc-ocp-prod",exported_namespace="team-a"}}'}
    auth = f"Bearer {token_for('alice')}"
    for required, then in (("false", 200), ("true", 503)):
        proxy = proxy_factory(PROXY_AUDIT_LOG="/dev/full", PROXY_AUDIT_REQUIRED=required)
        svc = proxy.app[SERVICES] if proxy.app is not None else None
        assert svc is not None and svc.audit is not None
        assert send(proxy, auth, "/api/v1/query", **query)[1] == 200
        writer = svc.audit
        assert settled(lambda w=writer: w.flush() and w.dropped >= 1)
        assert send(proxy, auth, "/api/v1/query", **query)[1] == then
