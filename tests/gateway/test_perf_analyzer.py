"""NVIDIA's perf_analyzer (the tritonclient 2.45.0 wheel's binary, unchanged) against a real gateway in front of a
real function and Redis: over gRPC, over REST (Triton's HTTP API with binary tensors), and with system shared memory
(the gateway reads the client's region and forwards bytes).

perf_analyzer sends the same random tensor in every request, so after the first miss the gateway answers from its
cache: the server statistics it reports (Triton's shape) count those hits.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from testkit.perf_analyzer import SHORT, Measurement, run_perf_analyzer
from testkit.procs import start_gateway

from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc

RUN_TIMEOUT_S = 90.0
SLACK = 2  # requests in flight at a window's edge: the most any run here has (concurrency 2)


@pytest.fixture(scope="module")
def gateway(
    function_address: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A gateway (gRPC, REST, admin; L1 and Redis under its own prefix) routing the examples to one function."""
    logs = tmp_path_factory.mktemp("perf-analyzer-gateway")
    routes = {m: [function_address] for m in ("fraud", "ranker")}
    prefix = f"perf-analyzer:{logs.name}:"
    proc, addresses = start_gateway(logs, routes, "--redis", redis_server.url, "--redis-prefix", prefix, rest=True)
    yield addresses
    proc.stop()


def check_client(m: Measurement) -> None:
    assert m.throughput > 0, m.client_lines
    p = m.latency_us
    assert 0 < p[50] <= p[90] <= p[95] <= p[99], m.client_lines


def check_gateway_server(m: Measurement) -> None:
    """Every request succeeded; the repeated tensor is a cache hit (the response cache is on for these models)."""
    s = m.server
    assert s.get("successful_request", 0) > 0, m.server_lines
    assert "cache_hit" in s, f"no cache lines: is response_cache.enable off in the gateway's config?\n{m.server_lines}"
    assert s["cache_hit"] > 0, m.server_lines
    # Each success is a hit or a miss, give or take the requests in flight when perf_analyzer read the counters.
    assert abs(s["cache_hit"] + s["cache_miss"] - s["successful_request"]) <= SLACK, m.server_lines


def shared_memory_regions(address: str) -> dict[str, pb.SystemSharedMemoryStatusResponse.RegionStatus]:
    with grpc.insecure_channel(address) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).SystemSharedMemoryStatus(
            pb.SystemSharedMemoryStatusRequest(), timeout=30
        )
    return dict(reply.regions)


def test_grpc_prints_throughput_with_no_flags_but_model_url_and_protocol(gateway: dict[str, str]) -> None:
    result = run_perf_analyzer(["-m", "fraud", "-u", gateway["grpc"], "-i", "grpc", *SHORT], RUN_TIMEOUT_S)
    check_client(result.last)
    check_gateway_server(result.last)
    assert "Avg gRPC time" in result.client_lines[-1]


def test_http_against_the_rest_port(gateway: dict[str, str]) -> None:
    rest = gateway["rest"].removeprefix("http://")
    result = run_perf_analyzer(["-m", "fraud", "-u", rest, "-i", "http", *SHORT], RUN_TIMEOUT_S)
    check_client(result.last)
    check_gateway_server(result.last)
    assert "Avg HTTP time" in result.client_lines[-1]


def test_http_concurrency_range(gateway: dict[str, str]) -> None:
    rest = gateway["rest"].removeprefix("http://")
    result = run_perf_analyzer(
        ["-m", "fraud", "-u", rest, "-i", "http", "--concurrency-range", "1:2", *SHORT], RUN_TIMEOUT_S
    )
    assert [(m.load, m.value) for m in result.measurements] == [("concurrency", 1.0), ("concurrency", 2.0)]
    for m in result.measurements:
        check_client(m)
        check_gateway_server(m)


def test_system_shared_memory(gateway: dict[str, str]) -> None:
    result = run_perf_analyzer(
        ["-m", "fraud", "-u", gateway["grpc"], "-i", "grpc", "--shared-memory", "system", *SHORT], RUN_TIMEOUT_S
    )
    check_client(result.last)
    check_gateway_server(result.last)
    assert shared_memory_regions(gateway["grpc"]) == {}
    # Its clean-up also unregisters CUDA regions, which a server without them must accept, as Triton's CPU build.
    assert "Unable to unregister" not in result.output


@pytest.mark.perf_analyzer
@pytest.mark.slow
@pytest.mark.timeout(300)  # up to 10 windows of 5 s, twice (an unstable first run is retried once)
def test_grpc_prints_throughput_with_perf_analyzers_own_defaults(gateway: dict[str, str]) -> None:
    """Exactly `perf_analyzer -m fraud -u ADDRESS -i grpc`: 5 s windows until three agree within
    10 %. Only perf_analyzer's own verdict "no stable measurement" (noise on a shared machine) earns one rerun."""
    result = run_perf_analyzer(["-m", "fraud", "-u", gateway["grpc"], "-i", "grpc"], timeout=110, unstable_retries=1)
    check_client(result.last)
    check_gateway_server(result.last)
