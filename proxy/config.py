"""Configuration: one immutable `Settings`, read once at start from defaults, YAML, env and flags.

Priority (rising): built-in defaults, YAML file (`--config` / `PROXY_CONFIG`), `PROXY_*`
environment variables (and `PROXY_*_FILE` for secrets), command-line flags. Secrets have no flag.
Every problem is collected and reported at once (`ConfigError.problems`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from proxy.durations import parse_duration

ENV_PREFIX = "PROXY_"

Duration = Annotated[float, BeforeValidator(parse_duration)]
CsvList = Annotated[tuple[str, ...], NoDecode]


def _split_csv(value: Any) -> Any:
    """Accept `a,b` strings as well as YAML lists."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _secret(help_text: str, *aliases: str) -> Any:
    """A secret field: env, `*_FILE` or YAML only, never a command-line flag."""
    return Field(
        default=None,
        description=help_text,
        json_schema_extra={"secret": True},
        validation_alias=AliasChoices(*aliases) if aliases else None,
    )


class Settings(BaseSettings):
    """Every option of the proxy (SPEC §2.1); field name = YAML key, `PROXY_<NAME>` = env."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        case_sensitive=False,
    )

    listen: str = Field("0.0.0.0:8080", description="proxy listen address host:port")
    tls_cert: Path | None = Field(None, description="TLS certificate for the proxy's listener")
    tls_key: Path | None = Field(None, description="TLS private key for the proxy's listener")
    metrics_listen: str = Field("0.0.0.0:9091", description="address for /metrics, /healthz and /readyz")

    prometheus_base_url: str = Field(
        description="upstream base URL, may carry a path (…/api/metrics/v1/default)"
    )
    prometheus_ca_cert: Path | None = Field(
        None,
        description="CA bundle that signs the upstream's certificate (alias …_CA_CRT)",
        validation_alias=AliasChoices("prometheus_ca_cert", "prometheus_ca_crt"),
    )
    prometheus_tls_cert: Path | None = Field(
        None,
        description="client certificate for upstream mTLS (alias …_TLS_CRT)",
        validation_alias=AliasChoices("prometheus_tls_cert", "prometheus_tls_crt"),
    )
    prometheus_tls_key: Path | None = Field(
        None, description="client key for upstream mTLS (goes with the certificate)"
    )
    prometheus_token: str | None = _secret("bearer token the proxy itself sends upstream")
    prometheus_tls_server_name: str | None = Field(
        None, description="server name to verify on the upstream certificate"
    )
    prometheus_timeout: Duration = Field(120.0, description="total upstream request timeout")
    prometheus_connect_timeout: Duration = Field(5.0, description="upstream connect timeout")

    auth_base_url: str = Field(description="Keycloak base URL for back-channel calls")
    auth_realm: str = Field(description="Keycloak realm")
    auth_issuer: str | None = Field(
        None, description="the `iss` tokens must carry (default: discovery's issuer)"
    )
    auth_audiences: CsvList = Field((), description="accepted `aud` values (empty: any)")
    auth_allowed_azp: CsvList = Field((), description="accepted `azp` values (empty: any)")
    auth_client_id: str = Field(description="resource-server client owning HUB/CLUSTER/PROJECT")
    auth_client_secret: str | None = _secret("secret of the resource-server client")
    auth_tls_verify: bool = Field(True, description="verify Keycloak's TLS certificate")
    auth_ca_cert: Path | None = Field(None, description="CA bundle for Keycloak's certificate")
    auth_introspect: bool = Field(False, description="also check tokens by introspection")
    auth_timeout: Duration = Field(5.0, description="timeout of every Keycloak call")
    basic_auth_failures_per_minute: int = Field(
        10, ge=1, description="failed Basic-auth mints per client id per minute before 429"
    )

    acm_hub: str = Field(description="hub name used in resource names")
    hub_key: str = Field("HUB", description="resource-name keyword for hubs")
    cluster_key: str = Field("CLUSTER", description="resource-name keyword for clusters")
    project_key: str = Field("PROJECT", description="resource-name keyword for projects")
    cluster_label: str = Field("cluster", description="series label naming the cluster")
    project_labels: CsvList = Field(
        ("namespace", "exported_namespace"),
        description="series labels naming the project, in precedence order",
    )
    project_label_metrics: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="trust limits, e.g. exported_namespace=DCGM_.* (label=metric regex)",
    )
    enforce_mode: Literal["narrow", "deny"] = Field(
        "narrow", description="narrow unscoped selectors to holdings, or deny them"
    )
    authz_cache_ttl: Duration = Field(60.0, description="allow-decision cache TTL")
    authz_deny_cache_ttl: Duration = Field(10.0, description="deny-decision cache TTL")
    authz_cache_size: int = Field(10000, ge=1, description="entries per decision cache")
    max_uma_names: int = Field(64, ge=1, description="resource names per UMA call")

    cors_allowed_origins: CsvList = Field((), description="CORS allow-list (default: no CORS)")
    max_body_bytes: int = Field(1048576, ge=1, description="request body limit (413)")
    max_url_bytes: int = Field(65536, ge=1, description="request URL limit (413)")
    max_query_bytes: int = Field(12288, ge=64, description="PromQL size limit (400)")
    max_query_depth: int = Field(24, ge=1, description="PromQL bracket nesting limit")
    max_query_operators: int = Field(48, ge=1, description="PromQL operator count limit")
    max_regex_cost: int = Field(12000, ge=1, description="PromQL regex compile-cost budget")

    max_concurrent_per_subject: int = Field(10, ge=1, description="upstream requests in flight")
    rate_per_subject: float = Field(20.0, gt=0, description="requests per second per subject")
    rate_burst_per_subject: int = Field(100, ge=1, description="burst per subject")
    max_range: Duration = Field(32 * 86400.0, description="longest query_range span")
    max_points: int = Field(11000, ge=1, description="most points per query_range series")

    workers: int = Field(1, ge=1, le=64, description="processes sharing the port")
    shutdown_timeout: Duration = Field(25.0, description="drain time on SIGTERM")
    cert_reload_interval: Duration = Field(30.0, description="how often TLS files are re-read")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["json", "console"] = Field("json", description="log format")

    @field_validator(
        "auth_audiences",
        "auth_allowed_azp",
        "project_labels",
        "cors_allowed_origins",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("project_label_metrics", mode="before")
    @classmethod
    def _label_metrics(cls, value: Any) -> Any:
        if isinstance(value, str):
            out: dict[str, str] = {}
            for part in _split_csv(value):
                label, sep, regex = part.partition("=")
                if not sep or not label or not regex:
                    raise ValueError(f"expected label=regex, got {part!r}")
                out[label.strip()] = regex.strip()
            return out
        return value

    @field_validator("prometheus_base_url", "auth_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {value!r}")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query string or fragment")
        return value.rstrip("/")

    @field_validator("listen", "metrics_listen")
    @classmethod
    def _hostport(cls, value: str) -> str:
        split_host_port(value)
        return value

    @field_validator("project_labels")
    @classmethod
    def _labels_nonempty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one project label is needed")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the sources `load_settings` passes in explicitly; nothing implicit."""
        return (init_settings,)


