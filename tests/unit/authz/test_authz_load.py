"""Caps on the proxy's load on Keycloak: concurrent calls globally and per subject, cold decisions."""

from __future__ import annotations

import asyncio

from proxy.keycloak_load import KeycloakLoad


async def test_concurrent_calls_stay_under_both_caps() -> None:
    """100 calls of one subject and 100 of others: at most 3 of one subject and 5 overall at once."""
    load = KeycloakLoad(max_concurrency=5, max_per_subject=3, cold_per_minute=0)
    seen: list[int] = []

    async def one(subject: str) -> None:
        async with load.slot(subject):
            seen.append(load.stats.in_flight)
            await asyncio.sleep(0.001)

    await asyncio.gather(*(one("script") for _ in range(100)), *(one(f"u{i}") for i in range(100)))
    assert load.stats.calls == 200
    assert load.stats.peak == 5 and max(seen) == 5
    assert load.stats.peak_per_subject == 3
    assert load.stats.in_flight == 0 and not load.stats.per_subject_now


def test_cold_decisions_per_subject_per_minute() -> None:
    """The 61st cold decision of a subject within a minute is refused; others and later ones pass."""
    now = [0.0]
    load = KeycloakLoad(8, 4, cold_per_minute=60, clock=lambda: now[0])
    assert all(load.take_cold("script") for _ in range(60))
    assert not load.take_cold("script")
    assert load.take_cold("someone-else")
    now[0] = 61.0
    assert load.take_cold("script")
    assert load.stats.cold_refused == 1
