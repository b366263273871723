"""The Redis store against a real 3-master, 3-replica valkey cluster (tests/testkit/valkey_cluster.py).

The drill kills a master under a steady stream of gets and puts: no request may fail (a miss is fine), and the hit
ratio must be back within 5 % of its level before the kill within 10 s of the replica's promotion.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
from testkit.procs import start_gateway
from testkit.valkey_cluster import POLL_S, ValkeyCluster

from edgeinfer.cache.breaker import BreakerState, CircuitBreaker
from edgeinfer.cache.entry import encode_entry
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_store import ClusterUrl, RedisStore, parse_redis_target, redact_url
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request

PASSWORD = "s3cret:p@ss/word"
# Generous budgets: these tests check behaviour, not latency, on a busy 2-core machine.
GET_BUDGET = 0.25
WRITE_BUDGET = 0.5


def key(i: int) -> bytes:
    return i.to_bytes(32, "big")


def payload(k: bytes) -> bytes:
    return b"reply for " + k.hex().encode()


def store_for(url: str, prefix: str) -> RedisStore:
    return RedisStore(url, key_prefix=prefix, get_timeout=GET_BUDGET, write_timeout=WRITE_BUDGET)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    """One cluster with a password for the tests that only read and write their own keys (not the drill)."""
    with ValkeyCluster(tmp_path_factory.mktemp("cluster"), password=PASSWORD) as formed:
        yield formed


def test_cluster_urls() -> None:
    target = parse_redis_target("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,cache")
    assert isinstance(target, ClusterUrl)
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002), ("cache", 6379))
    assert target.options == {"password": "pw"} and "pw" not in repr(target)
    flagged = parse_redis_target("rediss://u:pw@h:7000/0?cluster=true&ssl_cert_reqs=none")
    assert isinstance(flagged, ClusterUrl) and flagged.nodes == (("h", 7000),)
    assert flagged.options == {"username": "u", "password": "pw", "ssl_cert_reqs": "none", "ssl": True}
    tls = parse_redis_target("rediss+cluster://a:1,b:2")
    assert isinstance(tls, ClusterUrl) and tls.options == {"ssl": True}
    # One server: the URL untouched, or only the flag removed.
    assert parse_redis_target("redis://:pw@h:6379/2") == "redis://:pw@h:6379/2"
    assert parse_redis_target("redis://h:6379/2?cluster=false&db=2") == "redis://h:6379/2?db=2"
    for bad, says in [
        ("redis+cluster://:hunter2@a:1,b:2/3", "database 0"),
        ("redis://:hunter2@a:1?cluster=maybe", "cluster=true or cluster=false"),
        ("redis+cluster://:hunter2@a:1?cluster=false", "one server"),
        ("redis+cluster://:hunter2@a:notaport", "host:port"),
        ("redis+cluster://:hunter2@", "no host:port"),
    ]:
        with pytest.raises(ValueError, match=says) as raised:
            parse_redis_target(bad)
        assert "hunter2" not in str(raised.value)
        with pytest.raises(ValueError):
            RedisStore(bad)
    # TLS: the context is built once, at start-up, for every master's connections.
    assert RedisStore("rediss+cluster://127.0.0.1:1,127.0.0.1:2?ssl_cert_reqs=none")._ssl_context is not None
    assert redact_url("redis+cluster://:hunter2@a:1,b:2") == "redis+cluster://:***@a:1,b:2"
    assert "hunter2" not in RedisStore("redis+cluster://:hunter2@a:1,b:2").safe_url


def test_child_breakers_open_alone_and_count_in_the_parent() -> None:
    now = [0.0]
    parent = CircuitBreaker(2, cooldown_seconds=1.0, clock=lambda: now[0])
    a, b = parent.child(), parent.child()
    a.record_failure()
    a.record_failure()
    assert a.state is BreakerState.OPEN and b.state is BreakerState.CLOSED and parent.state is BreakerState.CLOSED
    assert (a.opened_count, parent.opened_count) == (1, 1)
    now[0] += 1.0  # the child shares the parent's clock: its cooldown is over
    assert a.allow() and a.state.value == "half_open"


def test_round_trip_prefix_ttl_over_every_master(cluster: ValkeyCluster) -> None:
    async def main() -> None:
        for url in (cluster.url, cluster.url.replace("redis+cluster://", "redis://") + "?cluster=true"):
            store = store_for(url, f"rt:{len(url)}:")
            assert store.cluster
            assert await store.start()
            assert store.connections >= len(cluster.masters)  # a pool per master, warmed
            keys = [key(i) for i in range(60)]
            assert await store.get(keys[0]) is None
            for k in keys:
                assert await store.set(k, encode_entry(payload(k), 1.0, 0.25), 60)
            for k in keys:
                found = await store.get(k)
                assert found is not None and found.entry.payload == payload(k) and found.entry.compute_seconds == 0.25
                # The TTL set (in seconds, not ms), less what passed since: 30 s of slack for a loaded machine.
                assert found.ttl_seconds is not None and 30 < found.ttl_seconds <= 60
            assert await store.delete(keys[0]) and await store.get(keys[0]) is None
            await store.close()
            # Under the prefix, with a PX expiry, and spread over all three masters.
            per_master = []
            for master in cluster.masters:
                with cluster.client(master) as admin:
                    names = admin.keys(store.key_prefix.decode() + "*")
                    per_master.append(len(names))
                    assert all(0 < admin.pttl(name) <= 60_000 for name in names)
            assert sum(per_master) == len(keys) - 1 and min(per_master) > 0, per_master

    asyncio.run(main())


def test_auth_and_no_password_in_logs(cluster: ValkeyCluster, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        good = PredictionCache(l1=None, redis=store_for(cluster.url, "auth:"))
        assert await good.start()
        good.put(key(1), b"secret response", 30)
        await good.flush()
        assert await good.get(key(1)) is not None
        await good.close()
        wrong = cluster.url.replace("s3cret", "wrong")
        no_password = "redis+cluster://" + ",".join(node.address for node in cluster.nodes)
        for url in (wrong, no_password):
            store = store_for(url, "auth:")
            bad = PredictionCache(l1=None, redis=store)
            assert not await bad.start()  # no node lets it read the slot map
            assert await bad.get(key(1)) is None  # a miss, not an exception
            assert bad.stats().redis_errors >= 1
            await bad.close()
        store = store_for(wrong, "auth:")
        for _ in range(store.breaker.failure_threshold + 1):
            assert not await store.start()
        assert store.breaker.state is BreakerState.OPEN
        assert "s3cret" not in repr(store) and "wrong" not in repr(store)
        await store.close()

    with caplog.at_level(logging.DEBUG, logger="edgeinfer.cache"):
        asyncio.run(main())
    assert "unavailable" in caplog.text
    assert "s3cret" not in caplog.text and ":wrong@" not in caplog.text


def test_gateway_with_cluster_flag(cluster: ValkeyCluster, function_address: str, tmp_path: Path) -> None:
    """`edgeinfer gateway --redis redis+cluster://...` end to end: a miss, then a Redis hit; no password logged."""
    gateway, addresses = start_gateway(
        tmp_path, {"fraud": [function_address]}, "--redis", cluster.url, "--l1-max-bytes", "0"
    )
    try:
        request = build_request("fraud", {"features": np.full((1, 30), 0.25, dtype=np.float32)})
        with grpc.insecure_channel(addresses["grpc"]) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            statuses = [stub.ModelInfer(request, timeout=30).parameters["cache_status"].string_param]
            deadline = time.monotonic() + 10
            while statuses[-1] != "hit-redis":  # the miss's write is in the background
                assert time.monotonic() < deadline, statuses
                statuses.append(stub.ModelInfer(request, timeout=30).parameters["cache_status"].string_param)
        assert statuses[0] == "miss"
    finally:
        gateway.stop()
    assert "s3cret" not in gateway.output()


# The drill: keys preloaded, then a steady stream of gets (a miss refills the key, as the gateway would).
KEYS = 600
WORKERS = 8
PACE_S = 0.002  # each worker's pause between requests: a steady stream, and the loop stays responsive
WINDOW_S = 0.5  # hit ratio per window of completed requests
BEFORE_S = 2.0  # the level before the kill: its last BEFORE_S seconds
HOLD_S = 1.5  # recovered means: every window for this long at the level
RECOVERY_BOUND_S = 10.0  # the bound, from the promotion


@dataclass
class DrillReport:
    requests: int
    failed: int
    wrong_payloads: int
    level_before: float
    lowest_window: float
    promotion_s: float  # from the kill
    recovery_s: float  # from the promotion to the end of the first window back at the level
    requests_kill_to_recovery: int
    redis_errors: int
    redis_bypassed: int
    breaker_opened: int
    get_p99_ms: float
    get_max_ms: float


class PromotionWatch(threading.Thread):
    """Polls CLUSTER NODES on the replica (in a thread, so a busy event loop cannot delay it)."""

    def __init__(self, cluster: ValkeyCluster, replica_index: int) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.replica = cluster.replicas[replica_index]
        self.promoted_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                if self.cluster.is_master(self.replica):
                    self.promoted_at = time.monotonic()
                    return
            except redis.RedisError:
                pass
            time.sleep(POLL_S)


def ratio(samples: list[tuple[float, bool]], start: float, end: float) -> float | None:
    window = [hit for at, hit in samples if start <= at < end]
    return sum(window) / len(window) if window else None


async def drill(cluster: ValkeyCluster) -> DrillReport:
    store = store_for(cluster.url, "drill:")
    cache = PredictionCache(l1=None, redis=store)
    assert await cache.start()
    keys = [key(i) for i in range(KEYS)]
    for i in range(0, KEYS, 100):  # in batches: the cache bounds its pending writes
        for k in keys[i:i + 100]:
            assert cache.put(k, payload(k), 300)
        assert await cache.flush(10)
    assert cache.stats().redis_writes == KEYS
    samples: list[tuple[float, bool]] = []
    latencies: list[float] = []  # reported, never asserted
    failures: list[str] = []
    wrong = 0
    stop = asyncio.Event()

    async def worker(seed: int) -> None:
        nonlocal wrong
        rng = random.Random(seed)
        while not stop.is_set():
            k = rng.choice(keys)
            started = time.monotonic()
            try:
                hit = await cache.get(k)
                latencies.append(time.monotonic() - started)
                if hit is None:
                    cache.put(k, payload(k), 300)
                elif hit.payload != payload(k):
                    wrong += 1
                samples.append((time.monotonic(), hit is not None))
            except Exception as exc:
                failures.append(repr(exc))
            await asyncio.sleep(PACE_S)

    tasks = [asyncio.create_task(worker(i)) for i in range(WORKERS)]
    loop = asyncio.get_running_loop()
    watch = PromotionWatch(cluster, 0)
    try:
        await asyncio.sleep(BEFORE_S)  # load runs meanwhile: the level before the kill
        killed_at = time.monotonic()
        level = ratio(samples, killed_at - BEFORE_S, killed_at)
        assert level is not None and level > 0.9, f"cache not warm before the kill: {level}"
        await loop.run_in_executor(None, cluster.kill, cluster.masters[0])
        watch.start()
        await loop.run_in_executor(None, watch.join, 30.0)
        assert watch.promoted_at is not None, f"no promotion in 30 s:\n{cluster.describe()}"
        promoted_at = watch.promoted_at
        # Windows from the promotion on; recovered at the end of the first one at the level that stays there.
        recovered_at = None
        start = promoted_at
        while recovered_at is None or time.monotonic() < recovered_at + HOLD_S:
            end = start + WINDOW_S
            assert end < promoted_at + RECOVERY_BOUND_S + HOLD_S, "hit ratio not back within the bound"
            await asyncio.sleep(max(0.0, end - time.monotonic()))  # until the window has been served
            value = ratio(samples, start, end)
            if value is None or value < level * 0.95:
                recovered_at = None
            elif recovered_at is None:
                recovered_at = end
            start = end
    finally:
        watch.stop.set()
        stop.set()
        await asyncio.gather(*tasks)
        stats = cache.stats()
        await cache.close()
    assert recovered_at is not None
    lowest = min(
        (r for i in range(int((recovered_at - killed_at) / WINDOW_S))
         if (r := ratio(samples, killed_at + i * WINDOW_S, killed_at + (i + 1) * WINDOW_S)) is not None),
        default=1.0,
    )
    assert not failures, failures[:5]
    return DrillReport(
        requests=len(samples) + len(failures),
        failed=len(failures),
        wrong_payloads=wrong,
        level_before=round(level, 4),
        lowest_window=round(lowest, 4),
        promotion_s=round(promoted_at - killed_at, 3),
        recovery_s=round(recovered_at - promoted_at, 3),
        requests_kill_to_recovery=sum(1 for at, _ in samples if killed_at <= at < recovered_at),
        redis_errors=stats.redis_errors,
        redis_bypassed=stats.redis_bypassed,
        breaker_opened=stats.breaker_opened,
        get_p99_ms=round(sorted(latencies)[int(len(latencies) * 0.99)] * 1000, 2),
        get_max_ms=round(max(latencies) * 1000, 2),
    )


def test_master_killed_under_load(tmp_path: Path) -> None:
    with ValkeyCluster(tmp_path / "cluster") as formed:
        report = asyncio.run(drill(formed))
    print("redis cluster kill drill:", json.dumps(asdict(report)))
    assert report.failed == 0 and report.wrong_payloads == 0
    assert report.recovery_s <= RECOVERY_BOUND_S
    # The drill did hit the failover: a third of the keys lost their master, and Redis errors were seen.
    assert report.lowest_window < report.level_before * 0.9
    assert report.redis_errors > 0
