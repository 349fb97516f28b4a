"""The commands the demo prints: mint a token per demo user and client, then query with it."""

from __future__ import annotations

import asyncio
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

EXAMPLE_QUERY = 'sum by (namespace, exported_namespace) (DCGM_FI_DEV_GPU_UTIL{cluster="nerc-ocp-prod"})'
# No jq on a fresh Debian machine; python3 is always there when the demo runs.
_ACCESS_TOKEN = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"


@dataclass(frozen=True)
class Example:
    """One demo caller: a comment, the shell lines that mint its credential, and the query."""

    title: str
    setup: tuple[str, ...]
    query: str

    def script(self) -> str:
        """The whole example as one shell script (setup, then the query)."""
        return "\n".join((*self.setup, self.query))


def _var(name: str) -> str:
    """`alice` → `ALICE_TOKEN`, `researcher-team-a` → `RESEARCHER_TEAM_A_TOKEN`."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") + "_TOKEN"


def _login_client(policy: dict[str, Any]) -> dict[str, Any]:
    """The first client allowed the password grant (the demo's `grafana` public client)."""
    return next(c for c in policy.get("clients", []) if c.get("direct_access"))


# The second hub's example: unscoped, so each caller's answer is narrowed to their grants there.
HUB_EXAMPLE_QUERY = "sum by (cluster, namespace, exported_namespace) (DCGM_FI_DEV_GPU_UTIL)"


def hub_examples(
    policy: dict[str, Any], keycloak_url: str, proxy_url: str, hub: str, login: dict[str, Any]
) -> list[Example]:
    """The hub's callers asking its own path, `/<hub>/api/v1/query` (several hubs, one proxy);
    users log in through `login`'s password-grant client (the realm is shared)."""
    found = examples(policy, keycloak_url, proxy_url, f"/{hub}", HUB_EXAMPLE_QUERY, login)
    return [Example(f"{ex.title} on hub {hub}", ex.setup, ex.query) for ex in found]


def examples(
    policy: dict[str, Any],
    keycloak_url: str,
    proxy_url: str,
    prefix: str = "",
    query: str = EXAMPLE_QUERY,
    login_policy: dict[str, Any] | None = None,
) -> list[Example]:
    """A token-minting `export` line and a `curl` through the proxy for every demo user and client."""
    token_url = f"{keycloak_url}/realms/{policy['realm']}/protocol/openid-connect/token"
    query_url = shlex.quote(f"{proxy_url}{prefix}/api/v1/query?query={quote(query)}")
    login = _login_client(login_policy or policy)
    found = []
    for user in policy.get("users", []):
        var = _var(user["username"])
        form = (
            f"-d grant_type=password -d client_id={login['client_id']} "
            f"-d username={user['username']} -d password={shlex.quote(user['password'])}"
        )
        mint = f"export {var}=$(curl -s {form} {token_url} | {_ACCESS_TOKEN})"
        use = f'curl -s -H "Authorization: Bearer ${var}" {query_url}'
        found.append(Example(user["username"], (mint,), use))
    for client in policy.get("clients", []):
        if not (client.get("secret") and client.get("service_account")):
            continue
        cid, secret = client["client_id"], shlex.quote(client["secret"])
        var = _var(cid)
        form = f"-d grant_type=client_credentials -u {cid}:{secret}"
        mint = f"export {var}=$(curl -s {form} {token_url} | {_ACCESS_TOKEN})"
        found.append(
            Example(
                f"{cid} (client credentials, a script's token)",
                (mint,),
                f'curl -s -H "Authorization: Bearer ${var}" {query_url}',
            )
        )
        found.append(
            Example(f"{cid} (Basic: the proxy mints the token)", (), f"curl -s -u {cid}:{secret} {query_url}")
        )
    return found


def render(found: Sequence[Example]) -> str:
    """The printed block: `# title`, then the lines to paste."""
    return "\n".join(f"# {ex.title}\n{ex.script()}" for ex in found)


async def check(found: Sequence[Example]) -> int:
    """Run every example once in bash; 1 if any of them gets no HTTP answer or mints no token."""
    failures = 0
    for ex in found:
        script = "set -eo pipefail\n" + ex.script() + " -w ' HTTP %{http_code}\\n'"
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        text = out.decode(errors="replace").strip()
        print(f"# {ex.title}\n{text[-300:]}")
        failures += proc.returncode != 0 or " HTTP 000" in text or "HTTP 401" in text
    return 1 if failures else 0
