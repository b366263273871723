"""`edgeinfer bench` against a tiny in-test gRPC server with injectable delays, stalls and errors."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import statistics
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import grpc
import pytest
from hdrh.histogram import HdrHistogram

from edgeinfer.loadgen import BenchOptions, BenchReport, run_bench
from edgeinfer.loadgen.cli import main as bench_main
from edgeinfer.loadgen.report import merge
from edgeinfer.loadgen.schedule import arrival_offsets
from edgeinfer.loadgen.worker import WorkerResult, new_histogram
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import decode_inputs

pytestmark = pytest.mark.timeout(60)

MODEL = "toy"
INPUT_SHAPE = [-1, 4]


class ToyServicer(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Checks each request, then answers after `delay`; request number `stall_at` takes `stall_s`.

    `fail_every` maps n to a status code: request numbers divisible by n fail with it.
    """

    def __init__(self) -> None:
        self.delay = 0.0
        self.stall_at = 0
        self.stall_s = 0.0
        self.fail_every: dict[int, grpc.StatusCode] = {}
        self.metadata_inputs = [pb.ModelMetadataResponse.TensorMetadata(name="x", datatype="FP32", shape=INPUT_SHAPE)]
        self.calls = 0
        self.inputs: set[bytes] = set()
        self.failed: Counter[str] = Counter()
        self.shapes: Counter[tuple[int, ...]] = Counter()
        self.raw: Counter[bool] = Counter()

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        if request.name != MODEL:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model '{request.name}'")
        return pb.ModelMetadataResponse(name=MODEL, platform="toy", inputs=self.metadata_inputs)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        self.calls += 1
        n = self.calls
        if request.model_name != MODEL:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown model")
        arrays, raw = decode_inputs(request)
        if list(arrays) != ["x"] or arrays["x"].dtype.name != "float32" or arrays["x"].shape[1:] != (4,):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad input")
        self.shapes[arrays["x"].shape] += 1
        self.inputs.add(arrays["x"].tobytes())
        self.raw[raw] += 1
        await asyncio.sleep(self.stall_s if n == self.stall_at else self.delay)
        for every, code in self.fail_every.items():
            if n % every == 0:
                self.failed[code.name] += 1
                await context.abort(code, "injected failure")
        return pb.ModelInferResponse(model_name=MODEL, id=request.id)


class ServerThread:
    """A grpc.aio server on 127.0.0.1 with its own event loop in a thread."""

    def __init__(self, servicer: ToyServicer) -> None:
        self.servicer = servicer
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self.servicer, server)  # type: ignore[no-untyped-call]
        self.port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await server.stop(None)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10), "test server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(ToyServicer()) as running:
        yield running


def options(target: str, **kwargs: Any) -> BenchOptions:
    return BenchOptions(target=target, model=MODEL, **kwargs)


def count_above(report: BenchReport, ms: float) -> int:
    return sum(
        item.count_at_value_iterated_to
        for item in report.decode_histogram().get_recorded_iterator()
        if item.value_iterated_to > ms * 1000
    )


# 1. schedules


def test_constant_schedule_is_evenly_spaced() -> None:
    offsets = list(arrival_offsets(250, 2.0, "constant"))
    assert len(offsets) == 500
    gaps = [b - a for a, b in pairwise(offsets)]
    assert offsets[0] == 0.0
    assert min(gaps) == pytest.approx(0.004) and max(gaps) == pytest.approx(0.004)
    shifted = list(arrival_offsets(250, 2.0, "constant", phase=0.002))
    assert shifted[0] == pytest.approx(0.002) and len(shifted) == 500


def test_poisson_schedule_has_the_rate_and_exponential_gaps() -> None:
    offsets = list(arrival_offsets(1000, 10.0, "poisson", seed=7))
    # 10,000 expected; the standard deviation of a Poisson count is 100.
    assert abs(len(offsets) - 10_000) < 400
    gaps = [b - a for a, b in pairwise(offsets)]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(0.001, rel=0.04)
    # Exponential gaps: standard deviation equals the mean (constant spacing would give 0).
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, abs=0.05)
    assert offsets == list(arrival_offsets(1000, 10.0, "poisson", seed=7))
    assert offsets != list(arrival_offsets(1000, 10.0, "poisson", seed=8))
    assert all(0 < t < 10.0 for t in offsets) and offsets == sorted(offsets)


# 2. end to end


def test_end_to_end_rate_count_and_latency(server: ServerThread) -> None:
    server.servicer.delay = 0.020
    report = run_bench(options(server.target, rate=200, duration=2.0, warmup=0.5))
    assert server.servicer.calls == 500  # warmup requests reach the server too
    assert abs(report.sent - 400) <= 1
    assert report.errors == {}
    assert report.ok == report.sent
    # The rate is the schedule's (the count above); the achieved rate is ok over the measured time, which a
    # loaded machine can only stretch, and never past the offered rate.
    assert report.achieved_rate == pytest.approx(report.ok / report.elapsed_s)
    assert report.elapsed_s >= 2.0 and 100 < report.achieved_rate <= 202  # sent may be 401
    # At least the server's 20 ms; far below what a clock started before the send would show.
    assert 20.0 <= report.latency_ms["p50"] < 250.0
    assert report.latency_ms["min"] >= 20.0
    assert report.decode_histogram().get_total_count() == report.ok
    assert server.servicer.shapes == Counter({(1, 4): 500})
    assert server.servicer.raw == Counter({True: 500})


def test_unique_makes_every_request_distinct(server: ServerThread) -> None:
    report = run_bench(options(server.target, rate=200, duration=1.0, processes=2, unique=True))
    assert report.ok == report.sent and report.sent >= 190
    assert len(server.servicer.inputs) == server.servicer.calls  # no two requests carried the same input


