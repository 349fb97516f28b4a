"""Configuration: one immutable `Settings`, read once at start (docs/operations.md#configuration).

pydantic-settings merges its sources, in rising priority: the YAML file (`--config` /
`PROXY_CONFIG`), `PROXY_*_FILE` secret files, `PROXY_*` environment variables, command-line
flags. The sources themselves live in `proxy.settings_sources`; every problem any of them finds
is reported at once (`ConfigError.problems`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from proxy import settings_sources as sources
from proxy.durations import parse_duration
from proxy.filewatch import Secret
from proxy.hubs import HubConfig, check_url, hub_problems, hub_warnings
from proxy.naming import check_part
from proxy.results.checks import cache_problems, cache_warnings
from proxy.settings_sources import (
    ENV_PREFIX,
    ConfigError,
    env_name,
    flag_name,
    split_host_port,
)
from proxy.tls_files import tls_problems


def _readable(path: Path | None) -> Path | None:
    """A configured file must exist and be readable now (it is re-read later, on rotation)."""
    if path is not None and not sources.readable_file(path):
        raise ValueError(f"file {path} is not readable")
    return path


Duration = Annotated[float, BeforeValidator(parse_duration)]
CsvList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(sources.split_csv)]
# Resource-name keywords shared with `policies` (proxy/naming.py); `#`, `,` or blanks break names.
NameKey = Annotated[str, AfterValidator(check_part)]
ReadableFile = Annotated[Path | None, AfterValidator(_readable)]


def _secret(help_text: str) -> Any:
    """A required secret: env, `*_FILE` or YAML only, never a command-line flag."""
    return Field(description=help_text, json_schema_extra={"secret": True})


def _optional_secret(help_text: str) -> Any:
    """An optional secret: env, `*_FILE` or YAML only, never a command-line flag."""
    return Field(None, description=help_text, json_schema_extra={"secret": True})


def _cache_backend(value: Any) -> Any:
    """`PROXY_CACHE=on`/`true` is the in-process cache, `false` is off (docs/caching.md)."""
    if isinstance(value, bool):
        return "memory" if value else "off"
    if isinstance(value, str):
        word = value.strip().lower()
        return {"on": "memory", "true": "memory", "false": "off"}.get(word, word)
    return value


def _also(name: str, alias: str) -> AliasChoices:
    """A field that accepts a second spelling in every source (YAML key, env, flags by name)."""
    return AliasChoices(name, alias)


class Settings(BaseSettings):
    """Every option of the proxy (docs/operations.md); field name = YAML key, `PROXY_<NAME>` = env."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_prefix_target="all",  # aliases are env names too: PROXY_PROMETHEUS_CA_CRT
        env_ignore_empty=True,  # an empty variable means "not set", as in the Go proxy
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        case_sensitive=False,
    )

    listen: str = Field("0.0.0.0:8080", description="proxy listen address host:port")
    tls_cert: ReadableFile = Field(None, description="TLS certificate for the proxy's listener")
    tls_key: ReadableFile = Field(None, description="TLS private key for the proxy's listener")
    metrics_listen: str = Field("0.0.0.0:9091", description="address for /metrics, /healthz and /readyz")

    # Required unless `hubs:` lists the hubs (then they must stay unset): checked in load_settings.
    prometheus_base_url: str = Field(
        "", description="upstream base URL, may carry a path (…/api/metrics/v1/default)"
    )
    prometheus_ca_cert: ReadableFile = Field(
        None,
        description="CA bundle that signs the upstream's certificate",
        validation_alias=_also("prometheus_ca_cert", "prometheus_ca_crt"),
    )
    prometheus_tls_cert: ReadableFile = Field(
        None,
        description="client certificate for upstream mTLS",
        validation_alias=_also("prometheus_tls_cert", "prometheus_tls_crt"),
    )
    prometheus_tls_key: ReadableFile = Field(
        None, description="client key for upstream mTLS (goes with the certificate)"
    )
    prometheus_token: str | None = _optional_secret("bearer token the proxy itself sends upstream")
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
    auth_client_secret: str = _secret("secret of the resource-server client")
    auth_tls_verify: bool = Field(True, description="verify Keycloak's TLS certificate")
    auth_ca_cert: ReadableFile = Field(None, description="CA bundle for Keycloak's certificate")
    auth_introspect: bool = Field(False, description="also check tokens by introspection")
    auth_timeout: Duration = Field(5.0, description="timeout of every Keycloak call")
    auth_max_concurrency: int = Field(32, ge=1, description="Keycloak calls in flight at once")
    auth_max_concurrent_per_subject: int = Field(
        4, ge=1, description="Keycloak calls in flight for one subject"
    )
    auth_cold_decisions_per_minute: int = Field(
        60, ge=0, description="uncached decisions per subject per minute; beyond: from holdings (0: off)"
    )
    basic_auth_failures_per_minute: int = Field(
        10, ge=1, description="failed Basic-auth mints per client id per minute before 429"
    )

    acm_hub: str = Field("", description="hub name used in resource names")
    hubs: tuple[HubConfig, ...] = Field(
        (), description="several hubs behind one proxy (YAML only)", json_schema_extra={"yaml_only": True}
    )
    default_hub: str | None = Field(
        None, description="the hub /api/v1/… serves (YAML only)", json_schema_extra={"yaml_only": True}
    )
    hub_key: NameKey = Field("HUB", description="resource-name keyword for hubs")
    cluster_key: NameKey = Field("CLUSTER", description="resource-name keyword for clusters")
    project_key: NameKey = Field("PROJECT", description="resource-name keyword for projects")
    cluster_label: str = Field("cluster", description="series label naming the cluster")
    project_labels: CsvList = Field(
        ("namespace", "exported_namespace"),
        description="series labels naming the project, in precedence order",
        min_length=1,
    )
    project_label_metrics: Annotated[dict[str, str], NoDecode, BeforeValidator(sources.label_map)] = Field(
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

    max_match_selectors: int = Field(100, ge=1, description="match[] selectors per request (400)")
    max_rewrite_bytes: int = Field(65536, ge=64, description="rewritten PromQL size limit (400)")
    # Decoding and filtering costs ≈ 30-50 ms per MiB on the build machine (loaded): 1 MiB keeps one rules
    # or alerts answer within the event-loop budget (docs/operations.md).
    max_filtered_bytes: int = Field(
        1048576, ge=1024, description="decoded rules/alerts/metadata answer limit (502)"
    )

    max_upstream_concurrency: int = Field(
        64, ge=1, description="upstream requests in flight per hub and process"
    )
    max_concurrent_per_subject: int = Field(
        8, ge=1, description="upstream requests in flight per subject, hub and process"
    )
    max_queued_per_subject: int = Field(256, ge=0, description="requests queued per subject (429 beyond)")
    max_queue_wait: Duration = Field(20.0, gt=0, description="longest wait for an upstream slot (429)")
    rate_per_subject: float = Field(0.0, ge=0, description="requests per second per subject (0: off)")
    rate_burst_per_subject: int = Field(0, ge=0, description="token-bucket burst per subject")
    max_lookback: Duration = Field(
        0.0, description="bound on a request's whole time reach: span, ranges, offsets (0: off)"
    )
    max_points: int = Field(11000, ge=1, description="most points per query_range series")

    header_timeout: Duration = Field(
        10.0, gt=0, description="time to send a complete request head (and the TLS handshake)"
    )
    keepalive_timeout: Duration = Field(75.0, gt=0, description="idle keep-alive connection lifetime")
    max_connections: int = Field(4096, ge=1, description="open connections (beyond: not accepted)")

    root_anonymous: bool = Field(
        False, description="answer `/` without authentication (before: always; now 401 without credentials)"
    )
    workers: int = Field(1, ge=1, le=64, description="processes sharing the port")
    shutdown_timeout: Duration = Field(25.0, description="drain time on SIGTERM")
    cert_reload_interval: Duration = Field(
        30.0, description="how often TLS files and `*_FILE` secrets are checked for changes"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["json", "console"] = Field("json", description="log format")
    audit_log: str = Field(
        "stdout", description="audit events: stdout, a file path (rotated daily, kept by age), or off"
    )
    audit_required: bool = Field(
        False, description="refuse requests (503) while audit events cannot be written"
    )
    audit_retention: Duration = Field(90 * 86400.0, gt=0, description="how long rotated audit files are kept")

    # The results cache and coalescing (docs/caching.md).
    cache: Annotated[Literal["off", "memory", "memcached", "redis"], BeforeValidator(_cache_backend)] = Field(
        "memory", description="results cache: memory (in-process), memcached, redis, or off"
    )
    cache_max_freshness: Duration = Field(
        600.0, ge=0, description="answers touching data newer than this are never cached"
    )
    cache_max_bytes: int = Field(
        64 << 20, ge=1 << 20, description="in-process results cache size (stored bytes)"
    )
    cache_max_item_bytes: int = Field(
        4 << 20, ge=1024, description="largest upstream answer the results cache stores (decoded)"
    )
    cache_ttl: Duration = Field(86400.0, gt=0, description="how long a cached answer is kept")
    cache_split_interval: Duration = Field(
        86400.0, gt=0, description="query_range answers are stored in pieces of this span"
    )
    cache_address: str = Field("", description="memcached or Redis host:port (shared backends)")
    cache_tls: bool = Field(False, description="connect to the shared cache over TLS")
    cache_ca_cert: ReadableFile = Field(None, description="CA bundle for the shared cache's TLS")
    cache_tls_cert: ReadableFile = Field(None, description="client certificate for the shared cache")
    cache_tls_key: ReadableFile = Field(None, description="client key for the shared cache")
    cache_tls_server_name: str | None = Field(
        None, description="server name to verify on the shared cache's certificate"
    )
    cache_username: str | None = Field(None, description="Redis ACL user name")
    cache_password: str | None = _optional_secret("Redis password")
    cache_hmac_key: str | None = _optional_secret(
        "key authenticating shared-cache entries (required for memcached and redis)"
    )
    cache_timeout: Duration = Field(0.5, gt=0, description="shared-cache call timeout (then a miss)")
    coalesce: bool = Field(True, description="send identical upstream requests in flight once")
    coalesce_max_bytes: int = Field(
        8 << 20, ge=0, description="answer bytes followers of a coalesced request may share"
    )

    # Secret field → the file it was read from (`*_FILE`), set by `load_settings`.
    _secret_files: dict[str, Path] = PrivateAttr(default_factory=dict)

    def secret_file(self, name: str) -> Path | None:
        """The file secret field `name` was read from, or None (given as a value)."""
        return self._secret_files.get(name)

    def secret(self, name: str) -> Secret:
        """Secret field `name` as a value re-read from its file when that changes (rotation)."""
        value = getattr(self, name)
        interval = self.cert_reload_interval
        return Secret(value, self.secret_file(name), interval=interval, name=env_name(name))

    @field_validator("prometheus_base_url", "auth_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value) if value else value

    @field_validator("listen", "metrics_listen")
    @classmethod
    def _hostport(cls, value: str) -> str:
        split_host_port(value)
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
        """Flags > env > `*_FILE` secrets > YAML, from the environment `load_settings` was given."""
        return (init_settings, *sources.configured_sources(settings_cls))


# Certificates and their keys come together, or not at all.
PAIRS = (
    ("tls_cert", "tls_key"),
    ("prometheus_tls_cert", "prometheus_tls_key"),
    ("cache_tls_cert", "cache_tls_key"),
)


def load_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Path | None = None,
    *,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Merge YAML < `*_FILE` < env < flags, validate, and raise ConfigError listing every problem.

    Unknown `PROXY_*` variables are passed to `warn` (stderr by default), or are problems when
    `strict` (or `PROXY_CONFIG_STRICT=true`) is set.
    """
    given = {k: v for k, v in flags.items() if v is not None}
    load = sources.Load.begin(Settings, environ, config_file, strict)
    load.note(given)
    settings: Settings | None = None
    with load.active():
        try:
            settings = Settings(**given)
        except ValidationError as exc:
            load.problems.extend(sources.describe(Settings, err) for err in exc.errors())
    load.check_pairs(PAIRS)
    load.problems.extend(hub_problems(load.raw, settings))
    if settings is not None:
        settings._secret_files.update(load.files)
        load.warnings.extend(hub_warnings(settings))
        load.problems.extend(cache_problems(settings))
        load.warnings.extend(cache_warnings(settings))
    load.problems.extend(tls_problems(load.raw, settings.hubs if settings is not None else ()))
    for message in load.warnings:
        (warn or sources.print_warning)(message)
    if load.problems or settings is None:
        raise ConfigError(list(dict.fromkeys(load.problems)))
    return settings


SECRET_FIELDS = sources.secret_fields(Settings)

__all__ = [
    "SECRET_FIELDS",
    "ConfigError",
    "Duration",
    "Settings",
    "env_name",
    "flag_name",
    "load_settings",
    "split_host_port",
]
