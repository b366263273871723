"""NVIDIA's perf_analyzer (the tritonclient 2.45.0 wheel's binary, unchanged) against a real `edgeinfer function`.

It reads ModelMetadata and ModelConfig, measures with ModelInfer and reads ModelStatistics before and after each
window: a throughput line and Triton-shaped server statistics mean all of those work as Triton's do. Each run is
short (testkit.perf_analyzer.SHORT); the run with perf_analyzer's own defaults is under the `perf_analyzer` marker.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
from testkit.perf_analyzer import SHORT, Measurement, PerfAnalyzerFailed, run_perf_analyzer
from testkit.up import mentioning

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc

RUN_TIMEOUT_S = 90.0
SLACK = 2  # requests in flight at a window's edge: the most any run here has (concurrency 2)


def check_client(m: Measurement) -> None:
    assert m.throughput > 0, m.client_lines
    p = m.latency_us
    assert 0 < p[50] <= p[90] <= p[95] <= p[99], m.client_lines


def check_function_server(m: Measurement, batch: int = 1) -> None:
    """Triton's meanings: requests succeeded, each a batch of `batch` inferences, in at most as many executions.

    perf_analyzer reads the statistics between windows with requests in flight, and a request's counters are
    bumped at different moments (inference at compute, success at reply): a window's counts may differ by the
    requests in flight (SLACK).
    """
    s = m.server
    assert s.get("successful_request", 0) > 0, m.server_lines
    assert abs(s["inference"] - batch * s["successful_request"]) <= batch * SLACK, m.server_lines
    assert 1 <= s["execution"] <= s["successful_request"] + SLACK, m.server_lines


def shared_memory_regions(address: str) -> dict[str, pb.SystemSharedMemoryStatusResponse.RegionStatus]:
    with grpc.insecure_channel(address) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).SystemSharedMemoryStatus(
            pb.SystemSharedMemoryStatusRequest(), timeout=30
        )
    return dict(reply.regions)


def test_prints_throughput_with_no_flags_but_model_url_and_protocol(function_address: str) -> None:
    result = run_perf_analyzer(["-m", "fraud", "-u", function_address, "-i", "grpc", *SHORT], RUN_TIMEOUT_S)
    m = result.last
    assert (m.load, m.value) == ("concurrency", 1.0)
    check_client(m)
    check_function_server(m)
    assert "Avg gRPC time" in result.client_lines[-1]
    assert result.summary[0].startswith("Concurrency: 1, throughput: ")


def test_concurrency_range(function_address: str) -> None:
    result = run_perf_analyzer(
        ["-m", "fraud", "-u", function_address, "-i", "grpc", "--concurrency-range", "1:2", *SHORT], RUN_TIMEOUT_S
    )
    assert [(m.load, m.value) for m in result.measurements] == [("concurrency", 1.0), ("concurrency", 2.0)]
    assert len(result.summary) == 2
    for m in result.measurements:
        check_client(m)
        check_function_server(m)


def test_request_rate_range(function_address: str) -> None:
    result = run_perf_analyzer(
        ["-m", "fraud", "-u", function_address, "-i", "grpc", "--request-rate-range", "100:200:100", *SHORT],
        RUN_TIMEOUT_S,
    )
    assert [(m.load, m.value) for m in result.measurements] == [("request_rate", 100.0), ("request_rate", 200.0)]
    for m in result.measurements:
        check_client(m)
        check_function_server(m)
    # iostream's precision may stick from a warning line: "100" or "100.00"
    assert re.match(r"Request Rate: 100(\.0+)?, throughput: ", result.summary[0]), result.summary


def test_system_shared_memory(function_address: str) -> None:
    result = run_perf_analyzer(
        ["-m", "fraud", "-u", function_address, "-i", "grpc", "--shared-memory", "system", *SHORT], RUN_TIMEOUT_S
    )
    check_client(result.last)
    check_function_server(result.last)
    # perf_analyzer unregisters its regions when it is done: none is left registered (or mapped) here.
    assert shared_memory_regions(function_address) == {}
    # Its clean-up also unregisters CUDA regions, which a server without them must accept, as Triton's CPU build.
    assert "Unable to unregister" not in result.output


def test_system_shared_memory_ranker_batch_64(function_address: str) -> None:
    """64×512 in, 64×1000 out (256,000 bytes: more than perf_analyzer's default 100 KiB output region)."""
    result = run_perf_analyzer(
        ["-m", "ranker", "-u", function_address, "-i", "grpc", "-b", "64", "--shared-memory", "system",
         "--output-shared-memory-size", str(64 * 1000 * 4),
         "--measurement-mode", "count_windows", "--measurement-request-count", "5", "-s", "10000"],
        RUN_TIMEOUT_S,
    )  # fmt: skip
    check_client(result.last)
    check_function_server(result.last, batch=64)
    assert shared_memory_regions(function_address) == {}
    # Its clean-up also unregisters CUDA regions, which a server without them must accept, as Triton's CPU build.
    assert "Unable to unregister" not in result.output


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: a perf_analyzer against it waits forever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield f"127.0.0.1:{listener.getsockname()[1]}"
        finally:
            stop.set()
            thread.join(5)
            for conn in held:
                conn.close()


def test_a_perf_analyzer_past_its_timeout_is_killed(silent_server: str) -> None:
    with pytest.raises(PerfAnalyzerFailed, match="still running after 3 s, killed"):
        run_perf_analyzer(["-m", "fraud", "-u", silent_server, "-i", "grpc", *SHORT], timeout=3)
    assert not mentioning(silent_server), "a perf_analyzer outlived its timeout"


@pytest.mark.perf_analyzer
@pytest.mark.slow
@pytest.mark.timeout(300)  # up to 10 windows of 5 s, twice (an unstable first run is retried once)
def test_prints_throughput_with_perf_analyzers_own_defaults(function_address: str) -> None:
    """Exactly `perf_analyzer -m fraud -u ADDRESS -i grpc`: 5 s windows until three agree within
    10 %. Only perf_analyzer's own verdict "no stable measurement" (noise on a shared machine) earns one rerun."""
    result = run_perf_analyzer(["-m", "fraud", "-u", function_address, "-i", "grpc"], timeout=110, unstable_retries=1)
    check_client(result.last)
    check_function_server(result.last)
