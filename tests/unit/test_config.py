"""Configuration: every source, every spelling, and every problem reported at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.config import SECRET_FIELDS, ConfigError, Settings, load_settings
from proxy_demo.certs import Pki

BASE = {
    "PROXY_PROMETHEUS_BASE_URL": "https://thanos.example:9091/api/metrics/v1/default",
    "PROXY_AUTH_BASE_URL": "https://keycloak.example",
    "PROXY_AUTH_REALM": "nerc",
    "PROXY_AUTH_CLIENT_ID": "prom-keycloak-proxy",
    "PROXY_AUTH_CLIENT_SECRET": "s3cret",
    "PROXY_ACM_HUB": "moc",
}


def test_defaults_match_the_spec() -> None:
    """With only the required values set, every default is the documented one (docs/operations.md#options)."""
    s = load_settings({}, BASE)
    assert s.listen == "0.0.0.0:8080"
    assert s.metrics_listen == "0.0.0.0:9091"
    assert s.prometheus_timeout == 120.0
    assert s.auth_timeout == 5.0
    assert s.auth_tls_verify is True
    assert s.auth_introspect is False
    assert (s.hub_key, s.cluster_key, s.project_key) == ("HUB", "CLUSTER", "PROJECT")
    assert s.cluster_label == "cluster"
    assert s.project_labels == ("namespace", "exported_namespace")
    assert s.enforce_mode == "narrow"
    assert (s.authz_cache_ttl, s.authz_deny_cache_ttl) == (60.0, 10.0)
    assert s.cors_allowed_origins == ()
    assert (s.max_body_bytes, s.max_url_bytes) == (1048576, 65536)
    assert s.max_uma_names == 64
    assert s.workers == 1
    assert s.shutdown_timeout == 25.0
    assert (s.log_level, s.log_format) == ("info", "json")


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    """Missing values, bad URL, bad duration, bad mode, unreadable file and a lone cert all show."""
    env = {
        "PROXY_PROMETHEUS_BASE_URL": "ftp://nope",
        "PROXY_AUTH_TIMEOUT": "5 parsecs",
        "PROXY_ENFORCE_MODE": "maybe",
        "PROXY_PROMETHEUS_TLS_CERT": str(tmp_path / "missing.pem"),
    }
    with pytest.raises(ConfigError) as info:
        load_settings({}, env)
    text = "\n".join(info.value.problems)
    for expected in (
        "PROXY_PROMETHEUS_BASE_URL",
        "PROXY_AUTH_BASE_URL: required",
        "PROXY_AUTH_REALM: required",
        "PROXY_AUTH_CLIENT_ID: required",
        "PROXY_ACM_HUB: required",
        "PROXY_AUTH_CLIENT_SECRET: required",
        "PROXY_AUTH_TIMEOUT",
        "PROXY_ENFORCE_MODE",
        "is not readable",
        "must be set together",
    ):
        assert expected in text, expected


def test_go_proxy_crt_spellings_are_accepted(pki: Pki) -> None:
    """`PROXY_PROMETHEUS_CA_CRT` / `_TLS_CRT` (the Go proxy's README) mean `_CA_CERT` / `_TLS_CERT`."""
    env = {
        **BASE,
        "PROXY_PROMETHEUS_CA_CRT": str(pki.ca_cert),
        "PROXY_PROMETHEUS_TLS_CRT": str(pki.client_cert),
        "PROXY_PROMETHEUS_TLS_KEY": str(pki.client_key),
    }
    s = load_settings({}, env)
    assert s.prometheus_ca_cert == pki.ca_cert
    assert s.prometheus_tls_cert == pki.client_cert


def test_priority_is_yaml_then_env_then_flags(tmp_path: Path) -> None:
    """A flag beats env, env beats YAML, YAML beats the default."""
    cfg = tmp_path / "proxy.yaml"
    cfg.write_text("acm_hub: from-yaml\nauth_realm: yaml-realm\nlog_level: debug\ncluster_label: c\n")
    env = {k: v for k, v in BASE.items() if k not in ("PROXY_ACM_HUB", "PROXY_AUTH_REALM")}
    env["PROXY_CLUSTER_LABEL"] = "from-env"
    s = load_settings({"log_level": "warning"}, {**env, "PROXY_CONFIG": str(cfg)})
    assert (s.acm_hub, s.auth_realm, s.log_level, s.cluster_label) == (
        "from-yaml",
        "yaml-realm",
        "warning",
        "from-env",
    )


def test_secret_from_file(tmp_path: Path) -> None:
    """`PROXY_AUTH_CLIENT_SECRET_FILE` reads the secret from a file (Kubernetes Secret volume)."""
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    env = {k: v for k, v in BASE.items() if k != "PROXY_AUTH_CLIENT_SECRET"}
    s = load_settings({}, {**env, "PROXY_AUTH_CLIENT_SECRET_FILE": str(secret)})
    assert s.auth_client_secret == "from-file"


def test_unknown_yaml_key_is_a_problem(tmp_path: Path) -> None:
    """A typo in the YAML file is reported, not silently ignored."""
    cfg = tmp_path / "proxy.yaml"
    cfg.write_text("acm_hubb: moc\n")
    with pytest.raises(ConfigError) as info:
        load_settings({}, {**BASE, "PROXY_CONFIG": str(cfg)})
    assert any("acm_hubb" in p for p in info.value.problems)


def test_lists_and_durations_parse() -> None:
    """CSV lists, label=regex maps and Prometheus durations parse from env strings."""
    env = {
        **BASE,
        "PROXY_PROJECT_LABELS": "namespace, exported_namespace",
        "PROXY_PROJECT_LABEL_METRICS": "exported_namespace=DCGM_.*",
        "PROXY_AUTH_AUDIENCES": "a,b",
        "PROXY_AUTHZ_CACHE_TTL": "1h30m",
    }
    s = load_settings({}, env)
    assert s.project_labels == ("namespace", "exported_namespace")
    assert dict(s.project_label_metrics) == {"exported_namespace": "DCGM_.*"}
    assert s.auth_audiences == ("a", "b")
    assert s.authz_cache_ttl == 5400.0


def test_settings_are_immutable() -> None:
    """Configuration is read once and passed down as an immutable object."""
    s = load_settings({}, BASE)
    with pytest.raises(Exception, match="frozen"):
        s.acm_hub = "x"


def test_secrets_have_no_flag() -> None:
    """`serve --help` documents every option, and no secret (nor the YAML-only hub list) has a flag."""
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--auth-client-secret" not in out and "--prometheus-token" not in out
    for name in Settings.model_fields:
        if name not in (*SECRET_FIELDS, "hubs", "default_hub"):
            assert "--" + name.replace("_", "-") in out, name
    assert "--hubs" not in out and "--default-hub" not in out
    assert "PROXY_AUTH_CLIENT_SECRET_FILE" in out


def test_invalid_config_exits_2_before_listening() -> None:
    """The console entry exits with code 2 and one problem per line."""
    proc = subprocess.run(
        [sys.executable, "-m", "proxy", "serve"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("required, not set") >= 5


def test_missing_config_file_is_a_problem(tmp_path: Path) -> None:
    """A `--config` / `PROXY_CONFIG` file that does not exist is reported, not silently skipped."""
    with pytest.raises(ConfigError) as info:
        load_settings({}, BASE, tmp_path / "absent.yaml")
    assert any("absent.yaml: not found" in p for p in info.value.problems)
    with pytest.raises(ConfigError) as info:
        load_settings({}, {**BASE, "PROXY_CONFIG": str(tmp_path / "gone.yaml")})
    assert any("gone.yaml: not found" in p for p in info.value.problems)


def test_unknown_variable_warns_with_a_suggestion() -> None:
    """A misspelt `PROXY_*` variable is a warning naming the closest option; the load succeeds."""
    warnings: list[str] = []
    s = load_settings({}, {**BASE, "PROXY_AUTH_TIMEOUTS": "3s"}, warn=warnings.append)
    assert s.auth_timeout == 5.0
    assert warnings == ["PROXY_AUTH_TIMEOUTS: unknown variable (did you mean PROXY_AUTH_TIMEOUT?)"]


def test_unknown_variable_is_an_error_when_strict() -> None:
    """With the strict flag (argument or `PROXY_CONFIG_STRICT=true`) an unknown variable is a problem."""
    env = {**BASE, "PROXY_ACM_HUBB": "x"}
    with pytest.raises(ConfigError) as info:
        load_settings({}, env, strict=True, warn=pytest.fail)
    assert info.value.problems == ["PROXY_ACM_HUBB: unknown variable (did you mean PROXY_ACM_HUB?)"]
    with pytest.raises(ConfigError):
        load_settings({}, {**env, "PROXY_CONFIG_STRICT": "true"}, warn=pytest.fail)


def test_service_link_variables_are_ignored() -> None:
    """Kubernetes' variables for a Service named `proxy…` are neither warnings nor errors."""
    links = {
        "PROXY_SERVICE_HOST": "10.0.0.1",
        "PROXY_SERVICE_PORT": "8080",
        "PROXY_SERVICE_PORT_HTTP": "8080",
        "PROXY_PORT": "tcp://10.0.0.1:8080",
        "PROXY_PORT_8080_TCP": "tcp://10.0.0.1:8080",
        "PROXY_PORT_8080_TCP_ADDR": "10.0.0.1",
        "PROXY_PORT_8080_TCP_PORT": "8080",
        "PROXY_PORT_8080_TCP_PROTO": "tcp",
        "PROXY_METRICS_SERVICE_HOST": "10.0.0.2",
        "PROXY_METRICS_PORT_9091_TCP": "tcp://10.0.0.2:9091",
    }
    load_settings({}, {**BASE, **links}, strict=True, warn=pytest.fail)


def test_yaml_takes_aliases_and_secret_files(tmp_path: Path, pki: Pki) -> None:
    """YAML accepts the same `_crt` spelling and `<secret>_file` keys as the environment."""
    (tmp_path / "secret").write_text("yaml-secret\n")
    cfg = tmp_path / "proxy.yaml"
    cfg.write_text(f"prometheus_ca_crt: {pki.ca_cert}\nauth_client_secret_file: {tmp_path / 'secret'}\n")
    env = {k: v for k, v in BASE.items() if k != "PROXY_AUTH_CLIENT_SECRET"}
    s = load_settings({}, env, cfg)
    assert s.prometheus_ca_cert == pki.ca_cert
    assert s.auth_client_secret == "yaml-secret"
    assert s.secret_file("auth_client_secret") == tmp_path / "secret"


def test_unreadable_secret_file_and_yaml_typo_suggestion(tmp_path: Path) -> None:
    """An unreadable `_FILE` and a misspelt YAML key are both listed, the key with a suggestion."""
    cfg = tmp_path / "proxy.yaml"
    cfg.write_text("enforce_mod: deny\n")
    env = {k: v for k, v in BASE.items() if k != "PROXY_AUTH_CLIENT_SECRET"}
    env["PROXY_AUTH_CLIENT_SECRET_FILE"] = str(tmp_path / "nope")
    with pytest.raises(ConfigError) as info:
        load_settings({}, env, cfg)
    text = "\n".join(info.value.problems)
    assert "PROXY_AUTH_CLIENT_SECRET_FILE: cannot read" in text
    assert "unknown key 'enforce_mod' (did you mean enforce_mode?)" in text


def test_version_flag() -> None:
    """`--version` prints the distribution's version and exits 0."""
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("prom-keycloak-proxy ") and out.strip() != "prom-keycloak-proxy"


def test_help_shows_durations_and_no_none() -> None:
    """`serve --help` writes defaults as an operator would (`2m`, `5s`) and never `None`."""
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(out.split())
    assert "PROXY_PROMETHEUS_TIMEOUT; default: 2m]" in flat
    assert "PROXY_AUTH_TIMEOUT; default: 5s]" in flat
    assert "PROXY_MAX_QUEUE_WAIT; default: 20s]" in flat
    assert "None" not in out
    assert "PROXY_PROMETHEUS_CA_CRT" in flat and "--strict-config" in out


def test_resource_name_keys_that_break_names_are_refused() -> None:
    """A key with `#`, `,` or a blank would inject into Keycloak's permission syntax: exit 2."""
    with pytest.raises(ConfigError) as info:
        load_settings({}, {**BASE, "PROXY_CLUSTER_KEY": "CL#X", "PROXY_PROJECT_KEY": "P P"})
    text = "\n".join(info.value.problems)
    assert "PROXY_CLUSTER_KEY" in text and "PROXY_PROJECT_KEY" in text


def test_every_option_is_documented() -> None:
    """docs/operations.md lists every option (YAML-only ones by their YAML key): add a row with a new one."""
    from proxy.settings_sources import env_name, yaml_only_fields

    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    yaml_only = yaml_only_fields(Settings)
    missing = [
        name
        for name in Settings.model_fields
        if (f"`{name}:`" if name in yaml_only else f"`{env_name(name)}`") not in text
    ]
    assert missing == [], f"options missing from docs/operations.md: {missing}"


def test_secret_sources_rank_env_over_file_over_yaml(tmp_path: Path) -> None:
    """A secret set in several places: env beats `PROXY_*_FILE`, which beats YAML."""
    (tmp_path / "secret").write_text("from-file\n")
    cfg = tmp_path / "proxy.yaml"
    cfg.write_text("auth_client_secret: from-yaml\n")
    env = {k: v for k, v in BASE.items() if k != "PROXY_AUTH_CLIENT_SECRET"}
    assert load_settings({}, env, cfg).auth_client_secret == "from-yaml"
    env["PROXY_AUTH_CLIENT_SECRET_FILE"] = str(tmp_path / "secret")
    assert load_settings({}, env, cfg).auth_client_secret == "from-file"
    env["PROXY_AUTH_CLIENT_SECRET"] = "from-env"
    assert load_settings({}, env, cfg).auth_client_secret == "from-env"


def test_malformed_yaml_is_a_problem(tmp_path: Path) -> None:
    """A YAML syntax error or a file that is not a mapping is listed with the other problems."""
    for text in ("acm_hub: [unclosed\n", "- just\n- a list\n"):
        cfg = tmp_path / "proxy.yaml"
        cfg.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_settings({}, {"PROXY_AUTH_REALM": "nerc"}, cfg)
        problems = info.value.problems
        assert any(str(cfg) in p for p in problems), problems
        assert any("PROXY_AUTH_BASE_URL: required" in p for p in problems), problems
