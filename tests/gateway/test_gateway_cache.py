"""The gateway with its prediction cache: real Redis, real functions, real gRPC."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
import yaml
from testkit.procs import Proc, free_port, scrape_metrics, start_function, start_gateway

from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.functions.metrics import FUNCTION_REQUESTS
from edgeinfer.gateway.metrics import (
    GATEWAY_CACHE_EVENTS,
    GATEWAY_CACHE_PENDING_WRITES,
    GATEWAY_SHADOW_COMPARISONS,
    GATEWAY_TRAFFIC_WEIGHT,
)
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays

PREFIX = "gwtest:"


@pytest.fixture(scope="module")
def cache_repo(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fraud (versions 1 and 2), ranker, and `shortlived`: fraud with a 1 s cache TTL."""
    root = tmp_path_factory.mktemp("cache-models")
    for name in ("fraud", "ranker"):
        shutil.copytree(model_repo / name, root / name)
    shutil.copytree(root / "fraud" / "1", root / "fraud" / "2")
    shutil.copytree(model_repo / "fraud", root / "shortlived")
    config = yaml.safe_load((root / "shortlived" / "config.yaml").read_text())
    config["cache"] = {"enabled": True, "ttl_seconds": 1.0}
    (root / "shortlived" / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), dir=tmp_path_factory.mktemp("redis"))
    server.start()
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(
    cache_repo: Path, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One function (with metrics), a gateway with L1 + Redis, and a second gateway with Redis only."""
    logs = tmp_path_factory.mktemp("stack")
    metrics_port = free_port()
    function, address = start_function(cache_repo, logs, "--metrics-port", str(metrics_port))
    routes = {m: [address] for m in ("fraud", "ranker", "shortlived")}
    redis_args = ("--redis", redis_server.url, "--redis-prefix", PREFIX)
    gw, gw_addresses = start_gateway(logs, routes, *redis_args, region="us-east")
    gw2, gw2_addresses = start_gateway(logs, routes, *redis_args, "--l1-max-bytes", "0", region="us-east")
    yield {
        "function": address,
        "function_metrics": f"http://127.0.0.1:{metrics_port}/metrics",
        "gateway": gw_addresses["grpc"],
        "gateway_admin": gw_addresses["admin"],
        "redis_only": gw2_addresses["grpc"],
    }
    for proc in (gw2, gw, function):
        proc.stop()


def infer(address: str, request: pb.ModelInferRequest) -> tuple[pb.ModelInferResponse, str]:
    with grpc.insecure_channel(address) as channel:
        reply, rpc = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(request, timeout=30)
    trailers = dict(rpc.trailing_metadata() or ())
    assert reply.parameters["cache_status"].string_param == trailers["x-edgeinfer-cache"]
    return reply, trailers["x-edgeinfer-cache"]


def fraud(seed: float, **kw: object) -> pb.ModelInferRequest:
    x = np.full((1, 30), seed, dtype=np.float32)
    return build_request(kw.pop("model", "fraud"), {"features": x}, **kw)  # type: ignore[arg-type]


def function_calls(stack: dict[str, str], model: str) -> float:
    metrics = scrape_metrics(stack["function_metrics"])
    return sum(v for k, v in metrics.items() if k.startswith(FUNCTION_REQUESTS) and model in k)


def test_miss_then_hit_keeps_each_callers_id(stack: dict[str, str]) -> None:
    first, status1 = infer(stack["gateway"], fraud(1.5, request_id="a"))
    second, status2 = infer(stack["gateway"], fraud(1.5, request_id="b"))
    assert (status1, status2) == ("miss", "hit-l1")
    assert (first.id, second.id) == ("a", "b")
    assert first.raw_output_contents == second.raw_output_contents


def test_redis_hit_from_another_gateway(stack: dict[str, str]) -> None:
    infer(stack["gateway"], fraud(2.5))  # stored to Redis in the background
    deadline = time.monotonic() + 10
    while True:
        _, status = infer(stack["redis_only"], fraud(2.5))
        if status == "hit-redis":
            break
        assert time.monotonic() < deadline, f"no Redis hit, last status {status}"


def test_raw_and_typed_share_an_entry_and_typed_gets_typed(stack: dict[str, str]) -> None:
    infer(stack["gateway"], fraud(3.5, raw=True))
    reply, status = infer(stack["gateway"], fraud(3.5, raw=False))
    assert status == "hit-l1"
    assert len(reply.raw_output_contents) == 0 and len(reply.outputs[0].contents.fp32_contents) == 2


def test_what_the_key_tells_apart(stack: dict[str, str]) -> None:
    """Same input bytes, yet a different version, requested outputs, parameters or tenant: separate entries."""
    base = fraud(4.5)
    assert infer(stack["gateway"], base)[1] == "miss"
    assert infer(stack["gateway"], base)[1] == "hit-l1"
    variants = {
        "version": fraud(4.5, version="1"),  # the unversioned request resolved to version 2
        "outputs": fraud(4.5, outputs=["probabilities"]),
        "model": fraud(4.5, model="shortlived"),
    }
    with_param = fraud(4.5)
    with_param.parameters["temperature"].double_param = 0.5
    variants["parameters"] = with_param
    for name, request in variants.items():
        assert infer(stack["gateway"], request)[1] == "miss", name
        assert infer(stack["gateway"], request)[1] == "hit-l1", name
    # A parameter that does not change results (`priority`) shares the entry.
    same = fraud(4.5)
    same.parameters["priority"].int64_param = 3
    assert infer(stack["gateway"], same)[1] == "hit-l1"


def test_bypass_parameter(stack: dict[str, str]) -> None:
    infer(stack["gateway"], fraud(5.5))
    request = fraud(5.5)
    request.parameters["cache"].bool_param = False
    before = function_calls(stack, "fraud")
    assert infer(stack["gateway"], request)[1] == "bypass"
    assert function_calls(stack, "fraud") == before + 1


def test_ttl_expiry(stack: dict[str, str], redis_server: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    assert infer(stack["gateway"], fraud(6.5, model="shortlived"))[1] == "miss"
    assert infer(stack["gateway"], fraud(6.5, model="shortlived"))[1] == "hit-l1"
    written = time.monotonic()  # the L1 entry was there before this

    def expired_everywhere() -> bool:
        # No inference calls meanwhile: a hit near expiry may refresh the entry early (XFetch), which on a slow
        # machine keeps a hammered entry alive for good. L1: its TTL has run out. Redis: the background write
        # has landed (none pending) and expired (no 1 s entry left; every other entry lives 300 s).
        if time.monotonic() < written + 1.2:
            return False
        pending = scrape_metrics(stack["gateway_admin"] + "/metrics")
        if any(v for k, v in pending.items() if k.startswith(GATEWAY_CACHE_PENDING_WRITES)):
            return False
        return not any(0 < client.pttl(k) <= 1000 for k in client.scan_iter(match=f"{PREFIX}*"))

    deadline = time.monotonic() + 30
    while not expired_everywhere():
        assert time.monotonic() < deadline, "the shortlived entry outlived its 1 s TTL in Redis"
        time.sleep(0.05)  # poll interval
    assert infer(stack["gateway"], fraud(6.5, model="shortlived"))[1] == "miss"
    infer(stack["gateway"], fraud(6.75))  # a fresh entry, so at least one key is there
    deadline = time.monotonic() + 10
    while not (ttls := [client.pttl(k) for k in client.scan_iter(match=f"{PREFIX}*")]):
        assert time.monotonic() < deadline, "no entry reached Redis"
    # -1 would be a key without expiry; -2 a key that expired between SCAN and PTTL.
    assert -1 not in ttls, "every Redis entry must carry a TTL"


def test_corrupt_entry_is_a_miss_and_is_replaced(stack: dict[str, str], redis_server: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_server.port)
    for key in client.scan_iter(match=f"{PREFIX}*"):
        client.delete(key)
    infer(stack["redis_only"], fraud(7.5))
    deadline = time.monotonic() + 10
    # The request's canonical entry and its wire entry (cache/wire_key.py), each written in the background.
    while len(keys := list(client.scan_iter(match=f"{PREFIX}*"))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert len(keys) == 2
    for key in keys:
        client.set(key, b"garbage that is not an entry", px=60_000)
    reply, status = infer(stack["redis_only"], fraud(7.5))
    assert status == "miss" and output_arrays(reply)["probabilities"].shape == (1, 2)
    deadline = time.monotonic() + 10
    while infer(stack["redis_only"], fraud(7.5))[1] != "hit-redis":
        assert time.monotonic() < deadline, "the corrupt entry was not replaced"


def test_single_flight_makes_exactly_one_function_call(stack: dict[str, str]) -> None:
    before = function_calls(stack, "ranker")
    x = np.random.default_rng(11).standard_normal((64, 512)).astype(np.float32)

    async def hundred() -> list[str]:
        async with grpc.aio.insecure_channel(stack["gateway"]) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            calls = [stub.ModelInfer(build_request("ranker", {"embedding": x}), timeout=30) for _ in range(100)]
            replies = await asyncio.gather(*calls)
            return [r.parameters["cache_status"].string_param for r in replies]

    statuses = asyncio.run(hundred())
    assert function_calls(stack, "ranker") == before + 1, {
        k: v for k, v in scrape_metrics(stack["function_metrics"]).items() if "ranker" in k and "requests" in k
    }
    assert statuses.count("miss") == 1
    assert set(statuses) <= {"miss", "coalesced", "hit-l1"}


def test_metrics_exposition_has_each_family_once(stack: dict[str, str]) -> None:
    import urllib.request

    text = urllib.request.urlopen(stack["gateway_admin"] + "/metrics", timeout=5).read().decode()
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == len(set(families)), sorted(f for f in families if families.count(f) > 1)


def test_dashboard_queries_only_exported_metrics(stack: dict[str, str]) -> None:
    infer(stack["gateway"], fraud(8.5))
    exported = {k.split("{")[0] for k in scrape_metrics(stack["gateway_admin"] + "/metrics")}
    dashboard = json.loads((Path(__file__).parents[2] / "dashboards" / "edgeinfer-gateway.json").read_text())
    import re

    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"edgeinfer_[a-z0-9_]+", target["expr"]):
                if name in (GATEWAY_TRAFFIC_WEIGHT, GATEWAY_SHADOW_COMPARISONS):
                    continue  # exported only with a traffic policy (tests/deploy/test_dashboard_queries.py)
                assert name in exported, f"panel {panel['title']!r} queries {name}, which the gateway does not export"


def test_redis_killed_mid_load_then_restarted(cache_repo: Path, tmp_path: Path) -> None:
    server = RedisServer(free_port(), dir=tmp_path / "redis")
    server.start()
    server.wait_ready()
    procs: list[Proc] = []
    try:
        function, address = start_function(cache_repo, tmp_path)
        procs.append(function)
        gw, addresses = start_gateway(tmp_path, {"fraud": [address]}, "--redis", server.url, "--l1-max-bytes", "0")
        procs.append(gw)

        async def load(seconds: float, rps: int) -> tuple[list[str], list[BaseException]]:
            statuses: list[str] = []
            errors: list[BaseException] = []
            async with grpc.aio.insecure_channel(addresses["grpc"]) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)

                async def one(i: int) -> None:
                    try:
                        reply = await stub.ModelInfer(fraud(float(i % 5)), timeout=5)
                        statuses.append(reply.parameters["cache_status"].string_param)
                    except grpc.aio.AioRpcError as exc:
                        errors.append(exc)

                tasks = []
                start = time.monotonic()
                for i in range(int(seconds * rps)):
                    await asyncio.sleep(max(0.0, start + i / rps - time.monotonic()))
                    tasks.append(asyncio.ensure_future(one(i)))
                await asyncio.gather(*tasks)
            return statuses, errors

        async def scenario() -> tuple[list[str], list[BaseException], list[str]]:
            running = asyncio.ensure_future(load(6.0, 50))
            await asyncio.sleep(1.5)  # part of the drill's timeline, not a readiness wait
            server.kill()
            await asyncio.sleep(2.0)
            server.start()
            await asyncio.to_thread(server.wait_ready)
            statuses, errors = await running
            return statuses, errors, []

        statuses, errors, _ = asyncio.run(scenario())
        assert errors == [], errors[:3]
        assert len(statuses) == 300
        # Every request was served while Redis was gone: the gateway saw the outage (errors or timeouts), its
        # breaker then refused Redis calls without trying, and the function answered (no error above).
        events = {
            key.split('event="')[1].split('"')[0]: value
            for key, value in scrape_metrics(addresses["admin"] + "/metrics").items()
            if key.startswith(GATEWAY_CACHE_EVENTS + "{")
        }
        assert events["redis_errors"] + events["redis_timeouts"] >= 1, events
        assert events["redis_bypassed"] >= 1, events
        deadline = time.monotonic() + 15
        while infer(addresses["grpc"], fraud(1.0))[1] != "hit-redis":
            assert time.monotonic() < deadline, "hits did not resume after Redis came back"
    finally:
        for proc in procs:
            proc.stop()
        server.stop()
