"""Results-cache and coalescing keys: everything the answer depends on, nothing the caller varies."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import Settings
from proxy.hubs import hubs_of
from proxy.results.key import normalised, request_key
from proxy.upstream import Upstream, UpstreamRequest, credential_identity
from tests.support.proxy_server import make_settings

ENV = {
    "PROXY_AUTH_BASE_URL": "http://keycloak.test",
    "PROXY_AUTH_REALM": "r",
    "PROXY_AUTH_CLIENT_ID": "c",
    "PROXY_AUTH_CLIENT_SECRET": "s",
    "PROXY_PROMETHEUS_BASE_URL": "http://thanos.test/api/metrics/v1/default",
    "PROXY_ACM_HUB": "moc",
}
RANGE = UpstreamRequest(
    "POST",
    "/api/v1/query_range",
    (),
    (("query", 'up{cluster="local-cluster"}'), ("start", "0"), ("end", "60"), ("step", "30")),
)


def upstream(**env: str) -> Upstream:
    """An Upstream whose credential identity is computed as at session start (no session opened)."""
    settings: Settings = make_settings({**ENV, **env})
    up = Upstream(settings, hubs_of(settings)[0])
    up.credential_id = credential_identity(up._target.read_token(), None)
    return up


def test_normalised_sorts_names_and_keeps_the_order_of_one_name() -> None:
    """Parameter order across names does not matter; the order of one name's values does."""
    assert normalised([("b", "1"), ("a", "2"), ("b", "0")]) == [["a", "2"], ["b", "1"], ["b", "0"]]
    assert normalised([("start", "1"), ("q", "x")], drop={"start"}) == [["q", "x"]]


def test_same_forwarded_text_on_two_hubs_gives_two_keys() -> None:
    """Every hub calls its own cluster `local-cluster`: the hub is part of the key."""
    assert request_key(upstream(), RANGE, {}) != request_key(upstream(PROXY_ACM_HUB="nerc"), RANGE, {})


@pytest.mark.parametrize(
    "env",
    [
        {"PROXY_PROMETHEUS_BASE_URL": "http://thanos.test/api/metrics/v1/other"},
        {"PROXY_PROMETHEUS_TOKEN": "tenant-b"},
    ],
    ids=["tenant path", "upstream token"],
)
def test_upstream_base_url_and_credentials_are_part_of_the_key(env: dict[str, str]) -> None:
    """Another tenant path or another upstream identity never shares an entry."""
    assert request_key(upstream(), RANGE, {}) != request_key(upstream(**env), RANGE, {})


def test_every_parameter_method_and_answer_header_counts() -> None:
    """Unknown and Thanos parameters, the method and Accept-Encoding change the key; order does not."""
    base = request_key(upstream(), RANGE, {})
    assert request_key(upstream(), RANGE, {"Accept-Encoding": "gzip"}) != base
    extra = UpstreamRequest(RANGE.method, RANGE.path, (("dedup", "false"),), RANGE.form)
    assert request_key(upstream(), extra, {}) != base
    get = UpstreamRequest("GET", RANGE.path, tuple(RANGE.form or ()))
    assert request_key(upstream(), get, {}) != base
    shuffled = UpstreamRequest(RANGE.method, RANGE.path, (), tuple(reversed(RANGE.form or ())))
    assert request_key(upstream(), shuffled, {}) == base


def test_url_and_body_parameters_never_merge() -> None:
    """URL `x=1` with body `x=2` (the upstream reads 2) is not URL `x=1&x=2` (it reads 1): two keys."""
    form = tuple(RANGE.form or ())
    split = UpstreamRequest(RANGE.method, RANGE.path, (("dedup", "true"),), (*form, ("dedup", "false")))
    in_url = UpstreamRequest(RANGE.method, RANGE.path, (("dedup", "true"), ("dedup", "false")), form)
    assert request_key(upstream(), split, {}) != request_key(upstream(), in_url, {})


def test_dropped_parameters_and_extra_parts() -> None:
    """A range's start/end can be left out of the key; a piece's bucket goes in."""
    moved = UpstreamRequest(
        RANGE.method,
        RANGE.path,
        (),
        (("query", 'up{cluster="local-cluster"}'), ("start", "30"), ("end", "90"), ("step", "30")),
    )
    drop = {"start", "end"}
    assert request_key(upstream(), RANGE, {}, drop=drop) == request_key(upstream(), moved, {}, drop=drop)
    assert request_key(upstream(), RANGE, {}, drop=drop, extra=["1"]) != request_key(
        upstream(), RANGE, {}, drop=drop, extra=["2"]
    )


def test_credential_identity_follows_the_client_certificate(tmp_path: Path) -> None:
    """Another client certificate is another upstream identity."""

    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    a.write_text("A")
    b.write_text("B")
    assert credential_identity("t", a) != credential_identity("t", b)
    assert credential_identity("t", a) == credential_identity("t", a)
