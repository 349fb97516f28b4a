"""Errors the emulator answers with Keycloak's bodies and status codes."""

from __future__ import annotations

from typing import Any


class KeycloakError(Exception):
    """An error answered as JSON: OAuth `{"error","error_description"}` unless `body` is given."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str | None = None,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}
        self.body = body if body is not None else self._oauth_body()

    def _oauth_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error}
        if self.description is not None:
            body["error_description"] = self.description
        return body


def admin_error(status: int, message: str) -> KeycloakError:
    """An admin REST error, `{"errorMessage": …}` as Keycloak's ErrorResponse builds it."""
    return KeycloakError(status, message, body={"errorMessage": message})


# Keycloak's authorization and group tables keep names, descriptions, types and attribute values
# in VARCHAR(255) columns (`model/jpa/src/main/resources/META-INF/jpa-changelog-authz-2.0.0.xml`).
MAX_COLUMN = 255


def check_columns(*values: object) -> None:
    """Fail like Keycloak when a value overflows its column: the admin API answers 500 (the
    database refuses the insert) and a realm import fails."""
    for value in values:
        if value is not None and len(str(value)) > MAX_COLUMN:
            raise KeycloakError(500, "unknown_error", "For more on this error consult the server log.")
