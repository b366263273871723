"""Triton's control RPCs on the gateway's gRPC front, called with tritonclient.grpc and tritonclient.grpc.aio
unchanged, against real gateway processes in front of the session's function and Redis.

Model configuration (the function's, with this gateway's cache setting), the gateway's own statistics with
Triton's meanings, the repository index, load/unload refused with FAILED_PRECONDITION, the settings RPCs, and
inference through system shared memory, with results compared to ONNX Runtime called directly.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
import tritonclient.utils.shared_memory as shm
import yaml
from testkit.procs import Proc, start_gateway
from tritonclient.utils import InferenceServerException

from edgeinfer.cache.key import cache_key, key_parts_from_request
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.cache.singleflight import SingleFlight
from edgeinfer.functions import repository
from edgeinfer.functions.model_config import model_config_from_files
from edgeinfer.gateway.backends.static import StaticBackend
from edgeinfer.gateway.dataplane import GatewayDataPlane
from edgeinfer.gateway.metrics import GatewayMetrics
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request
from edgeinfer.protocol.tracing import Tracing

TIMEOUT = 30.0  # generous: the machine is shared
FRAUD = "fraud"
ROUTED = ["fraud", "ranker"]


@pytest.fixture(scope="module")
def gateways(
    function_address: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """A gateway with L1 + Redis (a prefix of its own) and one with no cache, both routing the session function."""
    logs = tmp_path_factory.mktemp("control-plane")
    routes = {m: [function_address] for m in ROUTED}
    prefix = f"control-{uuid.uuid4().hex[:8]}:"
    procs: list[Proc] = []
    try:
        cached, cached_addresses = start_gateway(logs, routes, "--redis", redis_server.url, "--redis-prefix", prefix)
        procs.append(cached)
        bare, bare_addresses = start_gateway(logs, routes, "--l1-max-bytes", "0", region="bare")
        procs.append(bare)
        yield {"cached": cached_addresses["grpc"], "bare": bare_addresses["grpc"], "function": function_address}
    finally:
        for proc in reversed(procs):
            proc.stop()


def client(address: str) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(address)


def fraud_session(model_repo: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_repo / FRAUD / "1" / "model.onnx"), providers=["CPUExecutionProvider"])


def features(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 30)).astype(np.float32)


def fraud_inputs(x: np.ndarray) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return [tensor]


# -- model configuration -------------------------------------------------------------------------------------


def test_model_config_is_the_functions_with_the_gateways_cache_setting(gateways: dict[str, str]) -> None:
    with client(gateways["function"]) as fn, client(gateways["cached"]) as gw, client(gateways["bare"]) as bare:
        for model in ROUTED:
            expected = fn.get_model_config(model, client_timeout=TIMEOUT).config
            assert expected.name == model and expected.platform == "onnxruntime_onnx" and expected.input
            for gateway, caches in ((gw, True), (bare, False)):
                config = gateway.get_model_config(model, client_timeout=TIMEOUT).config
                assert config.response_cache.enable is caches
                expected.response_cache.enable = caches
                assert config == expected
        # A version: the same config; one the function does not have: NOT_FOUND, naming it.
        assert gw.get_model_config(FRAUD, "1", client_timeout=TIMEOUT).config.name == FRAUD
        with pytest.raises(InferenceServerException) as missing:
            gw.get_model_config(FRAUD, "9", client_timeout=TIMEOUT)
        assert missing.value.status() == "StatusCode.NOT_FOUND" and "'9'" in missing.value.message()
        with pytest.raises(InferenceServerException) as unknown:
            gw.get_model_config("nosuch", client_timeout=TIMEOUT)
        assert unknown.value.status() == "StatusCode.NOT_FOUND" and "fraud, ranker" in unknown.value.message()


def test_control_replies_name_the_region_in_their_trailers(gateways: dict[str, str]) -> None:
    with grpc.insecure_channel(gateways["cached"]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        calls: list[Any] = [
            (stub.ModelConfig, pb.ModelConfigRequest(name=FRAUD)),
            (stub.ModelStatistics, pb.ModelStatisticsRequest(name=FRAUD)),
            (stub.RepositoryIndex, pb.RepositoryIndexRequest()),
            (stub.SystemSharedMemoryStatus, pb.SystemSharedMemoryStatusRequest()),
        ]
        for method, request in calls:
            _, rpc = method.with_call(request, timeout=TIMEOUT)
            assert dict(rpc.trailing_metadata() or ())["x-edgeinfer-region"] == "test", method
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=FRAUD), timeout=TIMEOUT)
        assert dict(refused.value.trailing_metadata() or ())["x-edgeinfer-region"] == "test"


def test_server_metadata_lists_triton_extension_names(gateways: dict[str, str]) -> None:
    with client(gateways["cached"]) as gw:
        extensions = set(gw.get_server_metadata(client_timeout=TIMEOUT).extensions)
    assert {"model_configuration", "statistics", "system_shared_memory", "classification"} <= extensions
    assert "model_repository" not in extensions  # load and unload are refused


# -- statistics ----------------------------------------------------------------------------------------------


def fraud_stats(gw: grpcclient.InferenceServerClient) -> Any:
    reply = gw.get_inference_statistics(FRAUD, client_timeout=TIMEOUT)
    assert [(s.name, s.version) for s in reply.model_stats] == [(FRAUD, "1")]
    return reply.model_stats[0]


def test_statistics_count_requests_hits_misses_and_function_calls(gateways: dict[str, str], model_repo: Path) -> None:
    misses, hits, rows = 3, 2, 4
    seed = uuid.uuid4().int % (1 << 32)  # inputs no earlier run stored in the shared Redis
    session = fraud_session(model_repo)
    with client(gateways["cached"]) as gw:
        gw.get_model_metadata(FRAUD, client_timeout=TIMEOUT)  # the version is known before the first request
        before = fraud_stats(gw)
        for i in range(misses):
            x = features(rows, seed + i)
            result = gw.infer(FRAUD, fraud_inputs(x), client_timeout=TIMEOUT)
            expected = session.run(["probabilities"], {"features": x})[0]
            np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-6)
        for _ in range(hits):
            gw.infer(FRAUD, fraud_inputs(features(rows, seed)), client_timeout=TIMEOUT)
        with pytest.raises(InferenceServerException) as bad:
            gw.infer(FRAUD, fraud_inputs(np.zeros((rows, 29), np.float32)), client_timeout=TIMEOUT)
        assert bad.value.status() == "StatusCode.INVALID_ARGUMENT"
        after = fraud_stats(gw)

    def delta(field: str) -> tuple[int, int]:
        a, b = getattr(after.inference_stats, field), getattr(before.inference_stats, field)
        return a.count - b.count, a.ns - b.ns

    assert delta("success")[0] == misses + hits
    assert delta("fail")[0] == 1
    assert delta("cache_hit")[0] == hits
    assert delta("cache_miss")[0] == misses
    assert delta("compute_infer")[0] == misses
    for field in ("success", "fail", "cache_hit", "cache_miss", "compute_infer"):
        assert delta(field)[1] > 0, field
    # Triton's meanings: cache hits are neither inferences nor executions; an inference is a batch element.
    assert after.inference_count - before.inference_count == misses * rows
    assert after.execution_count - before.execution_count == misses
    assert after.last_inference >= before.last_inference and after.last_inference > 0
    assert delta("queue")[0] == misses + hits and delta("queue")[1] == 0
    by_size = {b.batch_size: b.compute_infer.count for b in after.batch_stats}
    assert by_size[rows] >= misses


def test_statistics_of_coalesced_requests_in_process(function_address: str, model_repo: Path) -> None:
    """Identical requests at once: one function call fills the entry for all (single-flight). Each is a cache miss
    and an inference; only the call is an execution. The data plane in-process, over the real static backend."""
    x = features(3, uuid.uuid4().int % (1 << 32))

    async def run() -> tuple[list[str], Any]:
        backend = StaticBackend({FRAUD: [function_address]})
        dp = GatewayDataPlane(
            backend,
            GatewayMetrics("in-process"),
            Tracing(),
            cache=PredictionCache(l1=L1Cache(1 << 20)),
            flights=SingleFlight[bytes](),
            key_function=lambda r, d, t, v: cache_key(key_parts_from_request(r, d, tenant=t, version=v)),
        )
        try:
            request = build_request(FRAUD, {"features": x})
            outcomes = await asyncio.gather(*(dp.infer(request) for _ in range(5)))
            outcomes.append(await dp.infer(request))
            return [o.cache for o in outcomes], dp.statistics(FRAUD)
        finally:
            await dp.close()
            await backend.close()

    statuses, reply = asyncio.run(run())
    assert statuses[0] == "miss" and statuses[-1] == "hit-l1"
    assert set(statuses[1:-1]) <= {"coalesced", "miss"}
    (stats,) = reply.model_stats
    called = statuses.count("miss")
    assert (stats.name, stats.version) == (FRAUD, "1")
    assert stats.execution_count == called
    # Per request, as Triton counts requests batched into one execution, and equal (perf_analyzer checks it).
    phases = stats.inference_stats
    assert phases.compute_input.count == phases.compute_infer.count == phases.compute_output.count == len(statuses) - 1
    assert stats.inference_stats.cache_miss.count == len(statuses) - 1
    assert stats.inference_stats.cache_hit.count == 1
    assert stats.inference_stats.success.count == len(statuses) and stats.inference_stats.fail.count == 0
    assert stats.inference_count == 3 * (len(statuses) - 1)
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(3, called)]


def test_a_fresh_gateway_reports_each_version_of_a_named_model_with_zeros(function_address: str) -> None:
    """As Triton does: perf_analyzer, driving one of several workers that served nothing yet, looks for the version
    there ("failed to find the requested model version" otherwise)."""

    async def run() -> tuple[Any, Any]:
        backend = StaticBackend({FRAUD: [function_address]})
        dp = GatewayDataPlane(backend, GatewayMetrics("fresh"), Tracing())
        try:
            named = await dp.statistics_of(FRAUD)
            every = await dp.statistics_of()  # listing fetches nothing; the version is known by now
            return named, every
        finally:
            await dp.close()
            await backend.close()

    named, every = asyncio.run(run())
    (stats,) = named.model_stats
    assert (stats.name, stats.version) == (FRAUD, "1")
    assert stats.inference_stats.success.count == stats.execution_count == stats.inference_count == 0
    assert [(s.name, s.version) for s in every.model_stats] == [(FRAUD, "1")]


def test_statistics_of_every_model_and_of_an_unknown_one(gateways: dict[str, str]) -> None:
    with client(gateways["cached"]) as gw:
        every = gw.get_inference_statistics(client_timeout=TIMEOUT)
        assert sorted({s.name for s in every.model_stats}) == ROUTED
        as_json = gw.get_inference_statistics(FRAUD, as_json=True, client_timeout=TIMEOUT)
        assert as_json["model_stats"][0]["name"] == FRAUD
        with pytest.raises(InferenceServerException) as unknown:
            gw.get_inference_statistics("nosuch", client_timeout=TIMEOUT)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "nosuch" in unknown.value.message() and "fraud, ranker" in unknown.value.message()


# -- repository ----------------------------------------------------------------------------------------------


def test_repository_index_lists_routed_models_and_load_unload_are_refused(gateways: dict[str, str]) -> None:
    with client(gateways["cached"]) as gw:
        gw.get_model_metadata(FRAUD, client_timeout=TIMEOUT)  # fraud's versions are known from here on
        index = gw.get_model_repository_index(client_timeout=TIMEOUT)
        entries = {(m.name, m.version): m.state for m in index.models}
        assert entries[(FRAUD, "1")] == "READY"
        assert sorted({m.name for m in index.models}) == ROUTED
        assert all(m.state == "READY" for m in index.models)
        for call in (lambda: gw.load_model(FRAUD), lambda: gw.unload_model(FRAUD)):
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
            assert "edgeinfer deploy" in refused.value.message() and "'fraud'" in refused.value.message()


# -- trace and log settings ---------------------------------------------------------------------------------


def test_trace_and_log_settings_are_read_and_changed_at_run_time(gateways: dict[str, str]) -> None:
    with client(gateways["bare"]) as gw:
        trace = gw.get_trace_settings(client_timeout=TIMEOUT).settings
        assert list(trace["trace_level"].value) == ["OFF"]  # the gateway runs with --trace none
        assert len(trace["trace_rate"].value) == 1
        fraud = gw.update_trace_settings(FRAUD, {"trace_rate": "7"}, client_timeout=TIMEOUT).settings
        assert list(fraud["trace_rate"].value) == ["7"]
        assert list(gw.get_trace_settings(FRAUD, client_timeout=TIMEOUT).settings["trace_rate"].value) == ["7"]
        assert gw.get_trace_settings(client_timeout=TIMEOUT).settings["trace_rate"] == trace["trace_rate"]
        with pytest.raises(InferenceServerException) as unknown:
            gw.update_trace_settings("nosuch", {"trace_rate": "2"}, client_timeout=TIMEOUT)
        assert unknown.value.status() == "StatusCode.INVALID_ARGUMENT" and "nosuch" in unknown.value.message()

        log = gw.get_log_settings(as_json=True, client_timeout=TIMEOUT)["settings"]
        assert log["log_format"]["string_param"] == "default"
        changed = gw.update_log_settings({"log_format": "ISO8601"}, as_json=True, client_timeout=TIMEOUT)
        assert changed["settings"]["log_format"]["string_param"] == "ISO8601"
        assert gw.get_log_settings(as_json=True, client_timeout=TIMEOUT)["settings"]["log_format"] == {
            "string_param": "ISO8601"
        }
        gw.update_log_settings({"log_format": "default"}, client_timeout=TIMEOUT)
        # The gateway still serves after its settings changed.
        assert gw.is_server_ready(client_timeout=TIMEOUT)


# -- the same through the asyncio client ---------------------------------------------------------------------


def test_aio_client_control_calls(gateways: dict[str, str], model_repo: Path) -> None:
    x = features(2, uuid.uuid4().int % (1 << 32))

    async def run() -> tuple[Any, Any, Any, np.ndarray, str]:
        async with aioclient.InferenceServerClient(gateways["cached"]) as gw:
            config = await gw.get_model_config(FRAUD, client_timeout=TIMEOUT)
            tensor = aioclient.InferInput("features", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            result = await gw.infer(FRAUD, [tensor], client_timeout=TIMEOUT)
            stats = await gw.get_inference_statistics(FRAUD, client_timeout=TIMEOUT)
            index = await gw.get_model_repository_index(client_timeout=TIMEOUT)
            try:
                await gw.unload_model(FRAUD, client_timeout=TIMEOUT)
            except InferenceServerException as exc:
                refusal = exc.status()
            else:
                refusal = "answered"
            return config, stats, index, result.as_numpy("probabilities"), refusal

    config, stats, index, probabilities, refusal = asyncio.run(run())
    assert config.config.name == FRAUD and config.config.response_cache.enable
    assert stats.model_stats[0].inference_stats.success.count >= 1
    assert {m.name for m in index.models} == set(ROUTED)
    assert refusal == "StatusCode.FAILED_PRECONDITION"
    expected = fraud_session(model_repo).run(["probabilities"], {"features": x})[0]
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)


# -- system shared memory through the gateway ----------------------------------------------------------------


def test_system_shared_memory_inference_through_the_gateway(gateways: dict[str, str], model_repo: Path) -> None:
    x = features(5, uuid.uuid4().int % (1 << 32))
    out_bytes = 5 * 2 * 4
    tag = uuid.uuid4().hex[:8]
    in_region = shm.create_shared_memory_region(f"in-{tag}", f"/edgeinfer-in-{tag}", x.nbytes)
    out_region = shm.create_shared_memory_region(f"out-{tag}", f"/edgeinfer-out-{tag}", out_bytes)
    try:
        shm.set_shared_memory_region(in_region, [x])
        with client(gateways["cached"]) as gw:
            gw.register_system_shared_memory(f"in-{tag}", f"/edgeinfer-in-{tag}", x.nbytes)
            gw.register_system_shared_memory(f"out-{tag}", f"/edgeinfer-out-{tag}", out_bytes)
            status = gw.get_system_shared_memory_status(client_timeout=TIMEOUT)
            assert {f"in-{tag}", f"out-{tag}"} <= set(status.regions)
            expected = fraud_session(model_repo).run(["probabilities"], {"features": x})[0]
            for _ in range(2):  # a miss, then the same request served from the cache: both land in the region
                tensor = grpcclient.InferInput("features", list(x.shape), "FP32")
                tensor.set_shared_memory(f"in-{tag}", x.nbytes)
                output = grpcclient.InferRequestedOutput("probabilities")
                output.set_shared_memory(f"out-{tag}", out_bytes)
                result = gw.infer(FRAUD, [tensor], outputs=[output], client_timeout=TIMEOUT)
                shape = result.get_output("probabilities").shape
                placed = shm.get_contents_as_numpy(out_region, np.float32, list(shape))
                np.testing.assert_allclose(placed, expected, rtol=1e-6)
                shm.set_shared_memory_region(out_region, [np.zeros((5, 2), np.float32)])
            gw.unregister_system_shared_memory(f"in-{tag}")
            with pytest.raises(InferenceServerException) as gone:
                tensor = grpcclient.InferInput("features", list(x.shape), "FP32")
                tensor.set_shared_memory(f"in-{tag}", x.nbytes)
                gw.infer(FRAUD, [tensor], client_timeout=TIMEOUT)
            assert gone.value.status() == "StatusCode.INVALID_ARGUMENT" and f"in-{tag}" in gone.value.message()
            gw.unregister_system_shared_memory()
    finally:
        shm.destroy_shared_memory_region(in_region)
        shm.destroy_shared_memory_region(out_region)


# -- the local pool answers from the model files -------------------------------------------------------------


def pools(admin: str) -> dict[str, Any]:
    body = urllib.request.urlopen(admin + "/v1/pools", timeout=TIMEOUT).read()
    result: dict[str, Any] = json.loads(body)["pools"]
    return result


def test_local_pool_model_config_does_not_wake_an_instance(model_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo / FRAUD, repo / FRAUD)
    config = yaml.safe_load((repo / FRAUD / "config.yaml").read_text())
    config["autoscaling"] = {"initial-scale": 0, "window": "6s"}
    (repo / FRAUD / "config.yaml").write_text(yaml.safe_dump(config))
    proc, addresses = start_gateway(
        tmp_path, {}, "--backend", "local", "--model-repo", str(repo), "--state-dir", str(tmp_path / "state")
    )
    try:
        with client(addresses["grpc"]) as gw:
            reply = gw.get_model_config(FRAUD, client_timeout=TIMEOUT)
            index = gw.get_model_repository_index(client_timeout=TIMEOUT)
        status = pools(addresses["admin"])[FRAUD]
        assert status["instances"] == [] and status["ready"] == 0 and status["starting"] == 0
    finally:
        proc.stop()
    (entry,) = repository.scan(repo)
    expected = model_config_from_files(entry)
    expected.response_cache.enable = True  # the gateway's L1 is on and fraud's cache is enabled
    assert reply.config.SerializeToString(deterministic=True) == expected.SerializeToString(deterministic=True)
    assert [(m.name, m.version, m.state) for m in index.models] == [(FRAUD, "1", "READY")]


# -- streaming ------------------------------------------------------------------------------------------------


def test_stream_infer_answers_each_request_in_order_with_errors_in_band(
    gateways: dict[str, str], model_repo: Path
) -> None:
    """Triton's ModelStreamInfer through the gateway (tritonclient's start_stream): results equal ONNX Runtime's,
    an unknown model's error comes back on the stream, and the stream goes on."""
    session = fraud_session(model_repo)
    results: list[Any] = []
    done = threading.Semaphore(0)

    def callback(result: Any, error: Any) -> None:
        results.append((result, error))
        done.release()

    rows = [features(2, seed) for seed in (11, 12, 13)]
    with client(gateways["cached"]) as gw:
        gw.start_stream(callback=callback, stream_timeout=TIMEOUT)
        gw.async_stream_infer(FRAUD, fraud_inputs(rows[0]), request_id="a")
        gw.async_stream_infer("nosuch", fraud_inputs(rows[1]), request_id="b")
        gw.async_stream_infer(FRAUD, fraud_inputs(rows[2]), request_id="c")
        for _ in range(3):
            assert done.acquire(timeout=TIMEOUT), f"only {len(results)} of 3 stream replies arrived"
        gw.stop_stream()
    assert [r.get_response().id if r is not None else None for r, _ in results] == ["a", None, "c"]
    error = results[1][1]
    assert error is not None and "unknown model 'nosuch'" in error.message()
    for (result, _), x in ((results[0], rows[0]), (results[2], rows[2])):
        (expected,) = session.run(["probabilities"], {"features": x})
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-6)
