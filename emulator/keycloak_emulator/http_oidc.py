"""Keycloak's realm endpoints: discovery, JWKS, token, introspection, userinfo, Protection API."""

from __future__ import annotations

import asyncio

from aiohttp import web

from keycloak_emulator import discovery, endpoints, grants
from keycloak_emulator.errors import KeycloakError
from keycloak_emulator.http_common import emulator, enter, form_of, json_answer, query_of

OIDC = "/realms/{realm}/protocol/openid-connect"


async def charge(seconds: float) -> None:
    """The cost model's wait: one named function, so a test can count the charges and nothing else."""
    await asyncio.sleep(seconds)


async def openid_configuration(request: web.Request) -> web.Response:
    """OIDC discovery document."""
    realm = await enter(request, "discovery")
    return json_answer(discovery.openid_configuration(emulator(request).issuer(realm.name, request.host)))


async def uma2_configuration(request: web.Request) -> web.Response:
    """UMA 2.0 discovery document."""
    realm = await enter(request, "uma2-discovery")
    return json_answer(discovery.uma2_configuration(emulator(request).issuer(realm.name, request.host)))


async def realm_summary(request: web.Request) -> web.Response:
    """Realm summary with `public_key`."""
    realm = await enter(request, "realm")
    return json_answer(discovery.realm_summary(realm, emulator(request).issuer(realm.name, request.host)))


async def certs(request: web.Request) -> web.Response:
    """JWKS: every published signing key, newest last, then the `enc` key real realms publish."""
    realm = await enter(request, "certs")
    with emulator(request).lock:
        keys = [k.jwk() for k in realm.published_keys()]
        keys.append(realm.encryption_key().jwk())
    return json_answer({"keys": keys})


async def token(request: web.Request) -> web.Response:
    """The token endpoint; counted per grant (`token.password`, `token.uma`, …).

    With the cost model on, the answer (or error) waits `evaluation_cost` per evaluated resource;
    the count of evaluated resources is kept under the `evaluated` key.
    """
    form = await form_of(request)
    realm = await enter(request, grants.grant_key(form))
    emu = emulator(request)
    with emu.lock:
        call = emu.call(
            realm.name,
            form.pairs,
            request.headers.get("Authorization"),
            request.remote or "127.0.0.1",
            request.host,
        )
    try:
        with emu.lock:
            return json_answer(grants.token(call))
    finally:
        evaluated = call.evaluated[0]
        if evaluated:
            emu.count(realm.name, "evaluated", evaluated)
            if emu.evaluation_cost:
                await charge(emu.evaluation_cost * evaluated)


async def introspect(request: web.Request) -> web.Response:
    """Token introspection."""
    form = await form_of(request)
    await enter(request, "introspect")
    emu = emulator(request)
    with emu.lock:
        call = emu.call(
            request.match_info["realm"],
            form.pairs,
            request.headers.get("Authorization"),
            request.remote or "127.0.0.1",
            request.host,
        )
        return json_answer(endpoints.introspect(call))


async def userinfo(request: web.Request) -> web.Response:
    """UserInfo (GET or POST)."""
    realm = await enter(request, "userinfo")
    emu = emulator(request)
    with emu.lock:
        body = endpoints.userinfo(
            realm, emu.issuer(realm.name, request.host), request.headers.get("Authorization"), emu.now()
        )
    return json_answer(body)


async def resource_set(request: web.Request) -> web.Response:
    """Protection API search: resource ids, or representations with `deep=true`."""
    realm = await enter(request, "resource_set")
    emu = emulator(request)
    query = query_of(request)
    with emu.lock:
        rs = endpoints.protection_server(
            realm, emu.issuer(realm.name, request.host), request.headers.get("Authorization"), emu.now()
        )
        found = endpoints.find_resources(realm, rs, query)
        if (query.get("deep") or "").lower() == "true":
            return json_answer([endpoints.resource_json(realm, rs, r) for r in found])
        return json_answer([r.id for r in found])


async def resource_set_one(request: web.Request) -> web.Response:
    """Protection API read of one resource by id."""
    realm = await enter(request, "resource_set")
    emu = emulator(request)
    with emu.lock:
        rs = endpoints.protection_server(
            realm, emu.issuer(realm.name, request.host), request.headers.get("Authorization"), emu.now()
        )
        resource = rs.resources.get(request.match_info["id"])
        if resource is None:
            raise KeycloakError(404, "not_found", "Resource not found")
        return json_answer(endpoints.resource_json(realm, rs, resource))


def add_routes(app: web.Application) -> None:
    """Register the realm endpoints (Keycloak ≥ 17 paths, no `/auth`)."""
    app.router.add_get("/realms/{realm}/.well-known/openid-configuration", openid_configuration)
    app.router.add_get("/realms/{realm}/.well-known/uma2-configuration", uma2_configuration)
    app.router.add_get("/realms/{realm}", realm_summary)
    app.router.add_get(f"{OIDC}/certs", certs)
    app.router.add_post(f"{OIDC}/token", token)
    app.router.add_post(f"{OIDC}/token/introspect", introspect)
    app.router.add_route("GET", f"{OIDC}/userinfo", userinfo)
    app.router.add_route("POST", f"{OIDC}/userinfo", userinfo)
    app.router.add_get("/realms/{realm}/authz/protection/resource_set", resource_set)
    app.router.add_get("/realms/{realm}/authz/protection/resource_set/{id}", resource_set_one)
