"""The pydantic-settings sources of `proxy.config`: env, `*_FILE` secrets and YAML, over one load.

A `Load` holds what one `load_settings` call was given (environment, config file, strictness)
and collects every problem the sources find, so they are all reported at once instead of the
first one aborting (docs/operations.md#configuration).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import EnvSettingsSource, PydanticBaseSettingsSource, YamlConfigSettingsSource

from proxy.filewatch import read_secret

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

ENV_PREFIX = "PROXY_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
STRICT_ENV = ENV_PREFIX + "CONFIG_STRICT"
FILE_SUFFIX = "_file"
# Kubernetes injects `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT_8080_TCP_ADDR`, … for every
# Service of the namespace; a Service named `proxy…` must not make the proxy complain.
_SERVICE_LINK = re.compile(
    r"PROXY_(?:[A-Z0-9_]+_)?(?:SERVICE_(?:HOST|PORT)(?:_[A-Z0-9_]+)?"
    r"|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)"
)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


class ConfigError(Exception):
    """Invalid configuration; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = list(problems)


def env_name(name: str) -> str:
    """The environment variable of a field (or of an alias)."""
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    """The command-line flag of a field."""
    return "--" + name.replace("_", "-")


def split_host_port(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 in brackets); raise ValueError when malformed."""
    match = re.fullmatch(r"\[?([^\[\]]*)\]?:(\d{1,5})", value)
    if not match or int(match.group(2)) > 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return match.group(1), int(match.group(2))


def split_csv(value: Any) -> Any:
    """Accept `a,b` strings as well as YAML lists."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def label_map(value: Any) -> Any:
    """`label=regex,label=regex` strings as a mapping (YAML may give the mapping directly)."""
    if not isinstance(value, str):
        return value
    out: dict[str, str] = {}
    for part in split_csv(value):
        label, sep, regex = part.partition("=")
        if not sep or not label.strip() or not regex.strip():
            raise ValueError(f"expected label=regex, got {part!r}")
        out[label.strip()] = regex.strip()
    return out


def readable_file(path: Path) -> bool:
    """True when `path` is a regular file this process can read."""
    return path.is_file() and os.access(path, os.R_OK)


def aliases(info: Any) -> tuple[str, ...]:
    """The other spellings declared on a field (its `AliasChoices`, minus the name itself)."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(c for c in alias.choices if isinstance(c, str))
    return (alias,) if isinstance(alias, str) else ()


def secret_fields(settings_cls: type[BaseSettings]) -> tuple[str, ...]:
    """Fields marked secret: no flag, and a `*_FILE` spelling."""
    return tuple(
        name
        for name, info in settings_cls.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("secret")
    )


def yaml_only_fields(settings_cls: type[BaseSettings]) -> tuple[str, ...]:
    """Fields only the YAML file may set (the `hubs:` list): no env variable, no flag."""
    return tuple(
        name
        for name, info in settings_cls.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("yaml_only")
    )


def _spellings(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """Every accepted lower-case key (name, alias, secret `_file`) → its field."""
    out: dict[str, str] = {}
    for name, info in settings_cls.model_fields.items():
        out[name] = name
        out.update(dict.fromkeys(aliases(info), name))
    for name in secret_fields(settings_cls):
        out[name + FILE_SUFFIX] = name
    return out


def _suggest(word: str, choices: Sequence[str]) -> str:
    """` (did you mean X?)` for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def print_warning(message: str) -> None:
    """Default warning sink: stderr (logging is not configured before the settings are)."""
    print(f"prom-keycloak-proxy: warning: {message}", file=sys.stderr)


@dataclass
class Load:
    """One configuration load: its inputs, the raw values found, and every problem."""

    settings_cls: type[BaseSettings]
    environ: Mapping[str, str]
    config_file: Path | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    # The file each secret was read from, when a `*_FILE` spelling won (re-read on rotation).
    files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def begin(
        cls,
        settings_cls: type[BaseSettings],
        environ: Mapping[str, str],
        config_file: Path | None,
        strict: bool,
    ) -> Load:
        """Start a load; the config file comes from the argument, else `PROXY_CONFIG`."""
        path = config_file or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else None)
        load = cls(settings_cls, environ, path)
        strict_text = environ.get(STRICT_ENV, "").strip().lower()
        if strict_text not in _TRUE + _FALSE:
            load.problems.append(f"{STRICT_ENV}: expected true or false, got {strict_text!r}")
        load._check_unknown_env(strict or strict_text in _TRUE)
        return load

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this load the one `configured_sources` reads from."""
        token = _CURRENT.set(self)
        try:
            yield
        finally:
            _CURRENT.reset(token)

    def note(self, values: Mapping[str, Any], files: Mapping[str, Path] | None = None) -> None:
        """Remember raw values a source produced (for checks across fields), and the files of
        secrets read from one; sources are noted in priority order, so the first one wins."""
        spell = _spellings(self.settings_cls)
        for key, value in values.items():
            name = spell.get(key.lower(), key)
            if name in self.raw:
                continue
            self.raw[name] = value
            if files and name in files:
                self.files[name] = files[name]

    def check_pairs(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Fields that only make sense together (a certificate and its key)."""
        for first, second in pairs:
            if bool(self.raw.get(first)) != bool(self.raw.get(second)):
                self.problems.append(f"{env_name(first)} and {env_name(second)} must be set together")

    def _check_unknown_env(self, strict: bool) -> None:
        """`PROXY_*` variables that configure nothing: a typo the operator should hear about."""
        yaml_only = yaml_only_fields(self.settings_cls)
        spellings = (key for key, name in _spellings(self.settings_cls).items() if name not in yaml_only)
        known = {env_name(key) for key in spellings} | {CONFIG_ENV, STRICT_ENV}
        for key in sorted(self.environ):
            upper = key.upper()
            if not upper.startswith(ENV_PREFIX) or upper in known or _SERVICE_LINK.fullmatch(upper):
                continue
            message = f"{key}: unknown variable{_suggest(upper, sorted(known))}"
            (self.problems if strict else self.warnings).append(message)


