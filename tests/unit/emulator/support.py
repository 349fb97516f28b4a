"""Helpers for emulator tests: constants of the demo realm and an HTTP client wrapper."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from keycloak_emulator import Emulator, EmulatorServer
from proxy_demo.policy import DEMO_POLICY

DEMO = DEMO_POLICY
RS = "prom-keycloak-proxy"
UMA = "urn:ietf:params:oauth:grant-type:uma-ticket"
PASSWORDS = {u: f"{u}-password" for u in ("alice", "bob", "carol", "dave", "eve")}
RESEARCHER = ("researcher-team-a", "researcher-team-a-secret")


@dataclass
class Answer:
    """Status and decoded JSON body of one HTTP call."""

    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Keycloak:
    """The served emulator plus a session pointed at it."""

    emu: Emulator
    server: EmulatorServer
    http: aiohttp.ClientSession

    @property
    def token_url(self) -> str:
        """Token endpoint path of the demo realm."""
        return "/realms/nerc/protocol/openid-connect/token"

    async def post(
        self, path: str, form: Iterable[tuple[str, str]], headers: dict[str, str] | None = None
    ) -> Answer:
        """POST a url-encoded form."""
        async with self.http.post(path, data=list(form), headers=headers or {}) as resp:
            return Answer(resp.status, await resp.json(content_type=None), dict(resp.headers))

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        """GET and decode JSON."""
        async with self.http.get(path, headers=headers or {}) as resp:
            return Answer(resp.status, await resp.json(content_type=None), dict(resp.headers))

    def user_token(self, user: str) -> str:
        """Access token of a demo user (password grant through `grafana`)."""
        token: str = self.emu.password_token("nerc", user, PASSWORDS[user])["access_token"]
        return token

    def researcher_token(self) -> str:
        """Client-credentials token of the researcher client."""
        token: str = self.emu.client_token("nerc", *RESEARCHER)["access_token"]
        return token

    async def uma(self, bearer: str, *permissions: str, **extra: str) -> Answer:
        """UMA grant with `response_mode=permissions` unless overridden."""
        form = [("grant_type", UMA), ("audience", extra.pop("audience", RS))]
        form += [("permission", p) for p in permissions]
        mode = extra.pop("response_mode", "permissions")
        if mode:
            form.append(("response_mode", mode))
        form += list(extra.items())
        return await self.post(self.token_url, form, {"Authorization": f"Bearer {bearer}"})


def names(answer: Answer) -> list[str]:
    """The `rsname`s of a permissions answer."""
    return [p["rsname"] for p in answer.body]