FILE_PATH_FIELDS = (
    "tls_cert",
    "tls_key",
    "prometheus_ca_cert",
    "prometheus_tls_cert",
    "prometheus_tls_key",
    "auth_ca_cert",
)
SECRET_FIELDS = tuple(
    name
    for name, info in Settings.model_fields.items()
    if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("secret")
)
ENV_ALIASES = {
    "prometheus_ca_crt": "prometheus_ca_cert",
    "prometheus_tls_crt": "prometheus_tls_cert",
}


class ConfigError(Exception):
    """Invalid configuration; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = list(problems)


def split_host_port(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 in brackets); raise ValueError when malformed."""
    match = re.fullmatch(r"\[?([^\[\]]*)\]?:(\d{1,5})", value)
    if not match or int(match.group(2)) > 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return match.group(1), int(match.group(2))


def env_name(field: str) -> str:
    """The environment variable of a field."""
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    """The command-line flag of a field."""
    return "--" + field.replace("_", "-")


def _from_env(environ: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """Read `PROXY_*` variables (and `*_FILE` for secrets) into field values."""
    fields = set(Settings.model_fields)
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.upper().startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name == "config":
            continue
        if name.endswith("_file") and name[: -len("_file")] in SECRET_FIELDS:
            secret = name[: -len("_file")]
            try:
                out[secret] = Path(value).read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"{key}: cannot read {value!r}: {exc.strerror}")
            continue
        name = ENV_ALIASES.get(name, name)
        if name in fields and value != "":  # an empty variable means "not set", as in the Go proxy
            out[name] = value
    return out


