"""The function's metrics port: loopback by default, a token beyond it, TLS/mTLS when gRPC has them."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from testkit.pki import Pki, client_context
from testkit.procs import Proc, free_port, grpc_ready

from edgeinfer.functions.metrics import FUNCTION_READY

TOKEN = "metrics-token-4e1f0b7d9a"


def get(port: int, context: ssl.SSLContext | None = None, token: str | None = None) -> tuple[int, str]:
    connection: http.client.HTTPConnection = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        if context is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    )
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def function_argv(model_repo: Path, port: int, metrics_port: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "edgeinfer.cli", "function", "--model-repo", str(model_repo),
        "--port", str(port), "--metrics-port", str(metrics_port), *extra,
    ]  # fmt: skip


def test_token_is_required_and_never_logged(model_repo: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    port, metrics_port = free_port(), free_port()
    proc = Proc(
        function_argv(model_repo, port, metrics_port, "--metrics-token-file", str(token_file)), tmp_path / "f.log"
    )
    try:
        proc.wait_until(lambda: grpc_ready(f"127.0.0.1:{port}"), 60, "function")
        status, body = get(metrics_port)
        assert status == 401 and "Bearer <metrics token>" in body
        assert get(metrics_port, token="wrong")[0] == 401
        status, body = get(metrics_port, token=TOKEN)
        assert status == 200 and f"{FUNCTION_READY} 1.0" in body
    finally:
        proc.stop()
    assert TOKEN not in proc.output()


def test_beyond_loopback_without_a_token_refuses_to_start(model_repo: Path) -> None:
    """The check comes before anything listens, so nothing is bound to 0.0.0.0 even for a moment."""
    argv = function_argv(model_repo, free_port(), free_port(), "--metrics-host", "0.0.0.0")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--metrics-host 0.0.0.0 is not loopback" in done.stderr and "--metrics-token-file" in done.stderr


def test_metrics_follow_the_grpc_ports_mutual_tls(model_repo: Path, pki: Pki, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    tls = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key), "--tls-client-ca", str(pki.ca)]
    proc = Proc(function_argv(model_repo, port, metrics_port, *tls), tmp_path / "f.log")
    try:
        proc.wait_until(lambda: "ready on" in proc.output(), 60, "function")
        status, body = get(metrics_port, client_context(pki.ca, pki.client))
        assert status == 200 and f"{FUNCTION_READY} 1.0" in body
        refusals: list[type[BaseException]] = [ssl.SSLError, ConnectionError, http.client.HTTPException]
        for context in (client_context(pki.ca, None), client_context(pki.ca, pki.rogue_client)):
            with pytest.raises(tuple(refusals)):
                get(metrics_port, context)
        with pytest.raises(tuple(refusals)):
            get(metrics_port)  # plain HTTP to a TLS port
        # A client that connects and says nothing does not hold up the next one.
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=5):
            assert get(metrics_port, client_context(pki.ca, pki.client))[0] == 200
    finally:
        assert proc.stop() == 0
