"""The large-realm part of `make bench`: 5,000 project resources on 3 hubs, Keycloak with a cost.

The Keycloak emulator runs in this process (a thread) with its cost model on — every call takes
`CALL_COST` and a UMA call `EVALUATION_COST` per resource it evaluates, so `permission=#GET`
(which Keycloak evaluates over every GET resource of every owner) costs what the realm's size
makes it cost. The proxy runs as its own process with the default `PROXY_AUTH_TIMEOUT` (5 s).
Measured, each with fresh tokens so nothing is cached:

- cold holdings of a user holding 20 projects (a query with no project selector: narrowing asks
  the holdings call);
- a hub-wide holder's holdings;
- a query naming 100 projects (more than `PROXY_MAX_UMA_NAMES`: several UMA calls);
- one script walking 1,000 distinct project names within a minute (the cold-decision cap).

Latency, HTTP statuses and Keycloak calls per request (from the emulator's counters) are printed.
Not a timed test: numbers depend on the machine.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from keycloak_emulator import Emulator, EmulatorServer
from keycloak_emulator.store import Group, GroupRef, Policy, Resource, User, new_id

REALM, RS = "nerc", "prom-keycloak-proxy"
HUBS = ("moc", "innabox", "edu")
CLUSTERS_PER_HUB = 5
PROJECTS = 5000
EVALUATION_COST = 0.0002  # s per evaluated resource: #GET over ~5,000 resources ≈ 1 s
CALL_COST = 0.002  # s per Keycloak call
RUNS = 5
KC_KEYS = ("token.uma", "resource_set", "token.client_credentials", "introspect", "certs", "discovery")


@dataclass(frozen=True)
class Realm:
    """What the generated realm holds, for building queries."""

    clusters: dict[str, list[str]]  # cluster of hub moc -> its projects
    twenty: list[tuple[str, str]]  # (cluster, project) of the 20-project user


def build_emulator() -> tuple[Emulator, Realm]:
    """An emulator with the demo clients plus 5,000 portal-style project resources on 3 hubs."""
    from proxy_demo.policy import DEMO_POLICY

    emu = Emulator.from_files([DEMO_POLICY], evaluation_cost=EVALUATION_COST, call_cost=CALL_COST)
    realm = emu.realm(REALM)
    client = realm.client_by_client_id(RS)
    assert client is not None and client.authz is not None
    rs = client.authz
    get = rs.scope_named("GET")
    assert get is not None
    per_cluster = PROJECTS // (len(HUBS) * CLUSTERS_PER_HUB) + 1
    moc: dict[str, list[str]] = {}
    made = 0

    def portal(name: str) -> str:
        """Resource, group, group policy and scope permission for one name (the portal's shape)."""
        resource = rs.resource_named(name) or Resource(new_id(), name, rs.id, [get.id])
        rs.resources[resource.id] = resource  # the demo realm already has HUB-moc
        group = Group(new_id(), f"{name}-GET")
        realm.groups[group.id] = group
        policy = Policy(new_id(), f"{name}-GET", "group", groups=[GroupRef(group.id, False)])
        permission = Policy(
            new_id(),
            f"{name}-GET-permission",
            "scope",
            decision_strategy="AFFIRMATIVE",
            resource_ids=[resource.id],
            scope_ids=[get.id],
            policy_ids=[policy.id],
        )
        rs.policies[policy.id] = policy
        rs.policies[permission.id] = permission
        return group.id

    groups: dict[str, str] = {}
    for hub in HUBS:
        groups[f"HUB-{hub}"] = portal(f"HUB-{hub}")
        for c in range(CLUSTERS_PER_HUB):
            cluster = f"{hub}-c{c}"
            portal(f"HUB-{hub}-CLUSTER-{cluster}")
            for p in range(per_cluster):
                if made >= PROJECTS:
                    break
                project = f"p{p:04d}"
                groups[f"{cluster}/{project}"] = portal(f"HUB-{hub}-CLUSTER-{cluster}-PROJECT-{project}")
                if hub == "moc":
                    moc.setdefault(cluster, []).append(project)
                made += 1
    twenty = [(cluster, projects[i]) for cluster, projects in moc.items() for i in range(4)][:20]
    _user(realm, "twenty", [groups[f"{c}/{p}"] for c, p in twenty])
    _user(realm, "hubwide", [groups["HUB-moc"]])
    return emu, Realm(moc, twenty)


def _user(realm: Any, name: str, group_ids: list[str]) -> None:
    user = User(new_id(), name, email=f"{name}@example.org", first_name=name, last_name="Bench")
    user.group_ids = group_ids
    realm.users[user.id] = user


def _post(url: str, token: str, form: dict[str, str]) -> tuple[int, float]:
    """One proxy request; its status and seconds."""
    data = urlencode(form).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback http
        url, data=data, headers={"Authorization": f"Bearer {token}"}, method="POST"
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            response.read()
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.perf_counter() - started


def _calls(emu: Emulator) -> Counter[str]:
    stats = emu.stats(REALM)
    return Counter({k: stats[k] for k in (*KC_KEYS, "evaluated")})


class Case:
    """One measured shape: fresh token per run, latency and Keycloak calls per run."""

    def __init__(self, name: str, user: str, query: str) -> None:
        """`query` is sent to /api/v1/query by `user`."""
        self.name, self.user, self.query = name, user, query

    def run(self, emu: Emulator, url: str, now: float) -> str:
        """Run RUNS cold requests; one report line."""
        latencies, statuses = [], Counter[int]()
        before = _calls(emu)
        for _ in range(RUNS):
            token = emu.mint(REALM, {}, user=self.user, client="grafana", lifetime=600)
            status, seconds = _post(f"{url}/api/v1/query", token, {"query": self.query, "time": f"{now:.3f}"})
            statuses[status] += 1
            latencies.append(seconds)
        spent = _calls(emu) - before
        per = {k: spent[k] / RUNS for k in (*KC_KEYS, "evaluated") if spent[k]}
        kc = ", ".join(f"{k} {v:g}" for k, v in per.items())
        return (
            f"  {self.name:<28} p50 {statistics.median(latencies) * 1000:7.0f} ms"
            f"  max {max(latencies) * 1000:7.0f} ms  statuses {dict(statuses)}  Keycloak per request: {kc}"
        )


def walk(emu: Emulator, url: str, now: float, realm: Realm) -> str:
    """One token asking 1,000 distinct project names (existing or not) one request each."""
    cluster = next(iter(realm.clusters))
    token = emu.mint(REALM, {}, user="twenty", client="grafana", lifetime=600)
    before = _calls(emu)
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    for i in range(1000):
        selector = f'{{cluster="{cluster}",namespace="p{i:04d}"}}'
        status, _ = _post(
            f"{url}/api/v1/query", token, {"query": f"DCGM_FI_DEV_GPU_UTIL{selector}", "time": f"{now:.3f}"}
        )
        statuses[status] += 1
    spent = _calls(emu) - before
    return (
        f"  1,000 names, one token         {time.perf_counter() - started:5.1f} s  statuses {dict(statuses)}"
        f"  Keycloak calls: token.uma {spent['token.uma']}, resource_set {spent['resource_set']}"
        " (cap: PROXY_AUTH_COLD_DECISIONS_PER_MINUTE=60, then the holdings call)"
    )


def run(
    workdir: Path,
    log: Callable[[str], None],
    proxy: Callable[[str, Path], AbstractContextManager[str]],
) -> str:
    """Build the realm, serve it, start the proxy with `proxy(kc_url, logfile)`, measure."""
    log(f"large realm: building {PROJECTS} project resources on {len(HUBS)} hubs")
    emu, realm = build_emulator()
    handle = EmulatorServer.start_in_thread(emu, host="127.0.0.1", port=0)
    lines = [
        f"large realm: {PROJECTS} project resources on {len(HUBS)} hubs"
        f" ({len(emu.realm(REALM).clients[_rs_id(emu)].authz.resources)} resources),"  # type: ignore[union-attr]
        f" emulator cost model {EVALUATION_COST * 1000:g} ms per evaluated resource + {CALL_COST * 1000:g} ms"
        f" per call, {RUNS} cold requests each, default PROXY_AUTH_TIMEOUT 5 s"
    ]
    try:
        with proxy(handle.base_url, workdir / "proxy-large-realm.log") as url:
            now = time.time()
            first = next(iter(realm.clusters))
            hundred = "|".join(realm.clusters[first][:100])
            cases = [
                Case("cold holdings, 20 projects", "twenty", "sum by (namespace) (DCGM_FI_DEV_GPU_UTIL)"),
                Case("hub-wide holder", "hubwide", "sum by (namespace) (DCGM_FI_DEV_GPU_UTIL)"),
                Case(
                    "100-name query",
                    "twenty",
                    f'sum by (namespace) (DCGM_FI_DEV_GPU_UTIL{{cluster="{first}",namespace=~"{hundred}"}})',
                ),
            ]
            for case in cases:
                log(f"large realm: {case.name}")
                lines.append(case.run(emu, url, now))
            log("large realm: 1,000 names from one script")
            lines.append(walk(emu, url, now, realm))
    finally:
        handle.close()
    return "\n".join(lines)


def _rs_id(emu: Emulator) -> str:
    client = emu.realm(REALM).client_by_client_id(RS)
    assert client is not None
    return client.id


def main() -> None:
    """Build the realm only and print its size (a quick check without the proxy)."""
    started = time.perf_counter()
    emu, realm = build_emulator()
    token = emu.mint(REALM, {}, user="twenty", client="grafana")
    held = emu.uma(REALM, token, RS, ["#GET"])
    print(
        json.dumps(
            {
                "clusters": len(realm.clusters),
                "held": len(held),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
