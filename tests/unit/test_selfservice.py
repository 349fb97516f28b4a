"""whoami and explain documents (docs/http.md): from the caller's own grants and the query text only."""

from __future__ import annotations

import time

from proxy import promql
from proxy.authn.identity import Identity
from proxy.naming import ResourceNames
from proxy.promql.scope import Holdings, LabelModel
from proxy.selfservice import explain_document, explain_target, whoami_document

NAMES = ResourceNames("moc")
MODEL = LabelModel()
LIMITS = promql.Limits()
ALICE = Holdings(projects={"prod": frozenset({"team-a"})})


def explain(
    query: str, holdings: Holdings, mode: promql.Mode = "narrow", endpoint: promql.Endpoint = "query"
) -> dict:  # type: ignore[type-arg]
    """Explain one query for `holdings`."""
    return explain_document(
        lambda: promql.analyse_query(query, LIMITS, MODEL), holdings, mode, endpoint, NAMES
    )


def test_whoami_lists_subject_client_and_holdings_per_hub() -> None:
    """whoami carries the token's names, the auth kind, expiry and the hub's holdings."""
    claims = {"sub": "u-1", "preferred_username": "alice", "azp": "grafana", "exp": 1_800_000_000}
    ident = Identity("alice", "tok", "h", 1_800_000_000.0, claims)
    doc = whoami_document(ident, "bearer", {"moc": ALICE})
    assert doc == {
        "subject": "u-1", "username": "alice", "client": "grafana", "auth": "bearer",
        "expires_at": "2027-01-15T08:00:00Z",
        "hubs": {"moc": {"hub_wide": False, "clusters": [], "projects": {"prod": ["team-a"]}}},
    }  # fmt: skip


def test_whoami_for_nothing_held_and_hub_wide() -> None:
    """Nothing held is empty lists; hub-wide says so."""
    ident = Identity("svc", "tok", "h", time.time() + 60, {"azp": "researcher"}, client_id="researcher")
    doc = whoami_document(ident, "basic", {"moc": Holdings(), "other": Holdings(hub_wide=True)})
    assert doc["auth"] == "basic" and doc["client"] == "researcher" and doc["username"] is None
    assert doc["hubs"]["moc"] == {"hub_wide": False, "clusters": [], "projects": {}}
    assert doc["hubs"]["other"]["hub_wide"] is True


def test_explain_allowed_narrowed_denied_invalid() -> None:
    """Each decision kind, with needs/missing/forwarded/warnings."""
    ok = explain('m{cluster="prod",namespace="team-a"}', ALICE)
    assert ok["decision"] == "allowed" and ok["missing"] == []
    assert ok["needs"] == ["HUB-moc-CLUSTER-prod-PROJECT-team-a"]
    assert ok["forwarded"] == ['m{cluster="prod",namespace="team-a"}']
    narrowed = explain('m{namespace=~"team-a|team-b"}', ALICE)
    assert narrowed["decision"] == "narrowed" and narrowed["needs"] == ["HUB-moc"]
    assert narrowed["missing"] == ["HUB-moc"] and "team-b on prod" in narrowed["warnings"][0]
    denied = explain('m{cluster="prod",namespace="team-b"}', ALICE)
    assert denied["decision"] == "denied" and denied["missing"] == ["HUB-moc-CLUSTER-prod-PROJECT-team-b"]
    assert denied["forwarded"] == []
    invalid = explain("sum(", ALICE)
    assert invalid["decision"] == "invalid" and invalid["reason"]


def test_explain_fan_out_lists_every_branch() -> None:
    """A narrowed top-level range selector explains to one forwarded text per branch."""
    doc = explain("m[5m]", ALICE)
    assert doc["decision"] == "narrowed" and len(doc["forwarded"]) == 2


def test_explain_unknown_and_foreign_projects_look_the_same() -> None:
    """An unknown project and another tenant's project give documents equal up to the name."""
    unknown = explain('m{cluster="prod",namespace="no-such-team"}', ALICE)
    foreign = explain('m{cluster="prod",namespace="team-b"}', ALICE)
    assert str(unknown).replace("no-such-team", "X") == str(foreign).replace("team-b", "X")


def test_explain_deny_mode_and_selector_lists() -> None:
    """Deny mode refuses what narrow mode narrows; match[] lists explain too."""
    assert explain("m", ALICE, "deny")["decision"] == "denied"
    doc = explain_document(
        lambda: promql.analyse_selectors(['{namespace="team-a"}'], LIMITS, MODEL),
        ALICE,
        "narrow",
        "other",
        NAMES,
    )
    assert doc["decision"] == "narrowed" and doc["forwarded"][0].startswith(
        '{namespace="team-a",cluster="prod"'
    )


def test_explain_target_paths() -> None:
    """`path` picks the endpoint; a path of the wrong kind is refused (None)."""
    assert explain_target(None, True) == ("query", "query")
    assert explain_target("/api/v1/query_range", True) == ("query_range", "query_range")
    assert explain_target("/moc/api/v1/query_exemplars", True) == ("query_exemplars", "query_exemplars")
    assert explain_target(None, False) == ("series", "other")
    assert explain_target("/api/v1/label/job/values", False) == ("label/job/values", "other")
    assert explain_target("/api/v1/series", True) is None
    assert explain_target("/api/v1/rules", False) is None


def _selector_lists() -> dict[str, list[str]]:
    """match[] lists of up to 100: allowed, narrowed, mixed, denied late, invalid late, repeats."""
    held = [f'up{{cluster="prod",namespace="team-a",i="{i}"}}' for i in range(40)]
    wide = [f'up{{i="{i}"}}' for i in range(40)]
    return {
        "allowed": held + held[:8],
        "narrowed": wide,
        "mixed": held[:30] + wide[:30] + held[:30],
        "denied late": [*held[:50], 'up{cluster="test"}', *wide[:10]],
        "invalid late": [*held[:20], "up{", *wide[:5]],
        "too long together": [f'up{{i="{i}",job="{"x" * 600}"}}' for i in range(100)],
    }


def test_explain_in_chunks_equals_explain_at_once() -> None:
    """Explaining up to 100 match[] a chunk at a time (the event-loop budget) gives exactly the
    document of explaining them at once, in narrow and deny mode, for every kind of outcome."""
    from proxy import bounds
    from proxy.selfservice import merge_explained

    small = promql.Limits(max_rewrite_bytes=32768)
    for name, matches in _selector_lists().items():
        for mode in ("narrow", "deny"):

            def doc(part: list[str], mode: promql.Mode = mode) -> dict:  # type: ignore[type-arg]
                return explain_document(
                    lambda: promql.analyse_selectors(part, small, MODEL), ALICE, mode, "other", NAMES
                )

            whole = doc(matches)
            chunked = merge_explained([doc(list(p)) for p in bounds.chunks(matches)], 32768)
            assert chunked == whole, (name, mode)
