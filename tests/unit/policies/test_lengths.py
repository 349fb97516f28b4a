"""Every string `apply` stores fits Keycloak's 255-character columns, or `validate` says which (#17)."""

from __future__ import annotations

from proxy.policies import names
from proxy.policies.checks import check_text
from proxy.policies.lengths import stored_strings
from proxy.policies.loader import load
from proxy_demo.policy import DEMO_POLICY

HEAD = """realm: nerc
hub: moc
resource_server: {client_id: prom-keycloak-proxy}
clusters:
  prod: {projects: [team-a]}
"""


def test_descriptions_are_cut_to_255_and_keep_the_marker() -> None:
    """A description naming a long resource is cut to 255 characters; `apply` still recognises it."""
    text = names.described("members of " + "x" * 300)
    assert len(text) == 255 and text.endswith("…")
    assert names.is_marked_description(text)
    assert names.described("short") == f"{names.DESCRIPTION_PREFIX} short"


def test_every_stored_string_of_the_demo_is_checked() -> None:
    """The checked strings include resources, groups, policies, descriptions, users and clients."""
    kinds = {what for what, _, _ in stored_strings(load(DEMO_POLICY))}
    assert {"resource", "group", "policy", "policy description", "permission description"} <= kinds
    assert {"username", "email", "client id", "redirect URI", "realm"} <= kinds


def test_an_over_long_redirect_uri_is_an_error_at_its_line() -> None:
    """A 300-character redirect URI would make Keycloak answer 500: `validate` refuses it."""
    uri = "https://grafana.example.org/" + "p" * 272
    text = HEAD + f"clients:\n  - client_id: grafana\n    public: true\n    redirect_uris: [{uri}]\n"
    model, problems = check_text(text, "f.yaml")
    assert model is None
    assert [(p.line, p.severity) for p in problems] == [(9, "error")]
    assert "redirect URI https://grafana.example.org/pppppppppppp… is 300 characters" in problems[0].message
