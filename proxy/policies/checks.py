"""Schema and semantic checks of a policies file; every problem carries its file:line."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from proxy.naming import DEFAULT_KEYS, Keys
from proxy.policies import names, secret_refs
from proxy.policies.lengths import length_problems
from proxy.policies.model import AccessModel, build
from proxy.policies.problems import Problem
from proxy.policies.timechecks import time_problems
from proxy.policies.yamlsrc import LocatedDocument, load_located

SCHEMA_PATH = Path(__file__).with_name("schema.json")


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of policies files (also published as `policies/schema.json`)."""
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def check_text(
    text: str, file: str, keys: Keys = DEFAULT_KEYS, *, secrets_required: bool = True
) -> tuple[AccessModel | None, list[Problem]]:
    """Check one file's text; the model is returned only when there is no error.

    `secret_file`/`secret_env` references are read here: unreadable ones are errors when
    `secrets_required` (apply, export), warnings otherwise (validate)."""
    try:
        doc = load_located(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        return None, [Problem(file, line, "error", f"YAML: {exc.problem or exc}")]
    problems = [Problem(file, line, "error", f"duplicate key {path[-1]!r}") for path, line in doc.duplicates]
    problems += _schema_problems(doc, file)
    if problems:
        return None, sorted(problems)
    refs = secret_refs.resolve(doc, file, required=secrets_required)
    if any(p.severity == "error" for p in refs):
        return None, sorted(refs)
    model = build(doc.data, keys)
    problems = sorted([*refs, *_semantic(model, doc, file)])
    has_error = any(p.severity == "error" for p in problems)
    return (None if has_error else model), problems


def check_file(
    path: Path, keys: Keys = DEFAULT_KEYS, *, secrets_required: bool = True
) -> tuple[AccessModel | None, list[Problem]]:
    """Check one file on disk (an unreadable file is one problem, not an exception)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [Problem(str(path), 1, "error", f"cannot read the file: {reason}")]
    return check_text(text, str(path), keys, secrets_required=secrets_required)


def _schema_problems(doc: LocatedDocument, file: str) -> list[Problem]:
    if not isinstance(doc.data, dict):
        return [Problem(file, 1, "error", "the file must be a mapping (realm, hub, clusters, …)")]
    validator = _Validator(schema())
    out = []
    for err in validator.iter_errors(doc.data):
        path = _offending_path(err)
        where = "/".join(str(p) for p in path) or "(top level)"
        out.append(Problem(file, doc.line_of(path), "error", f"{where}: {_describe(err)}"))
    return out


# YAML reads `until: 2026-12-31` as a date; for the schema it is the string an editor sees.
_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "string", lambda _checker, value: isinstance(value, str | date)
    ),
)


def _offending_path(err: jsonschema.ValidationError) -> tuple[str | int, ...]:
    # Point at the offending key itself, not at the mapping that contains it.
    path = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
        extra = [k for k in err.instance if k not in allowed]
        if extra:
            return (*path, str(extra[0]))
    if err.validator in ("propertyNames",) or (
        err.relative_schema_path and "propertyNames" in err.relative_schema_path
    ):
        return (*path, str(err.instance))
    return path


def _describe(err: jsonschema.ValidationError) -> str:
    # oneOf/anyOf messages dump the whole instance; say what the grant needs instead.
    if err.validator == "oneOf":
        return "a grant names exactly one of group, user or client"
    if err.validator == "anyOf":
        return "a grant needs at least one of all_hubs, hub, clusters or projects"
    return err.message


def _semantic(model: AccessModel, doc: LocatedDocument, file: str) -> Iterable[Problem]:
    def at(*path: str | int) -> int:
        return doc.line_of(path)

    yield from _duplicates(file, at, "groups", model.groups, "group")
    yield from _duplicates(file, at, "users", [u.username for u in model.users], "user", key="username")
    client_ids = [c.client_id for c in model.clients]
    yield from _duplicates(file, at, "clients", client_ids, "client", key="client_id")
    for i, cid in enumerate(client_ids):
        if cid == model.resource_server.client_id:
            msg = f"client {cid!r} is the resource server; declare it only once"
            yield Problem(file, at("clients", i, "client_id"), "error", msg)
    for cluster in model.clusters:
        counts = Counter(cluster.projects)
        for j, project in enumerate(cluster.projects):
            if counts[project] > 1 and cluster.projects.index(project) != j:
                line = at("clusters", cluster.name, "projects", j)
                msg = f"project {project!r} listed twice in cluster {cluster.name!r}"
                yield Problem(file, line, "error", msg)
    for name in model.resource_names():
        if len(names.permission(name)) > names.MAX_NAME_LENGTH:
            msg = f"permission name for {name!r} is longer than Keycloak's 255 characters"
            yield Problem(file, at("clusters"), "error", msg)
    for i, grant in enumerate(model.grants):
        for resource in model.grant_resources(grant):
            full = names.grant_permission(resource, grant.grantee.kind, grant.grantee.name)
            if len(full) > names.MAX_NAME_LENGTH:
                msg = f"permission {full[:40]}… is longer than Keycloak's 255 characters"
                yield Problem(file, at("grants", i), "error", msg)
    yield from length_problems(model, at, file)
    known_groups = set(model.groups)
    for i, user in enumerate(model.users):
        for j, group in enumerate(user.groups):
            if group not in known_groups:
                msg = f"user {user.username!r} is in undeclared group {group!r}"
                yield Problem(file, at("users", i, "groups", j), "error", msg)
    yield from _grant_problems(model, doc.data.get("grants", []), at, file)
    yield from time_problems(model, doc.data.get("grants", []), doc.data, at, file)


def _duplicates(
    file: str, at: Any, section: str, values: Iterable[str], what: str, *, key: str | None = None
) -> Iterable[Problem]:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            line = at(section, i, key) if key else at(section, i)
            yield Problem(file, line, "error", f"duplicate {what} {value!r}")
        seen.add(value)


def _grant_problems(
    model: AccessModel, raw: list[Mapping[str, Any]], at: Any, file: str
) -> Iterable[Problem]:
    clusters = {c.name: set(c.projects) for c in model.clusters}
    declared = {
        "group": set(model.groups),
        "user": {u.username for u in model.users},
        "client": {c.client_id for c in model.clients},
    }
    interactive = {c.client_id for c in model.clients if c.standard_flow}
    for i, (grant, rg) in enumerate(zip(model.grants, raw, strict=True)):
        kind, who = grant.grantee.kind, grant.grantee.name
        if grant.all_hubs and not model.hub_resource:
            msg = "all_hubs needs `hub_resource: true` (the realm has no top-level HUB resource)"
            yield Problem(file, at("grants", i, "all_hubs"), "error", msg)
        for j, cluster in enumerate(grant.clusters):
            if cluster not in clusters:
                msg = f"unknown cluster {cluster!r}"
                yield Problem(file, at("grants", i, "clusters", j), "error", msg)
        for cluster, plist in (rg.get("projects") or {}).items():
            if cluster not in clusters:
                msg = f"unknown cluster {cluster!r}"
                yield Problem(file, at("grants", i, "projects", cluster), "error", msg)
                continue
            for j, project in enumerate(plist):
                if project not in clusters[cluster]:
                    msg = f"unknown project {project!r} of cluster {cluster!r}"
                    yield Problem(file, at("grants", i, "projects", cluster, j), "error", msg)
        if who not in declared[kind]:
            msg = f"{kind} {who!r} is not declared in this file; apply needs it to exist in Keycloak"
            yield Problem(file, at("grants", i, kind), "warning", msg)
        if kind == "client" and who in interactive:
            msg = (
                f"client policy for standard-flow client {who!r}: every user signing in through "
                "it matches (Keycloak evaluates client policies on the token's azp)"
            )
            yield Problem(file, at("grants", i, kind), "warning", msg)
