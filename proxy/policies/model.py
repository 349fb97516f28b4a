"""The typed, frozen access model a policies file describes, and the resources it grants."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from proxy.naming import DEFAULT_KEYS, Keys, ResourceNames
from proxy.policies import names
from proxy.policies.window import UNBOUNDED, Window, WindowError, window

GranteeKind = Literal["group", "user", "client"]


@dataclass(frozen=True)
class Cluster:
    """One cluster of the hub and its projects (namespaces)."""

    name: str
    projects: tuple[str, ...]


@dataclass(frozen=True)
class ResourceServer:
    """The proxy's own client: it owns the resources and answers UMA `audience`."""

    client_id: str
    secret: str | None
    audience_mapper: bool


@dataclass(frozen=True)
class User:
    """A realm user the file declares."""

    username: str
    password: str | None
    email: str | None
    first_name: str
    last_name: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Client:
    """A realm client the file declares (researcher script, Grafana, …)."""

    client_id: str
    secret: str | None
    public: bool
    service_account: bool
    standard_flow: bool
    direct_access: bool
    redirect_uris: tuple[str, ...]


@dataclass(frozen=True)
class Grantee:
    """Who a grant is for."""

    kind: GranteeKind
    name: str

    @property
    def policy_name(self) -> str:
        """Name of the Keycloak policy matching this grantee."""
        return names.grantee_policy(self.kind, self.name)


@dataclass(frozen=True)
class Grant:
    """Read access for one grantee: whole hubs, clusters or single projects."""

    grantee: Grantee
    all_hubs: bool
    hub: bool
    clusters: tuple[str, ...]
    projects: tuple[tuple[str, str], ...]
    window: Window = UNBOUNDED


@dataclass(frozen=True)
class AccessModel:
    """Everything one policies file declares about one realm."""

    realm: str
    hub: str
    resource_server: ResourceServer
    hub_resource: bool
    groups_claim: bool
    clusters: tuple[Cluster, ...]
    groups: tuple[str, ...]
    users: tuple[User, ...]
    clients: tuple[Client, ...]
    grants: tuple[Grant, ...]
    # How `from`/`until` are read, and the Keycloak server's zone its time policies are read in.
    time_zone: str = "UTC"
    keycloak_time_zone: str = "UTC"
    # The resource-name keywords; the proxy must be configured with the same (docs/policies.md).
    keys: Keys = DEFAULT_KEYS

    @property
    def resources(self) -> ResourceNames:
        """Resource names of this file's hub, built exactly as the proxy builds them."""
        return ResourceNames(self.hub, self.keys)

    def resource_names(self) -> list[str]:
        """Every resource name the realm needs, hub first, in a stable order."""
        r = self.resources
        out = [r.top] if self.hub_resource else []
        out.append(r.hub)
        out += [r.cluster(c.name) for c in self.clusters]
        out += [r.project(c.name, p) for c in self.clusters for p in c.projects]
        return out

    def grant_resources(self, grant: Grant) -> list[str]:
        """The resource names one grant covers directly."""
        r = self.resources
        out = [r.top] if grant.all_hubs else []
        if grant.hub:
            out.append(r.hub)
        out += [r.cluster(c) for c in grant.clusters]
        out += [r.project(c, p) for c, p in grant.projects]
        return out

    def grantees(self) -> list[Grantee]:
        """Every grantee in first-mention order, without repeats."""
        return list(dict.fromkeys(g.grantee for g in self.grants))

    def granted_to(self, grantee: Grantee) -> frozenset[str]:
        """The resource names a grantee holds directly through the file's grants."""
        return frozenset(r for g in self.grants if g.grantee == grantee for r in self.grant_resources(g))

    def resource_grantees(self) -> Iterator[tuple[str, list[Grantee]]]:
        """Each resource with the grantees granted it, in resource order."""
        for resource in self.resource_names():
            granted = [g for g in self.grantees() if resource in self.granted_to(g)]
            yield resource, granted

    def resource_windows(self) -> Iterator[tuple[str, Grantee, tuple[Window, ...]]]:
        """Each (resource, grantee) with its windows: just `UNBOUNDED` when any grant is unbounded."""
        for resource, grantees in self.resource_grantees():
            for grantee in grantees:
                windows = [
                    g.window
                    for g in self.grants
                    if g.grantee == grantee and resource in self.grant_resources(g)
                ]
                if any(not w.bounded for w in windows):
                    yield resource, grantee, (UNBOUNDED,)
                else:
                    yield resource, grantee, tuple(dict.fromkeys(windows))


def build(data: Mapping[str, Any], keys: Keys = DEFAULT_KEYS) -> AccessModel:
    """Build the model from schema-valid plain data (see `loader.load` for the checked path)."""
    rs = data["resource_server"]
    return AccessModel(
        keys=keys,
        realm=data["realm"],
        hub=data["hub"],
        resource_server=ResourceServer(
            client_id=rs["client_id"],
            secret=rs.get("secret"),
            audience_mapper=bool(rs.get("audience_mapper", False)),
        ),
        hub_resource=bool(data.get("hub_resource", False)),
        groups_claim=bool(data.get("groups_claim", False)),
        clusters=tuple(
            Cluster(name, tuple((spec or {}).get("projects", []))) for name, spec in data["clusters"].items()
        ),
        groups=tuple(data.get("groups", [])),
        users=tuple(_user(u) for u in data.get("users", [])),
        clients=tuple(_client(c) for c in data.get("clients", [])),
        grants=tuple(_grant(g, data.get("time_zone", "UTC")) for g in data.get("grants", [])),
        time_zone=data.get("time_zone", "UTC"),
        keycloak_time_zone=data.get("keycloak_time_zone", "UTC"),
    )


def _user(raw: Mapping[str, Any]) -> User:
    username = raw["username"]
    return User(
        username=username,
        password=raw.get("password"),
        email=raw.get("email"),
        # KC ≥ 24's user profile requires both names before a password grant works.
        first_name=raw.get("first_name", username),
        last_name=raw.get("last_name", username),
        groups=tuple(raw.get("groups", [])),
    )


def _client(raw: Mapping[str, Any]) -> Client:
    public = bool(raw.get("public", False))
    return Client(
        client_id=raw["client_id"],
        secret=raw.get("secret"),
        public=public,
        service_account=bool(raw.get("service_account", not public)),
        standard_flow=bool(raw.get("standard_flow", False)),
        direct_access=bool(raw.get("direct_access", False)),
        redirect_uris=tuple(raw.get("redirect_uris", [])),
    )


def grant_window(raw: Mapping[str, Any], default_zone: str) -> Window:
    """The window of one raw grant; WindowError when its values cannot be read."""
    return window(raw.get("from"), raw.get("until"), raw.get("time_zone", default_zone))


def _grant(raw: Mapping[str, Any], default_zone: str) -> Grant:
    kind: GranteeKind = "group" if "group" in raw else "user" if "user" in raw else "client"
    projects = tuple(
        (cluster, project) for cluster, plist in (raw.get("projects") or {}).items() for project in plist
    )
    return Grant(
        grantee=Grantee(kind, raw[kind]),
        all_hubs=bool(raw.get("all_hubs", False)),
        hub=bool(raw.get("hub", False)),
        clusters=tuple(raw.get("clusters", [])),
        projects=projects,
        window=_window_or_unbounded(raw, default_zone),
    )


def _window_or_unbounded(raw: Mapping[str, Any], default_zone: str) -> Window:
    # `checks` reports an unreadable window as an error; the model is then discarded.
    try:
        return grant_window(raw, default_zone)
    except WindowError:
        return UNBOUNDED
