"""`edgeinfer up` and `edgeinfer status` end to end: real Redis, gateways and functions on free ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from testkit.procs import grpc_ready

from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request

REPO = Path(__file__).resolve().parents[2]
REGIONS = ("us-east", "eu-west", "ap-south")
READY_MESSAGE = "regions ready in"


def _env(**extra: str) -> dict[str, str]:
    # The repository on the path: `regions` is importable even before the package list names it.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", **extra}


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def _write_topology(path: Path, ports: list[int]) -> None:
    """Three regions on the given ports: gRPC, admin, Redis for each (REST too for the second)."""
    regions = []
    for i, name in enumerate(REGIONS):
        grpc_port, admin, redis = ports[3 * i : 3 * i + 3]
        gateway: dict[str, object] = {"grpc": [f"127.0.0.1:{grpc_port}"], "admin": f"127.0.0.1:{admin}"}
        if i == 1:
            gateway["rest"] = f"127.0.0.1:{ports[9]}"
        regions.append(
            {
                "name": name,
                "gateway": gateway,
                "redis": f"redis://127.0.0.1:{redis}/0",
                "neighbours": [n for n in REGIONS if n != name],
            }
        )
    document = {"entry": ports[10], "envoy_admin": ports[11], "regions": regions}
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) from /proc, or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _tree(root: int) -> dict[int, tuple[int, str]]:
    """Live descendants of `root` by the ppid links in /proc: pid -> (start time, command line)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[1], []).append(int(entry.name))
    found: dict[int, tuple[int, str]] = {}
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z":
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmdline = ""
            found[pid] = (stat[2], cmdline)
        stack.extend(children.get(pid, []))
    return found


def _alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[2] == started


def _mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (a test's temporary directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            stat = _stat(int(entry.name))
            if text in cmdline and stat is not None and stat[0] != "Z":
                found.append(f"{entry.name}: {cmdline}")
    return found


def _infer(address: str) -> str:
    """A fraud inference; returns the region named by the trailing metadata."""
    request = build_request("fraud", {"features": np.ones((1, 30), dtype=np.float32)})
    with grpc.insecure_channel(address) as channel:
        reply, call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(request, timeout=60)
    assert reply.outputs[0].name == "probabilities"
    return dict(call.trailing_metadata())["x-edgeinfer-region"]  # type: ignore[no-any-return]


class Up:
    def __init__(self, tmp_path: Path, model_repo: Path, ports: list[int]) -> None:
        self.tmp_path = tmp_path
        self.topology = tmp_path / "topology.yaml"
        self.state_dir = tmp_path / "state"
        self.ports = ports
        self.entry = f"127.0.0.1:{ports[10]}"
        _write_topology(self.topology, ports)
        self.out = tmp_path / "up.out"
        self.err = tmp_path / "up.err"
        self.seen: dict[int, tuple[int, str]] = {}
        argv = [
            sys.executable, "-m", "edgeinfer.cli", "up",
            "--topology", str(self.topology),
            "--port", str(ports[10]),
            "--model-repo", str(model_repo),
            "--state-dir", str(self.state_dir),
        ]  # fmt: skip
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, env=_env(), cwd=tmp_path)

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while READY_MESSAGE not in self.out.read_text(errors="replace"):
            assert self.popen.poll() is None, f"edgeinfer up exited with {self.popen.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"edgeinfer up not ready after {timeout}s:\n{self.output()}"
            time.sleep(0.05)  # poll interval; `up` prints the line once every region answered ServerReady

    def collect(self) -> None:
        self.seen.update(_tree(self.popen.pid))

    def addresses(self) -> dict[str, str]:
        data = yaml.safe_load(self.topology.read_text())
        return {r["name"]: r["gateway"]["grpc"][0] for r in data["regions"]}

    def close(self) -> None:
        """Whatever happened: nothing of this stack survives the test."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(40)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        for pid, (started, _) in self.seen.items():
            if _alive(pid, started):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fraud_repo(model_repo: Path, tmp_path: Path) -> Path:
    """Only `fraud`: one function per region keeps the start light on two cores."""
    repo = tmp_path / "models"
    shutil.copytree(model_repo / "fraud", repo / "fraud")
    return repo


@pytest.fixture
def up(tmp_path: Path, fraud_repo: Path) -> Iterator[Up]:
    stack = Up(tmp_path, fraud_repo, _free_ports(12))
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
        assert _infer(address) == region
    # The entry is Envoy: the nearest healthy region (the first, the edge) serves it.
    assert _infer(up.entry) == "us-east"
    up.collect()

    state = json.loads((up.state_dir / "up.json").read_text())
    assert state["ready"] and state["pid"] == up.popen.pid and state["entry"] == up.entry
    assert [r["name"] for r in state["regions"]] == list(REGIONS)

    status = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "status", "--state-dir", str(up.state_dir), "--json"],
        capture_output=True, text=True, env=_env(), timeout=60,
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
        capture_output=True, text=True, env=_env(), timeout=60,
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
    left = [f"{pid}: {cmd}" for pid, (started, cmd) in up.seen.items() if _alive(pid, started)]
    assert not left, left
    assert not _mentioning(str(tmp_path))
    assert not (up.state_dir / "up.json").exists()
    assert "nothing left running" in up.output()

    # With the stack gone, status shows every region down instead of failing.
    down = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "status", "--topology", str(up.topology), "--port", str(up.ports[10]),
         "--json", "--timeout", "0.5"],
        capture_output=True, text=True, env=_env(), timeout=60,
    )  # fmt: skip
    assert down.returncode == 3, down.stdout + down.stderr
    assert [r["state"] for r in json.loads(down.stdout)["regions"]] == ["down"] * 3


@pytest.mark.parametrize("busy", ["entry", "eu-west admin"])
def test_busy_port_is_a_clear_one_line_error(tmp_path: Path, fraud_repo: Path, busy: str) -> None:
    ports = _free_ports(12)
    _write_topology(tmp_path / "topology.yaml", ports)
    port = ports[10] if busy == "entry" else ports[4]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "edgeinfer.cli", "up", "--topology", str(tmp_path / "topology.yaml"),
             "--port", str(ports[10]), "--model-repo", str(fraud_repo), "--state-dir", str(tmp_path / "state")],
            capture_output=True, text=True, env=_env(), timeout=60, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0] and "in use" in lines[0] and "--port" in lines[0] and "--topology" in lines[0]
    assert ("entry (Envoy)" if busy == "entry" else "eu-west gateway admin") in lines[0]
    assert not _mentioning(str(tmp_path))
    assert not (tmp_path / "state" / "up.json").exists()


def test_missing_redis_binary_is_a_clear_one_line_error(tmp_path: Path, fraud_repo: Path) -> None:
    ports = _free_ports(12)
    _write_topology(tmp_path / "topology.yaml", ports)
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "up", "--topology", str(tmp_path / "topology.yaml"),
         "--port", str(ports[10]), "--model-repo", str(fraud_repo), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=_env(EDGEINFER_REDIS_SERVER=str(tmp_path / "no-such-redis-server")),
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeinfer up: cannot start Redis:"), result.stderr
    assert "EDGEINFER_REDIS_SERVER" in lines[0]
    assert not _mentioning(str(tmp_path))
