"""Keycloak's time policy, evaluated as `TimePolicyProvider.evaluate` does it (Keycloak source,
`services/.../authorization/policy/provider/time/TimePolicyProvider.java`, and its factory
`TimePolicyProviderFactory.java` for the admin representation):

- `nbf` / `noa` are parsed with `SimpleDateFormat("yyyy-MM-dd HH:mm:ss")` — in the JVM's default
  time zone, i.e. the *server's* zone — after `format()` appends ` 00:00:00` to a bare date;
- deny when `now.before(nbf)`; deny when `now.after(noa)` (so `noa` itself still holds, to the
  millisecond: "not on or after" is exclusive only from the next instant on);
- then `dayMonth`, `month` (1-based), `year`, `hour`, `minute`, each optionally with `…End`, are
  compared with the current calendar fields in the server's zone, inclusive; a field without its
  `…End` must match exactly;
- anything else grants. An unparsable date makes evaluation fail (Keycloak throws).
The admin API's typed form (`notBefore`, `notOnOrAfter`, `dayMonth`, …) maps onto those keys;
creating one whose `notOnOrAfter` precedes its `notBefore` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from keycloak_emulator.errors import KeycloakError, admin_error

FORMAT = "%Y-%m-%d %H:%M:%S"
# The emulated server's default time zone (Keycloak containers run in UTC unless TZ says otherwise).
SERVER_TIMEZONE = "UTC"
_FIELDS = ("dayMonth", "month", "year", "hour", "minute")
_TYPED = {"notBefore": "nbf", "notOnOrAfter": "noa"}


def set_server_timezone(name: str) -> None:
    """Pretend the server's JVM runs in `name` (an IANA zone)."""
    global SERVER_TIMEZONE
    ZoneInfo(name)
    SERVER_TIMEZONE = name


def _parse(value: str, tz: ZoneInfo) -> datetime:
    text = value.strip()
    if len(text) == 10:
        text += " 00:00:00"
    return datetime.strptime(text, FORMAT).replace(tzinfo=tz)


def permits(config: Mapping[str, str], now: float) -> bool:
    """Whether a time policy with this config grants at epoch second `now`."""
    tz = ZoneInfo(SERVER_TIMEZONE)
    actual = datetime.fromtimestamp(now, tz)
    try:
        nbf = config.get("nbf")
        if nbf and actual < _parse(nbf, tz):
            return False
        noa = config.get("noa")
        if noa and actual > _parse(noa, tz):
            return False
        values = {
            "dayMonth": actual.day,
            "month": actual.month,
            "year": actual.year,
            "hour": actual.hour,
            "minute": actual.minute,
        }
        for name in _FIELDS:
            start = config.get(name)
            if start is None:
                continue
            end = config.get(f"{name}End")
            if end is not None:
                if not int(start) <= values[name] <= int(end):
                    return False
            elif values[name] != int(start):
                return False
    except ValueError as exc:
        raise KeycloakError(500, "server_error", "Unexpected error while evaluating permissions") from exc
    return True


def config_from_typed(rep: Mapping[str, Any]) -> dict[str, str]:
    """The stored config of a `POST/PUT policy/time` body; 400 when the dates are unusable."""
    config = {key: str(rep[typed]) for typed, key in _TYPED.items() if rep.get(typed) is not None}
    for name in _FIELDS:
        for key in (name, f"{name}End"):
            if rep.get(key) is not None:
                config[key] = str(rep[key])
    if "nbf" in config and "noa" in config:
        tz = ZoneInfo(SERVER_TIMEZONE)
        try:
            nbf, noa = _parse(config["nbf"], tz), _parse(config["noa"], tz)
        except ValueError as exc:
            raise admin_error(400, f"Unable not parse a date using format [{config['nbf']}]") from exc
        if noa < nbf:
            raise admin_error(400, "Expire time can't be set to a date before start time")
    return config


def typed_fields(config: Mapping[str, str]) -> dict[str, str]:
    """`TimePolicyProviderFactory.toRepresentation`: config keys back to the typed fields."""
    out = {typed: config[key] for typed, key in _TYPED.items() if key in config}
    for name in _FIELDS:
        for key in (name, f"{name}End"):
            if key in config:
                out[key] = config[key]
    return out
