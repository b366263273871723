"""`edgeinfer up` refusing to start, with one clear line. The stack serving every region, `status`, and a clean
stop run on the second stack of test_sigkill.py (one start fewer for the suite)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit.up import env, free_ports, mentioning, write_topology


@pytest.mark.parametrize("busy", ["entry", "eu-west admin"])
def test_busy_port_is_a_clear_one_line_error(tmp_path: Path, fraud_repo: Path, busy: str) -> None:
    ports = free_ports(12)
    write_topology(tmp_path / "topology.yaml", ports)
    port = ports[10] if busy == "entry" else ports[4]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "edgeinfer.cli", "up", "--topology", str(tmp_path / "topology.yaml"),
             "--port", str(ports[10]), "--model-repo", str(fraud_repo), "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, env=env(), timeout=60, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0] and "in use" in lines[0] and "--port" in lines[0] and "--topology" in lines[0]
    assert ("entry (Envoy)" if busy == "entry" else "eu-west gateway admin") in lines[0]
    assert not mentioning(str(tmp_path))
    assert not (tmp_path / "state" / "up.json").exists()


def test_missing_redis_binary_is_a_clear_one_line_error(tmp_path: Path, fraud_repo: Path) -> None:
    ports = free_ports(12)
    write_topology(tmp_path / "topology.yaml", ports)
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "up", "--topology", str(tmp_path / "topology.yaml"),
         "--port", str(ports[10]), "--model-repo", str(fraud_repo), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=env(EDGEINFER_REDIS_SERVER=str(tmp_path / "no-such-redis-server")),
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeinfer up: cannot start Redis:"), result.stderr
    assert "EDGEINFER_REDIS_SERVER" in lines[0]
    assert not mentioning(str(tmp_path))


def test_a_redis_cluster_in_the_topology_is_refused_by_up_with_the_fix(tmp_path: Path, fraud_repo: Path) -> None:
    """The topology accepts a cluster URL (for deployed gateways); `edgeinfer up` starts plain Redis only."""
    ports = free_ports(12)
    path = tmp_path / "topology.yaml"
    write_topology(path, ports)
    document = yaml.safe_load(path.read_text())
    document["regions"][2]["redis"] = f"redis+cluster://127.0.0.1:{ports[8]},127.0.0.1:{ports[8] + 1}"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "up", "--topology", str(path),
         "--port", str(ports[10]), "--model-repo", str(fraud_repo), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, env=env(), timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "regions[2].redis" in lines[0] and "not a Redis Cluster" in lines[0], result.stderr
    assert not mentioning(str(tmp_path))
