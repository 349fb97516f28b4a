"""The end-of-request hook: complete lines rendered off the event loop, derived parts cached right."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from proxy.audit.event import AuditEvent
from proxy.audit.hook import AuditHook, AuditNotes, audit_decision
from proxy.audit.sinks import StreamSink
from proxy.audit.writer import AuditWriter
from proxy.authn.identity import identity_from_claims
from proxy.context import RequestContext
from proxy.promql import Limits
from proxy.promql.analyse import analyse_query
from proxy.promql.scope import Holdings, LabelModel
from tests.support.proxy_server import make_settings

SETTINGS = make_settings(
    {
        "PROXY_PROMETHEUS_BASE_URL": "https://prometheus.invalid:9090",
        "PROXY_AUTH_BASE_URL": "https://keycloak.invalid",
        "PROXY_AUTH_REALM": "nerc",
        "PROXY_AUTH_CLIENT_ID": "prom-keycloak-proxy",
        "PROXY_AUTH_CLIENT_SECRET": "not-used-here",
        "PROXY_ACM_HUB": "moc",
    }
)
QUERY = "sum(DCGM_FI_DEV_GPU_UTIL)"


def _run(holdings: list[Holdings]) -> list[dict[str, Any]]:
    buf = io.BytesIO()
    writer = AuditWriter(StreamSink(buf))
    hook = AuditHook(writer, ["query"], SETTINGS)
    analysis = analyse_query(QUERY, Limits(), LabelModel())
    person = identity_from_claims(
        "t", "h", {"sub": "u-1", "preferred_username": "alice", "azp": "grafana", "exp": 2e9}
    )
    for held in holdings:
        ctx = RequestContext("r", "POST", "query", "moc")
        ctx.reach, ctx.decision, ctx.status = analysis.reach(), "narrowed", 200
        ctx.audit = AuditNotes(source="10.0.0.1", auth="bearer", identity=person, queries=[QUERY])
        ctx.audit.selectors, ctx.audit.holdings, ctx.audit.forwarding = analysis.selectors, held, True
        hook(ctx)
    writer.close()
    return [json.loads(line) for line in buf.getvalue().decode().splitlines()]


def test_lines_complete_and_reach_per_holdings() -> None:
    """Each line has every documented key; the cached reach follows the holdings, not the query alone."""
    a = Holdings(projects={"prod": frozenset({"team-a"})})
    c = Holdings(clusters=frozenset({"prod"}))
    events = _run([a, c, a])
    assert all(set(e) == set(AuditEvent().to_json()) for e in events)
    assert [e["reach"] for e in events] == [
        {"hub_wide": False, "clusters": [], "projects": {"prod": ["team-a"]}},
        {"hub_wide": False, "clusters": ["prod"], "projects": {}},
        {"hub_wide": False, "clusters": [], "projects": {"prod": ["team-a"]}},
    ]
    assert events[0]["resources"]["granted"] == ["HUB-moc-CLUSTER-prod-PROJECT-team-a"]
    assert events[1]["resources"]["granted"] == ["HUB-moc-CLUSTER-prod"]
    assert events[0]["subject"] == "u-1" and events[0]["username"] == "alice"


def test_decision_kinds() -> None:
    """Forwarded requests keep their decision whatever the upstream said; others go by status."""
    assert audit_decision("narrowed", 502, forwarded=True) == "narrowed"
    assert audit_decision("refused", 400, forwarded=False) == "invalid"
    assert audit_decision("denied", 403, forwarded=False) == "denied"
    assert audit_decision(None, 401, forwarded=False) == "unauthenticated"
    assert audit_decision("error", 503, forwarded=False) == "error"
    assert audit_decision(None, 429, forwarded=False) == "refused"


def _one(hook: AuditHook, hub: str, status: int) -> None:
    ctx = RequestContext("r-" + hub, "GET", "query", hub)
    ctx.status = status
    ctx.reach = analyse_query(QUERY, Limits(), LabelModel()).reach()
    ctx.audit = AuditNotes(source="10.0.0.1", queries=[QUERY])
    hook(ctx)


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_requests_without_a_configured_hub_are_written() -> None:
    """A request with no hub (no default hub: 404) or an unknown one is a complete event on a
    running writer thread: no thread exception, nothing counted failed, one line per request."""
    buf = io.BytesIO()
    writer = AuditWriter(StreamSink(buf)).start()
    hook = AuditHook(writer, ["query"], SETTINGS)
    for hub, status in (("", 404), ("elsewhere", 404), ("moc", 400)):
        _one(hook, hub, status)
    assert writer.flush()
    writer.close()
    events = [json.loads(line) for line in buf.getvalue().decode().splitlines()]
    assert [e["hub"] for e in events] == ["", "elsewhere", "moc"]
    assert all(set(e) == set(AuditEvent().to_json()) for e in events)
    assert events[0]["resources"] == {"asked": [], "granted": []}
    assert events[2]["resources"]["asked"] == ["#GET"]  # an unbounded query asks for everything
    assert writer.render_failed == 0 and writer.dropped == 0 and writer.written == 3


def test_hook_detaches_the_notes_and_snapshots_the_context() -> None:
    """The writer thread gets the notes detached from the context and the context's facts as of
    the hook: a task still running under the request's context changes nothing in the event."""
    buf = io.BytesIO()
    writer = AuditWriter(StreamSink(buf))  # not started: rendered at close, after the changes
    hook = AuditHook(writer, ["query"], SETTINGS)
    ctx = RequestContext("r-1", "GET", "query", "moc")
    ctx.status, ctx.decision = 200, "allowed"
    ctx.caches["holdings"] = "hit"
    ctx.audit = AuditNotes(source="10.0.0.1", queries=(QUERY,))
    hook(ctx)
    assert ctx.audit is None
    ctx.status, ctx.decision, ctx.error = 500, "error", "late"
    ctx.caches["token"] = "miss"
    writer.close()
    (event,) = [json.loads(line) for line in buf.getvalue().decode().splitlines()]
    seen = (event["status"], event["decision"], event["reason"], event["cache"])
    assert seen == (200, "allowed", None, "hit")
    assert event["query"] == [QUERY]


def test_memo_redacts_secrets_registered_later() -> None:
    """The writer's remembered redactions are forgotten when a secret is registered afterwards."""
    from proxy.audit.event import BoundedMemo
    from proxy.logs import register_secrets

    memo = BoundedMemo()
    text = "up{job='s3cr3t-value-1234'}"
    assert memo(text) == text
    register_secrets(["s3cr3t-value-1234"])
    assert "s3cr3t-value-1234" not in (memo(text) or "")
