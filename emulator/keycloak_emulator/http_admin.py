"""Keycloak's admin REST API, the part `policies apply` (and realm tooling) uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from keycloak_emulator import admin_repr, admin_write, tokens
from keycloak_emulator.emulator import MASTER, Emulator
from keycloak_emulator.endpoints import find_resources, resource_json
from keycloak_emulator.errors import KeycloakError, admin_error, check_columns
from keycloak_emulator.form import Form
from keycloak_emulator.http_common import emulator, json_answer, no_realm, query_of
from keycloak_emulator.realm_import import (
    RealmImportError,
    add_group,
    add_user,
    import_authorization,
    upsert_resource,
)
from keycloak_emulator.store import Client, Realm, ResourceServer, Scope, new_id

ADMIN = "/admin/realms/{realm}"
AUTHZ = ADMIN + "/clients/{id}/authz/resource-server"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


def admin_realm(request: web.Request) -> tuple[Emulator, Realm]:
    """Check the master-realm admin token, count the call, and return the target realm."""
    emu = emulator(request)
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    master = emu.realms[MASTER]
    if not token or tokens.verify(master, emu.issuer(MASTER), token, now=emu.now()) is None:
        raise KeycloakError(401, "HTTP 401 Unauthorized", body={"error": "HTTP 401 Unauthorized"})
    name = request.match_info["realm"]
    if name not in emu.realms:
        raise no_realm()
    emu.count(name, "admin")
    return emu, emu.realms[name]


def page(items: Sequence[T], query: Form, default_max: int = 100) -> list[T]:
    """Keycloak's `first`/`max` paging; `max=-1` means everything."""
    first = int(query.get("first") or 0)
    maximum = int(query.get("max") or default_max)
    return list(items[first:] if maximum < 0 else items[first : first + maximum])


def no_content(status: int = 204) -> web.Response:
    """An empty answer (204, or 201 for policy updates as Keycloak does)."""
    return web.Response(status=status)


def created(request: web.Request, object_id: str, body: Any = None) -> web.Response:
    """201 with `Location` (and a body where Keycloak sends one)."""
    location = f"{request.url.with_query(None)}/{object_id}"
    if body is None:
        return web.Response(status=201, headers={"Location": location})
    return json_answer(body, 201, {"Location": location})


def client_of(realm: Realm, request: web.Request) -> Client:
    """The client named by `{id}` (internal id)."""
    client = realm.clients.get(request.match_info["id"])
    if client is None:
        raise KeycloakError(404, "Could not find client", body={"error": "Could not find client"})
    return client


def server_of(realm: Realm, request: web.Request) -> tuple[Client, ResourceServer]:
    """The client and its resource server; 404 when authorization is not enabled."""
    client = client_of(realm, request)
    if client.authz is None:
        raise KeycloakError(404, "HTTP 404 Not Found", body={"error": "HTTP 404 Not Found"})
    return client, client.authz


async def body_of(request: web.Request) -> dict[str, Any]:
    """The JSON object body."""
    body = await request.json()
    if not isinstance(body, dict):
        raise admin_error(400, "expected a JSON object")
    return body


def locked(handler: Handler) -> Handler:
    """Run a handler under the emulator lock and map import errors to 400."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        body = await request.read() if request.can_read_body else b""
        del body  # read before locking: aiohttp caches it for `json()`
        with emulator(request).lock:
            try:
                return await handler(request)
            except RealmImportError as exc:
                raise admin_error(400, str(exc)) from exc

    return wrapped


# --- clients ---------------------------------------------------------------------------------


async def list_clients(request: web.Request) -> web.Response:
    """GET clients (`clientId` exact, `search` substring)."""
    _, realm = admin_realm(request)
    query = query_of(request)
    found = list(realm.clients.values())
    if query.get("clientId"):
        wanted = query.get("clientId") or ""
        if (query.get("search") or "").lower() == "true":
            found = [c for c in found if wanted.lower() in c.client_id.lower()]
        else:
            found = [c for c in found if c.client_id == wanted]
    return json_answer([admin_repr.client_rep(c) for c in page(found, query)])


async def post_client(request: web.Request) -> web.Response:
    """POST clients → 201 Location."""
    _, realm = admin_realm(request)
    client = admin_write.create_client(realm, await body_of(request))
    return created(request, client.id)


async def get_client(request: web.Request) -> web.Response:
    """GET one client."""
    _, realm = admin_realm(request)
    return json_answer(admin_repr.client_rep(client_of(realm, request)))


async def put_client(request: web.Request) -> web.Response:
    """PUT one client → 204."""
    _, realm = admin_realm(request)
    admin_write.apply_client_update(realm, client_of(realm, request), await body_of(request))
    return no_content()


async def service_account_user(request: web.Request) -> web.Response:
    """GET the client's service-account user."""
    _, realm = admin_realm(request)
    user = realm.service_account(client_of(realm, request))
    if user is None:
        raise admin_error(400, "Service account not enabled for the client")
    return json_answer(admin_repr.user_rep(user))


