"""Keycloak resource names, shared by the proxy and `policies` (docs/authorization.md#resources).

`HUB`, `HUB-<hub>`, `HUB-<hub>-CLUSTER-<cluster>`, `HUB-<hub>-CLUSTER-<cluster>-PROJECT-<project>`,
each with the one scope `GET`; the keywords are configurable (`PROXY_HUB_KEY`,
`PROXY_CLUSTER_KEY`, `PROXY_PROJECT_KEY`) and both sides must build the same names. Only
Kubernetes-style label values become part of a name: `#` would inject scopes and `,` more names
into Keycloak's `permission` parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

SCOPE: Final = "GET"
SAFE_NAME: Final = re.compile(r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?")
MAX_VALUE_LENGTH: Final = 253
# Characters with a meaning in Keycloak's `permission=NAME#SCOPE,SCOPE` syntax or on the wire.
_UNSAFE_IN_KEYS = re.compile(r"[#,\s]")


def is_safe(value: str) -> bool:
    """True when a label value may become part of a resource name."""
    return len(value) <= MAX_VALUE_LENGTH and SAFE_NAME.fullmatch(value) is not None


def check_part(part: str) -> str:
    """A keyword or hub name that cannot break the permission syntax; ValueError otherwise."""
    if not part or _UNSAFE_IN_KEYS.search(part):
        raise ValueError(f"unusable resource-name part {part!r}")
    return part


@dataclass(frozen=True)
class Keys:
    """The resource-name keywords (defaults: the Go proxy's)."""

    hub: str = "HUB"
    cluster: str = "CLUSTER"
    project: str = "PROJECT"

    def __post_init__(self) -> None:
        """Refuse keywords that could break the permission syntax."""
        for part in (self.hub, self.cluster, self.project):
            check_part(part)


DEFAULT_KEYS: Final = Keys()


@dataclass(frozen=True)
class Parsed:
    """What a resource name grants: the hub (`cluster` None), a cluster, or one project."""

    cluster: str | None = None
    project: str | None = None


class ResourceNames:
    """Build and parse the resource names of one hub."""

    def __init__(self, hub: str, keys: Keys = DEFAULT_KEYS) -> None:
        """Keys and hub come from configuration; ValueError if they could break the syntax."""
        check_part(hub)
        self.keys = keys
        self.top = keys.hub
        self.hub = f"{keys.hub}-{hub}"
        self._cluster_prefix = f"{self.hub}-{keys.cluster}-"
        self._project_sep = f"-{keys.project}-"

    def cluster(self, cluster: str) -> str:
        """Name of a whole cluster."""
        return f"{self._cluster_prefix}{cluster}"

    def project(self, cluster: str, project: str) -> str:
        """Name of one project (namespace) of a cluster."""
        return f"{self.cluster(cluster)}{self._project_sep}{project}"

    def needed(self, clusters: Iterable[str], projects: Mapping[str, Iterable[str]]) -> list[str]:
        """Every name that could grant the request, hub-level first; unsafe values name nothing."""
        names = [self.top, self.hub]
        # A cluster grant covers its projects, so a project question asks about its cluster too.
        for cluster in sorted(set(clusters) | set(projects)):
            if is_safe(cluster):
                names.append(self.cluster(cluster))
        for cluster in sorted(projects):
            if not is_safe(cluster):
                continue
            names.extend(self.project(cluster, p) for p in sorted(set(projects[cluster])) if is_safe(p))
        return names

    def parse(self, name: str) -> Parsed | None:
        """What a name of this hub grants; None for other hubs, foreign or ambiguous names."""
        if name in (self.top, self.hub):
            return Parsed()
        if not name.startswith(self._cluster_prefix):
            return None
        rest = name[len(self._cluster_prefix) :]
        readings = [Parsed(cluster=rest)] if is_safe(rest) else []
        start = rest.find(self._project_sep)
        while start != -1:
            cluster, project = rest[:start], rest[start + len(self._project_sep) :]
            if is_safe(cluster) and is_safe(project):
                readings.append(Parsed(cluster=cluster, project=project))
            start = rest.find(self._project_sep, start + 1)
        # Lower-case keys could make one name read two ways; such a name grants nothing.
        return readings[0] if len(readings) == 1 else None
