"""The admin port off loopback, on a real gateway with TLS on its fronts (docs/security.md, "The admin port"):
it serves HTTPS with the fronts' certificate (without demanding a client certificate, even when the fronts
demand one), every path but the probes needs the admin token, plaintext gets nothing, and a rotated
certificate reaches new connections without a restart."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from testkit.pki import Authority, Pair
from testkit.procs import Proc, free_port

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc

ADMIN_TOKEN = "admin-tls-token-r4Vq9"
HOST = "127.0.0.1"  # the port is bound to 0.0.0.0 (off loopback); reached over loopback


def serial_of(pair: Pair) -> int:
    return int(x509.load_pem_x509_certificate(pair.cert.read_bytes()).serial_number)


def served_serial(port: int, ca: Path) -> int:
    """The serial number of the certificate a new TLS connection to the port is given (verified against `ca`)."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((HOST, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        peer = tls.getpeercert()
    assert peer is not None
    return int(str(peer["serialNumber"]), 16)


def install(pair: Pair, cert: Path, key: Path) -> None:
    """As a rotation does: write beside, then rename over, so a reader never sees half a file."""
    for source, target in ((pair.cert, cert), (pair.key, key)):
        staged = target.with_suffix(".new")
        shutil.copyfile(source, staged)
        staged.replace(target)


def get(url: str, ca: Path, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of a GET over HTTPS trusting only `ca`, with no client certificate."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10, context=context) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def grpc_live(port: int, ca: Path, client: Pair) -> bool:
    """The gateway's gRPC front answers ServerLive over mTLS: it is up (it starts the admin port before gRPC;
    not ServerReady, which its route to nothing keeps false)."""
    credentials = grpc.ssl_channel_credentials(ca.read_bytes(), client.key.read_bytes(), client.cert.read_bytes())
    with grpc.secure_channel(f"{HOST}:{port}", credentials) as channel:
        try:
            return bool(pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=1).live)
        except grpc.RpcError:
            return False


def test_admin_port_off_loopback_serves_tls_with_its_token_and_takes_a_rotated_certificate(tmp_path: Path) -> None:
    authority, clients = Authority(tmp_path, "admin-ca"), Authority(tmp_path, "client-ca")
    first, second, third = (authority.issue(name, server=True) for name in ("first", "second", "third"))
    client = clients.issue("client", server=False)
    cert, key = tmp_path / "live.pem", tmp_path / "live-key.pem"
    install(first, cert, key)
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    port, admin_port = free_port(), free_port()
    # The fronts demand client certificates (--tls-client-ca); the admin port must not.
    argv = [sys.executable, "-m", "edgeinfer.cli", "gateway", "--port", str(port), "--drain-delay", "0",
            "--route", f"fraud=127.0.0.1:{free_port()}", "--tls-cert", str(cert), "--tls-key", str(key),
            "--tls-client-ca", str(clients.pem), "--admin-port", str(admin_port), "--admin-host", "0.0.0.0",
            "--admin-token-file", str(token_file)]  # fmt: skip
    proc = Proc(argv, tmp_path / "gateway.log")
    admin = f"https://{HOST}:{admin_port}"
    try:
        proc.wait_until(lambda: grpc_live(port, authority.pem, client), 60, "the gateway over mTLS")
        assert get(f"{admin}/healthz", authority.pem)[0] == 200  # HTTPS, no client certificate
        assert served_serial(admin_port, authority.pem) == serial_of(first)

        # The token: every path but the probes.
        status, body, headers = get(f"{admin}/metrics", authority.pem)
        assert status == 401 and headers.get("WWW-Authenticate") == "Bearer", (status, body)
        assert ADMIN_TOKEN not in body
        assert get(f"{admin}/metrics", authority.pem, "not-the-token")[0] == 401
        assert get(f"{admin}/v1/fault", authority.pem)[0] == 401
        status, body, _ = get(f"{admin}/metrics", authority.pem, ADMIN_TOKEN)
        assert status == 200 and "edgeinfer_gateway_" in body, (status, body[:200])
        assert get(f"{admin}/v1/fault", authority.pem, ADMIN_TOKEN)[0] == 200
        assert get(f"{admin}/healthz", authority.pem)[0] == 200  # the probes stay open
        assert get(f"{admin}/readyz", authority.pem)[0] in (200, 503)  # open; ready or not, it is no 401

        # Plaintext on the TLS port gets no HTTP answer at all: the handshake fails and the connection closes.
        with pytest.raises((OSError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://{HOST}:{admin_port}/healthz", timeout=10)
        # A client that does not trust the gateway's CA refuses it: the certificate is the given one, not any.
        with pytest.raises(ssl.SSLError):
            served_serial(admin_port, clients.pem)

        # Rotation: new connections get the new certificate, without a restart, and the token still applies.
        install(second, cert, key)
        assert served_serial(admin_port, authority.pem) == serial_of(second)
        assert get(f"{admin}/metrics", authority.pem)[0] == 401
        assert get(f"{admin}/metrics", authority.pem, ADMIN_TOKEN)[0] == 200

        # Half a rotation (a new certificate, the old key) is refused: the current certificate stays.
        shutil.copyfile(third.cert, cert)
        assert served_serial(admin_port, authority.pem) == serial_of(second)
        assert "still serving the previous certificate" in proc.output()
        shutil.copyfile(third.key, key)  # the rotation completes
        assert served_serial(admin_port, authority.pem) == serial_of(third)
        assert get(f"{admin}/metrics", authority.pem, ADMIN_TOKEN)[0] == 200
        assert proc.popen.poll() is None  # the same process all along
    finally:
        assert proc.stop() == 0, proc.output()