# --- users and groups --------------------------------------------------------------------------


async def list_users(request: web.Request) -> web.Response:
    """GET users (`username` with `exact`, `search`, `email`)."""
    _, realm = admin_realm(request)
    query = query_of(request)
    found = [u for u in realm.users.values() if u.service_account_client is None]
    exact = (query.get("exact") or "").lower() == "true"
    for key, attr in (("username", "username"), ("email", "email")):
        wanted = (query.get(key) or "").lower()
        if wanted:
            found = [
                u
                for u in found
                if (
                    str(getattr(u, attr) or "").lower() == wanted
                    if exact
                    else wanted in str(getattr(u, attr) or "").lower()
                )
            ]
    search = (query.get("search") or "").lower()
    if search:
        found = [u for u in found if search in u.username or search in (u.email or "").lower()]
    return json_answer([admin_repr.user_rep(u) for u in page(found, query)])


async def post_user(request: web.Request) -> web.Response:
    """POST users → 201 Location; 409 on a duplicate username."""
    _, realm = admin_realm(request)
    rep = await body_of(request)
    if realm.user_by_username(str(rep.get("username", ""))) is not None:
        raise admin_error(409, "User exists with same username")
    user = add_user(realm, {**rep, "id": None})
    return created(request, user.id)


async def get_user(request: web.Request) -> web.Response:
    """GET one user."""
    _, realm = admin_realm(request)
    user = realm.users.get(request.match_info["id"])
    if user is None:
        raise KeycloakError(404, "User not found", body={"error": "User not found"})
    return json_answer(admin_repr.user_rep(user))


async def user_groups(request: web.Request) -> web.Response:
    """GET a user's groups."""
    _, realm = admin_realm(request)
    user = realm.users.get(request.match_info["id"])
    if user is None:
        raise KeycloakError(404, "User not found", body={"error": "User not found"})
    groups = [admin_repr.group_rep(realm, realm.groups[g]) for g in user.group_ids if g in realm.groups]
    return json_answer(page(groups, query_of(request)))


async def user_group_membership(request: web.Request) -> web.Response:
    """PUT (join) or DELETE (leave) `users/{id}/groups/{group}` → 204."""
    _, realm = admin_realm(request)
    user = realm.users.get(request.match_info["id"])
    group = realm.groups.get(request.match_info["group"])
    if user is None or group is None:
        raise KeycloakError(404, "User or group not found", body={"error": "HTTP 404 Not Found"})
    if request.method == "PUT" and group.id not in user.group_ids:
        user.group_ids.append(group.id)
    if request.method == "DELETE" and group.id in user.group_ids:
        user.group_ids.remove(group.id)
    return no_content()


async def list_groups(request: web.Request) -> web.Response:
    """GET top-level groups (`search` substring)."""
    _, realm = admin_realm(request)
    query = query_of(request)
    found = [g for g in realm.groups.values() if g.parent_id is None]
    search = (query.get("search") or "").lower()
    if search:
        found = [g for g in found if search in g.name.lower()]
    reps = [admin_repr.group_rep(realm, g) for g in page(found, query)]
    if (query.get("briefRepresentation") or "true").lower() != "false":
        # Keycloak's brief group representation carries no attributes.
        reps = [{k: v for k, v in r.items() if k != "attributes"} for r in reps]
    return json_answer(reps)


