"""`prom-keycloak-proxy policies validate | apply | export | report`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from proxy.naming import DEFAULT_KEYS, Keys
from proxy.policies.apply import apply
from proxy.policies.checks import check_file
from proxy.policies.gateway import Gateway, connect
from proxy.policies.loader import load
from proxy.policies.model import AccessModel
from proxy.policies.problems import PolicyFileError
from proxy.policies.realm_json import realm_import
from proxy.settings_sources import env_name, flag_name

# The proxy's resource-name keywords: the same variables, so both sides name resources alike.
KEY_FIELDS = (
    ("hub_key", DEFAULT_KEYS.hub),
    ("cluster_key", DEFAULT_KEYS.cluster),
    ("project_key", DEFAULT_KEYS.project),
)


def parser() -> argparse.ArgumentParser:
    """The `policies` command line."""
    p = argparse.ArgumentParser(
        prog="prom-keycloak-proxy policies", description="Check, apply and export the access model."
    )
    sub = p.add_subparsers(dest="command", required=True)
    keys = _keys_options()
    v = sub.add_parser(
        "validate", help="schema and semantic checks, every problem with file:line", parents=[keys]
    )
    v.add_argument("files", nargs="+", type=Path)
    a = sub.add_parser(
        "apply", help="create/update the resources, policies and permissions", parents=[keys]
    )
    a.add_argument("file", type=Path)
    a.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    a.add_argument("--adopt", action="store_true", help="take over same-named unmarked objects")
    a.add_argument("--prune", action="store_true", help="delete marked objects the file no longer names")
    _connection(a)
    e = sub.add_parser("export", help="realm-import JSON for the Keycloak operator", parents=[keys])
    e.add_argument("file", type=Path)
    e.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    r = sub.add_parser(
        "report", help="who holds what, since and until when (file or --live)", parents=[keys]
    )
    r.add_argument("file", type=Path)
    r.add_argument("--live", action="store_true", help="read the realm (read-only) and show drift")
    r.add_argument("--by", choices=("project", "person"), default="project")
    r.add_argument("--format", choices=("table", "csv"), default="table")
    r.add_argument("--portal-groups", action="store_true", help="also list the portal's per-resource groups")
    _connection(r)
    return p


def _keys_options() -> argparse.ArgumentParser:
    """`--hub-key`, `--cluster-key`, `--project-key`, defaulting to the proxy's environment."""
    common = argparse.ArgumentParser(add_help=False)
    for field, default in KEY_FIELDS:
        common.add_argument(
            flag_name(field),
            default=os.environ.get(env_name(field)) or default,
            help=f"resource-name keyword, as the proxy's {env_name(field)} (default: that variable, "
            f"else {default})",
        )
    return common


def keys_of(args: argparse.Namespace) -> Keys:
    """The keywords the command line (or the proxy's environment) asks for."""
    return Keys(args.hub_key, args.cluster_key, args.project_key)


def _connection(sp: argparse.ArgumentParser) -> None:
    """Options naming the Keycloak whose admin API `apply` and `report --live` use."""
    sp.add_argument(
        "--server-url", default=os.environ.get("KEYCLOAK_URL"), help="Keycloak base URL (env KEYCLOAK_URL)"
    )
    sp.add_argument("--realm", help="realm (default: the file's)")
    sp.add_argument("--client-id", help="resource-server client id (default: the file's)")
    sp.add_argument(
        "--admin-user",
        default=os.environ.get("KEYCLOAK_ADMIN"),
        help="master-realm admin (env KEYCLOAK_ADMIN)",
    )
    sp.add_argument(
        "--admin-password-file",
        type=Path,
        help="file holding the admin password (else env KEYCLOAK_ADMIN_PASSWORD; never a flag: "
        "flags show up in process lists)",
    )
    sp.add_argument("--ca-cert", help="CA bundle for Keycloak's TLS certificate")
    sp.add_argument("--insecure", action="store_true", help="do not verify Keycloak's certificate")


def main(argv: list[str]) -> int:
    """Run one `policies` subcommand; 0 ok, 1 problems found or apply failed, 2 usage."""
    args = parser().parse_args(argv)
    try:
        keys = keys_of(args)
    except ValueError as exc:
        print(f"policies: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "validate":
            return _validate(args.files, keys)
        model = load(args.file, keys)
    except PolicyFileError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.command == "export":
        return _export(model, args.output)
    if args.command == "report":
        from proxy.policies.report_cli import report

        return report(model, args, _connect if args.live else None)
    return _apply(model, args)


def _validate(files: list[Path], keys: Keys) -> int:
    errors = warnings = 0
    for path in files:
        _, problems = check_file(path, keys)
        for problem in problems:
            print(problem)
        errors += sum(p.severity == "error" for p in problems)
        warnings += sum(p.severity == "warning" for p in problems)
    print(f"{len(files)} file(s): {errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


def _export(model: AccessModel, output: Path | None) -> int:
    text = json.dumps(realm_import(model), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    return 0


def _admin_password(args: argparse.Namespace) -> str | None:
    """The admin password from `--admin-password-file` or KEYCLOAK_ADMIN_PASSWORD."""
    if args.admin_password_file is not None:
        return str(args.admin_password_file.read_text(encoding="utf-8").strip())
    return os.environ.get("KEYCLOAK_ADMIN_PASSWORD")


def _connect(model: AccessModel, args: argparse.Namespace) -> tuple[AccessModel, Gateway] | int:
    """The admin gateway (and the model with `--realm`/`--client-id` applied), or exit code 2."""
    args.admin_password = _admin_password(args)
    missing = [
        flag
        for flag, value in (
            ("--server-url", args.server_url),
            ("--admin-user", args.admin_user),
            ("--admin-password-file", args.admin_password),
        )
        if not value
    ]
    if missing:
        print(
            f"{args.command} needs {', '.join(missing)} "
            "(or KEYCLOAK_URL/KEYCLOAK_ADMIN/KEYCLOAK_ADMIN_PASSWORD)",
            file=sys.stderr,
        )
        return 2
    if args.realm:
        model = dataclasses.replace(model, realm=args.realm)
    if args.client_id:
        model = dataclasses.replace(
            model, resource_server=dataclasses.replace(model.resource_server, client_id=args.client_id)
        )
    verify: bool | str = False if args.insecure else (args.ca_cert or True)
    admin = connect(args.server_url, model.realm, args.admin_user, args.admin_password, verify=verify)
    return model, Gateway(admin)


def _apply(model: AccessModel, args: argparse.Namespace) -> int:
    connected = _connect(model, args)
    if isinstance(connected, int):
        return connected
    model, gw = connected
    return apply(model, gw, sys.stdout, dry_run=args.dry_run, adopt=args.adopt, prune=args.prune)
