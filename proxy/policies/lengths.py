"""Every string `apply` stores in Keycloak, checked against its 255-character columns.

Keycloak keeps names, descriptions, usernames, client ids and URIs in VARCHAR(255) columns; a
longer value makes the admin API answer 500 and stops `apply` half-way (a realm import fails
too), so `validate` refuses the file instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from proxy.policies import names
from proxy.policies.desired import desired_state
from proxy.policies.model import AccessModel
from proxy.policies.problems import Problem

Locate = Callable[..., int]


def stored_strings(model: AccessModel) -> Iterator[tuple[str, str, tuple[str | int, ...]]]:
    """(what, value, where in the file) for every stored string but permission names.

    Permission names are checked where they are built, with the grant's own line.
    """
    yield "realm", model.realm, ("realm",)
    yield "client id", model.resource_server.client_id, ("resource_server", "client_id")
    for i, client in enumerate(model.clients):
        yield "client id", client.client_id, ("clients", i, "client_id")
        yield "client secret", client.secret or "", ("clients", i, "secret")
        for j, uri in enumerate(client.redirect_uris):
            yield "redirect URI", uri, ("clients", i, "redirect_uris", j)
    for i, user in enumerate(model.users):
        for field in ("username", "email", "first_name", "last_name"):
            yield field.replace("_", " "), getattr(user, field) or "", ("users", i, field)
    state = desired_state(model)
    for resource in state.resources:
        yield "resource", resource, ("clusters",)
    for group in state.groups:
        yield "group", group, ("groups",) if group in model.groups else ("clusters",)
    for policy in state.policies:
        yield "policy", policy.name, ("grants",)
        yield "policy description", policy.description, ("grants",)
        for key, value in policy.config:
            yield f"policy {key}", value, ("grants",)
    for permission in state.permissions:
        yield "permission description", permission.description, ("grants",)


def length_problems(model: AccessModel, at: Locate, file: str) -> Iterable[Problem]:
    """One error per stored string longer than Keycloak's columns."""
    seen: set[tuple[str, str]] = set()
    for what, value, where in stored_strings(model):
        if len(value) <= names.MAX_NAME_LENGTH or (what, value) in seen:
            continue
        seen.add((what, value))
        msg = f"{what} {value[:40]}… is {len(value)} characters, longer than Keycloak's 255"
        yield Problem(file, at(*where), "error", msg)