# 3. coordinated omission


def test_a_stall_shows_in_the_latency_of_requests_queued_behind_it(server: ServerThread) -> None:
    # At 100 req/s with one slot, ~50 requests fall due while request 60 stalls for 500 ms.
    server.servicer.stall_at = 60
    server.servicer.stall_s = 0.5
    report = run_bench(options(server.target, rate=100, duration=2.0, concurrency_limit=1))
    assert report.errors == {} and report.ok == 200
    assert report.latency_ms["p50"] < 250.0  # most requests are not behind the stall (half of it: load-proof)
    assert report.latency_ms["p99"] >= 400.0
    assert report.latency_ms["max"] >= 500.0
    # Timed from the actual send, only the stalled request would exceed 100 ms.
    assert count_above(report, 100.0) >= 35
    assert report.max_send_lag_ms >= 400.0


# 4. errors


def test_errors_are_counted_by_status_code(server: ServerThread) -> None:
    servicer = server.servicer
    servicer.fail_every = {5: grpc.StatusCode.UNAVAILABLE, 7: grpc.StatusCode.RESOURCE_EXHAUSTED}
    servicer.stall_at = 3  # outlives the deadline threefold; every other request is far inside it, even loaded
    servicer.stall_s = 1.5
    report = run_bench(options(server.target, rate=200, duration=1.0, timeout_ms=500))
    assert servicer.failed["UNAVAILABLE"] > 30 and servicer.failed["RESOURCE_EXHAUSTED"] > 20
    expected = dict(servicer.failed) | {"DEADLINE_EXCEEDED": 1}
    assert report.errors == expected
    assert report.ok == servicer.calls - sum(servicer.failed.values()) - 1
    assert report.sent == report.ok + sum(report.errors.values()) == 200
    assert report.decode_histogram().get_total_count() == report.ok


# 5. several processes


def test_two_processes_merge_into_one_report(server: ServerThread) -> None:
    report = run_bench(
        options(server.target, rate=200, duration=1.5, processes=2, concurrency_limit=8, batch_size=3, typed=True)
    )
    assert abs(report.sent - 300) <= 2
    assert report.ok == report.sent == server.servicer.calls
    assert report.decode_histogram().get_total_count() == report.ok
    assert report.achieved_rate == pytest.approx(report.ok / report.elapsed_s)  # elapsed: the slower process
    assert report.elapsed_s >= 1.5 and 100 < report.achieved_rate <= 202  # sent may be 302
    assert server.servicer.shapes == Counter({(3, 4): server.servicer.calls})
    assert server.servicer.raw == Counter({False: server.servicer.calls})


def test_merge_adds_histograms_and_counts() -> None:
    results = []
    for index, (value_us, count) in enumerate([(1_000, 30), (9_000, 70)]):
        histogram = new_histogram()
        histogram.record_value(value_us, count)
        results.append(WorkerResult(index, count + 1, count, {"UNAVAILABLE": 1}, histogram.encode(), 1.0 + index, 0.0))
    report = merge(options("x:1", rate=100, duration=1.0, processes=2), results)
    assert (report.sent, report.ok, report.errors) == (102, 100, {"UNAVAILABLE": 2})
    assert report.decode_histogram().get_total_count() == 100
    assert report.latency_ms["p50"] == pytest.approx(9.0, rel=0.01)
    assert report.latency_ms["min"] == pytest.approx(1.0, rel=0.01)
    assert report.elapsed_s == 2.0 and report.achieved_rate == 50.0


# 6. command line


def test_cli_writes_a_json_report(server: ServerThread, tmp_path: Path) -> None:
    server.servicer.metadata_inputs = []  # like servers with empty metadata: --input describes it
    out = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "edgeinfer.loadgen", "--target", server.target, "--model", MODEL,
        "--rate", "100", "--duration", "1", "--arrival", "poisson", "--input", "x:FP32:-1,4",
        "--json", str(out), "--quiet",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    for field in ("offered_rate", "achieved_rate", "sent", "ok", "errors", "latency_ms", "histogram"):
        assert field in data
    assert set(data["latency_ms"]) == {"min", "mean", "p50", "p90", "p99", "p99.9", "max"}
    assert data["ok"] == data["sent"] == server.servicer.calls > 50
    histogram = HdrHistogram.decode(data["histogram"].encode())
    assert histogram.get_total_count() == data["ok"]
    base64.b64decode(data["histogram"], validate=True)


def test_cli_fails_clearly_on_an_unknown_model(server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench_main(["--target", server.target, "--model", "nope", "--rate", "10", "--duration", "1"])
    assert code != 0
    assert "model 'nope' not found" in capsys.readouterr().err
    assert server.servicer.calls == 0


def test_cli_fails_clearly_on_an_unreachable_target(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once we leave: nothing listens there
    argv = ["--target", f"127.0.0.1:{port}", "--model", MODEL, "--rate", "10", "--duration", "1"]
    code = bench_main([*argv, "--connect-timeout", "1", "--quiet"])
    assert code != 0
    assert f"cannot reach 127.0.0.1:{port}" in capsys.readouterr().err


# The real `edgeinfer function` (session fixture from conftest), payload built from its metadata.


def test_bench_against_the_real_function_server(function_address: str) -> None:
    report = run_bench(BenchOptions(target=function_address, model="fraud", rate=150, duration=1.0, batch_size=4))
    assert report.errors == {}
    assert report.ok == report.sent == 150
    assert report.latency_ms["p50"] > 0
