"""Start and stop real processes for tests: free ports, readiness by polling the real protocol, no orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc

_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now, never one handed out before in this process: the kernel may give the same free port to two
    calls in a row (a gateway's gRPC and admin ports were once equal)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class Proc:
    """A child process in its own process group, with its output captured to a file."""

    def __init__(self, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{what}: process exited with {self.popen.returncode}:\n{self.output()}")
            if check():
                return
            time.sleep(0.05)
        raise TimeoutError(f"{what}: not ready after {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        self._log.close()
        return self.popen.returncode


def grpc_ready(address: str) -> bool:
    """True once the Open Inference ServerReady RPC answers ready."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = pb_grpc.GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=0.5)
        except grpc.RpcError:
            return False
        return bool(reply.ready)


def start_function(
    model_repo: Path, log_dir: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[Proc, str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "edgeinfer.cli",
        "function",
        "--model-repo",
        str(model_repo),
        "--port",
        str(port),
        *extra,
    ]
    proc = Proc(argv, log_dir / f"function-{port}.log", env)
    address = f"127.0.0.1:{port}"
    try:
        proc.wait_until(lambda: grpc_ready(address), timeout, f"function on {address}")
    except BaseException:
        proc.stop()
        raise
    return proc, address


def start_gateway(
    log_dir: Path,
    routes: dict[str, list[str]],
    *extra: str,
    region: str = "test",
    rest: bool = False,
    admin: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[Proc, dict[str, str]]:
    """A real `edgeinfer gateway`; returns it and its addresses (grpc, rest, admin)."""
    port = free_port()
    argv = [sys.executable, "-m", "edgeinfer.cli", "gateway", "--region", region, "--port", str(port)]
    addresses = {"grpc": f"127.0.0.1:{port}"}
    if rest:
        rest_port = free_port()
        argv += ["--rest-port", str(rest_port)]
        addresses["rest"] = f"http://127.0.0.1:{rest_port}"
    if admin:
        admin_port = free_port()
        argv += ["--admin-port", str(admin_port)]
        addresses["admin"] = f"http://127.0.0.1:{admin_port}"
    for model, endpoints in routes.items():
        argv += ["--route", f"{model}={','.join(endpoints)}"]
    if not any(a.startswith("--drain-delay") for a in extra):
        argv += ["--drain-delay", "0"]  # no load balancer watches these gateways' health
    argv += list(extra)
    proc = Proc(argv, log_dir / f"gateway-{region}-{port}.log", env)
    try:
        proc.wait_until(lambda: grpc_ready(addresses["grpc"]), timeout, f"gateway on {addresses['grpc']}")
    except BaseException:
        proc.stop()
        raise
    return proc, addresses


def scrape_metrics(url: str) -> dict[str, float]:
    """Prometheus text from `url` as {series: value}."""
    import urllib.request

    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values
