"""Shared fixtures: real Prometheus (mTLS), the Keycloak emulator and the proxy, all on loopback."""

pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.stack",
    "tests.support.hubs",
    "tests.support.soak_plugin",
    "tests.support.logscan",
    "tests.support.cachestack",
    "tests.support.cacheservers",
]
