"""The `hubs:` entries: names, per-hub checks, the mixing rule, and the runtime hub list."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from proxy.config import ConfigError, load_settings
from proxy.hubs import HubConfig, default_hub_of, hub_name_problem, hubs_of, problems

KEYS = ("HUB", "CLUSTER", "PROJECT")


def _entry(name: str, **extra: Any) -> HubConfig:
    """A minimal valid entry."""
    return HubConfig.model_validate({"name": name, "prometheus_base_url": f"https://{name}.example", **extra})


@pytest.mark.parametrize("name", ["moc", "innabox-dev", "open-sovereign-ai-cloud", "a", "hub1"])
def test_kubernetes_like_names_are_hub_names(name: str) -> None:
    """NERC's hub names and other RFC 1123 labels are accepted."""
    assert hub_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    ["", "Moc", "-moc", "moc-", "mo_c", "mo.c", "a" * 64, "moc/x", "api", "federate", "proxy", "metrics"],
)
def test_bad_or_shadowing_names_are_refused(name: str) -> None:
    """Upper case, edges, dots, slashes, over 63 characters and route names never name a hub."""
    assert hub_name_problem(name) is not None
    with pytest.raises(ValidationError):
        _entry(name) if name else HubConfig.model_validate({"name": name, "prometheus_base_url": "https://x"})


def test_entry_accepts_the_go_spellings_and_strips_the_url() -> None:
    """`…_CA_CRT`/`…_TLS_CRT` spellings work per hub too; a trailing slash is dropped."""
    entry = HubConfig.model_validate(
        {
            "name": "moc",
            "prometheus_base_url": "https://thanos.example/api/metrics/v1/default/",
            "prometheus_ca_crt": "/ca.pem",
            "prometheus_tls_crt": "/c.pem",
        }
    )
    assert entry.prometheus_base_url == "https://thanos.example/api/metrics/v1/default"
    assert entry.prometheus_ca_cert == Path("/ca.pem")
    assert entry.prometheus_tls_cert == Path("/c.pem")


def test_unknown_entry_keys_are_refused() -> None:
    """A typo in a hub entry is an error, not silently ignored."""
    with pytest.raises(ValidationError):
        _entry("moc", prometheus_ca_certs="/x")


def test_every_hub_problem_is_listed_at_once(tmp_path: Path) -> None:
    """Mixing, duplicates, lower-case keys and per-entry file problems all show."""
    hubs = [
        _entry("moc", prometheus_tls_cert=str(tmp_path / "missing.pem")),
        _entry("moc"),
        _entry("innabox-dev", auth_client_id="other-client"),
    ]
    values = {"prometheus_base_url": "https://top.example", "acm_hub": "moc", "auth_client_id": "pkp"}
    found = problems(values, hubs, ("hub", "CLUSTER", "PROJECT"))
    text = "\n".join(found)
    assert "PROXY_PROMETHEUS_BASE_URL" in text and "PROXY_ACM_HUB" in text
    assert "'moc' is listed more than once" in text
    assert "resource-name key 'hub'" in text
    assert "hubs[0] (moc).prometheus_tls_cert: file" in text
    assert "prometheus_tls_cert and prometheus_tls_key must be set together" in text
    assert "auth_client_id 'other-client' needs auth_client_secret" in text


def test_a_valid_list_has_no_problems(tmp_path: Path) -> None:
    """Two hubs with readable files, a default and upper-case keys pass."""
    for name in ("ca.pem", "c.pem", "k.pem", "secret"):
        (tmp_path / name).write_text("x\n")
    files = {
        "prometheus_ca_cert": str(tmp_path / "ca.pem"),
        "prometheus_tls_cert": str(tmp_path / "c.pem"),
        "prometheus_tls_key": str(tmp_path / "k.pem"),
    }
    hubs = [
        _entry("moc", **files),
        _entry("innabox-dev", auth_client_id="other", auth_client_secret_file=str(tmp_path / "secret")),
    ]
    assert problems({"default_hub": "moc", "auth_client_id": "pkp"}, hubs, KEYS) == []


def test_default_hub_must_be_a_listed_hub() -> None:
    """`default_hub:` naming no configured hub is an error."""
    found = problems({"default_hub": "nowhere"}, [_entry("moc"), _entry("b")], KEYS)
    assert any("'nowhere' is not one of the hubs" in p for p in found)


def _settings(**values: Any) -> Any:
    """A stand-in for Settings with the fields `hubs_of` reads."""
    base: dict[str, Any] = dict.fromkeys(
        (
            "acm_hub",
            "prometheus_base_url",
            "prometheus_ca_cert",
            "prometheus_tls_cert",
            "prometheus_tls_key",
            "prometheus_tls_server_name",
            "prometheus_token",
            "default_hub",
        )
    )
    base |= {"auth_client_id": "pkp", "auth_client_secret": "s", "hubs": (), "cert_reload_interval": 30.0}
    base["secret_file"] = lambda name: None
    base.update(values)
    return SimpleNamespace(**base)


