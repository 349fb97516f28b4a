"""The shipped service package never imports test, demo or emulator code."""

from __future__ import annotations

import importlib.util
import json
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import proxy

ROOT = Path(__file__).resolve().parents[2]
# Installed in the development environment, never needed by the service.
FORBIDDEN = ("keycloak_emulator", "proxy_demo", "trustme", "pytest", "hypothesis", "tests")
ENTRY_POINTS = ("proxy.app", "proxy.server", "proxy.cli", "proxy.policies.cli", "proxy.__main__")

_PROBE = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _top_level_modules_after_importing(names: list[str]) -> set[str]:
    """Top-level module names a fresh interpreter holds after importing `names` (no test paths)."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, json.dumps(names)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,  # `-I` drops the working directory from sys.path: only installed packages count
        timeout=120,
    )
    return set(json.loads(done.stdout))


def test_forbidden_packages_are_installed_here() -> None:
    """The check below is not vacuous: this environment could import every forbidden package."""
    for name in FORBIDDEN[:-1]:
        assert importlib.util.find_spec(name) is not None, name


def test_entry_points_never_reach_dev_packages() -> None:
    """Importing the service's entry points (app, server, both CLIs) loads no dev-only package."""
    loaded = _top_level_modules_after_importing(list(ENTRY_POINTS))
    assert "proxy" in loaded and "aiohttp" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_no_module_of_the_package_reaches_dev_packages() -> None:
    """Every module of `proxy`, imported together, loads no dev-only package."""
    names = [m.name for m in pkgutil.walk_packages(proxy.__path__, "proxy.")]
    assert len(names) > 40
    loaded = _top_level_modules_after_importing(names)
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_pip_install_ships_only_the_service_package() -> None:
    """`pip install .` packages `proxy` and its subpackages only (emulator and demo stay out)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["proxy*"]
    shipped = {p.parent.name for p in ROOT.glob("proxy*/__init__.py")}
    assert shipped == {"proxy"}  # no sibling package (e.g. a "proxy_demo") matches the pattern
