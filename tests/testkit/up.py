"""A real `edgeinfer up` for tests: a topology on free ports, the process, its tree by /proc, and what of it
is left (processes, listening ports)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import grpc
import numpy as np
import yaml

from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request
from testkit.procs import grpc_ready

REPO = Path(__file__).resolve().parents[2]
REGIONS = ("us-east", "eu-west", "ap-south")
READY_MESSAGE = "regions ready in"


def env(**extra: str) -> dict[str, str]:
    # The repository on the path: `regions` is importable even before the package list names it.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", **extra}


def free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def write_topology(path: Path, ports: list[int]) -> None:
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


def tree(root: int) -> dict[int, tuple[int, str]]:
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


def alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[2] == started


def mentioning(text: str) -> list[str]:
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


def infer(address: str) -> str:
    """A fraud inference; returns the region named by the trailing metadata."""
    request = build_request("fraud", {"features": np.ones((1, 30), dtype=np.float32)})
    with grpc.insecure_channel(address) as channel:
        reply, call = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(request, timeout=60)
    assert reply.outputs[0].name == "probabilities"
    return dict(call.trailing_metadata())["x-edgeinfer-region"]  # type: ignore[no-any-return]


class Up:
    """A real `edgeinfer up` (a subprocess) on the given ports; `name` keeps its output apart from another's."""

    def __init__(
        self, tmp_path: Path, model_repo: Path, ports: list[int], name: str = "up", extra: Sequence[str] = ()
    ) -> None:
        self.tmp_path = tmp_path
        self.topology = tmp_path / "topology.yaml"
        self.state_dir = tmp_path / "state"
        self.ports = ports
        self.entry = f"127.0.0.1:{ports[10]}"
        write_topology(self.topology, ports)
        self.out = tmp_path / f"{name}.out"
        self.err = tmp_path / f"{name}.err"
        self.seen: dict[int, tuple[int, str]] = {}
        argv = [
            sys.executable, "-m", "edgeinfer.cli", "up",
            "--topology", str(self.topology),
            "--port", str(ports[10]),
            "--model-repo", str(model_repo),
            "--state-dir", str(self.state_dir),
            *extra,
        ]  # fmt: skip
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, env=env(), cwd=tmp_path)

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def ready(self) -> bool:
        """The state file says ready (`up` writes it once every region and the entry answered) and the entry
        answers ServerReady."""
        try:
            state = json.loads((self.state_dir / "up.json").read_text())
        except (OSError, ValueError):
            return False
        return bool(state.get("ready")) and grpc_ready(self.entry)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert self.popen.poll() is None, f"edgeinfer up exited with {self.popen.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"edgeinfer up not ready after {timeout}s:\n{self.output()}"
            time.sleep(0.05)  # poll interval

    def collect(self) -> None:
        self.seen.update(tree(self.popen.pid))

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
            if alive(pid, started):
                os.kill(pid, signal.SIGKILL)


def listening(ports: set[int]) -> list[int]:
    """Which of `ports` some socket on this machine listens on (TCP, IPv4 or IPv6), from /proc/net."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in ports:
                    found.add(port)
    return sorted(found)


def check_serves_every_region_and_stops_clean(up: Up, tmp_path: Path) -> None:
    """A ready `up`: every region and the entry serve, the state file and `status` say so, SIGTERM stops it all."""
    deadline = time.monotonic() + 30
    while READY_MESSAGE not in up.output():  # the line a person waits for, printed once the state says ready
        assert time.monotonic() < deadline, up.output()
        time.sleep(0.05)  # poll interval
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
