"""`policies apply`: read the realm, print the plan, and carry it out unless it is a dry run."""

from __future__ import annotations

from typing import TextIO

from keycloak.exceptions import KeycloakError

from proxy.policies.gateway import Gateway
from proxy.policies.live import read
from proxy.policies.model import AccessModel
from proxy.policies.plan import Context, make_plan


def apply(
    model: AccessModel,
    gw: Gateway,
    out: TextIO,
    *,
    dry_run: bool,
    adopt: bool,
    prune: bool,
    detailed_exitcode: bool = False,
) -> int:
    """Make the realm match the model; 0 on success (or nothing to do), 1 on conflict or failure;
    with `detailed_exitcode`, 2 instead of 0 when there were changes (planned or made)."""
    changed = 2 if detailed_exitcode else 0
    live = read(gw, model)
    plan = make_plan(model, live, adopt=adopt, prune=prune)
    if plan.conflicts:
        for conflict in plan.conflicts:
            print(f"conflict: {conflict}", file=out)
        print("nothing changed; rerun with --adopt to take these objects over", file=out)
        return 1
    if not plan.steps:
        print(f"realm {model.realm}: no changes", file=out)
        return 0
    for step in plan.steps:
        print(step.change, file=out)
    if dry_run:
        print(f"dry run: {len(plan.steps)} change(s) not applied", file=out)
        return changed
    ctx = Context(gw=gw, cid=live.rs_uuid)
    for done, step in enumerate(plan.steps):
        try:
            step.run(ctx)
        except KeycloakError as exc:
            print(f"failed at `{step.change}`: {exc}", file=out)
            print(f"{done} of {len(plan.steps)} change(s) applied; rerun to continue", file=out)
            return 1
        if step.change.kind == "client" and step.change.op == "create" and ctx.cid is None:
            ctx.cid = gw.client_uuid(model.resource_server.client_id)
    print(f"realm {model.realm}: {len(plan.steps)} change(s) applied", file=out)
    return changed
