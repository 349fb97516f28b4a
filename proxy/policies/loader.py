"""Load policies files into checked models; any error stops the load."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from proxy.naming import DEFAULT_KEYS, Keys
from proxy.policies.checks import check_file
from proxy.policies.model import AccessModel
from proxy.policies.problems import PolicyFileError


def load(path: Path, keys: Keys = DEFAULT_KEYS) -> AccessModel:
    """Load and check one policies file; raise `PolicyFileError` listing every error."""
    model, problems = check_file(path, keys)
    if model is None:
        raise PolicyFileError([p for p in problems if p.severity == "error"])
    return model


def load_all(paths: Iterable[Path], keys: Keys = DEFAULT_KEYS) -> list[AccessModel]:
    """Load several files, collecting the errors of all of them before raising."""
    models: list[AccessModel] = []
    errors = []
    for path in paths:
        model, problems = check_file(path, keys)
        errors += [p for p in problems if p.severity == "error"]
        if model is not None:
            models.append(model)
    if errors:
        raise PolicyFileError(errors)
    return models
