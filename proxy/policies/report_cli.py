"""`policies report`: gather holdings from the file or the live realm and print them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from keycloak.exceptions import KeycloakError

from proxy.policies.gateway import Gateway
from proxy.policies.live import read
from proxy.policies.model import AccessModel
from proxy.policies.report import build_report, file_holdings, live_holdings, person_rows, render

Connect = Callable[[AccessModel, argparse.Namespace], "tuple[AccessModel, Gateway] | int"]


def report(
    model: AccessModel, args: argparse.Namespace, connect: Connect | None, out: TextIO | None = None
) -> int:
    """0 when shown (and, with `--live`, no drift); 1 when the live realm drifted from the file."""
    out = out or sys.stdout
    from_file = file_holdings(model)
    memberships = {u.username: list(u.groups) for u in model.users}
    if connect is None:
        held, compare = from_file, None
    else:
        connected = connect(model, args)
        if isinstance(connected, int):
            return connected
        model, gw = connected
        try:
            live = read(gw, model)  # read-only: only GETs
        except KeycloakError as exc:
            print(f"could not read realm {model.realm}: {exc}", file=sys.stderr)
            return 1
        held, compare = live_holdings(model, live.policies.values()), from_file
        memberships = {u: sorted(p.strip("/") for p in paths) for u, paths in live.user_paths.items()}
    result = build_report(model, held, memberships, compare=compare, portal_groups=args.portal_groups)
    if args.by == "person":
        result.rows = person_rows(result.rows, memberships)
    render(model, result, out, by=args.by, fmt=args.format)
    return 1 if (result.only_live or result.only_file) else 0
