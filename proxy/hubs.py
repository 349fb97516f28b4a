"""Several hubs behind one proxy: the YAML `hubs:` entries, their checks, and the runtime hub list.

Each hub is an upstream (its own base URL and mTLS material) plus the resource-server client
whose resources name it (`docs/`: several hubs). The env-only configuration is exactly one hub
built from the top-level `PROXY_ACM_HUB` + `PROXY_PROMETHEUS_*` options.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from proxy.filewatch import Secret

# Kubernetes-name-like (an RFC 1123 label): also a safe part of a resource name and a path segment.
HUB_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
# First path segments the proxy serves itself: a hub of that name would shadow them.
RESERVED_HUB_NAMES = frozenset({"api", "federate", "proxy", "healthz", "readyz", "metrics"})
# Characters a label value that may become part of a resource name can hold (docs: names are
# safe). A key must contain some other character, or a name could read as two hubs' resources.
_VALUE_CHARS = re.compile(r"[-a-z0-9.]*")
# Top-level options that describe the single hub of the env-only form.
TOP_LEVEL_HUB_OPTIONS = (
    "acm_hub",
    "prometheus_base_url",
    "prometheus_ca_cert",
    "prometheus_tls_cert",
    "prometheus_tls_key",
    "prometheus_tls_server_name",
    "prometheus_token",
)

# Required top-level options of the env-only (single-hub) form.
TOP_LEVEL_REQUIRED = ("prometheus_base_url", "acm_hub")
# Resource-name keys and their defaults (`PROXY_HUB_KEY`, …).
KEY_DEFAULTS = (("hub_key", "HUB"), ("cluster_key", "CLUSTER"), ("project_key", "PROJECT"))


def check_url(value: str) -> str:
    """An http(s) base URL without query or fragment, trailing slash removed; ValueError if not."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {value!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment")
    return value.rstrip("/")


def hub_name_problem(name: str) -> str | None:
    """Why `name` cannot be a hub name, or None when it can."""
    if not HUB_NAME.fullmatch(name):
        return f"hub name {name!r} must be a Kubernetes-style name (a-z, 0-9, '-', at most 63)"
    if name in RESERVED_HUB_NAMES:
        return f"hub name {name!r} would shadow the route /{name}"
    return None


class HubConfig(BaseModel):
    """One entry of the YAML `hubs:` list."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(description="hub name: path prefix /<name>/ and part of resource names")
    prometheus_base_url: str = Field(description="this hub's upstream base URL")
    prometheus_ca_cert: Path | None = Field(
        None,
        description="CA bundle of this hub's upstream",
        validation_alias=AliasChoices("prometheus_ca_cert", "prometheus_ca_crt"),
    )
    prometheus_tls_cert: Path | None = Field(
        None,
        description="client certificate for this hub's upstream",
        validation_alias=AliasChoices("prometheus_tls_cert", "prometheus_tls_crt"),
    )
    prometheus_tls_key: Path | None = Field(None, description="client key for this hub's upstream")
    prometheus_tls_server_name: str | None = Field(None, description="server name to verify")
    prometheus_token: str | None = Field(None, description="bearer token sent to this hub's upstream")
    prometheus_token_file: Path | None = Field(None, description="file holding that token (re-read)")
    auth_client_id: str | None = Field(None, description="resource-server client of this hub")
    auth_client_secret: str | None = Field(None, description="its secret")
    auth_client_secret_file: Path | None = Field(None, description="file holding its secret")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        problem = hub_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("prometheus_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)


@dataclass(frozen=True)
class UpstreamTarget:
    """Where and how one hub's upstream is reached."""

    base_url: str
    ca_cert: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    server_name: str | None = None
    token: str | None = None
    token_file: Path | None = None

    def files(self) -> tuple[Path | None, ...]:
        """Files whose change means a new TLS context (and token)."""
        return (self.ca_cert, self.tls_cert, self.tls_key, self.token_file)

    def read_token(self) -> str | None:
        """The bearer token, read from its file when it has one (secrets rotate without restart)."""
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip() or None
        return self.token