async def post_group(request: web.Request) -> web.Response:
    """POST groups → 201 Location; 409 when a top-level group has that name."""
    _, realm = admin_realm(request)
    rep = await body_of(request)
    name = str(rep.get("name", ""))
    if any(g.name == name and g.parent_id is None for g in realm.groups.values()):
        raise admin_error(409, f"Top level group named '{name}' already exists.")
    group = add_group(realm, {"name": name, "attributes": rep.get("attributes") or {}}, None)
    return created(request, group.id)


async def one_group(request: web.Request) -> web.Response:
    """GET, PUT (name/attributes) or DELETE one group."""
    _, realm = admin_realm(request)
    group = realm.groups.get(request.match_info["id"])
    if group is None:
        raise KeycloakError(404, "Could not find group by id", body={"error": "Could not find group by id"})
    if request.method == "PUT":
        rep = await body_of(request)
        check_columns(rep.get("name"))
        group.name = str(rep.get("name", group.name))
        if "attributes" in rep:
            group.attributes = {k: list(v) for k, v in (rep["attributes"] or {}).items()}
        return no_content()
    if request.method == "DELETE":
        del realm.groups[group.id]
        for user in realm.users.values():
            if group.id in user.group_ids:
                user.group_ids.remove(group.id)
        return no_content()
    return json_answer(admin_repr.group_rep(realm, group))


async def group_by_path(request: web.Request) -> web.Response:
    """GET group-by-path/{path}."""
    _, realm = admin_realm(request)
    group = realm.group_by_path(request.match_info["path"])
    if group is None:
        raise KeycloakError(404, "Group path does not exist", body={"error": "Group path does not exist"})
    return json_answer(admin_repr.group_rep(realm, group))


# --- authorization -----------------------------------------------------------------------------


async def resource_server(request: web.Request) -> web.Response:
    """GET or PUT the resource-server settings."""
    _, realm = admin_realm(request)
    client, rs = server_of(realm, request)
    if request.method == "PUT":
        rep = await body_of(request)
        rs.allow_remote = bool(rep.get("allowRemoteResourceManagement", rs.allow_remote))
        rs.enforcement_mode = rep.get("policyEnforcementMode") or rs.enforcement_mode
        rs.decision_strategy = rep.get("decisionStrategy") or rs.decision_strategy
        return no_content()
    return json_answer(admin_repr.server_rep(client, rs))


async def settings(request: web.Request) -> web.Response:
    """GET settings: the authorization export, every reference by name."""
    _, realm = admin_realm(request)
    client, rs = server_of(realm, request)
    return json_answer(admin_repr.export_settings(realm, client, rs))


async def import_settings(request: web.Request) -> web.Response:
    """POST import: the export format merged into the resource server → 204."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    import_authorization(realm, rs, await body_of(request))
    return no_content()


async def scopes(request: web.Request) -> web.Response:
    """GET (list) or POST (create) scopes."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    if request.method == "POST":
        rep = await body_of(request)
        name = str(rep.get("name", ""))
        check_columns(name, rep.get("displayName"))
        if rs.scope_named(name) is not None:
            raise admin_error(409, f"Scope with name [{name}] already exists")
        scope = Scope(new_id(), name, rep.get("displayName"))
        rs.scopes[scope.id] = scope
        return created(request, scope.id, {"id": scope.id, "name": scope.name})
    found = list(rs.scopes.values())
    wanted = query_of(request).get("name")
    if wanted:
        found = [s for s in found if wanted.lower() in s.name.lower()]
    return json_answer([{"id": s.id, "name": s.name} for s in page(found, query_of(request))])


async def one_scope(request: web.Request) -> web.Response:
    """GET or DELETE one scope."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    scope = rs.scopes.get(request.match_info["sid"])
    if scope is None:
        raise KeycloakError(404, "not found", body={"error": "HTTP 404 Not Found"})
    if request.method == "DELETE":
        del rs.scopes[scope.id]
        return no_content()
    return json_answer({"id": scope.id, "name": scope.name})


async def resources(request: web.Request) -> web.Response:
    """GET (search, deep by default) or POST (create) resources."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    if request.method == "POST":
        rep = await body_of(request)
        if rs.resource_named(str(rep.get("name", ""))) is not None:
            raise admin_error(409, f"Resource with name [{rep.get('name')}] already exists.")
        resource = upsert_resource(rs, {**rep, "_id": None})
        return created(request, resource.id, resource_json(realm, rs, resource))
    query = query_of(request)
    found = find_resources(realm, rs, Form.of((*query.pairs, ("max", "-1"))))
    reps = [resource_json(realm, rs, r) for r in page(found, query)]
    if (query.get("deep") or "true").lower() == "false":
        reps = [{k: v for k, v in r.items() if k != "scopes"} for r in reps]
    return json_answer(reps)


