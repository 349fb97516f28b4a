"""Command line: `serve` (default), `policies …`, `audit …`, `--version`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic.fields import FieldInfo

from proxy.config import SECRET_FIELDS, ConfigError, Settings, env_name, flag_name, load_settings
from proxy.durations import format_duration, parse_duration
from proxy.hubs import TOP_LEVEL_REQUIRED
from proxy.settings_sources import CONFIG_ENV, STRICT_ENV, aliases, yaml_only_fields

COMMANDS = ("serve", "policies", "audit")
EXIT_CONFIG = 2
DISTRIBUTION = "prom-keycloak-proxy"


def version() -> str:
    """The installed distribution's version."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def _is_duration(info: FieldInfo) -> bool:
    """Whether a field takes a Prometheus-style duration."""
    return any(getattr(m, "func", None) is parse_duration for m in info.metadata)


def _shown_default(name: str, info: FieldInfo) -> str:
    """The default as an operator would write it (durations as `2m`, lists comma-separated)."""
    if info.is_required():
        return "required"
    if name in TOP_LEVEL_REQUIRED:
        return "required unless YAML lists hubs:"
    default = info.get_default(call_default_factory=True)
    if default in (None, (), {}, ""):
        return "default: unset"
    if _is_duration(info):
        return f"default: {format_duration(float(default))}"
    if isinstance(default, tuple):
        return "default: " + ",".join(default)
    if isinstance(default, bool):
        return f"default: {str(default).lower()}"
    return f"default: {default}"


_METAVARS = (
    ("Path", "FILE"),
    ("bool", "BOOL"),
    ("int", "N"),
    ("float", "N"),
    ("tuple", "A,B"),
    ("dict", "K=V,…"),
)


def _metavar(info: FieldInfo) -> str:
    """What a flag takes, in one word."""
    if _is_duration(info):
        return "DURATION"
    if get_origin(info.annotation) is Literal:
        return "|".join(str(choice) for choice in get_args(info.annotation))
    text = str(info.annotation)
    for word, shown in _METAVARS:
        if word in text:
            return shown
    return "VALUE"


def _describe(name: str, info: FieldInfo) -> str:
    """Help text: meaning, env variable (and its other spellings), default."""
    others = [env_name(a) for a in aliases(info) if a != name]
    also = f" (also {', '.join(others)})" if others else ""
    return f"{info.description} [env {env_name(name)}{also}; {_shown_default(name, info)}]"


def build_serve_parser(prog: str = "prom-keycloak-proxy serve") -> argparse.ArgumentParser:
    """The `serve` parser: one flag per non-secret option, generated from `Settings`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run the authorizing PromQL proxy. Options come from (rising priority) "
            "a YAML file, secret files, PROXY_* environment variables, and these flags. "
            "Secrets have no flag: "
            + ", ".join(f"{env_name(s)} (or {env_name(s)}_FILE)" for s in SECRET_FIELDS)
            + ". Durations accept 90s, 5m, 1h30m."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--config", type=Path, help=f"YAML configuration file [env {CONFIG_ENV}]")
    parser.add_argument(
        "--strict-config",
        action="store_true",
        help=f"unknown PROXY_* variables are errors, not warnings [env {STRICT_ENV}]",
    )
    yaml_only = yaml_only_fields(Settings)
    for name, info in Settings.model_fields.items():
        if name in SECRET_FIELDS or name in yaml_only:
            continue
        # Flags take strings; pydantic converts them exactly as it converts env values.
        parser.add_argument(
            flag_name(name), dest=name, type=str, metavar=_metavar(info), help=_describe(name, info)
        )
    return parser


def serve(argv: Sequence[str], environ: dict[str, str]) -> int:
    """Validate configuration (exit 2 listing every problem) and run the proxy."""
    args = build_serve_parser().parse_args(list(argv))
    options: dict[str, Any] = vars(args)
    flags = {k: v for k, v in options.items() if k in Settings.model_fields and v is not None}
    try:
        settings = load_settings(flags, environ, args.config, strict=args.strict_config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    from proxy.server import run  # imported late: `--help` and config errors stay fast

    return run(settings, environ)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; with none given, `serve`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        print(f"prom-keycloak-proxy {version()}")
        return 0
    command = args[0] if args and args[0] in COMMANDS else "serve"
    rest = args[1:] if args and args[0] in COMMANDS else args
    if args and args[0] in ("-h", "--help") and len(args) == 1:
        print(
            "usage: prom-keycloak-proxy [serve|policies] [options]\n\n"
            "  serve      run the proxy (default; `serve --help` lists every option)\n"
            "  policies   validate | apply | export | report the access model (policies/*.yaml)\n"
            "  audit      who | subject | refusals | events: access reviews from audit files\n"
            "  --version  print the version\n"
        )
        print(build_serve_parser().format_help())
        return 0
    environ = dict(os.environ)
    if command == "serve":
        return serve(rest, environ)
    if command == "audit":
        from proxy.audit.cli import main as audit_main

        return audit_main(rest)
    from proxy.policies.cli import main as policies_main

    return int(policies_main(rest))
