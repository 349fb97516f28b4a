"""The admin REST calls `apply` makes, through python-keycloak's `KeycloakAdmin`."""

from __future__ import annotations

import json
from typing import Any

from keycloak import KeycloakAdmin
from keycloak.exceptions import (
    KeycloakDeleteError,
    KeycloakGetError,
    KeycloakPostError,
    KeycloakPutError,
    raise_error_from_response,
)

AUTHZ = "admin/realms/{realm}/clients/{cid}/authz/resource-server"


def connect(
    server_url: str, realm: str, username: str, password: str, *, verify: bool | str = True
) -> KeycloakAdmin:
    """An admin client: token from the master realm's `admin-cli`, calls against `realm`."""
    return KeycloakAdmin(
        server_url=server_url.rstrip("/") + "/",
        username=username,
        password=password,
        realm_name=realm,
        user_realm_name="master",
        client_id="admin-cli",
        verify=verify,
    )


class Gateway:
    """Typed wrapper: one method per admin call, dicts in and out."""

    def __init__(self, admin: KeycloakAdmin) -> None:
        self.admin = admin
        self.realm = str(admin.connection.realm_name)

    # --- clients, users, groups ------------------------------------------------------------

    def client_uuid(self, client_id: str) -> str | None:
        """Internal id of a client, or None."""
        found: str | None = self.admin.get_client_id(client_id)
        return found

    def client(self, uuid: str) -> dict[str, Any]:
        """ClientRepresentation."""
        rep: dict[str, Any] = self.admin.get_client(uuid)
        return rep

    def create_client(self, rep: dict[str, Any]) -> str:
        """Create a client; its internal id."""
        return str(self.admin.create_client(rep))

    def update_client(self, uuid: str, rep: dict[str, Any]) -> None:
        """Update a client."""
        self.admin.update_client(uuid, rep)

    def user_uuid(self, username: str) -> str | None:
        """Internal id of a user, or None."""
        found: str | None = self.admin.get_user_id(username)
        return found

    def create_user(self, rep: dict[str, Any]) -> str:
        """Create a user; its id."""
        return str(self.admin.create_user(rep))

    def user_group_paths(self, uuid: str) -> set[str]:
        """Paths of a user's groups."""
        return {str(g["path"]) for g in self.admin.get_user_groups(uuid)}

    def join_group(self, user: str, group: str) -> None:
        """Add a user to a group."""
        self.admin.group_user_add(user, group)

    def top_groups(self) -> list[dict[str, Any]]:
        """Top-level groups with their attributes."""
        groups: list[dict[str, Any]] = self.admin.get_groups({"briefRepresentation": False})
        return groups

    def create_group(self, rep: dict[str, Any]) -> str:
        """Create a top-level group; its id."""
        return str(self.admin.create_group(rep))

    def update_group(self, uuid: str, rep: dict[str, Any]) -> None:
        """Update a group's name/attributes."""
        self.admin.update_group(uuid, rep)

    def delete_group(self, uuid: str) -> None:
        """Delete a group."""
        self.admin.delete_group(uuid)

    # --- authorization ----------------------------------------------------------------------

    def settings(self, cid: str) -> dict[str, Any]:
        """The authorization export (references by name)."""
        rep: dict[str, Any] = self.admin.get_client_authz_settings(cid)
        return rep

    def update_server(self, cid: str, rep: dict[str, Any]) -> None:
        """PUT the resource-server settings (decision strategy, enforcement mode)."""
        resp = self.admin.connection.raw_put(self._authz(cid), data=json.dumps(rep))
        raise_error_from_response(resp, KeycloakPutError, expected_codes=[204])

    def scopes(self, cid: str) -> list[dict[str, Any]]:
        """Authorization scopes."""
        scopes: list[dict[str, Any]] = self.admin.get_client_authz_scopes(cid)
        return scopes

    def create_scope(self, cid: str, name: str) -> None:
        """Create a scope."""
        self.admin.create_client_authz_scopes(cid, {"name": name})

    def resources(self, cid: str) -> list[dict[str, Any]]:
        """Resources with `_id`, attributes and scopes."""
        resources: list[dict[str, Any]] = self.admin.get_client_authz_resources(cid)
        return resources

    def create_resource(self, cid: str, rep: dict[str, Any]) -> None:
        """Create a resource."""
        self.admin.create_client_authz_resource(cid, rep)

    def update_resource(self, cid: str, rid: str, rep: dict[str, Any]) -> None:
        """Replace a resource."""
        self.admin.update_client_authz_resource(cid, rid, rep)

    def delete_resource(self, cid: str, rid: str) -> None:
        """Delete a resource."""
        self.admin.delete_client_authz_resource(cid, rid)

    def policies(self, cid: str) -> list[dict[str, Any]]:
        """Every policy and permission (id, name, type, description)."""
        policies: list[dict[str, Any]] = self.admin.get_client_authz_policies(cid)
        permissions: list[dict[str, Any]] = self.admin.get_client_authz_permissions(cid)
        return policies + permissions

    def create_policy(self, cid: str, kind: str, rep: dict[str, Any]) -> None:
        """POST `policy/{type}` or `permission/{type}` with a typed representation."""
        resp = self.admin.connection.raw_post(f"{self._authz(cid)}/{kind}", data=json.dumps(rep))
        raise_error_from_response(resp, KeycloakPostError, expected_codes=[201])

    def update_policy(self, cid: str, kind: str, pid: str, rep: dict[str, Any]) -> None:
        """PUT `policy/{type}/{id}` (Keycloak answers 201)."""
        resp = self.admin.connection.raw_put(f"{self._authz(cid)}/{kind}/{pid}", data=json.dumps(rep))
        raise_error_from_response(resp, KeycloakPutError, expected_codes=[201, 204])

    def delete_policy(self, cid: str, pid: str) -> None:
        """Delete a policy or permission."""
        resp = self.admin.connection.raw_delete(f"{self._authz(cid)}/policy/{pid}")
        raise_error_from_response(resp, KeycloakDeleteError, expected_codes=[204])

    def get(self, path: str) -> Any:
        """GET any admin path (diagnostics and tests)."""
        resp = self.admin.connection.raw_get(path)
        return raise_error_from_response(resp, KeycloakGetError)

    def _authz(self, cid: str) -> str:
        return AUTHZ.format(realm=self.realm, cid=cid)
