"""`/proxy/v1/whoami` and `/proxy/v1/explain` documents (docs/http.md): pure, from the caller's own
identity, grants and query text — never from whether any other resource exists."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from proxy import promql
from proxy.authn.identity import Identity
from proxy.naming import ResourceNames, is_safe
from proxy.promql.policy import Held, granted_plan
from proxy.promql.scope import Holdings
from proxy.promql.selectors import SelectorReach

AuthKind = Literal["bearer", "basic"]
_QUERY_ENDPOINTS: dict[str, promql.Endpoint] = {
    "query": "query", "query_range": "query_range", "query_exemplars": "query_exemplars",
}  # fmt: skip


def holdings_document(holdings: Holdings) -> dict[str, Any]:
    """`{hub_wide, clusters, projects}` of one hub, safe names only, sorted."""
    held = Held.of(holdings)
    return {
        "hub_wide": held.hub_wide,
        "clusters": sorted(held.whole),
        "projects": {c: sorted(ps) for c, ps in sorted(held.projects.items())},
    }


def whoami_document(identity: Identity, auth: AuthKind, hubs: Mapping[str, Holdings]) -> dict[str, Any]:
    """Who the caller is and what they hold on each hub."""
    claims = identity.claims
    sub = claims.get("sub")
    username = claims.get("preferred_username")
    azp = claims.get("azp")
    return {
        "subject": sub if isinstance(sub, str) and sub else identity.subject,
        "username": username if isinstance(username, str) else None,
        "client": azp if isinstance(azp, str) else identity.client_id,
        "auth": auth,
        "expires_at": datetime.fromtimestamp(identity.exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hubs": {hub: holdings_document(held) for hub, held in sorted(hubs.items())},
    }


def _needs(sel: SelectorReach, model: promql.LabelModel, names: ResourceNames) -> list[str]:
    """The narrowest resource names that grant one selector, read from its matchers only."""
    if sel.clusters is None or "" in sel.clusters or not sel.clusters:
        return [names.hub]
    out: list[str] = []
    for cluster in sorted(sel.clusters):
        if not is_safe(cluster):
            out.append(names.hub)
            continue
        projects = next(
            (v for v in sel.projects if v is not None and v and "" not in v and all(map(is_safe, v))),
            None,
        )
        if projects is None:
            out.append(names.cluster(cluster))
        else:
            out += [names.project(cluster, p) for p in sorted(projects)]
    return out


def _held(name: str, names: ResourceNames, holdings: Holdings) -> bool:
    parsed = names.parse(name)
    if parsed is None:
        return False
    if parsed.cluster is None:
        return holdings.hub_wide
    if parsed.project is None:
        return holdings.holds_cluster(parsed.cluster)
    return holdings.holds_project(parsed.cluster, parsed.project)


def explain_document(
    analyse: Callable[[], promql.Analysis],
    holdings: Holdings,
    mode: promql.Mode,
    endpoint: promql.Endpoint,
    names: ResourceNames,
) -> dict[str, Any]:
    """The decision for this caller without forwarding: allowed / narrowed / denied / invalid."""
    doc: dict[str, Any] = {
        "decision": "invalid", "reason": "", "needs": [], "missing": [], "forwarded": [], "warnings": [],
    }  # fmt: skip
    try:
        analysis = analyse()
    except promql.PromQLError as exc:
        doc["reason"] = str(exc)
        return doc
    needs: list[str] = []
    for sel in analysis.selectors:
        needs += [n for n in _needs(sel, analysis.model, names) if n not in needs]
    doc["needs"] = needs
    doc["missing"] = [n for n in needs if not _held(n, names, holdings)]
    try:
        forward = _plan(analysis, holdings, mode, endpoint)
    except promql.AccessDenied as exc:
        doc.update(decision="denied", reason=str(exc))
        return doc
    except promql.PromQLError as exc:
        doc["reason"] = str(exc)
        return doc
    held = Held.of(holdings)
    narrowed = any(granted_plan(s, held, analysis.model) is None for s in analysis.selectors)
    doc["decision"] = "narrowed" if narrowed else "allowed"
    doc["reason"] = (
        "restricted to the clusters and namespaces you hold"
        if narrowed
        else "every selector is within your grants"
    )
    doc["forwarded"] = list(forward.texts)
    doc["warnings"] = list(forward.warnings)
    return doc


def merge_explained(docs: list[dict[str, Any]], max_rewrite_bytes: int) -> dict[str, Any]:
    """One explanation from those of consecutive chunks of a `match[]` list (docs/operations.md,
    event-loop budget): the same document the whole list explained at once gives."""
    for doc in docs:
        if doc["decision"] == "invalid":
            return doc  # the whole list fails to analyse at its first invalid selector
    out: dict[str, Any] = {"decision": "allowed", "reason": "", "needs": [], "missing": [],
                           "forwarded": [], "warnings": []}  # fmt: skip
    for key in ("needs", "missing"):
        out[key] = list(dict.fromkeys(v for doc in docs for v in doc[key]))
    denied = next((doc for doc in docs if doc["decision"] == "denied"), None)
    if denied is not None:
        out.update(decision="denied", reason=denied["reason"])
        return out
    forwarded = list(dict.fromkeys(t for doc in docs for t in doc["forwarded"]))
    if sum(len(t.encode()) for t in forwarded) > max_rewrite_bytes:
        out.update(decision="invalid", reason=(
            f"the narrowed match[] selectors would be over {max_rewrite_bytes} bytes "
            "together (PROXY_MAX_REWRITE_BYTES); ask for fewer selectors at once"))  # fmt: skip
        return out
    narrowed = any(doc["decision"] == "narrowed" for doc in docs)
    out["decision"] = "narrowed" if narrowed else "allowed"
    out["reason"] = next(doc["reason"] for doc in docs if doc["decision"] == out["decision"])
    out["forwarded"] = forwarded
    out["warnings"] = list(dict.fromkeys(w for doc in docs for w in doc["warnings"]))
    return out


def _plan(
    analysis: promql.Analysis, holdings: Holdings, mode: promql.Mode, endpoint: promql.Endpoint
) -> promql.Forward:
    if analysis.kind == "selectors":
        return promql.plan_selectors(analysis, holdings, mode)
    return promql.plan_query(analysis, holdings, mode, endpoint)


def explain_target(path: str | None, has_query: bool) -> tuple[str, promql.Endpoint] | None:
    """(route name, endpoint) that `path` names for explain; None when it names no query route."""
    default = "/api/v1/query" if has_query else "/api/v1/series"
    target = (path or default).rstrip("/")
    short = target.split("/api/v1/", 1)[-1]
    if has_query and short in _QUERY_ENDPOINTS:
        return short, _QUERY_ENDPOINTS[short]
    if not has_query and (short in ("series", "labels", "federate") or short.startswith("label/")):
        return short, "other"
    return None
