"""`prom-keycloak-proxy-demo`: starts, prints working token-minting lines, cleans up, fails in one line."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.support.proc import console_script
from tests.support.proxy_server import free_port


def _demo(args: list[str], tmp: Path, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    """Run the demo's console script with TMPDIR pointing at `tmp`."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    return subprocess.run(
        [*console_script("prom-keycloak-proxy-demo", "proxy_demo"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_demo_check_runs_every_printed_block_and_leaves_no_files(
    prometheus_binaries: object, tmp_path: Path
) -> None:
    """Every printed block mints a token and gets an answer (alice 200, eve 403; on the second hub
    alice 403, bob his one project); temp files are removed."""
    ports = [str(free_port()) for _ in range(3)]
    proc = _demo(
        ["--check", "--port", ports[0], "--metrics-port", ports[1], "--keycloak-port", ports[2]], tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "export ALICE_TOKEN=$(curl -s -d grant_type=password" in out
    assert "export RESEARCHER_TEAM_A_TOKEN=$(curl -s -d grant_type=client_credentials" in out
    assert 'curl -s -H "Authorization: Bearer $ALICE_TOKEN"' in out
    assert "curl -s -u researcher-team-a:" in out
    assert "admin console login admin / admin" in out
    answers = out.split("Running every block once:")[-1]
    alice = answers.split("# alice")[1].split("# bob")[0]
    eve = answers.split("# eve")[1].split("# researcher")[0]
    assert "HTTP 200" in alice and '"team-a"' in alice
    assert "HTTP 403" in eve
    assert answers.count("HTTP 200") >= 5
    # Two hubs: the second hub's own path, its own grants (alice holds nothing there, bob one project).
    assert "/innabox-dev/api/v1/query?query=" in out
    alice_b = answers.split("# alice on hub innabox-dev")[1].split("# bob")[0]
    bob_b = answers.split("# bob on hub innabox-dev")[1].split("# carol")[0]
    assert "HTTP 403" in alice_b
    assert "HTTP 200" in bob_b and '"innabox-gpu"' in bob_b and "nerc-ocp-test" not in bob_b
    assert list(tmp_path.iterdir()) == [], "the demo left files with private keys behind"


def test_demo_port_in_use_is_one_line(tmp_path: Path) -> None:
    """A taken proxy port: exit 2, one line naming the port and the flag, no traceback, nothing started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = _demo(["--port", port, "--metrics-port", str(free_port())], tmp_path, timeout=60)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"prom-keycloak-proxy-demo: port {port} on 127.0.0.1 is in use: pick another with --port PORT"
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_missing_policy_file_is_one_line(tmp_path: Path) -> None:
    """A policies file that does not exist: exit 2 and one line, no traceback."""
    proc = _demo(
        [
            "--policy",
            str(tmp_path / "nope.yaml"),
            "--port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--keycloak-port",
            str(free_port()),
        ],
        tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read the policies file" in lines[0], proc.stderr