_CURRENT: ContextVar[Load | None] = ContextVar("proxy_config_load", default=None)


def _current(settings_cls: type[BaseSettings]) -> Load:
    """The load in progress; outside `load_settings`, the process environment as pydantic does."""
    load = _CURRENT.get()
    return load if load is not None else Load(settings_cls, dict(os.environ), None)


class EnvSource(EnvSettingsSource):
    """`PROXY_*` variables from the load's environment (never implicitly from `os.environ`)."""

    def __init__(self, settings_cls: type[BaseSettings], load: Load) -> None:
        self._load = load
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        """The given environment, lower-cased; empty values are unset; YAML-only fields skipped."""
        skip = {env_name(name).lower() for name in yaml_only_fields(self.settings_cls)}
        return {k.lower(): v for k, v in self._load.environ.items() if v != "" and k.lower() not in skip}

    def __call__(self) -> dict[str, Any]:
        """The values found, remembered on the load."""
        values = super().__call__()
        self._load.note(values)
        return values


class SecretFileSource(PydanticBaseSettingsSource):
    """`PROXY_<SECRET>_FILE`: the secret read from a file (a mounted Kubernetes Secret)."""

    def __init__(self, settings_cls: type[BaseSettings], load: Load) -> None:
        super().__init__(settings_cls)
        self._load = load

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads every secret at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Each secret whose `_FILE` variable is set; unreadable files are problems."""
        env = {k.upper(): v for k, v in self._load.environ.items() if v != ""}
        out: dict[str, Any] = {}
        files: dict[str, Path] = {}
        for name in secret_fields(self.settings_cls):
            variable = env_name(name + FILE_SUFFIX)
            if variable not in env:
                continue
            try:
                out[name] = read_secret(Path(env[variable]))
                files[name] = Path(env[variable])
            except OSError as exc:
                self._load.problems.append(f"{variable}: cannot read {env[variable]!r}: {exc.strerror}")
        self._load.note(out, files)
        return out


class YamlSource(YamlConfigSettingsSource):
    """The YAML file: a missing file, a parse error or an unknown key is a problem."""

    def __init__(self, settings_cls: type[BaseSettings], load: Load) -> None:
        self._load = load
        path = load.config_file
        if path is not None and not readable_file(path):
            reason = "not found" if not path.exists() else "not a readable file"
            load.problems.append(f"config file {path}: {reason}")
            path = None
        super().__init__(settings_cls, yaml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        """The file's top-level mapping, with `<secret>_file` keys read and unknown keys reported."""
        where = f"config file {file_path}"
        try:
            data = super()._read_file(file_path)
        except (OSError, yaml.YAMLError) as exc:
            self._load.problems.append(f"{where}: {exc}")
            return {}
        if not isinstance(data, dict):
            self._load.problems.append(f"{where}: expected a mapping of options")
            return {}
        spell = _spellings(self._load.settings_cls)
        out: dict[str, Any] = {}
        files: dict[str, Path] = {}
        for key, value in data.items():
            name = str(key)
            if name not in spell:
                self._load.problems.append(f"{where}: unknown key {name!r}{_suggest(name, sorted(spell))}")
            elif name.endswith(FILE_SUFFIX) and spell[name] != name:
                try:
                    out[spell[name]] = read_secret(Path(str(value)))
                    files[spell[name]] = Path(str(value))
                except OSError as exc:
                    self._load.problems.append(f"{where}: {name}: cannot read {value!r}: {exc.strerror}")
            else:
                out[name] = value
        self._load.note(out, files)
        return out


def configured_sources(settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
    """Env, `*_FILE` secrets and YAML (highest priority first), bound to the current load."""
    load = _current(settings_cls)
    return (
        EnvSource(settings_cls, load),
        SecretFileSource(settings_cls, load),
        YamlSource(settings_cls, load),
    )


def describe(settings_cls: type[BaseSettings], error: Mapping[str, Any]) -> str:
    """One line per pydantic error, named by the env variable operators set."""
    loc = ".".join(str(part) for part in error["loc"]) or "config"
    head = loc.split(".")[0]
    if head in yaml_only_fields(settings_cls):
        # A YAML-only list: name the entry as it is written (`hubs[1].prometheus_base_url`).
        where = head + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"][1:])
        return f"{where}: " + ("required, not set" if error["type"] == "missing" else error["msg"])
    field_name = _spellings(settings_cls).get(head.lower())
    name = env_name(field_name) if field_name else loc
    if error["type"] == "missing":
        if field_name in secret_fields(settings_cls):
            return f"{name}: required, not set (env {name}, {name}_FILE or YAML)"
        return f"{name}: required, not set"
    return f"{name}: {error['msg']}"