def _from_yaml(path: Path, problems: list[str]) -> dict[str, Any]:
    """Read the YAML file's top-level mapping."""
    try:
        data = YamlConfigSettingsSource(Settings, yaml_file=path)()
    except Exception as exc:  # yaml errors, OSError: reported, not raised
        problems.append(f"config file {path}: {exc}")
        return {}
    unknown = sorted(
        set(data) - set(Settings.model_fields) - set(ENV_ALIASES) - {f + "_file" for f in SECRET_FIELDS}
    )
    for key in unknown:
        problems.append(f"config file {path}: unknown key {key!r}")
    resolved: dict[str, Any] = {}
    for key, value in data.items():
        if key in unknown:
            continue
        if key.endswith("_file") and key[: -len("_file")] in SECRET_FIELDS:
            try:
                resolved[key[: -len("_file")]] = Path(str(value)).read_text("utf-8").strip()
            except OSError as exc:
                problems.append(f"config file {path}: {key}: cannot read {value!r}: {exc.strerror}")
            continue
        resolved[ENV_ALIASES.get(key, key)] = value
    return resolved


def _describe(error: Mapping[str, Any]) -> str:
    """One line per pydantic error, named by the env variable operators set."""
    loc = ".".join(str(part) for part in error["loc"]) or "config"
    field = loc.split(".")[0]
    name = env_name(field) if field in Settings.model_fields else loc
    if error["type"] == "missing":
        return f"{name}: required, not set"
    return f"{name}: {error['msg']}"


def _check_files(values: Mapping[str, Any], problems: list[str]) -> None:
    """Every configured file must be readable, and certificates come with their keys."""
    for field in FILE_PATH_FIELDS:
        value = values.get(field)
        if value in (None, ""):
            continue
        if not os.access(str(value), os.R_OK) or not Path(str(value)).is_file():
            problems.append(f"{env_name(field)}: file {value!s} is not readable")
    for cert, key in (("tls_cert", "tls_key"), ("prometheus_tls_cert", "prometheus_tls_key")):
        if bool(values.get(cert)) != bool(values.get(key)):
            problems.append(f"{env_name(cert)} and {env_name(key)} must be set together")
    if not values.get("auth_client_secret"):
        problems.append(
            "PROXY_AUTH_CLIENT_SECRET: required, not set (env, PROXY_AUTH_CLIENT_SECRET_FILE or YAML)"
        )


def load_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> Settings:
    """Merge defaults < YAML < env < flags, validate, and raise ConfigError listing every problem."""
    problems: list[str] = []
    path = config_file or (
        Path(environ[ENV_PREFIX + "CONFIG"]) if environ.get(ENV_PREFIX + "CONFIG") else None
    )
    merged: dict[str, Any] = {}
    if path is not None:
        merged.update(_from_yaml(path, problems))
    merged.update(_from_env(environ, problems))
    merged.update({k: v for k, v in flags.items() if v is not None})
    settings: Settings | None = None
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        problems.extend(_describe(err) for err in exc.errors())
    _check_files(merged, problems)
    if problems or settings is None:
        raise ConfigError(sorted(set(problems), key=problems.index))
    return settings


__all__ = [
    "ConfigError",
    "Settings",
    "env_name",
    "flag_name",
    "load_settings",
    "split_host_port",
]