@dataclass(frozen=True)
class Hub:
    """One configured hub as the request path uses it."""

    name: str
    upstream: UpstreamTarget
    client_id: str
    # A `Secret`: read from its file again when that changes (rotation without restart).
    client_secret: Secret | None


class _TopLevel(Protocol):
    """The top-level options the hub list is derived from (`proxy.config.Settings`)."""

    @property
    def acm_hub(self) -> str | None: ...
    @property
    def prometheus_base_url(self) -> str | None: ...
    @property
    def prometheus_ca_cert(self) -> Path | None: ...
    @property
    def prometheus_tls_cert(self) -> Path | None: ...
    @property
    def prometheus_tls_key(self) -> Path | None: ...
    @property
    def prometheus_tls_server_name(self) -> str | None: ...
    @property
    def prometheus_token(self) -> str | None: ...
    @property
    def auth_client_id(self) -> str: ...
    @property
    def auth_client_secret(self) -> str | None: ...
    @property
    def hubs(self) -> tuple[HubConfig, ...]: ...
    @property
    def default_hub(self) -> str | None: ...
    @property
    def cert_reload_interval(self) -> float: ...
    def secret_file(self, name: str) -> Path | None: ...


def _top_secret(settings: _TopLevel) -> Secret:
    """`PROXY_AUTH_CLIENT_SECRET`, re-read from its file when it came from one."""
    return Secret(
        settings.auth_client_secret,
        settings.secret_file("auth_client_secret"),
        interval=settings.cert_reload_interval,
        name="PROXY_AUTH_CLIENT_SECRET",
    )


def hubs_of(settings: _TopLevel) -> tuple[Hub, ...]:
    """The configured hubs: the `hubs:` list, or the single hub of the top-level options."""
    if not settings.hubs:
        assert settings.acm_hub and settings.prometheus_base_url  # checked by `problems`
        target = UpstreamTarget(
            settings.prometheus_base_url,
            settings.prometheus_ca_cert,
            settings.prometheus_tls_cert,
            settings.prometheus_tls_key,
            settings.prometheus_tls_server_name,
            settings.prometheus_token,
            settings.secret_file("prometheus_token"),
        )
        return (Hub(settings.acm_hub, target, settings.auth_client_id, _top_secret(settings)),)
    out = []
    for entry in settings.hubs:
        target = UpstreamTarget(
            entry.prometheus_base_url,
            entry.prometheus_ca_cert,
            entry.prometheus_tls_cert,
            entry.prometheus_tls_key,
            entry.prometheus_tls_server_name,
            entry.prometheus_token,
            entry.prometheus_token_file,
        )
        if entry.auth_client_id is None or entry.auth_client_id == settings.auth_client_id:
            client_id, secret = settings.auth_client_id, _top_secret(settings)
        else:
            client_id = entry.auth_client_id
            secret = Secret(
                entry.auth_client_secret,
                None if entry.auth_client_secret else entry.auth_client_secret_file,
                interval=settings.cert_reload_interval,
                name=f"hubs.{entry.name}.auth_client_secret",
            )
        out.append(Hub(entry.name, target, client_id, secret))
    return tuple(out)


def default_hub_of(settings: _TopLevel) -> str | None:
    """The hub `/api/v1/…` serves: the only hub, else `default_hub:` (None: no default)."""
    if not settings.hubs:
        return settings.acm_hub
    if settings.default_hub:
        return settings.default_hub
    return settings.hubs[0].name if len(settings.hubs) == 1 else None


def _readable(path: Path | None) -> bool:
    return path is None or (os.access(str(path), os.R_OK) and path.is_file())


