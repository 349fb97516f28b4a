"""The demo identities of demo/proxy_demo/demo.yaml, their credentials and their grants (for the oracle)."""

from __future__ import annotations

import base64

from tests.support.oracle import Grant
from tests.support.stack import CLIENT_SECRETS, TokenFor

PROD, TEST = "nerc-ocp-prod", "nerc-ocp-test"

GRANTS: dict[str, Grant] = {
    "alice": Grant.of_projects(PROD, "team-a"),
    "bob": Grant.of_clusters(TEST),
    "carol": Grant(clusters=frozenset({PROD}), projects={TEST: frozenset({"team-b"})}),
    "dave": Grant.hub(),
    "eve": Grant.nothing(),
    "researcher-team-a": Grant(projects={PROD: frozenset({"team-a"}), TEST: frozenset({"team-a"})}),
}
USERS = ("alice", "bob", "carol", "dave", "eve")


def auth_header(name: str, token_for: TokenFor) -> dict[str, str]:
    """Bearer token for users; Basic client credentials for the researcher client."""
    if name in CLIENT_SECRETS:
        raw = f"{name}:{CLIENT_SECRETS[name]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    return {"Authorization": f"Bearer {token_for(name)}"}
