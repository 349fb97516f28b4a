"""The emulator's time policy and aggregates, as Keycloak's TimePolicyProvider / AggregatePolicyProvider
evaluate them: dates read in the server's zone, deny before `nbf` and strictly after `noa`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from keycloak_emulator import Emulator, EmulatorError, timepolicy
from tests.unit.emulator.support import DEMO, RS, Keycloak

BASE: dict[str, Any] = yaml.safe_load(DEMO.read_text())


@pytest.fixture(autouse=True)
def utc_server() -> Iterator[None]:
    """Every test starts (and leaves) the emulated server in UTC."""
    timepolicy.set_server_timezone("UTC")
    yield
    timepolicy.set_server_timezone("UTC")


def _epoch(text: str, zone: str = "UTC") -> float:
    from zoneinfo import ZoneInfo

    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_noa_itself_still_holds() -> None:
    """`now.after(noa)` denies: the noa instant grants, a millisecond later does not (TimePolicyProvider)."""
    config = {"noa": "2026-06-01 00:00:00"}
    at = _epoch("2026-06-01 00:00:00")
    assert timepolicy.permits(config, at)
    assert not timepolicy.permits(config, at + 0.001)


def test_nbf_and_bare_dates() -> None:
    """`now.before(nbf)` denies; a bare date is read as its midnight (`format()`)."""
    config = {"nbf": "2026-06-01"}
    at = _epoch("2026-06-01 00:00:00")
    assert not timepolicy.permits(config, at - 0.001)
    assert timepolicy.permits(config, at)


def test_dates_read_in_server_zone() -> None:
    """The same noa ends two hours earlier on a server whose JVM runs in Berlin (summer time)."""
    config = {"noa": "2026-06-01 00:00:00"}
    berlin_midnight = _epoch("2026-06-01 00:00:00", "Europe/Berlin")
    timepolicy.set_server_timezone("Europe/Berlin")
    assert not timepolicy.permits(config, berlin_midnight + 1)
    timepolicy.set_server_timezone("UTC")
    assert timepolicy.permits(config, berlin_midnight + 1)


def test_calendar_fields() -> None:
    """hour..hourEnd is an inclusive range; a field without its End must match exactly."""
    at = _epoch("2026-06-01 10:30:00")
    assert timepolicy.permits({"hour": "9", "hourEnd": "17"}, at)
    assert not timepolicy.permits({"hour": "11", "hourEnd": "17"}, at)
    assert timepolicy.permits({"month": "6"}, at)
    assert not timepolicy.permits({"dayMonth": "2"}, at)


def _emulator(tmp_path: Path, grants: list[dict[str, Any]]) -> Emulator:
    path = tmp_path / "realm.yaml"
    path.write_text(yaml.safe_dump({**BASE, "grants": grants}))
    return Emulator.from_files([path])


def _held(emu: Emulator, user: str) -> set[str]:
    token = emu.mint("nerc", {}, user=user, client=RS, lifetime=100_000)
    try:
        return {p["rsname"] for p in emu.uma("nerc", token, RS)}
    except EmulatorError as exc:
        assert exc.status == 403
        return set()


def test_until_in_the_past_is_refused(tmp_path: Path) -> None:
    """A grant that ended grants nothing; one not started yet neither; a running one does."""
    today = datetime.now(UTC).date()
    emu = _emulator(
        tmp_path,
        [
            {
                "user": "alice",
                "projects": {"nerc-ocp-prod": ["team-a"]},
                "until": str(today - timedelta(days=1)),
            },
            {"user": "bob", "clusters": ["nerc-ocp-test"], "from": str(today + timedelta(days=1))},
            {"user": "dave", "hub": True, "until": str(today + timedelta(days=30))},
        ],
    )
    assert _held(emu, "alice") == set()
    assert _held(emu, "bob") == set()
    assert "HUB-moc" in _held(emu, "dave")


def test_grant_ends_when_the_clock_passes(tmp_path: Path) -> None:
    """A date-time `until` an hour away holds now and not once the clock moved past it."""
    end = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    emu = _emulator(tmp_path, [{"user": "bob", "clusters": ["nerc-ocp-test"], "until": end.isoformat()}])
    assert _held(emu, "bob") == {"HUB-moc-CLUSTER-nerc-ocp-test"}
    emu.advance(3700)
    assert _held(emu, "bob") == set()


async def test_admin_typed_time_policy(kc: Keycloak) -> None:
    """`POST policy/time` stores notBefore/notOnOrAfter as nbf/noa; an end before the start is 400."""
    admin = kc.emu.password_token("master", "admin", "admin", client_id="admin-cli")["access_token"]
    rs = kc.emu.realm("nerc").client_by_client_id(RS)
    assert rs is not None
    base = f"/admin/realms/nerc/clients/{rs.id}/authz/resource-server/policy/time"
    headers = {"Authorization": f"Bearer {admin}"}
    bad = {"name": "t-bad", "notBefore": "2026-02-01 00:00:00", "notOnOrAfter": "2026-01-01 00:00:00"}
    async with kc.http.post(base, json=bad, headers=headers) as resp:
        assert resp.status == 400
    good = {"name": "t-ok", "notBefore": "2026-01-01 00:00:00", "notOnOrAfter": "2027-01-01 00:00:00"}
    async with kc.http.post(base, json=good, headers=headers) as resp:
        assert resp.status == 201
        created = await resp.json()
    async with kc.http.get(f"{base}/{created['id']}", headers=headers) as resp:
        typed = await resp.json()
    assert (typed["notBefore"], typed["notOnOrAfter"]) == (good["notBefore"], good["notOnOrAfter"])
    stored = kc.emu.realm("nerc").client_by_client_id(RS)
    assert stored is not None and stored.authz is not None
    policy = stored.authz.policy_named("t-ok")
    assert policy is not None and policy.config == {
        "nbf": "2026-01-01 00:00:00",
        "noa": "2027-01-01 00:00:00",
    }
