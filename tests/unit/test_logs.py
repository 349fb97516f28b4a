"""Log pipeline: redaction, JSON/console output, levels, request timing helpers, the leak scanner."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from proxy import caches, context, logs, metrics
from proxy.context import RequestContext
from tests.support.logscan import LogScan

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXBhcnQ"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    """Logging configured at debug into a buffer; the session's configuration restored after."""
    buf = io.StringIO()
    logs.configure("debug", "json", stream=buf)
    yield buf
    logs.configure("debug", "json")
    logging.getLogger().setLevel(logging.INFO)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    """The JSON lines written so far."""
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    "text",
    [
        f"token {JWT} rejected",
        "Authorization: Bearer abcdefgh12345678",
        "header authorization=Basic cmVzZWFyY2hlcjpzZWNyZXQ=",
        "grant_type=client_credentials&client_secret=s3cr3t-value&x=1",
        "cookie: session=abcdef; other=1",
    ],
)
def test_redact_text_removes_token_material(text: str) -> None:
    """JWTs, Bearer/Basic values, header dumps and secret parameters are replaced by the marker."""
    redacted = logs.redact_text(text)
    assert logs.REDACTED in redacted
    for secret in (JWT, "abcdefgh12345678", "cmVzZWFyY2hlcjpzZWNyZXQ=", "s3cr3t-value", "session=abcdef"):
        assert secret not in redacted


def test_redact_keeps_ordinary_text() -> None:
    """Queries, names and numbers pass unchanged."""
    text = 'sum(rate(DCGM_FI_DEV_GPU_UTIL{namespace="team-a"}[5m])) by basic'
    assert text == logs.redact_text(text)


def test_processor_redacts_secret_named_fields_and_nested_values() -> None:
    """Secret-named keys are dropped at any depth; token-shaped strings inside lists are redacted."""
    event = {
        "event": "x",
        "Authorization": "Bearer abc",
        "headers": {"Cookie": "a=b", "Accept": "json"},
        "items": [JWT, 3],
        "status": 200,
    }
    result = logs.redact(None, "info", event)
    assert result["Authorization"] == logs.REDACTED
    assert result["headers"] == {"Cookie": logs.REDACTED, "Accept": "json"}
    assert result["items"] == [logs.REDACTED, 3]
    assert result["status"] == 200


def test_registered_secrets_are_redacted_anywhere(out: io.StringIO) -> None:
    """A configured secret never appears, whatever field carries it."""
    logs.register_secrets(["configured-upstream-token-value", None])
    structlog.get_logger("t").info("oops", detail="sent configured-upstream-token-value upstream")
    assert "configured-upstream-token-value" not in out.getvalue()


def test_structlog_lines_are_json_with_level_and_timestamp(out: io.StringIO) -> None:
    """One JSON object per event, with level and ISO timestamp, redacted."""
    structlog.get_logger("t").warning("keycloak_call_failed", call="uma", token=JWT)
    (line,) = lines(out)
    assert line["event"] == "keycloak_call_failed"
    assert line["level"] == "warning"
    assert line["token"] == logs.REDACTED
    assert "T" in line["timestamp"]


def test_stdlib_logging_goes_through_the_same_pipeline(out: io.StringIO) -> None:
    """aiohttp's stdlib loggers come out as redacted JSON too."""
    logging.getLogger("aiohttp.server").error("Error handling request Authorization: Bearer %s", JWT)
    (line,) = lines(out)
    assert line["logger"] == "aiohttp.server"
    assert JWT not in line["event"]


def test_console_format_is_plain_text() -> None:
    """`console` writes human-readable lines, still redacted."""
    buf = io.StringIO()
    try:
        logs.configure("info", "console", stream=buf)
        structlog.get_logger("t").info("request", route="query", token=JWT)
    finally:
        logs.configure("debug", "json")
        logging.getLogger().setLevel(logging.INFO)
    text = buf.getvalue()
    assert "request" in text and "route=query" in text
    assert JWT not in text and not text.lstrip().startswith("{")


def test_below_level_nothing_is_rendered() -> None:
    """At warning, info events are not rendered and per-request lines are switched off."""
    buf = io.StringIO()
    try:
        logs.configure("warning", "json", stream=buf)
        assert not logs.request_lines_enabled
        structlog.get_logger("t").info("request", route="query")
    finally:
        logs.configure("debug", "json")
        logging.getLogger().setLevel(logging.INFO)
    assert logs.request_lines_enabled
    assert buf.getvalue() == ""


