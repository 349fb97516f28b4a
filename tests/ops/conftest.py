"""Fixtures for the deployment tests: chart rendering, Kubernetes schema validation, paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "prom-keycloak-proxy"
PROD_VALUES = CHART / "ci" / "prod-values.yaml"
KUBE_VERSIONS = ("1.30.0", "1.37.0")
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


@pytest.fixture(name="render_raw", scope="session")
def _render_raw(chart: Any) -> Callable[..., dict[str, str]]:
    """A function rendering the chart with values, returning {template: text}."""

    def render_raw(values: dict[str, Any] | None = None) -> dict[str, str]:
        """Render the chart offline with the given values."""
        manifests: dict[str, str] = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
        return manifests

    return render_raw


@pytest.fixture(name="render", scope="session")
def _render(render_raw: Callable[..., dict[str, str]]) -> Render:
    """A function rendering the chart with values, returning the parsed documents."""

    def render(values: dict[str, Any] | None = None) -> list[Doc]:
        """Render and parse every manifest."""
        return list(iter_docs(render_raw(values)))

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
