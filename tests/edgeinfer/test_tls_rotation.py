"""gRPC servers take rotated certificate files without a restart (edgeinfer/tls.py), on a real function."""

from __future__ import annotations

import shutil
import socket
import ssl
import sys
from pathlib import Path

import grpc
from testkit.pki import Authority, Pair
from testkit.procs import Proc, free_port

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc


def served_serial(port: int, ca: Path) -> int:
    """The serial number of the certificate a new TLS connection is given."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return int(str(tls.getpeercert()["serialNumber"]), 16)


def _handshakes(port: int, ca: Path) -> bool:
    """True once a TLS handshake on the port succeeds: the front listens (a probe, not its log line)."""
    try:
        served_serial(port, ca)
    except OSError:  # refused while starting; ssl.SSLError is an OSError too
        return False
    return True


def serial_of(pair: Pair) -> int:
    from cryptography import x509

    return int(x509.load_pem_x509_certificate(pair.cert.read_bytes()).serial_number)


def ready(port: int, ca: Path) -> bool:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        try:
            return pb_grpc.GRPCInferenceServiceStub(channel).ServerReady(pb.ServerReadyRequest(), timeout=1).ready
        except grpc.RpcError:
            return False


def install(pair: Pair, cert: Path, key: Path) -> None:
    """As a rotation does: write beside, then rename over, so a reader never sees half a file."""
    for source, target in ((pair.cert, cert), (pair.key, key)):
        staged = target.with_suffix(".new")
        shutil.copyfile(source, staged)
        staged.replace(target)


def test_function_serves_a_rotated_certificate_without_restarting(model_repo: Path, tmp_path: Path) -> None:
    authority = Authority(tmp_path, "rotation-ca")
    first, second, third = (authority.issue(name, server=True) for name in ("first", "second", "third"))
    cert, key = tmp_path / "live.pem", tmp_path / "live-key.pem"
    install(first, cert, key)
    port, metrics_port = free_port(), free_port()
    argv = [sys.executable, "-m", "edgeinfer.cli", "function", "--model-repo", str(model_repo),
            "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key),
            "--metrics-port", str(metrics_port)]  # fmt: skip
    proc = Proc(argv, tmp_path / "function.log")
    try:
        proc.wait_until(lambda: ready(port, authority.pem), 60, "function over TLS")
        assert served_serial(port, authority.pem) == serial_of(first)

        assert served_serial(metrics_port, authority.pem) == serial_of(first)

        install(second, cert, key)
        assert served_serial(port, authority.pem) == serial_of(second)
        assert served_serial(metrics_port, authority.pem) == serial_of(second)  # the metrics port's own check
        assert ready(port, authority.pem)

        # Half a rotation (a new certificate, the old key) is refused: the current certificate stays.
        shutil.copyfile(third.cert, cert)
        assert served_serial(port, authority.pem) == serial_of(second)
        assert "not usable" in proc.output() and "still serving the previous certificate" in proc.output()
        assert served_serial(metrics_port, authority.pem) == serial_of(second)
        shutil.copyfile(third.key, key)  # the rotation completes
        assert served_serial(port, authority.pem) == serial_of(third)
        assert served_serial(metrics_port, authority.pem) == serial_of(third)
        assert ready(port, authority.pem)
    finally:
        assert proc.stop() == 0


def test_gateway_rest_front_serves_a_rotated_certificate(tmp_path: Path) -> None:
    """aiohttp's TLS (asyncio SSL objects) takes the new files per handshake too."""
    authority = Authority(tmp_path, "rotation-ca")
    first, second = authority.issue("first", server=True), authority.issue("second", server=True)
    cert, key = tmp_path / "live.pem", tmp_path / "live-key.pem"
    install(first, cert, key)
    port, rest_port = free_port(), free_port()
    argv = [sys.executable, "-m", "edgeinfer.cli", "gateway", "--port", str(port), "--rest-port", str(rest_port),
            "--route", f"fraud=127.0.0.1:{free_port()}", "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    proc = Proc(argv, tmp_path / "gateway.log")
    try:
        proc.wait_until(lambda: _handshakes(rest_port, authority.pem), 60, "gateway's REST front")
        assert served_serial(rest_port, authority.pem) == serial_of(first)
        install(second, cert, key)
        assert served_serial(rest_port, authority.pem) == serial_of(second)
        assert served_serial(port, authority.pem) == serial_of(second)
    finally:
        proc.stop()
