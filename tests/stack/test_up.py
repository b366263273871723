"""`edgeinfer up` and `edgeinfer status` end to end: real Redis, gateways and functions on free ports."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.procs import grpc_ready
from testkit.up import REGIONS, Up, alive, env, free_ports, infer, mentioning, write_topology


@pytest.fixture
def up(tmp_path: Path, fraud_repo: Path) -> Iterator[Up]:
    stack = Up(tmp_path, fraud_repo, free_ports(12))
    try:
        yield stack
    finally:
        stack.close()


def test_up_serves_every_region_and_stops_clean(up: Up, tmp_path: Path) -> None:
    up.wait_ready()
    up.collect()
    addresses = up.addresses()
    for region, address in addresses.items():
        assert grpc_ready(address), f"{region} on {address}"
    for region, address in addresses.items():
        assert infer(address) == region
    # The entry is Envoy: the nearest healthy region (the first, the edge) serves it.
    assert infer(up.entry) == "us-east"
    up.collect()

    state = json.loads((up.state_dir / "up.json").read_text())
    assert state["ready"] and state["pid"] == up.popen.pid and state["entry"] == up.entry
    assert [r["name"] for r in state["regions"]] == list(REGIONS)

    status = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "status", "--state-dir", str(up.state_dir), "--json"],
        capture_output=True, text=True, env=env(), timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    report = json.loads(status.stdout)
    assert [r["region"] for r in report["regions"]] == list(REGIONS)
    for region in report["regions"]:
        assert region["state"] == "up", region
        fraud = region["models"]["fraud"]
        assert fraud["requests"] >= 1 and fraud["cold_starts"] >= 1, region
        assert fraud["p99_seconds_estimated"] is not None
    us_east = report["regions"][0]["models"]["fraud"]
    assert us_east["hits"] >= 1 and us_east["hit_ratio"] > 0  # the entry call repeated us-east's request

    table = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "status", "--topology", str(up.topology), "--port", str(up.ports[10])],
        capture_output=True, text=True, env=env(), timeout=60,
    )  # fmt: skip
    assert table.returncode == 0, table.stdout + table.stderr
    for region in REGIONS:
        assert region in table.stdout
    assert "p99 (est.)" in table.stdout and "estimated from the latency histogram's buckets" in table.stdout
    up.collect()

    commands = [cmd for _, cmd in up.seen.values()]
    assert sum(" gateway " in c for c in commands) == 3, commands
    assert sum("-server" in c for c in commands) == 3, commands  # redis-server or valkey-server
    assert sum("envoy" in c.split()[0] for c in commands if c) == 1, commands
    assert sum(" function " in c for c in commands) >= 3, commands

    up.popen.send_signal(signal.SIGTERM)
    assert up.popen.wait(40) == 0, up.output()
    left = [f"{pid}: {cmd}" for pid, (started, cmd) in up.seen.items() if alive(pid, started)]
    assert not left, left
    assert not mentioning(str(tmp_path))
    assert not (up.state_dir / "up.json").exists()
    assert "nothing left running" in up.output()

    # With the stack gone, status shows every region down instead of failing.
    down = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "status", "--topology", str(up.topology), "--port", str(up.ports[10]),
         "--json", "--timeout", "0.5"],
        capture_output=True, text=True, env=env(), timeout=60,
    )  # fmt: skip
    assert down.returncode == 3, down.stdout + down.stderr
    assert [r["state"] for r in json.loads(down.stdout)["regions"]] == ["down"] * 3


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
