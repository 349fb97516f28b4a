"""`--keycloak-version`: release numbers parse, and each changed behaviour switches at its release."""

from __future__ import annotations

import pytest

from keycloak_emulator.cli import parser
from keycloak_emulator.versions import CURRENT, Version, parse


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("24", Version(24)),
        ("26.6", Version(26, 6)),
        ("26.6.2", Version(26, 6, 2)),
        ("26.7.0-SNAPSHOT", Version(26, 7)),
    ],
)
def test_release_numbers_parse(text: str, version: Version) -> None:
    """Missing parts read as 0; a suffix is ignored."""
    assert parse(text) == version


def test_behaviours_switch_at_their_releases() -> None:
    """invalid_grant 400 and the secret method at 26.6.0 (`changes-26_6_0.adoc`); the
    introspection audience check at 26.6.2 (`changes-26_6_2.adoc`); all on by default."""
    assert not Version(26, 5, 9).invalid_grant_is_400 and Version(26, 6).invalid_grant_is_400
    assert not Version(26, 5, 9).enforces_secret_method and Version(26, 6).enforces_secret_method
    assert not Version(26, 6, 1).introspection_checks_audience
    assert Version(26, 6, 2).introspection_checks_audience
    assert CURRENT.invalid_grant_is_400 and CURRENT.introspection_checks_audience


def test_cli_takes_version_cost_model_and_server_option() -> None:
    """The emulator's command line carries every knob of the constructor."""
    args = parser().parse_args(
        [
            "--keycloak-version",
            "24",
            "--evaluation-cost",
            "0.001",
            "--call-cost",
            "0.002",
            "--allow-token-introspection-without-audience-check",
        ]
    )
    assert args.keycloak_version == Version(24)
    assert (args.evaluation_cost, args.call_cost) == (0.001, 0.002)
    assert args.allow_token_introspection_without_audience_check is True
    with pytest.raises(SystemExit):
        parser().parse_args(["--keycloak-version", "latest"])