def _entry_problems(i: int, entry: HubConfig, global_client: str | None) -> list[str]:
    """Problems of one `hubs:` entry that the field validators cannot see."""
    where = f"hubs[{i}] ({entry.name})"
    out = []
    for field in ("prometheus_ca_cert", "prometheus_tls_cert", "prometheus_tls_key", "prometheus_token_file"):
        path = getattr(entry, field)
        if not _readable(path):
            out.append(f"{where}.{field}: file {path!s} is not readable")
    if bool(entry.prometheus_tls_cert) != bool(entry.prometheus_tls_key):
        out.append(f"{where}: prometheus_tls_cert and prometheus_tls_key must be set together")
    if entry.prometheus_token and entry.prometheus_token_file:
        out.append(f"{where}: prometheus_token and prometheus_token_file are exclusive")
    if not _readable(entry.auth_client_secret_file):
        out.append(f"{where}.auth_client_secret_file: file {entry.auth_client_secret_file!s} is not readable")
    own_client = entry.auth_client_id not in (None, global_client)
    has_secret = bool(entry.auth_client_secret or entry.auth_client_secret_file)
    if own_client and not has_secret:
        out.append(f"{where}: auth_client_id {entry.auth_client_id!r} needs auth_client_secret(_file)")
    if has_secret and not own_client:
        out.append(f"{where}: auth_client_secret without its own auth_client_id")
    return out


def problems(values: Mapping[str, Any], hubs: Sequence[HubConfig], keys: Iterable[str]) -> list[str]:
    """Every problem of the hub configuration at once (`values`: the merged top-level options)."""
    out: list[str] = []
    default = values.get("default_hub")
    if not hubs:
        if default not in (None, "", values.get("acm_hub")):
            out.append("default_hub: only meaningful with a `hubs:` list")
        return out
    mixed = [name for name in TOP_LEVEL_HUB_OPTIONS if values.get(name) not in (None, "")]
    if mixed:
        out.append(
            "hubs: cannot be combined with top-level upstream options ("
            + ", ".join("PROXY_" + name.upper() for name in mixed)
            + "): each hub's certificate goes only to its own upstream"
        )
    names = [entry.name for entry in hubs]
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(f"hubs: hub {name!r} is listed more than once")
    if default and default not in names:
        out.append(f"default_hub: {default!r} is not one of the hubs ({', '.join(names)})")
    for key in keys:
        if _VALUE_CHARS.fullmatch(key):
            out.append(
                f"resource-name key {key!r} must contain a character label values cannot "
                "(e.g. upper case), or one name could name two hubs' resources"
            )
    for i, entry in enumerate(hubs):
        out.extend(_entry_problems(i, entry, values.get("auth_client_id")))
    return out


def hub_warnings(settings: _TopLevel) -> list[str]:
    """What an operator should hear about a valid hub configuration."""
    if len(settings.hubs) > 1 and not settings.default_hub:
        paths = ", ".join(f"/{hub.name}/api/v1/…" for hub in settings.hubs)
        return [f"default_hub is not set: /api/v1/… answers 404; callers use {paths}"]
    return []


def _entries(raw: Any) -> tuple[HubConfig, ...]:
    """The raw `hubs:` list as entries; () when it does not validate (pydantic reports why)."""
    try:
        return TypeAdapter(tuple[HubConfig, ...]).validate_python(raw)
    except ValidationError:
        return ()


def hub_problems(raw: Mapping[str, Any], settings: _TopLevel | None) -> list[str]:
    """Problems of the hub configuration in a load's raw values (`settings` None if it failed)."""
    if not raw.get("hubs"):
        missing = [
            f"PROXY_{name.upper()}: required, not set" for name in TOP_LEVEL_REQUIRED if not raw.get(name)
        ]
        return missing + problems(raw, (), ())
    entries = settings.hubs if settings is not None else _entries(raw["hubs"])
    keys = tuple(str(raw.get(key) or default) for key, default in KEY_DEFAULTS)
    return problems(raw, entries, keys)


__all__ = [
    "RESERVED_HUB_NAMES",
    "Hub",
    "HubConfig",
    "UpstreamTarget",
    "check_url",
    "default_hub_of",
    "hub_name_problem",
    "hub_problems",
    "hub_warnings",
    "hubs_of",
    "problems",
]
