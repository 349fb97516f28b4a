"""`prom-keycloak-proxy policies validate | apply | export | report`.

Exit codes: 0 success (apply: nothing left to do), 1 a failure (problems in a file, a conflict,
Keycloak unreachable or refusing the login or a call, drift in `report --live`), 2 a usage or
configuration error (bad options, a missing file, missing credentials); `apply --dry-run
--detailed-exitcode` exits 2 when there are changes to make. Errors are one line on stderr,
never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from proxy.naming import DEFAULT_KEYS, Keys
from proxy.policies import admin_login
from proxy.policies.admin_login import KeycloakFailure, UsageError
from proxy.policies.apply import apply
from proxy.policies.checks import check_file
from proxy.policies.gateway import Gateway
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
    a = sub.add_parser("apply", help="create/update the resources, policies and permissions", parents=[keys])
    a.add_argument("file", type=Path)
    a.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    a.add_argument("--adopt", action="store_true", help="take over same-named unmarked objects")
    a.add_argument("--prune", action="store_true", help="delete marked objects the file no longer names")
    a.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes (to make with --dry-run, or made), 0 when there are none",
    )
    admin_login.add_options(a)
    e = sub.add_parser("export", help="realm-import JSON for the Keycloak operator", parents=[keys])
    e.add_argument("file", type=Path)
    e.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    r = sub.add_parser("report", help="who holds what, since and until when (file or --live)", parents=[keys])
    r.add_argument("file", type=Path)
    r.add_argument("--live", action="store_true", help="read the realm (read-only) and show drift")
    r.add_argument("--by", choices=("project", "person"), default="project")
    r.add_argument("--format", choices=("table", "csv"), default="table")
    r.add_argument("--portal-groups", action="store_true", help="also list the portal's per-resource groups")
    admin_login.add_options(r)
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


def main(argv: list[str]) -> int:
    """Run one `policies` subcommand; exit codes in the module docstring."""
    args = parser().parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"policies {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeycloakFailure as exc:
        print(f"policies {args.command}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    try:
        keys = keys_of(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    files = args.files if args.command == "validate" else [args.file]
    for path in files:
        if not path.is_file():
            raise UsageError(f"no such file: {path}")
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
        _, problems = check_file(path, keys, secrets_required=False)
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
        return 0
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    return 0


def _connect(model: AccessModel, args: argparse.Namespace) -> tuple[AccessModel, Gateway] | int:
    """The admin gateway (and the model with `--realm`/`--client-id` applied).

    Raises UsageError for missing credentials and KeycloakFailure when the login fails."""
    if args.realm:
        model = dataclasses.replace(model, realm=args.realm)
    if args.client_id:
        model = dataclasses.replace(
            model, resource_server=dataclasses.replace(model.resource_server, client_id=args.client_id)
        )
    login = admin_login.login_of(args, model.realm)
    verify: bool | str = False if args.insecure else (args.ca_cert or True)
    try:
        admin = admin_login.connect(login, verify)
        gateway = Gateway(admin)
        gateway.client_uuid(model.resource_server.client_id)  # logs in now: fail before planning
    except Exception as exc:  # python-keycloak and requests raise many types; all mean "Keycloak failed"
        raise admin_login.explain(exc, login) from None
    args.login = login
    return model, gateway


def _apply(model: AccessModel, args: argparse.Namespace) -> int:
    connected = _connect(model, args)
    if isinstance(connected, int):
        return connected
    model, gw = connected
    try:
        return apply(
            model,
            gw,
            sys.stdout,
            dry_run=args.dry_run,
            adopt=args.adopt,
            prune=args.prune,
            detailed_exitcode=args.detailed_exitcode,
        )
    except Exception as exc:  # reading the realm failed half-way (apply reports failed writes itself)
        raise admin_login.explain(exc, args.login) from None