def test_env_only_form_is_one_hub_from_the_top_level_options() -> None:
    """Without `hubs:` the single hub is `PROXY_ACM_HUB` with the top-level upstream, and default."""
    s = _settings(acm_hub="moc", prometheus_base_url="https://t.example", prometheus_token="tok")
    (hub,) = hubs_of(s)
    assert (hub.name, hub.upstream.base_url, hub.upstream.read_token()) == ("moc", "https://t.example", "tok")
    assert hub.client_secret is not None
    assert (hub.client_id, hub.client_secret.get()) == ("pkp", "s")
    assert default_hub_of(s) == "moc"


def test_hubs_get_their_own_upstream_and_optional_own_client(tmp_path: Path) -> None:
    """Each hub keeps its own upstream; an own client reads its secret file; default as configured."""
    (tmp_path / "secret").write_text("other-secret\n")
    (tmp_path / "token").write_text("hub-token\n")
    s = _settings(
        hubs=(
            _entry("moc", prometheus_token_file=str(tmp_path / "token")),
            _entry("innabox-dev", auth_client_id="other", auth_client_secret_file=str(tmp_path / "secret")),
        ),
        default_hub="innabox-dev",
    )
    moc, innabox = hubs_of(s)
    assert moc.upstream.base_url == "https://moc.example"
    assert moc.upstream.read_token() == "hub-token"
    assert moc.client_secret is not None and innabox.client_secret is not None
    assert (moc.client_id, moc.client_secret.get()) == ("pkp", "s")
    assert (innabox.client_id, innabox.client_secret.get()) == ("other", "other-secret")
    assert default_hub_of(s) == "innabox-dev"
    assert default_hub_of(_settings(hubs=(_entry("a"), _entry("b")))) is None
    assert default_hub_of(_settings(hubs=(_entry("a"),))) == "a"


# ------------------------------------------------------------------ through load_settings

AUTH_ENV = {
    "PROXY_AUTH_BASE_URL": "https://keycloak.example",
    "PROXY_AUTH_REALM": "nerc",
    "PROXY_AUTH_CLIENT_ID": "prom-keycloak-proxy",
    "PROXY_AUTH_CLIENT_SECRET": "s3cret",
}


def _yaml(tmp_path: Path, text: str) -> dict[str, str]:
    """Write a config file and return the env pointing at it."""
    path = tmp_path / "proxy.yaml"
    path.write_text(text, encoding="utf-8")
    return {**AUTH_ENV, "PROXY_CONFIG": str(path)}


TWO_HUBS = """\
default_hub: moc
hubs:
  - name: moc
    prometheus_base_url: https://moc.example/api/metrics/v1/default
  - name: innabox-dev
    prometheus_base_url: https://innabox.example
"""


def test_yaml_hub_list_loads_without_top_level_upstream(tmp_path: Path) -> None:
    """A `hubs:` list replaces PROXY_PROMETHEUS_BASE_URL and PROXY_ACM_HUB, which stay unset."""
    s = load_settings({}, _yaml(tmp_path, TWO_HUBS))
    assert [h.name for h in s.hubs] == ["moc", "innabox-dev"]
    assert (s.default_hub, s.prometheus_base_url, s.acm_hub) == ("moc", "", "")
    assert [h.name for h in hubs_of(s)] == ["moc", "innabox-dev"]


def test_env_only_form_still_requires_its_options() -> None:
    """Without `hubs:`, the base URL and the hub are required exactly as before."""
    with pytest.raises(ConfigError) as info:
        load_settings({}, AUTH_ENV)
    assert "PROXY_PROMETHEUS_BASE_URL: required, not set" in info.value.problems
    assert "PROXY_ACM_HUB: required, not set" in info.value.problems


def test_hubs_and_top_level_upstream_together_are_an_error(tmp_path: Path) -> None:
    """A top-level upstream option from env next to `hubs:` is refused (exit 2), with the others."""
    env = _yaml(tmp_path, TWO_HUBS) | {"PROXY_PROMETHEUS_TOKEN": "t", "PROXY_ACM_HUB": "moc"}
    with pytest.raises(ConfigError) as info:
        load_settings({}, env)
    assert any("PROXY_ACM_HUB" in p and "PROXY_PROMETHEUS_TOKEN" in p for p in info.value.problems)


def test_every_problem_of_every_hub_at_once(tmp_path: Path) -> None:
    """A bad URL in one entry, a bad name in another and a missing default are listed together."""
    text = """\
hubs:
  - name: moc
    prometheus_base_url: ftp://moc.example
  - name: Api
    prometheus_base_url: https://x.example
  - name: ok
    prometheus_base_url: https://ok.example
    prometheus_tls_cert: /nonexistent/cert.pem
"""
    with pytest.raises(ConfigError) as info:
        load_settings({}, _yaml(tmp_path, text) | {"PROXY_AUTH_TIMEOUT": "5 parsecs"})
    text_out = "\n".join(info.value.problems)
    assert "hubs[0].prometheus_base_url" in text_out
    assert "hubs[1].name" in text_out
    assert "PROXY_AUTH_TIMEOUT" in text_out


