"""The resource catalog: one paged, owner- and scope-filtered listing instead of a call per name."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from proxy.authz.catalog import ResourceCatalog
from proxy.errors import KeycloakUnavailable
from proxy.keycloak import Reply

OWNER = "prom-keycloak-proxy"


def rep(name: str, rsid: str, owner: str = OWNER, scopes: tuple[str, ...] = ("GET",)) -> dict[str, Any]:
    """A deep ResourceRepresentation."""
    return {
        "name": name,
        "_id": rsid,
        "owner": {"id": "x", "name": owner},
        "scopes": [{"name": s} for s in scopes],
    }


class Listing:
    """A fake Protection API: serves `items` in pages, counting calls."""

    def __init__(self, items: list[dict[str, Any]], status: int = 200) -> None:
        self.items = items
        self.status = status
        self.calls: list[Mapping[str, str]] = []

    async def __call__(self, params: Mapping[str, str]) -> Reply:
        """One GET resource_set."""
        self.calls.append(dict(params))
        if self.status != 200:
            return Reply(self.status, {"error": "nope"})
        first, size = int(params["first"]), int(params["max"])
        return Reply(200, self.items[first : first + size])


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        """Now."""
        return self.now


async def test_one_paged_listing_resolves_every_name() -> None:
    """2,500 resources in pages of 1,000: three calls, filtered by owner and scope server-side."""
    listing = Listing([rep(f"r{i}", f"id{i}") for i in range(2500)])
    catalog = ResourceCatalog(listing, OWNER, clock=Clock())
    found = await catalog.resolve([f"r{i}" for i in range(0, 2500, 7)] + ["nope"])
    assert len(found) == len(range(0, 2500, 7)) and found["r7"] == "id7" and "nope" not in found
    assert len(listing.calls) == 3
    assert {(c["owner"], c["scope"], c["deep"]) for c in listing.calls} == {(OWNER, "GET", "true")}
    await catalog.resolve(["r1", "r2"])
    assert len(listing.calls) == 3


async def test_foreign_scopeless_and_ambiguous_entries_grant_nothing() -> None:
    """A user's resource (owner name = username), one without GET, and a duplicated name are left out."""
    listing = Listing(
        [
            rep("HUB-moc", "a", owner="eve"),
            rep("HUB-x", "b", scopes=("PATCH",)),
            rep("d", "1"),
            rep("d", "2"),
            rep("ok", "3"),
        ]
    )
    catalog = ResourceCatalog(listing, OWNER, clock=Clock())
    assert await catalog.resolve(["HUB-moc", "HUB-x", "d", "ok"]) == {"ok": "3"}


async def test_unknown_names_re_read_at_most_once_a_minute() -> None:
    """A thousand unknown names cost one listing; a minute later a miss re-reads (new projects appear)."""
    clock = Clock()
    listing = Listing([rep("a", "1")])
    catalog = ResourceCatalog(listing, OWNER, clock=clock)
    for i in range(1000):
        await catalog.resolve([f"unknown-{i}"])
    assert len(listing.calls) == 1
    listing.items.append(rep("new", "2"))
    clock.now = 61
    assert await catalog.resolve(["new"]) == {"new": "2"}
    assert len(listing.calls) == 2


async def test_old_table_is_refreshed_in_the_background() -> None:
    """After five minutes known names answer at once from the old table while it is re-read."""
    clock = Clock()
    listing = Listing([rep("a", "1")])
    catalog = ResourceCatalog(listing, OWNER, clock=clock)
    await catalog.resolve(["a"])
    clock.now = 301
    listing.items = [rep("a", "9")]
    assert await catalog.resolve(["a"]) == {"a": "1"}
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await catalog.resolve(["a"]) == {"a": "9"}
    await catalog.close()


async def test_forget_makes_the_next_miss_re_read() -> None:
    """After Keycloak said a resolved resource is gone, the next question re-reads the table."""
    listing = Listing([rep("a", "1")])
    catalog = ResourceCatalog(listing, OWNER, clock=Clock())
    await catalog.resolve(["a"])
    listing.items = []
    catalog.forget(["a"])
    assert await catalog.resolve(["a"]) == {}
    assert len(listing.calls) == 2


async def test_a_refused_listing_is_unavailable() -> None:
    """403 (no uma_protection) or 5xx: KeycloakUnavailable, never a guess."""
    catalog = ResourceCatalog(Listing([], status=403), OWNER, clock=Clock())
    with pytest.raises(KeycloakUnavailable):
        await catalog.resolve(["a"])
