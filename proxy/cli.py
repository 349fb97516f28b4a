"""Command line: `serve` (default), `policies …`, `audit …`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from proxy.config import SECRET_FIELDS, ConfigError, Settings, env_name, flag_name, load_settings

COMMANDS = ("serve", "policies", "audit")
EXIT_CONFIG = 2


def _flag_type(info: FieldInfo) -> Any:
    """Flags take strings; pydantic converts them exactly as it converts env values."""
    return str


def _describe(name: str, info: FieldInfo) -> str:
    """Help text: meaning, env variable, default."""
    default = info.get_default(call_default_factory=True)
    shown = (
        "required"
        if info.is_required()
        else f"default: {default!r}"
        if default not in (None, (), {})
        else "default: unset"
    )
    extra = ""
    if name in ("prometheus_ca_cert", "prometheus_tls_cert"):
        extra = f" (also {env_name(name).replace('_CERT', '_CRT')})"
    return f"{info.description} [env {env_name(name)}{extra}; {shown}]"


def build_serve_parser(prog: str = "prom-keycloak-proxy serve") -> argparse.ArgumentParser:
    """The `serve` parser: one flag per non-secret option, generated from `Settings`."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run the authorizing PromQL proxy. Options come from (rising priority) defaults, "
            "a YAML file, PROXY_* environment variables, and these flags. Secrets have no flag: "
            + ", ".join(f"{env_name(s)} (or {env_name(s)}_FILE)" for s in SECRET_FIELDS)
            + ". Durations accept 90s, 5m, 1h30m."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=None,
    )
    parser.add_argument("--config", type=Path, help="YAML configuration file [env PROXY_CONFIG]")
    for name, info in Settings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        parser.add_argument(flag_name(name), dest=name, type=_flag_type(info), help=_describe(name, info))
    return parser


def serve(argv: Sequence[str], environ: dict[str, str]) -> int:
    """Validate configuration (exit 2 listing every problem) and run the proxy."""
    args = build_serve_parser().parse_args(list(argv))
    flags = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    try:
        settings = load_settings(flags, environ, args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    from proxy.server import run  # imported late: `--help` and config errors stay fast

    return run(settings, environ)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; with none given, `serve`."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args and args[0] in COMMANDS else "serve"
    rest = args[1:] if args and args[0] in COMMANDS else args
    if args and args[0] in ("-h", "--help") and len(args) == 1:
        print(
            "usage: prom-keycloak-proxy [serve|policies] [options]\n\n"
            "  serve      run the proxy (default; `serve --help` lists every option)\n"
            "  policies   validate | apply | export | report the access model (policies/*.yaml)\n"
            "  audit      who | subject | refusals | events: access reviews from audit files\n"
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
