"""Fixtures for the deployment tests: chart rendering, Kubernetes schema validation, paths."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "prom-keycloak-proxy"
PROD_VALUES = CHART / "ci" / "prod-values.yaml"
REQUIRED_VALUES = CHART / "ci" / "required-values.yaml"
# Every minor version Chart.yaml's kubeVersion admits that clusters run today, plus the newest schema.
KUBE_VERSIONS = ("1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.37.0")
RELEASE = "prom-keycloak-proxy"
NAMESPACE = "observability"

Doc = dict[str, Any]
Render = Callable[..., list[Doc]]


def load_yaml(path: Path) -> Any:
    """Return the parsed YAML document at path."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def iter_docs(manifests: dict[str, str]) -> Iterator[Doc]:
    """Yield every non-empty YAML document of a helm render result, NOTES.txt excluded."""
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                yield doc


def validate_k8s(doc: Doc, version: str) -> None:
    """Validate a manifest against the strict Kubernetes schema of version (CRDs excluded)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.fixture(name="chart", scope="session")
def _chart() -> Any:
    """The chart loaded by the Helm SDK (helm-python-sdk, no helm binary needed)."""
    helm_python = pytest.importorskip("helm_python")
    return helm_python.Chart.load(CHART)


@pytest.fixture(name="prod_values", scope="session")
def _prod_values() -> dict[str, Any]:
    """The production-like values file CI renders."""
    values: dict[str, Any] = load_yaml(PROD_VALUES)
    return values


def merge(base: Any, over: Any) -> Any:
    """Deep-merge two values trees as Helm merges values files (maps merge, the rest is replaced)."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
    return over


def with_required(values: dict[str, Any] | None) -> dict[str, Any]:
    """`values` on top of ci/required-values.yaml (several-hubs values bring their own, and exclude
    the single-hub upstream the required file names)."""
    values = values or {}
    return values if "hubs" in values else dict(merge(load_yaml(REQUIRED_VALUES), values))


def render_chart(
    chart: Any, values: dict[str, Any], kube_version: str | None = None, name: str = RELEASE
) -> dict[str, str]:
    """Render offline as `helm template --kube-version` would ({template: text})."""
    if kube_version is None:
        manifests: dict[str, str] = chart.render(values, name=name, namespace=NAMESPACE)
        return manifests
    # Chart.render has no kube_version argument; the native call it wraps accepts one.
    from helm_python import _native

    opts = {"name": name, "namespace": NAMESPACE, "kube_version": f"v{kube_version}"}
    out: dict[str, str] = json.loads(
        _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
    )
    return out


@pytest.fixture(name="render_raw", scope="session")
def _render_raw(chart: Any) -> Callable[..., dict[str, str]]:
    """A function rendering the chart with values (on top of the required ones) → {template: text}."""

    def render_raw(values: dict[str, Any] | None = None, kube_version: str | None = None) -> dict[str, str]:
        """Render the chart offline with the given values."""
        return render_chart(chart, with_required(values), kube_version)

    return render_raw


@pytest.fixture(name="render", scope="session")
def _render(render_raw: Callable[..., dict[str, str]]) -> Render:
    """A function rendering the chart with values, returning the parsed documents."""

    def render(values: dict[str, Any] | None = None, kube_version: str | None = None) -> list[Doc]:
        """Render and parse every manifest."""
        return list(iter_docs(render_raw(values, kube_version)))

    return render


def only(docs: list[Doc], kind: str) -> Doc:
    """Return the single document of a kind, failing when there is not exactly one."""
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def proxy_container(deployment: Doc) -> Doc:
    """Return the proxy container of the chart's Deployment."""
    containers: list[Doc] = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "proxy")


def env_map(container: Doc) -> dict[str, Doc]:
    """Return the container's env entries by name."""
    return {e["name"]: e for e in container.get("env", [])}
