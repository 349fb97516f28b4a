"""In-memory realm state shaped like Keycloak's model: clients, users, groups, authz objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from keycloak_emulator.keys import SigningKey, generate_key

SECRET_METHOD_ATTRIBUTE = "token.endpoint.auth.method"


def new_id() -> str:
    """A fresh internal id, a UUID string as Keycloak uses."""
    return str(uuid.uuid4())


@dataclass
class Scope:
    """An authorization scope of a resource server."""

    id: str
    name: str
    display_name: str | None = None


@dataclass
class Resource:
    """A protected resource; `owner` is the resource server's id or a user id."""

    id: str
    name: str
    owner: str
    scope_ids: list[str] = field(default_factory=list)
    display_name: str | None = None
    type: str | None = None
    uris: list[str] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)
    owner_managed_access: bool = False


@dataclass
class GroupRef:
    """One group of a group policy."""

    id: str
    extend_children: bool = False


@dataclass
class Policy:
    """A policy or permission (`type` `scope`/`resource`), with associations by internal id."""

    id: str
    name: str
    type: str
    description: str | None = None
    logic: str = "POSITIVE"
    decision_strategy: str = "UNANIMOUS"
    config: dict[str, str] = field(default_factory=dict)
    groups: list[GroupRef] = field(default_factory=list)
    groups_claim: str | None = None
    users: list[str] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    resource_ids: list[str] = field(default_factory=list)
    scope_ids: list[str] = field(default_factory=list)
    policy_ids: list[str] = field(default_factory=list)
    resource_type: str | None = None

    @property
    def is_permission(self) -> bool:
        """Whether this is a permission rather than a policy."""
        return self.type in ("scope", "resource")


@dataclass
class ResourceServer:
    """A client's authorization settings and store."""

    id: str
    decision_strategy: str = "UNANIMOUS"
    enforcement_mode: str = "ENFORCING"
    allow_remote: bool = False
    scopes: dict[str, Scope] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)

    def scope_named(self, name: str) -> Scope | None:
        """The scope with this name."""
        return next((s for s in self.scopes.values() if s.name == name), None)

    def scope_by_id_or_name(self, ref: str) -> Scope | None:
        """Resolve a scope reference the way the admin API does: id first, then name."""
        return self.scopes.get(ref) or self.scope_named(ref)

    def resource_named(self, name: str, owner: str | None = None) -> Resource | None:
        """The resource with this name and owner (the resource server when `owner` is None)."""
        owner = owner or self.id
        return next((r for r in self.resources.values() if r.name == name and r.owner == owner), None)

    def resource_by_id_or_name(self, ref: str) -> Resource | None:
        """Resolve a resource reference: id first, then server-owned name."""
        return self.resources.get(ref) or self.resource_named(ref)

    def policy_named(self, name: str) -> Policy | None:
        """The policy or permission with this name."""
        return next((p for p in self.policies.values() if p.name == name), None)

    def policy_by_id_or_name(self, ref: str) -> Policy | None:
        """Resolve a policy reference: id first, then name."""
        return self.policies.get(ref) or self.policy_named(ref)


@dataclass
class Client:
    """A realm client."""

    id: str
    client_id: str
    secret: str | None = None
    enabled: bool = True
    public: bool = False
    bearer_only: bool = False
    service_accounts: bool = False
    standard_flow: bool = True
    direct_access: bool = False
    name: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    protocol_mappers: list[dict[str, Any]] = field(default_factory=list)
    authz: ResourceServer | None = None

    @property
    def secret_method(self) -> str | None:
        """The registered `token_endpoint_auth_method` (`client_secret_basic`/`_post`), if any.

        Kept in the client attribute `token.endpoint.auth.method` (the emulator's spelling of the
        registration metadata); None means "either", as for clients migrated from before 26.6.
        """
        method = self.attributes.get(SECRET_METHOD_ATTRIBUTE)
        return method if method in ("client_secret_basic", "client_secret_post") else None


@dataclass
class Group:
    """A realm group; `parent_id` is None for top-level groups."""

    id: str
    name: str
    parent_id: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class User:
    """A realm user, possibly the service account of a client."""

    id: str
    username: str
    enabled: bool = True
    email: str | None = None
    email_verified: bool = False
    first_name: str | None = None
    last_name: str | None = None
    password: str | None = None
    group_ids: list[str] = field(default_factory=list)
    service_account_client: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    created: int = 0


@dataclass
class Realm:
    """One realm: its keys, clients, users, groups and revoked sessions."""

    name: str
    keys: list[SigningKey] = field(default_factory=list)
    enabled: bool = True
    token_lifespan: int = 300
    clients: dict[str, Client] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    revoked_sessions: set[str] = field(default_factory=set)
    revoked_tokens: set[str] = field(default_factory=set)
    # The `rsa-enc-generated` provider's RSA-OAEP key, published with `use: enc` (docs/keycloak.md).
    enc_keys: list[SigningKey] = field(default_factory=list)

    @property
    def active_key(self) -> SigningKey:
        """The key new tokens are signed with (the newest one), generated on first use."""
        if not self.keys:
            # RSA key generation is the slowest step of building a realm; defer it.
            self.keys.append(generate_key())
        return self.keys[-1]

    def published_keys(self) -> list[SigningKey]:
        """Every signing key the JWKS publishes (at least the active one)."""
        _ = self.active_key
        return list(self.keys)

    def encryption_key(self) -> SigningKey:
        """The realm's RSA-OAEP encryption key, generated on first use."""
        if not self.enc_keys:
            self.enc_keys.append(generate_key(use="enc"))
        return self.enc_keys[0]

    def client_by_client_id(self, client_id: str) -> Client | None:
        """The client with this clientId."""
        return next((c for c in self.clients.values() if c.client_id == client_id), None)

    def client_by_ref(self, ref: str) -> Client | None:
        """Resolve a client by clientId, then by internal id (as policy imports do)."""
        return self.client_by_client_id(ref) or self.clients.get(ref)

    def user_by_username(self, username: str) -> User | None:
        """The user with this username (Keycloak usernames are lowercase)."""
        lowered = username.lower()
        return next((u for u in self.users.values() if u.username == lowered), None)

    def service_account(self, client: Client) -> User | None:
        """The service-account user of a client."""
        return next((u for u in self.users.values() if u.service_account_client == client.id), None)

    def group_path(self, group_id: str) -> str:
        """Full path of a group, `/parent/child`."""
        parts = []
        current: Group | None = self.groups.get(group_id)
        while current is not None:
            parts.append(current.name)
            current = self.groups.get(current.parent_id) if current.parent_id else None
        return "/" + "/".join(reversed(parts))

    def group_by_path(self, path: str) -> Group | None:
        """The group at this path, if any."""
        wanted = path if path.startswith("/") else f"/{path}"
        return next((g for g in self.groups.values() if self.group_path(g.id) == wanted), None)

    def resource_servers(self) -> list[tuple[Client, ResourceServer]]:
        """Clients with authorization enabled."""
        return [(c, c.authz) for c in self.clients.values() if c.authz is not None]
