"""Secrets referenced from a policies file instead of written into it: `secret_file`/`secret_env`
(clients, the resource server) and `password_file`/`password_env` (users).

The reviewed YAML then holds no secret; `apply` and `export` read the file (relative to the
policies file) or the environment variable. `validate` only warns when one cannot be read, so
a review pipeline can check files without the secrets."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from proxy.policies.problems import Problem
from proxy.policies.yamlsrc import LocatedDocument

# (section of the file, plain key, what to call it)
_SECRET, _PASSWORD = "secret", "password"


def _holders(
    data: Mapping[str, Any],
) -> Iterator[tuple[tuple[str | int, ...], MutableMapping[str, Any], str]]:
    """Every mapping that may carry a secret: (JSON path, the mapping, its plain key)."""
    rs = data.get("resource_server")
    if isinstance(rs, dict):
        yield ("resource_server",), rs, _SECRET
    for section, key in (("clients", _SECRET), ("users", _PASSWORD)):
        for i, item in enumerate(data.get(section) or []):
            if isinstance(item, dict):
                yield (section, i), item, key


def resolve(doc: LocatedDocument, file: str, *, required: bool = True) -> list[Problem]:
    """Replace every `<key>_file`/`<key>_env` of `doc.data` by `<key>`; problems for those unread.

    An unreadable file or unset variable is an error when `required` (apply, export), else a
    warning (validate). Giving more than one of `<key>`, `<key>_file`, `<key>_env` is an error.
    """
    base = Path(file).parent
    problems: list[Problem] = []
    for path, holder, key in _holders(doc.data):
        given = [k for k in (key, f"{key}_file", f"{key}_env") if k in holder]
        line = doc.line_of((*path, given[0])) if given else 0
        if len(given) > 1:
            problems.append(
                Problem(
                    file, line, "error", f"{'/'.join(map(str, path))}: {' and '.join(given)} are exclusive"
                )
            )
            continue
        if not given or given[0] == key:
            continue
        ref = holder.pop(given[0])
        value, why = _read(base, given[0].endswith("_file"), str(ref))
        if value is not None:
            holder[key] = value
        else:
            where = f"{'/'.join(map(str, path))}/{given[0]}"
            problems.append(Problem(file, line, "error" if required else "warning", f"{where}: {why}"))
    return problems


def _read(base: Path, is_file: bool, ref: str) -> tuple[str | None, str]:
    """(value, "") or (None, why)."""
    if not is_file:
        value = os.environ.get(ref)
        return (value, "") if value else (None, f"environment variable {ref} is not set")
    path = Path(ref) if Path(ref).is_absolute() else base / ref
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    return (text, "") if text else (None, f"{path} is empty")