async def one_resource(request: web.Request) -> web.Response:
    """GET, PUT (replace) or DELETE one resource."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    resource = rs.resources.get(request.match_info["rid"])
    if resource is None:
        raise KeycloakError(404, "not found", body={"error": "HTTP 404 Not Found"})
    if request.method == "DELETE":
        del rs.resources[resource.id]
        for policy in rs.policies.values():
            if resource.id in policy.resource_ids:
                policy.resource_ids.remove(resource.id)
        return no_content()
    if request.method == "PUT":
        rep = await body_of(request)
        clash = rs.resource_named(str(rep.get("name", resource.name)))
        if clash is not None and clash.id != resource.id:
            raise admin_error(409, f"Resource with name [{rep.get('name')}] already exists.")
        # Replaced in place (same id): a refused update leaves the resource as it was.
        upsert_resource(rs, {**rep, "name": rep.get("name", resource.name), "_id": resource.id})
        return no_content()
    return json_answer(resource_json(realm, rs, resource))


async def policies(request: web.Request) -> web.Response:
    """GET policies (`permission=true|false` filters, `name` substring)."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    query = query_of(request)
    found = list(rs.policies.values())
    only = request.match_info.get("kind")
    flag = (query.get("permission") or "").lower()
    if only == "permission" or flag == "true":
        found = [p for p in found if p.is_permission]
    elif flag == "false":
        found = [p for p in found if not p.is_permission]
    name = query.get("name")
    if name:
        found = [p for p in found if name.lower() in p.name.lower()]
    return json_answer([admin_repr.policy_generic(p) for p in page(found, query)])


async def policy_search(request: web.Request) -> web.Response:
    """GET policy/search?name=: the exact name, or 204 when there is none."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    found = rs.policy_named(query_of(request).get("name") or "")
    if found is None:
        return no_content()
    return json_answer(admin_repr.policy_generic(found))


async def create_policy(request: web.Request) -> web.Response:
    """POST policy/{type} or permission/{type} → 201 with the representation."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    policy = admin_write.policy_from_typed(
        realm, rs, request.match_info["type"], await body_of(request), None
    )
    admin_write.store_policy(rs, policy, replacing=None)
    return created(request, policy.id, admin_repr.policy_typed(realm, policy))


async def typed_policy(request: web.Request) -> web.Response:
    """GET or PUT (→ 201, as Keycloak answers) policy/{type}/{id}; DELETE too."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    existing = rs.policies.get(request.match_info["pid"])
    if existing is None or existing.type != request.match_info["type"]:
        raise KeycloakError(404, "not found", body={"error": "HTTP 404 Not Found"})
    if request.method == "GET":
        return json_answer(admin_repr.policy_typed(realm, existing))
    if request.method == "DELETE":
        _delete_policy(rs, existing.id)
        return no_content()
    policy = admin_write.policy_from_typed(realm, rs, existing.type, await body_of(request), existing.id)
    admin_write.store_policy(rs, policy, replacing=existing.id)
    return no_content(201)


async def one_policy(request: web.Request) -> web.Response:
    """GET or DELETE policy/{id} (generic form)."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    policy = rs.policies.get(request.match_info["pid"])
    if policy is None:
        raise KeycloakError(404, "not found", body={"error": "HTTP 404 Not Found"})
    if request.method == "DELETE":
        _delete_policy(rs, policy.id)
        return no_content()
    return json_answer(admin_repr.policy_generic(policy))


async def policy_links(request: web.Request) -> web.Response:
    """GET policy/{id}/associatedPolicies | resources | scopes."""
    _, realm = admin_realm(request)
    _, rs = server_of(realm, request)
    policy = rs.policies.get(request.match_info["pid"])
    if policy is None:
        raise KeycloakError(404, "not found", body={"error": "HTTP 404 Not Found"})
    link = request.match_info["link"]
    if link == "associatedPolicies":
        return json_answer([admin_repr.policy_generic(rs.policies[p]) for p in policy.policy_ids])
    if link == "resources":
        return json_answer([{"_id": r, "name": rs.resources[r].name} for r in policy.resource_ids])
    return json_answer([{"id": s, "name": rs.scopes[s].name} for s in policy.scope_ids])


