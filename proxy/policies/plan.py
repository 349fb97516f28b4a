"""The difference between a model and a live realm, as ordered, runnable changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from proxy.policies import names, representations
from proxy.policies.desired import DesiredState, Permission, Policy, desired_state
from proxy.policies.gateway import Gateway
from proxy.policies.live import LiveState, config_list, is_marked_resource
from proxy.policies.model import AccessModel
from proxy.policies.realm_json import MANAGED_ATTRIBUTES, client_rep, resource_server_rep, user_rep

Op = Literal["create", "update", "adopt", "delete"]
SYMBOL = {"create": "+", "update": "~", "adopt": "~", "delete": "-"}
SCOPE = names.SCOPE


@dataclass
class Context:
    """Values known only while running (the resource server's id once it exists)."""

    gw: Gateway
    cid: str | None


@dataclass(frozen=True)
class Change:
    """One line of the diff."""

    op: Op
    kind: str
    name: str
    detail: str = ""

    def __str__(self) -> str:
        """`+ resource HUB-moc`, `~ permission …: policies += […]`, `- group …`."""
        tail = f": {self.detail}" if self.detail else ""
        verb = " (adopt)" if self.op == "adopt" else ""
        return f"{SYMBOL[self.op]} {self.kind} {self.name}{verb}{tail}"


@dataclass(frozen=True)
class Step:
    """A change and how to make it."""

    change: Change
    run: Callable[[Context], None]


@dataclass
class Plan:
    """Ordered steps, plus objects the file names but may not touch without `--adopt`."""

    steps: list[Step] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def add(self, op: Op, kind: str, name: str, run: Callable[[Context], None], detail: str = "") -> None:
        """Append a step."""
        self.steps.append(Step(Change(op, kind, name, detail), run))


def make_plan(model: AccessModel, live: LiveState, *, adopt: bool, prune: bool) -> Plan:
    """Everything `apply` must do to make the realm match the model."""
    plan = Plan()
    state = desired_state(model)
    _resource_server(plan, model, live)
    _groups(plan, state, live, adopt)
    _clients(plan, model, live)
    _users(plan, model, live)
    if SCOPE not in live.scopes:
        plan.add("create", "scope", SCOPE, lambda c: c.gw.create_scope(_cid(c), SCOPE))
    _resources(plan, state, live, adopt)
    for policy in state.policies:
        _policy(plan, policy, live, adopt)
    for permission in state.permissions:
        _permission(plan, permission, live, adopt)
    if prune:
        _prune(plan, state, live)
    return plan


def _cid(ctx: Context) -> str:
    assert ctx.cid is not None, "resource server client must exist before authz changes"
    return ctx.cid


def _resource_server(plan: Plan, model: AccessModel, live: LiveState) -> None:
    rs_id = model.resource_server.client_id
    if live.rs_uuid is None:

        def create(ctx: Context) -> None:
            ctx.cid = ctx.gw.create_client(resource_server_rep(model))

        plan.add("create", "client", rs_id, create, "resource server, authorization enabled")
    elif not live.authz_enabled:

        def enable(ctx: Context) -> None:
            ctx.gw.update_client(_cid(ctx), {**live.rs_client, "authorizationServicesEnabled": True})

        plan.add("update", "client", rs_id, enable, "enable authorization services")
    strategy = live.settings.get("decisionStrategy")
    if strategy != "AFFIRMATIVE" or live.settings.get("policyEnforcementMode") != "ENFORCING":

        def settle(ctx: Context) -> None:
            ctx.gw.update_server(
                _cid(ctx),
                {
                    "decisionStrategy": "AFFIRMATIVE",
                    "policyEnforcementMode": "ENFORCING",
                    "allowRemoteResourceManagement": False,
                },
            )

        detail = f"decisionStrategy {strategy or 'UNANIMOUS'} -> AFFIRMATIVE, ENFORCING"
        plan.add("update", "resource-server", rs_id, settle, detail)


def _groups(plan: Plan, state: DesiredState, live: LiveState, adopt: bool) -> None:
    for name in state.groups:
        group = live.groups.get(name)
        if group is None:
            plan.add("create", "group", name, _create_group(name))
        elif not is_marked_resource(group):
            if not adopt:
                plan.conflicts.append(f"group {name} exists and is not managed by prom-keycloak-proxy")
                continue
            plan.add("adopt", "group", name, _mark_group(group), "mark as managed")


def _create_group(name: str) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        ctx.gw.create_group({"name": name, "attributes": MANAGED_ATTRIBUTES})

    return run


def _mark_group(group: dict[str, Any]) -> Callable[[Context], None]:
    attributes = {**(group.get("attributes") or {}), **MANAGED_ATTRIBUTES}
    return lambda ctx: ctx.gw.update_group(
        str(group["id"]), {"name": group["name"], "attributes": attributes}
    )


def _clients(plan: Plan, model: AccessModel, live: LiveState) -> None:
    for client in model.clients:
        if live.clients.get(client.client_id) is None:
            plan.add("create", "client", client.client_id, _creator("client", client_rep(client, model)))


def _users(plan: Plan, model: AccessModel, live: LiveState) -> None:
    for user in model.users:
        if live.users.get(user.username) is None:
            # Memberships are added by the join steps below, once the groups exist.
            plan.add("create", "user", user.username, _creator("user", {**user_rep(user), "groups": []}))
        for group in user.groups:
            path = f"/{group}"
            if path in live.user_paths.get(user.username, set()):
                continue

            def join(ctx: Context, username: str = user.username, path: str = path) -> None:
                uid = ctx.gw.user_uuid(username)
                gid = ctx.gw.admin.get_group_by_path(path)["id"]
                assert uid is not None
                ctx.gw.join_group(uid, str(gid))

            plan.add("update", "user", user.username, join, f"join group {path}")


def _creator(kind: str, rep: dict[str, Any]) -> Callable[[Context], None]:
    def run(ctx: Context) -> None:
        if kind == "client":
            ctx.gw.create_client(rep)
        else:
            ctx.gw.create_user(rep)

    return run


def _resources(plan: Plan, state: DesiredState, live: LiveState, adopt: bool) -> None:
    for name in state.resources:
        current = live.resources.get(name)
        if current is None:
            rep = {
                "name": name,
                "displayName": name,
                "ownerManagedAccess": False,
                "attributes": MANAGED_ATTRIBUTES,
                "scopes": [{"name": SCOPE}],
            }
            plan.add("create", "resource", name, partial(_create_resource, rep=rep))
            continue
        scopes = [s["name"] for s in current.get("scopes", [])]
        marked = is_marked_resource(current)
        if marked and SCOPE in scopes:
            continue
        if not marked and not adopt:
            plan.conflicts.append(f"resource {name} exists and is not managed by prom-keycloak-proxy")
            continue
        rep = {
            **{k: v for k, v in current.items() if k not in ("owner", "_id")},
            "attributes": {**(current.get("attributes") or {}), **MANAGED_ATTRIBUTES},
            "scopes": [{"name": s} for s in dict.fromkeys([*scopes, SCOPE])],
        }
        rid = str(current["_id"])
        plan.add(
            "update" if marked else "adopt",
            "resource",
            name,
            partial(_update_resource, rid=rid, rep=rep),
            "" if SCOPE in scopes else f"add scope {SCOPE}",
        )


def _policy(plan: Plan, policy: Policy, live: LiveState, adopt: bool) -> None:
    current = live.policies.get(policy.name)
    body = representations.policy_body(
        policy.name, policy.type, policy.description, set(policy.members), policy.config
    )
    if current is None:
        plan.add(
            "create",
            f"{policy.type}-policy",
            policy.name,
            lambda ctx: ctx.gw.create_policy(_cid(ctx), f"policy/{policy.type}", body),
        )
        return
    marked = names.is_marked_description(current.get("description"))
    if current.get("type") != policy.type:
        plan.conflicts.append(
            f"policy {policy.name} exists with type {current.get('type')}, not {policy.type}"
        )
        return
    if not marked and not adopt:
        plan.conflicts.append(f"policy {policy.name} exists and is not managed by prom-keycloak-proxy")
        return
    have = representations.live_members(current)
    # An adopted policy keeps what it already named; a managed one names exactly the file's.
    # Time and aggregate policies always say exactly what the file says (their meaning is the window).
    exact = marked or policy.type in ("time", "aggregate")
    want = representations.wanted_members(policy) if exact else have | representations.wanted_members(policy)
    strategy_ok = policy.type != "aggregate" or current.get("decisionStrategy") == "UNANIMOUS"
    if marked and have == want and strategy_ok:
        return
    members_now = set(policy.members) if exact else have | set(policy.members)
    description = representations.description(current, policy.description)
    body = representations.policy_body(policy.name, policy.type, description, members_now, policy.config)
    pid = str(current["id"])
    detail = representations.set_diff("members", have, want)
    plan.add(
        "update" if marked else "adopt",
        f"{policy.type}-policy",
        policy.name,
        partial(_update_policy, kind=f"policy/{policy.type}", pid=pid, rep={**body, "id": pid}),
        detail,
    )


def _permission(plan: Plan, perm: Permission, live: LiveState, adopt: bool) -> None:
    current = live.policies.get(perm.name)
    if current is None:
        body = representations.permission_body(perm, perm.description, list(perm.policies))
        plan.add(
            "create",
            "permission",
            perm.name,
            lambda ctx: ctx.gw.create_policy(_cid(ctx), "permission/scope", body),
        )
        return
    marked = names.is_marked_description(current.get("description"))
    if current.get("type") != "scope" or (not marked and not adopt):
        plan.conflicts.append(f"permission {perm.name} exists and is not managed by prom-keycloak-proxy")
        return
    have = [str(p) for p in config_list(current, "applyPolicies")]
    # A bounded grant must not leave the grantee's unbounded policy (or an old window) in its
    # permission: permissions are AFFIRMATIVE, so a leftover would make the end date meaningless.
    drop = representations.dropped_policies(perm, have)
    if drop and not marked:
        plan.conflicts.append(
            f"permission {perm.name} is not managed by prom-keycloak-proxy: refusing to remove "
            f"{sorted(drop)} from it (the grant's end date would not hold)"
        )
        return
    # Merge, never replace: the portal adds tenant policies to its project permissions (docs/).
    merged = list(dict.fromkeys([*(p for p in have if p not in drop), *perm.policies]))
    same = (
        merged == have
        and config_list(current, "resources") == [perm.resource]
        and config_list(current, "scopes") == [SCOPE]
        and current.get("decisionStrategy") == "AFFIRMATIVE"
    )
    if marked and same:
        return
    body = representations.permission_body(
        perm, representations.description(current, perm.description), merged
    )
    pid = str(current["id"])
    plan.add(
        "update" if marked else "adopt",
        "permission",
        perm.name,
        partial(_update_policy, kind="permission/scope", pid=pid, rep={**body, "id": pid}),
        representations.set_diff("policies", set(have), set(merged)),
    )


def _prune(plan: Plan, state: DesiredState, live: LiveState) -> None:
    wanted = {p.name for p in state.permissions} | {p.name for p in state.policies}
    ordered = sorted(live.policies.values(), key=lambda p: p.get("type") not in ("scope", "resource"))
    for current in ordered:
        name = str(current["name"])
        if name in wanted or not names.is_marked_description(current.get("description")):
            continue
        pid = str(current["id"])
        kind = (
            "permission" if current.get("type") in ("scope", "resource") else f"{current.get('type')}-policy"
        )
        plan.add("delete", kind, name, partial(_delete_policy, pid=pid))
    for name, resource in live.resources.items():
        if name not in state.resources and is_marked_resource(resource):
            rid = str(resource["_id"])
            plan.add("delete", "resource", name, partial(_delete_resource, rid=rid))
    for name, group in live.groups.items():
        if name not in state.groups and is_marked_resource(group):
            gid = str(group["id"])
            plan.add("delete", "group", name, partial(_delete_group, gid=gid))


def _create_resource(ctx: Context, rep: dict[str, Any]) -> None:
    ctx.gw.create_resource(_cid(ctx), rep)


def _update_resource(ctx: Context, rid: str, rep: dict[str, Any]) -> None:
    ctx.gw.update_resource(_cid(ctx), rid, rep)


def _delete_resource(ctx: Context, rid: str) -> None:
    ctx.gw.delete_resource(_cid(ctx), rid)


def _update_policy(ctx: Context, kind: str, pid: str, rep: dict[str, Any]) -> None:
    ctx.gw.update_policy(_cid(ctx), kind, pid, rep)


def _delete_policy(ctx: Context, pid: str) -> None:
    ctx.gw.delete_policy(_cid(ctx), pid)


def _delete_group(ctx: Context, gid: str) -> None:
    ctx.gw.delete_group(gid)
