"""Keycloak is shared infrastructure (issue #17): a script walking 1,000 project names in a
minute stays under the configured caps on Keycloak calls, and every answer stays correct."""

from __future__ import annotations

import asyncio

from .stack import PROD, REALM, TEST, keycloak_stack

NAMES = 1000


async def test_a_thousand_project_names_stay_under_the_caps() -> None:
    """1,000 distinct single-project questions from one caller, 50 at a time: at most 60 cold UMA
    calls plus one holdings call, at most 4 calls in flight for the caller, every answer right."""
    async with keycloak_stack(auth_cold_decisions_per_minute=60, auth_max_concurrent_per_subject=4) as stack:
        alice = await stack.user("alice")
        stack.emu.reset_stats()
        projects = ["team-a", "team-b", *(f"p-{i:04d}" for i in range(NAMES - 2))]
        answers: dict[str, bool] = {}
        gate = asyncio.Semaphore(50)

        async def ask(project: str) -> None:
            async with gate:
                held = await stack.authz.holdings(alice, frozenset(), {PROD: frozenset({project})})
                answers[project] = held.holds_project(PROD, project) and not held.holds_project(TEST, project)

        await asyncio.gather(*(ask(p) for p in projects))
        calls = stack.emu.stats(REALM)
        load = stack.client.load.stats
        print(
            f"\n1,000 names: token.uma={calls['token.uma']} resource_set={calls['resource_set']}"
            f" peak in flight={load.peak} peak for alice={load.peak_per_subject}"
            f" cold decisions refused={load.cold_refused}"
        )
    assert answers == {p: p == "team-a" for p in projects}
    assert calls["token.uma"] <= 60 + 1
    assert calls["resource_set"] <= 2
    assert load.peak_per_subject <= 4 and load.peak <= stack.settings.auth_max_concurrency
    assert load.cold_refused >= NAMES - 60 - 50