def _delete_policy(rs: ResourceServer, policy_id: str) -> None:
    del rs.policies[policy_id]
    for other in rs.policies.values():
        if policy_id in other.policy_ids:
            other.policy_ids.remove(policy_id)


def add_routes(app: web.Application) -> None:
    """Register the admin endpoints."""
    routes: list[tuple[str, str, Handler]] = [
        ("GET", f"{ADMIN}/clients", list_clients),
        ("POST", f"{ADMIN}/clients", post_client),
        ("GET", f"{ADMIN}/clients/{{id}}", get_client),
        ("PUT", f"{ADMIN}/clients/{{id}}", put_client),
        ("GET", f"{ADMIN}/clients/{{id}}/service-account-user", service_account_user),
        ("GET", f"{ADMIN}/users", list_users),
        ("POST", f"{ADMIN}/users", post_user),
        ("GET", f"{ADMIN}/users/{{id}}", get_user),
        ("GET", f"{ADMIN}/users/{{id}}/groups", user_groups),
        ("PUT", f"{ADMIN}/users/{{id}}/groups/{{group}}", user_group_membership),
        ("DELETE", f"{ADMIN}/users/{{id}}/groups/{{group}}", user_group_membership),
        ("GET", f"{ADMIN}/groups", list_groups),
        ("POST", f"{ADMIN}/groups", post_group),
        ("GET", f"{ADMIN}/groups/{{id}}", one_group),
        ("PUT", f"{ADMIN}/groups/{{id}}", one_group),
        ("DELETE", f"{ADMIN}/groups/{{id}}", one_group),
        ("GET", f"{ADMIN}/group-by-path/{{path:.*}}", group_by_path),
        ("GET", AUTHZ, resource_server),
        ("PUT", AUTHZ, resource_server),
        ("GET", f"{AUTHZ}/settings", settings),
        ("POST", f"{AUTHZ}/import", import_settings),
        ("GET", f"{AUTHZ}/scope", scopes),
        ("POST", f"{AUTHZ}/scope", scopes),
        ("GET", f"{AUTHZ}/scope/{{sid}}", one_scope),
        ("DELETE", f"{AUTHZ}/scope/{{sid}}", one_scope),
        ("GET", f"{AUTHZ}/resource", resources),
        ("POST", f"{AUTHZ}/resource", resources),
        ("GET", f"{AUTHZ}/resource/{{rid}}", one_resource),
        ("PUT", f"{AUTHZ}/resource/{{rid}}", one_resource),
        ("DELETE", f"{AUTHZ}/resource/{{rid}}", one_resource),
        ("GET", f"{AUTHZ}/policy", policies),
        ("GET", f"{AUTHZ}/{{kind:permission}}", policies),
        ("GET", f"{AUTHZ}/policy/search", policy_search),
        ("GET", f"{AUTHZ}/permission/search", policy_search),
    ]
    for kind in ("policy", "permission"):
        routes += [
            ("POST", f"{AUTHZ}/{kind}/{{type:[a-z-]+}}", create_policy),
            ("GET", f"{AUTHZ}/{kind}/{{type:[a-z-]+}}/{{pid}}", typed_policy),
            ("PUT", f"{AUTHZ}/{kind}/{{type:[a-z-]+}}/{{pid}}", typed_policy),
            ("DELETE", f"{AUTHZ}/{kind}/{{type:[a-z-]+}}/{{pid}}", typed_policy),
        ]
    routes += [
        ("GET", f"{AUTHZ}/policy/{{pid}}/{{link:associatedPolicies|resources|scopes}}", policy_links),
        ("GET", f"{AUTHZ}/policy/{{pid}}", one_policy),
        ("DELETE", f"{AUTHZ}/policy/{{pid}}", one_policy),
        ("GET", f"{AUTHZ}/permission/{{pid}}", one_policy),
        ("DELETE", f"{AUTHZ}/permission/{{pid}}", one_policy),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, locked(handler))