def test_hub_list_is_yaml_only() -> None:
    """PROXY_HUBS / PROXY_DEFAULT_HUB configure nothing and are reported as unknown."""
    warnings: list[str] = []
    env = {**AUTH_ENV, "PROXY_PROMETHEUS_BASE_URL": "https://t.example", "PROXY_ACM_HUB": "moc"}
    s = load_settings({}, env | {"PROXY_HUBS": "[]", "PROXY_DEFAULT_HUB": "x"}, warn=warnings.append)
    assert s.hubs == () and s.default_hub is None
    assert any("PROXY_HUBS: unknown variable" in w for w in warnings)


def test_lower_case_keys_are_refused_with_several_hubs(tmp_path: Path) -> None:
    """A key label values could spell (`hub`) is an error when hubs are listed."""
    with pytest.raises(ConfigError) as info:
        load_settings({}, _yaml(tmp_path, TWO_HUBS) | {"PROXY_HUB_KEY": "hub"})
    assert any("resource-name key 'hub'" in p for p in info.value.problems)


def test_several_hubs_without_default_warn_and_load(tmp_path: Path) -> None:
    """No default_hub with two hubs is valid (plain /api/v1/… is then 404) and warned about."""
    warnings: list[str] = []
    s = load_settings({}, _yaml(tmp_path, TWO_HUBS.replace("default_hub: moc\n", "")), warn=warnings.append)
    assert s.default_hub is None and default_hub_of(s) is None
    assert any("default_hub is not set" in w and "/innabox-dev/api/v1/" in w for w in warnings)


async def test_services_one_authorizer_per_resource_server_and_one_upstream_per_hub(tmp_path: Path) -> None:
    """Hubs sharing the global client share one authorizer; a hub with its own client gets its
    own (UMA audience and Protection API owner); every hub has its own upstream view."""
    from proxy.authz.authorizer import HubAuthz
    from proxy.services import build_services

    (tmp_path / "secret").write_text("own-secret\n")
    text = TWO_HUBS + (
        "  - name: osac\n    prometheus_base_url: https://osac.example\n"
        f"    auth_client_id: osac-proxy\n    auth_client_secret_file: {tmp_path / 'secret'}\n"
    )
    svc = build_services(load_settings({}, _yaml(tmp_path, text)))
    views = svc.by_hub
    assert set(views) == {"moc", "innabox-dev", "osac"} and views["moc"] is svc
    assert len({id(v.upstream) for v in views.values()}) == 3
    assert views["innabox-dev"].upstream.url("/x") == "https://innabox.example/x"
    assert len({id(v.metric_names) for v in views.values()}) == 3
    by_hub = {hub: view.authz for hub, view in views.items()}
    assert all(isinstance(authz, HubAuthz) for authz in by_hub.values())
    shared = {hub: authz.authorizer for hub, authz in by_hub.items() if isinstance(authz, HubAuthz)}
    assert shared["moc"] is shared["innabox-dev"] and shared["osac"] is not shared["moc"]
    assert shared["osac"].hubs == ("osac",) and shared["moc"].hubs == ("moc", "innabox-dev")
    assert len(svc.authorizers) == 2
    assert shared["osac"]._client.client_id == "osac-proxy"
    assert svc.keycloak_session is not None
    await svc.keycloak_session.close()


async def test_every_hubs_secrets_are_redacted_from_logs(tmp_path: Path) -> None:
    """A hub's own client secret and its upstream token (from its file) never reach a log line."""
    from proxy import logs
    from proxy.upstream import Upstream

    (tmp_path / "secret").write_text("osac-client-secret-value\n")
    (tmp_path / "token").write_text("innabox-upstream-token-value\n")
    text = TWO_HUBS.replace(
        "    prometheus_base_url: https://innabox.example\n",
        "    prometheus_base_url: https://innabox.example\n"
        f"    prometheus_token_file: {tmp_path / 'token'}\n",
    ) + (
        "  - name: osac\n    prometheus_base_url: https://osac.example\n"
        f"    auth_client_id: osac-proxy\n    auth_client_secret_file: {tmp_path / 'secret'}\n"
    )
    settings = load_settings({}, _yaml(tmp_path, text))
    upstream = Upstream(settings, hubs_of(settings)[1])
    await upstream.start()
    await upstream.close()
    line = logs.redact_text("secret osac-client-secret-value token innabox-upstream-token-value")
    assert "osac-client-secret-value" not in line and "innabox-upstream-token-value" not in line
