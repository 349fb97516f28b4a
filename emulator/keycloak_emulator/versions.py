"""Which Keycloak release the emulator imitates, and the behaviours that changed between releases.

The default is current Keycloak (26.6+); `--keycloak-version 24` (or `Emulator(keycloak_version=…)`)
restores older answers where a release changed them. Sources: Keycloak's upgrading guides
(`docs/documentation/upgrading/topics/changes/changes-26_6_0.adoc`, `changes-26_6_2.adoc`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class Version:
    """A Keycloak release number; missing parts read as 0 (`24` is 24.0.0)."""

    major: int
    minor: int = 0
    patch: int = 0

    def __str__(self) -> str:
        """`26.6.2`."""
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def invalid_grant_is_400(self) -> bool:
        """26.6.0+: an invalid bearer (UMA) or bad user credentials (password) answer 400 `invalid_grant`.

        PR keycloak/keycloak#46528 (closes #45812), `changes-26_6_0.adoc`; 401 before.
        """
        return self >= Version(26, 6, 0)

    @property
    def introspection_checks_audience(self) -> bool:
        """26.6.2+: introspection answers `{"active": false}` unless the caller is in the token's `aud`.

        `changes-26_6_2.adoc` "Token introspection now validates audience claim", PR #51681.
        """
        return self >= Version(26, 6, 2)

    @property
    def enforces_secret_method(self) -> bool:
        """26.6.0+: a client registered for `client_secret_basic` accepts only the Basic header (and
        `client_secret_post` only the form); `changes-26_6_0.adoc` "Client secret authentication method".
        """
        return self >= Version(26, 6, 0)


CURRENT = Version(26, 6, 4)


def parse(text: str) -> Version:
    """`26`, `26.6` or `26.6.2` (a `-suffix` such as `-SNAPSHOT` is ignored); ValueError otherwise."""
    match = _VERSION.match(text.strip())
    if match is None or not text.strip():
        raise ValueError(f"not a Keycloak version: {text!r}")
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    return Version(major, minor, patch)
