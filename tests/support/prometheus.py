"""Oracle Prometheus servers: one per grant, holding only the series that grant may see.

docs/testing.md: the proxy's answer for an identity must equal the same query sent straight to a
Prometheus backfilled with only that identity's visible series. Each server runs the same rules
as the full one (`DEMO_RULES` keep cluster and project labels, so rule outputs have the same
visibility as their inputs). Caveats, by construction:
- rule outputs (`ALERTS`, recorded series) exist only since each server started and are evaluated
  at different instants: compare them by label set, or at a single instant with a tolerance,
  never over a range reaching before both servers started;
- `time()`-free queries over the dataset are exact at any instant in the dataset's window.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proxy_demo.certs import Pki
from proxy_demo.dataset import Series
from proxy_demo.prometheus import DEMO_RULES, Binaries, PrometheusServer
from tests.support.oracle import (
    DEFAULT_CLUSTER_LABEL,
    DEFAULT_PROJECT_LABELS,
    Grant,
    assert_same_result,
    visible_series,
)


class OraclePrometheusFactory:
    """Starts, at most once per grant, a Prometheus holding only the series that grant sees."""

    def __init__(
        self,
        base_dir: Path,
        pki: Pki,
        series: Sequence[Series],
        *,
        rules: str | None = DEMO_RULES,
        binaries: Binaries | None = None,
        full: PrometheusServer | None = None,
        cluster_label: str = DEFAULT_CLUSTER_LABEL,
        project_labels: Sequence[str] = DEFAULT_PROJECT_LABELS,
        project_label_metrics: Mapping[str, str] | None = None,
    ) -> None:
        """`full`, when given, serves hub-wide grants (it holds exactly what they see)."""
        self.base_dir = Path(base_dir)
        self.pki = pki
        self.series = list(series)
        self.rules = rules
        self.binaries = binaries
        self.full = full
        self.cluster_label = cluster_label
        self.project_labels = tuple(project_labels)
        self.project_label_metrics = dict(project_label_metrics or {})
        self._servers: dict[Grant, PrometheusServer] = {}
        self._lock = threading.Lock()

    def visible(self, grant: Grant) -> list[Series]:
        """The dataset series `grant` may see."""
        return visible_series(
            self.series,
            grant,
            self.cluster_label,
            self.project_labels,
            self.project_label_metrics or None,
        )

    def get(self, grant: Grant) -> PrometheusServer:
        """The (started, cached) oracle Prometheus for `grant`."""
        if grant.hub_wide and self.full is not None:
            return self.full
        with self._lock:
            server = self._servers.get(grant)
            if server is None:
                workdir = self.base_dir / f"oracle-{len(self._servers)}-{grant.slug()[:60]}"
                server = PrometheusServer(
                    workdir,
                    self.pki,
                    self.visible(grant),
                    rules=self.rules,
                    binaries=self.binaries,
                )
                server.start()
                self._servers[grant] = server
            return server

    def query(self, grant: Grant, q: str, *, time: float | str) -> Any:
        """Instant query against `grant`'s oracle at an explicit `time` → `data`."""
        return self.get(grant).query(q, time=time)

    def query_range(self, grant: Grant, q: str, *, start: float, end: float, step: float | str) -> Any:
        """Range query against `grant`'s oracle → `data`."""
        return self.get(grant).query_range(q, start, end, step)

    def assert_query_matches(
        self,
        actual: Mapping[str, Any],
        grant: Grant,
        q: str,
        *,
        time: float | str | None = None,
        start: float | None = None,
        end: float | None = None,
        step: float | str | None = None,
        rel_tol: float = 1e-9,
        abs_tol: float = 1e-9,
    ) -> None:
        """Assert `actual` (an answer for `q`) equals the oracle's: give `time`, or start/end/step."""
        if time is not None:
            expected = self.query(grant, q, time=time)
        elif start is not None and end is not None and step is not None:
            expected = self.query_range(grant, q, start=start, end=end, step=step)
        else:
            raise ValueError("pass the same explicit time (or start/end/step) the actual query used")
        assert_same_result(actual, expected, rel_tol=rel_tol, abs_tol=abs_tol)

    def close(self) -> None:
        """Stop every oracle server this factory started."""
        with self._lock:
            for server in self._servers.values():
                server.stop()
            self._servers.clear()

    def __len__(self) -> int:
        """Number of oracle servers started so far."""
        return len(self._servers)
