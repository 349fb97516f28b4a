"""`policies validate`: every broken file is rejected with the line of the problem (issue #7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.policies.checks import check_file, check_text
from proxy.policies.cli import main
from proxy_demo.policy import DEMO_POLICY

POLICIES = Path(__file__).resolve().parents[3] / "policies"

HEAD = """realm: nerc
hub: moc
resource_server: {client_id: prom-keycloak-proxy}
clusters:
  prod: {projects: [team-a, team-b]}
"""  # lines 1-5; cases below start at line 6

BROKEN = [
    ("yaml syntax", "realm: [nerc\n", 2, "YAML"),
    (
        "missing hub",
        "realm: nerc\nresource_server: {client_id: c}\nclusters: {a: {}}\n",
        1,
        "'hub' is a required",
    ),
    ("typo key", HEAD + "clsuters: {}\n", 6, "'clsuters' was unexpected"),
    ("duplicate cluster", HEAD + "  prod: {projects: []}\n", 6, "duplicate key 'prod'"),
    ("bad cluster name", HEAD + "  Prod_2: {}\n", 6, "does not match"),
    ("duplicate project", HEAD.replace("team-b]", "team-a]"), 5, "listed twice"),
    ("duplicate group", HEAD + "groups: [x, y, x]\n", 6, "duplicate group 'x'"),
    ("duplicate user", HEAD + "users:\n  - {username: ann}\n  - {username: ann}\n", 8, "duplicate user"),
    ("uppercase username", HEAD + "users:\n  - username: Ann\n", 7, "does not match"),
    ("group with slash", HEAD + "groups: [a/b]\n", 6, "does not match"),
    (
        "undeclared group",
        HEAD + "groups: [a]\nusers:\n  - username: ann\n    groups: [b]\n",
        9,
        "undeclared group 'b'",
    ),
    ("rs client twice", HEAD + "clients:\n  - client_id: prom-keycloak-proxy\n", 7, "is the resource server"),
    (
        "unknown cluster",
        HEAD + "users: [{username: ann}]\ngrants:\n  - user: ann\n    clusters: [nope]\n",
        9,
        "unknown cluster 'nope'",
    ),
    (
        "unknown project cluster",
        HEAD + "users: [{username: ann}]\ngrants:\n  - user: ann\n    projects:\n      nope: [team-a]\n",
        10,
        "unknown cluster 'nope'",
    ),
    (
        "unknown project",
        HEAD + "users: [{username: ann}]\ngrants:\n  - user: ann\n    projects: {prod: [team-z]}\n",
        9,
        "unknown project 'team-z'",
    ),
    ("two grantees", HEAD + "grants:\n  - user: ann\n    client: c\n    hub: true\n", 7, "exactly one"),
    ("no access", HEAD + "grants:\n  - user: ann\n", 7, "at least one"),
    (
        "all_hubs without HUB",
        HEAD + "users: [{username: ann}]\ngrants:\n  - user: ann\n    all_hubs: true\n",
        9,
        "hub_resource",
    ),
    (
        "too long",
        HEAD
        + "  "
        + "c" * 60
        + ": {projects: ["
        + "p" * 63
        + "]}\n"
        + "users: [{username: "
        + "u" * 200
        + "}]\ngrants:\n  - user: "
        + "u" * 200
        + "\n    projects: {"
        + "c" * 60
        + ": ["
        + "p" * 63
        + "]}\n",
        9,
        "255 characters",
    ),
    ("not a mapping", "- a\n- b\n", 1, "must be a mapping"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_file_is_rejected_at_its_line(text: str, line: int, fragment: str) -> None:
    """Each broken file yields an error naming the right line and saying what is wrong."""
    model, problems = check_text(text, "broken.yaml")
    errors = [p for p in problems if p.severity == "error"]
    assert model is None
    assert any(p.line == line and fragment in p.message for p in errors), [str(p) for p in problems]


def test_every_problem_is_listed_at_once() -> None:
    """Several problems in one file are all reported, sorted by line."""
    text = HEAD + "groups: [x, x]\nusers:\n  - username: ann\n    groups: [y]\n"
    _, problems = check_text(text, "f.yaml")
    assert [p.line for p in problems] == [6, 9]


def test_client_policy_on_standard_flow_client_is_a_warning() -> None:
    """docs/policies.md: a grant to an interactive client warns (every user signing in through it matches)."""
    text = HEAD + "clients:\n  - {client_id: grafana, public: true, standard_flow: true}\n"
    text += "grants:\n  - client: grafana\n    hub: true\n"
    model, problems = check_text(text, "f.yaml")
    assert model is not None
    assert [(p.line, p.severity) for p in problems] == [(9, "warning")]
    assert "azp" in problems[0].message


def test_undeclared_grantee_is_a_warning() -> None:
    """A grantee not declared in the file may exist in Keycloak already: warn, do not fail."""
    model, problems = check_text(HEAD + "grants:\n  - group: sso-team\n    hub: true\n", "f.yaml")
    assert model is not None and [p.severity for p in problems] == ["warning"]


@pytest.mark.parametrize("path", [DEMO_POLICY, POLICIES / "example-nerc.yaml"], ids=["demo", "example-nerc"])
def test_shipped_files_are_clean(path: Path) -> None:
    """The demo and example files have no problems at all."""
    model, problems = check_file(path)
    assert model is not None and problems == []


def test_cli_prints_file_line_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`policies validate` prints `file:line: severity: message` and exits 1 on errors, 0 when clean."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "groups: [x, x]\n")
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:6: error: duplicate group 'x'" in out
    assert main(["validate", str(DEMO_POLICY)]) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out


def test_apply_and_export_refuse_broken_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`export`/`apply` load through the same checks and stop with exit 1 before any call."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "groups: [x, x]\n")
    assert main(["export", str(bad)]) == 1
    assert "bad.yaml:6: error" in capsys.readouterr().err
