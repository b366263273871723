"""TLS and mutual TLS end to end: client → gateway (gRPC and REST) → function, with throwaway certificates.

The function demands a client certificate, so every inference that succeeds
through the gateway also proves the gateway-to-function mTLS; clients with no
certificate, a certificate from another CA, or no TLS at all are refused.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from testkit.pki import Pair, Pki, client_context
from testkit.procs import Proc, free_port

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays
from edgeinfer.tls import ClientTLS, ServerTLS, TLSConfigError

REQUEST = build_request("fraud", {"features": np.ones((2, 30), dtype=np.float32)})

# -- clients --------------------------------------------------------------------------------------


def credentials(root: Path, client: Pair | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=root.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def infer_secure(address: str, root: Path, client: Pair | None) -> pb.ModelInferResponse:
    with grpc.secure_channel(address, credentials(root, client)) as channel:
        reply: pb.ModelInferResponse = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(REQUEST, timeout=10)
        return reply


def refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
    return info.value


def secure_ready(address: str, root: Path, client: Pair | None) -> bool:
    with grpc.secure_channel(address, credentials(root, client)) as channel:
        try:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            return bool(stub.ServerReady(pb.ServerReadyRequest(), timeout=0.5).ready)
        except grpc.RpcError:
            return False


def start(argv: list[str], log: Path, address: str, root: Path, client: Pair | None) -> Proc:
    proc = Proc([sys.executable, "-m", "edgeinfer.cli", *argv], log)
    try:
        proc.wait_until(lambda: secure_ready(address, root, client), 60, f"{argv[0]} on {address}")
    except BaseException:
        proc.stop()
        raise
    return proc


# -- the stack: function (mTLS) ← gateway (mTLS front, mTLS client) ------------------------------


@dataclass(frozen=True)
class Stack:
    function: str
    gateway: str
    gateway_rest: int
    tls_only_gateway: str
    gateway_proc: Proc


@pytest.fixture(scope="module")
def stack(pki: Pki, model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("tls-logs")
    server = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    to_function = [
        "--function-tls-ca", str(pki.ca),
        "--function-tls-cert", str(pki.client.cert),
        "--function-tls-key", str(pki.client.key),
    ]  # fmt: skip
    port = free_port()
    function_address = f"127.0.0.1:{port}"
    procs: list[Proc] = []
    try:
        procs.append(
            start(
                ["function", "--model-repo", str(model_repo), "--port", str(port), *server,
                 "--tls-client-ca", str(pki.ca)],
                logs / "function.log",
                function_address,
                pki.ca,
                pki.client,
            )
        )  # fmt: skip
        port, rest_port = free_port(), free_port()
        gateway = f"127.0.0.1:{port}"
        routes = ["--route", f"fraud={function_address}"]
        procs.append(
            start(
                ["gateway", "--port", str(port), "--rest-port", str(rest_port), *routes, *server,
                 "--tls-client-ca", str(pki.ca), *to_function],
                logs / "gateway.log",
                gateway,
                pki.ca,
                pki.client,
            )
        )  # fmt: skip
        port = free_port()
        tls_only = f"127.0.0.1:{port}"
        procs.append(
            start(
                ["gateway", "--port", str(port), *routes, *server, *to_function],
                logs / "gateway-tls-only.log",
                tls_only,
                pki.ca,
                None,
            )
        )
        yield Stack(function_address, gateway, rest_port, tls_only, procs[1])
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_mtls_end_to_end(stack: Stack, pki: Pki) -> None:
    """Client → gateway and gateway → function both over mutual TLS."""
    reply = infer_secure(stack.gateway, pki.ca, pki.client)
    assert output_arrays(reply)["probabilities"].shape == (2, 2)


def test_tls_front_without_client_certificates(stack: Stack, pki: Pki) -> None:
    reply = infer_secure(stack.tls_only_gateway, pki.ca, None)
    assert reply.model_name == "fraud"
    refused(lambda: grpc_plaintext_infer(stack.tls_only_gateway))


def grpc_plaintext_infer(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(REQUEST, timeout=5)


def test_client_with_bad_certificate_is_refused(stack: Stack, pki: Pki) -> None:
    refused(lambda: infer_secure(stack.gateway, pki.ca, pki.rogue_client))  # another CA signed it
    refused(lambda: infer_secure(stack.gateway, pki.ca, None))  # no certificate at all
    refused(lambda: grpc_plaintext_infer(stack.gateway))  # no TLS at all
    # The refusals cost nothing: the next good client is served.
    assert infer_secure(stack.gateway, pki.ca, pki.client).model_name == "fraud"
    assert stack.gateway_proc.popen.poll() is None


def test_client_refuses_a_server_it_does_not_trust(stack: Stack, pki: Pki) -> None:
    error = refused(lambda: infer_secure(stack.gateway, pki.rogue_ca, pki.client))
    assert "certificate" in (error.details() or "").lower() or "handshake" in (error.details() or "").lower()


def test_function_demands_a_client_certificate(stack: Stack, pki: Pki) -> None:
    """What a gateway without --function-tls-cert (or an intruder on the network) meets at the function."""
    refused(lambda: infer_secure(stack.function, pki.ca, None))
    refused(lambda: infer_secure(stack.function, pki.ca, pki.rogue_client))
    refused(lambda: grpc_plaintext_infer(stack.function))
    assert infer_secure(stack.function, pki.ca, pki.client).model_name == "fraud"


def _rest_infer(port: int, context: ssl.SSLContext) -> tuple[int, dict[str, object]]:
    body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.5] * 30}]})
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("POST", "/v2/models/fraud/infer", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_rest_front_mtls(stack: Stack, pki: Pki) -> None:
    status, reply = _rest_infer(stack.gateway_rest, client_context(pki.ca, pki.client))
    assert status == 200, reply
    for bad in (pki.rogue_client, None):
        # TLS 1.3 reports a refused client certificate on the first read, not in the handshake.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _rest_infer(stack.gateway_rest, client_context(pki.ca, bad))
    with pytest.raises(ssl.SSLCertVerificationError):
        _rest_infer(stack.gateway_rest, client_context(pki.rogue_ca, pki.client))
    assert _rest_infer(stack.gateway_rest, client_context(pki.ca, pki.client))[0] == 200


# -- configuration errors fail the start, naming the flag -----------------------------------------


def test_unusable_files_are_named(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError, match=r"--tls-cert .* and --tls-key .* do not form a usable pair"):
        ServerTLS.load(pki.server.cert, pki.client.key)
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    with pytest.raises(TLSConfigError, match=r"--function-tls-ca .*: not a PEM file"):
        ClientTLS.load(not_pem)
    with pytest.raises(TLSConfigError, match="go together"):
        ClientTLS.load(pki.ca, pki.client.cert, None)


def test_gateway_refuses_to_start_with_a_missing_certificate(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "gateway", "--port", str(free_port()), "--route", "fraud=127.0.0.1:1",
         "--tls-cert", str(missing), "--tls-key", str(pki.server.key)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"--tls-cert {missing}: cannot read it" in result.stderr
