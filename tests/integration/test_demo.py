"""`prom-keycloak-proxy-demo --check`: the embedded default starts, answers every printed command, stops."""

from __future__ import annotations

import subprocess

from tests.support.proc import console_script
from tests.support.proxy_server import free_port


def test_demo_check_runs_every_printed_command(prometheus_binaries: object) -> None:
    """Every demo curl line gets an HTTP answer; alice's is 200 and eve's 403; exit code 0."""
    ports = [str(free_port()) for _ in range(3)]
    proc = subprocess.run(
        [
            *console_script("prom-keycloak-proxy-demo", "proxy_demo"),
            "--check",
            "--port",
            ports[0],
            "--metrics-port",
            ports[1],
            "--keycloak-port",
            ports[2],
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "curl -s -H 'Authorization: Bearer ey" in out
    assert "curl -s -u researcher-team-a:" in out
    answers = out.split("# alice")[-1]
    assert answers.count("HTTP 200") >= 4 and "HTTP 403" in answers