def test_taps_see_every_line(out: io.StringIO) -> None:
    """A tap receives each rendered line until removed."""
    seen: list[str] = []
    remove = logs.add_tap(seen.append)
    structlog.get_logger("t").info("one")
    remove()
    structlog.get_logger("t").info("two")
    assert len(seen) == 1 and '"one"' in seen[0]


@contextlib.contextmanager
def _in_request(ctx: RequestContext) -> Iterator[RequestContext]:
    """Run the caller's block as if `ctx` were the current request's context."""
    token = context._CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        context._CURRENT.reset(token)


def test_phases_and_caches_fill_the_request_context() -> None:
    """Phase timers sum repeats; a cache miss sticks; outside a request nothing happens."""
    ctx = RequestContext("rid", "GET", "query", "hub-a")
    with _in_request(ctx):
        with ctx.phase("authn"):
            pass
        with ctx.phase("authn"):
            pass
        context.add_time("upstream", 0.25)
        context.add_time("upstream", 0.5)
        context.note_cache("allow", False)
        context.note_cache("allow", True)
        context.note_cache("token", True)
        ctx.subject = "alice"
    fields = ctx.log_fields()
    assert fields["authn_ms"] >= 0
    assert fields["upstream_ms"] == 750.0
    assert (fields["cache_allow"], fields["cache_token"], fields["cache_hit"]) == ("miss", "hit", False)
    assert (fields["subject"], fields["hub"]) == ("alice", "hub-a")
    context.add_time("upstream", 1.0)  # no request: a no-op
    assert context.current() is None and ctx.log_fields()["upstream_ms"] == 750.0


def test_metrics_have_no_side_effects_and_caches_note_explicitly() -> None:
    """Observing a histogram writes nothing on the log line; a logged cache's lookup does."""
    ctx = RequestContext("rid", "GET", "query", "hub-a")
    before = caches.TOKEN.hits
    with _in_request(ctx):
        metrics.KEYCLOAK_SECONDS.labels("uma").observe(0.002)
        metrics.UPSTREAM_SECONDS.labels("200", "hub-a").observe(0.001)
        caches.TOKEN.lookup(True)
        caches.ANALYSIS.lookup(False)  # not a logged cache: counted only
    fields = ctx.log_fields()
    assert "keycloak_ms" not in fields and "upstream_ms" not in fields
    assert (fields["cache_token"], fields["cache_hit"]) == ("hit", True)
    assert caches.TOKEN.hits == before + 1


def test_cache_counts_are_exported_when_scraped() -> None:
    """Every declared cache appears in the events and entries families."""
    caches.RESOURCE.lookup(False)
    value = metrics.REGISTRY.get_sample_value(
        "prom_keycloak_proxy_cache_events_total", {"cache": "resource", "result": "miss"}
    )
    assert value is not None and value >= 1
    for name in caches.CACHES:
        sample = metrics.REGISTRY.get_sample_value("prom_keycloak_proxy_cache_entries", {"cache": name})
        assert sample is not None


def test_lines_logged_during_a_request_carry_its_id_and_subject() -> None:
    """The request_fields processor adds the current request's id and subject to any line."""
    ctx = RequestContext("rid-7", "GET", "query", "hub-a", subject="alice")
    event: dict[str, Any] = {"event": "x"}
    with _in_request(ctx):
        logs.request_fields(None, "info", event)
    assert (event["request_id"], event["subject"]) == ("rid-7", "alice")
    assert logs.request_fields(None, "info", {"event": "y"}) == {"event": "y"}


def test_log_scan_flags_leaks_and_passes_clean_lines() -> None:
    """The session scanner catches JWTs, credentials, header fields and demo secrets."""
    scan = LogScan()
    scan.feed('{"event":"request","route":"query","status":200}')
    scan.feed(f'{{"event":"x","detail":"{JWT}"}}')
    scan.feed('{"event":"x","detail":"Basic cmVzZWFyY2hlci10ZWFtLWE6c2VjcmV0"}')
    scan.feed('{"event":"x","authorization":"abc"}')
    scan.feed('{"event":"x","authorization":"[redacted]"}')
    scan.feed('{"event":"x","detail":"researcher-team-a-secret"}')
    assert scan.lines == 6
    assert [o.split("]", 1)[1].split(":", 1)[0].strip() for o in scan.offences] == [
        "JWT",
        "credential",
        "header field",
        "demo secret",
    ]
