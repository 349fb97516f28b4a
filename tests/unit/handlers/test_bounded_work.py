"""Bounded work in the pipeline: many `match[]` enforced in chunks give the same answer as one
pass, bounds refuse before any Keycloak question, and a heavy request of a caller holding nothing
is refused before its analysis."""

from __future__ import annotations

from proxy import promql
from proxy.services import limits_of, model_of
from tests.unit.handlers.conftest import HELD, Make, bearer


def _selectors(count: int) -> list[tuple[str, str]]:
    """`count` match[] of which several narrow to the same text."""
    return [("match[]", f'up{{job="j{i % 7}"}}') for i in range(count)]


async def test_many_selectors_in_chunks_equal_one_pass(make_proxy: Make) -> None:
    """40 match[] (enforced 8 at a time) forward exactly what enforcing them at once forwards."""
    proxy = await make_proxy()
    params = _selectors(40)
    response = await proxy.client.post("/api/v1/series", data=params, headers=bearer("alice"))
    assert response.status == 200, await response.text()
    analysis = promql.analyse_selectors(
        [v for _, v in params], limits_of(proxy.settings), model_of(proxy.settings)
    )
    expected = promql.enforce_selectors(analysis, HELD["alice"], "narrow")
    assert [v for k, v in proxy.upstream.last.form or [] if k == "match[]"] == expected
    ctx = proxy.done[-1]
    assert ctx.decision == "narrowed" and ctx.reach is not None and not ctx.reach.bounded


async def test_over_the_match_bound_is_400_before_any_keycloak_question(make_proxy: Make) -> None:
    """101 match[] → 400 naming the option; Keycloak is not asked, nothing goes upstream."""
    proxy = await make_proxy()
    response = await proxy.client.post("/api/v1/series", data=_selectors(101), headers=bearer("alice"))
    assert response.status == 400
    assert "PROXY_MAX_MATCH_SELECTORS" in (await response.json())["error"]
    assert proxy.authz.asked == [] and proxy.upstream.seen == []


async def test_heavy_request_of_a_caller_holding_nothing_is_403_before_analysis(make_proxy: Make) -> None:
    """A heavy match[] list from a caller who holds nothing: 403 after one holdings question."""
    proxy = await make_proxy()
    response = await proxy.client.post("/api/v1/series", data=_selectors(40), headers=bearer("nobody"))
    assert response.status == 403
    assert [clusters for _, clusters in proxy.authz.asked] == [None]
    assert proxy.upstream.seen == []


async def test_label_name_is_matched_in_full(make_proxy: Make) -> None:
    """`cluster%0A` is refused (400); `cluster` is served."""
    proxy = await make_proxy()
    bad = await proxy.client.get("/api/v1/label/cluster%0A/values", headers=bearer("alice"))
    assert bad.status == 400
    good = await proxy.client.get("/api/v1/label/cluster/values", headers=bearer("alice"))
    assert good.status == 200


async def test_explain_has_the_same_match_bound(make_proxy: Make) -> None:
    """`/proxy/v1/explain` with 101 match[] is refused like the endpoints it explains."""
    proxy = await make_proxy()
    response = await proxy.client.post("/proxy/v1/explain", data=_selectors(101), headers=bearer("alice"))
    assert response.status == 400
    assert "PROXY_MAX_MATCH_SELECTORS" in (await response.json())["error"]
