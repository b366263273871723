"""Traffic policies (gateway/traffic.py) and the data plane's use of them, in-process: validation, persistence,
leases, the weighted pick, shadow copies and their comparison (gateway/shadow.py). No processes, no sockets;
test_traffic_split.py shows the same through real gateways and functions."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from edgeinfer.cache.key import cache_key, key_parts_from_request
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.singleflight import SingleFlight
from edgeinfer.gateway.backends.base import BackendError, Metadata
from edgeinfer.gateway.dataplane import MAX_SHADOWS_IN_FLIGHT, GatewayDataPlane, InferOutcome
from edgeinfer.gateway.metrics import GATEWAY_TRAFFIC_WEIGHT, GatewayMetrics
from edgeinfer.gateway.shadow import AGREE, DISAGREE, ERROR, compare_outputs, compare_replies
from edgeinfer.gateway.traffic import (
    LEASE_POLL_S,
    TRAFFIC_FILE,
    Conflict,
    TrafficPolicy,
    TrafficTable,
    TrafficUpdate,
    compile_split,
    describe_validation,
)
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.tensors import Array, TensorSpec, build_request, decode_inputs, encode_outputs, output_arrays
from edgeinfer.protocol.tracing import Tracing

MODEL = "scale"
X = np.arange(8, dtype=np.float32).reshape(2, 4)
# Version v answers y = v * x: every version's answer differs, so a reply tells which version computed it.
VERSIONS = ("1", "2", "3")


def update(**fields: Any) -> TrafficUpdate:
    return TrafficUpdate.model_validate_json(json.dumps(fields))


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"weights": {"1": 90, "2": 20}}, "weights sum to 110, not 100"),
        ({"weights": {"1": 90}}, "weights sum to 90, not 100"),
        ({"weights": {"1": 50.5, "2": 49.5}}, "valid integer"),
        ({"weights": {"1": "100"}}, "valid integer"),
        ({"weights": {"1": 101, "2": -1}}, "less than or equal to 100"),
        ({"shadow": {"version": "2", "percent": 150}}, "shadow.percent: Input should be less than or equal to 100"),
        ({"shadow": {"version": "2", "percent": -1}}, "shadow.percent"),
        ({"shadow": {"version": "2", "percent": True}}, "shadow.percent: Input should be a valid number"),
        ({"shadow": {"version": "2"}}, "shadow.percent: Field required"),
        ({"shadow": {"version": "2", "percent": 5, "atol": -1}}, "shadow.atol"),
        ({"lease_seconds": 0}, "lease_seconds: Input should be greater than 0"),
        ({"tags": {"2": "Candidate!"}}, "not a Knative traffic tag"),
        ({"rollout": {"blob": "x" * 70_000}}, "rollout: rollout record is"),
        ({"weight": {"1": 100}}, "weight: unknown field"),
    ],
)
def test_bad_policies_are_refused_naming_the_field(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TrafficUpdate.model_validate_json(json.dumps(body))
    message = describe_validation(caught.value, MODEL)
    assert message.startswith(f"traffic policy of model '{MODEL}': ")
    assert problem in message, message


def test_a_policy_may_name_only_versions_the_model_has() -> None:
    table = TrafficTable()
    for body, where in (
        ({"weights": {"1": 50, "9": 50}}, "weights names version '9'"),
        ({"shadow": {"version": "9", "percent": 5}}, "shadow.version names version '9'"),
        ({"revert_to": "9"}, "revert_to names version '9'"),
        ({"tags": {"9": "candidate"}}, "tags names version '9'"),
    ):
        with pytest.raises(InvalidArgument, match=where) as caught:
            table.put(MODEL, update(**body), ("1", "2"))
        assert "its versions: 1, 2" in caught.value.message
    assert table.get(MODEL).generation == 0 and not table.splits  # nothing changed


def test_put_replaces_the_policy_counts_generations_and_checks_the_lock() -> None:
    now = [1000.0]
    table = TrafficTable(clock=lambda: now[0])
    assert table.get(MODEL) == TrafficPolicy()  # never set: the default, generation 0
    first = table.put(MODEL, update(weights={"1": 90, "2": 10}, rollout={"step": 1}), VERSIONS)
    assert (first.generation, first.updated_at, first.lease_until) == (1, 1000.0, None)
    # The server-set fields, as a GET gave them, are ignored; expect_generation is the lock.
    second = table.put(MODEL, update(**first.model_dump(), expect_generation=1), VERSIONS)
    assert second.generation == 2 and second.weights == {"1": 90, "2": 10} and second.rollout == {"step": 1}
    with pytest.raises(Conflict, match="is at generation 2, not 1") as caught:
        table.put(MODEL, update(weights={"2": 100}, expect_generation=1), VERSIONS)
    assert caught.value.http_status == 409
    assert table.get(MODEL).weights == {"1": 90, "2": 10}
    # A PUT is a whole policy: what it leaves out is back to its default.
    assert table.put(MODEL, update(weights={"2": 100}), VERSIONS).rollout is None
    cleared = table.clear(MODEL)
    assert cleared.weights == {} and cleared.generation == 4  # still counting: an old lock never matches again
    assert MODEL not in table.splits
    with pytest.raises(Conflict):
        table.clear(MODEL, expect_generation=0)


# -- the weighted pick -----------------------------------------------------------------------------


def test_pick_gives_each_version_its_weight_exactly_and_evenly() -> None:
    policy = TrafficPolicy(weights={"1": 70, "2": 20, "3": 10})
    split = compile_split(policy)
    assert split is not None
    picks = [split.pick() for _ in range(20_000)]
    # Counted, not drawn: every 100 requests in a row hold each version's weight exactly.
    for block in range(0, 20_000, 100):
        assert Counter(picks[block : block + 100]) == {"1": 70, "2": 20, "3": 10}
    # Spread, not bunched: version 3 (10 %) comes every 10th request, never twice within 9.
    threes = [i for i, v in enumerate(picks) if v == "3"]
    assert {b - a for a, b in itertools.pairwise(threes)} == {10}


def test_zero_weights_are_never_picked_and_the_default_consults_nothing() -> None:
    split = compile_split(TrafficPolicy(weights={"1": 0, "2": 100}))
    assert split is not None and split.versions == ("2",)
    assert {split.pick() for _ in range(100)} == {"2"}
    assert compile_split(TrafficPolicy()) is None  # the default: nothing to consult per request
    only_shadow = compile_split(TrafficPolicy(shadow={"version": "2", "percent": 5}))  # type: ignore[arg-type]
    assert only_shadow is not None and only_shadow.pick() == ""  # "" = the view's default


def test_shadow_copies_its_share_exactly_and_never_to_the_serving_version() -> None:
    split = compile_split(
        TrafficPolicy(weights={"1": 100}, shadow={"version": "2", "percent": 25}),  # type: ignore[arg-type]
    )
    assert split is not None
    copied = [split.shadow_for("1") is not None for _ in range(10_000)]
    assert sum(copied) == 2_500 and all(sum(copied[i : i + 4]) == 1 for i in range(0, 10_000, 4))
    assert all(split.shadow_for("2") is None for _ in range(1_000))


def test_a_renewal_goes_on_with_the_round_robin_and_a_change_starts_afresh() -> None:
    table = TrafficTable()
    table.put(MODEL, update(weights={"1": 90, "2": 10}), VERSIONS)
    first = [table.splits[MODEL].pick() for _ in range(55)]
    table.put(MODEL, update(weights={"1": 90, "2": 10}), VERSIONS)  # renewed at a poll: the same weights
    rest = [table.splits[MODEL].pick() for _ in range(45)]
    assert Counter(first + rest) == {"1": 90, "2": 10}
    table.put(MODEL, update(weights={"1": 50, "2": 50}), VERSIONS)
    assert Counter(table.splits[MODEL].pick() for _ in range(100)) == {"1": 50, "2": 50}


# -- persistence and leases ------------------------------------------------------------------------


def test_policies_persist_and_load(tmp_path: Path) -> None:
    path = tmp_path / TRAFFIC_FILE
    table = TrafficTable(path)
    stored = table.put(MODEL, update(weights={"1": 80, "2": 20}, tags={"1": "current", "2": "candidate"}), VERSIONS)
    asyncio.run(table.save())
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, then renamed
    again = TrafficTable(path)
    again.load()
    assert again.get(MODEL) == stored
    split = again.splits[MODEL]
    assert split.versions == ("1", "2") and split.weights == (80, 20)


def test_a_broken_file_stops_the_load_naming_it(tmp_path: Path) -> None:
    path = tmp_path / TRAFFIC_FILE
    for text in ("{not json", '{"format": 1, "models": {"m": {"weights": {"1": 50}}}}', "[]"):
        path.write_text(text)
        with pytest.raises(ValueError, match=f"cannot read the traffic policies in {path}"):
            TrafficTable(path).load()
    TrafficTable(tmp_path / "missing.json").load()  # no file: nothing set yet


def test_a_lease_that_runs_out_reverts_the_weights_and_stops_the_shadow(tmp_path: Path) -> None:
    now = [1000.0]
    table = TrafficTable(tmp_path / TRAFFIC_FILE, clock=lambda: now[0])
    body = update(
        weights={"1": 50, "2": 50},
        shadow={"version": "2", "percent": 5},
        revert_to="1",
        lease_seconds=60,
        rollout={"to": "2"},
    )
    policy = table.put(MODEL, body, VERSIONS)
    assert policy.lease_until == 1060.0 and table.next_expiry() == 1060.0
    now[0] = 1050.0
    assert table.put(MODEL, body, VERSIONS).lease_until == 1110.0  # every PUT renews it
    assert table.expire(1109.9) == []
    assert table.expire(1110.0) == [MODEL]
    reverted = table.get(MODEL)
    assert reverted.weights == {"1": 100} and reverted.shadow is None
    assert (reverted.lease_seconds, reverted.lease_until, reverted.generation) == (None, None, 3)
    assert reverted.rollout == {"to": "2"}  # the controller finds its record, and sees the split gone
    assert table.splits[MODEL].fixed == "1" and table.splits[MODEL].shadow is None
    assert table.next_expiry() is None
    # Without revert_to the lease falls back to the default: the latest version.
    table.put("other", update(weights={"2": 100}, lease_seconds=1), VERSIONS)
    table.expire(now[0] + 1)
    assert table.get("other").weights == {} and "other" not in table.splits


def test_a_lease_that_ran_out_while_the_gateway_was_down_is_applied_at_load(tmp_path: Path) -> None:
    path = tmp_path / TRAFFIC_FILE
    table = TrafficTable(path, clock=lambda: 1000.0)
    table.put(MODEL, update(weights={"1": 50, "2": 50}, revert_to="1", lease_seconds=30), VERSIONS)
    asyncio.run(table.save())
    later = TrafficTable(path, clock=lambda: 2000.0)
    later.load()
    assert later.get(MODEL).weights == {"1": 100} and later.get(MODEL).generation == 2
    assert json.loads(path.read_text())["models"][MODEL]["weights"] == {"1": 100}  # and written back


def test_the_lease_watcher_applies_expiry_by_itself(tmp_path: Path) -> None:
    assert LEASE_POLL_S <= 1.0  # the watcher looks at least this often: a lease is applied at most 1 s late

    async def run() -> TrafficPolicy:
        table = TrafficTable(tmp_path / TRAFFIC_FILE)
        table.start()
        try:
            table.put(MODEL, update(weights={"2": 100}, revert_to="1", lease_seconds=0.2), VERSIONS)
            async with asyncio.timeout(30):
                while table.get(MODEL).generation < 2:
                    await asyncio.sleep(0.02)
            # The watcher writes it, too (on a thread: the file may not be there yet).
            path = tmp_path / TRAFFIC_FILE
            async with asyncio.timeout(30):
                while not path.exists() or json.loads(path.read_text())["models"][MODEL]["weights"] != {"1": 100}:
                    await asyncio.sleep(0.02)
            return table.get(MODEL)
        finally:
            await table.close()

    assert asyncio.run(run()).weights == {"1": 100}


# -- comparing answers -----------------------------------------------------------------------------


def test_outputs_agree_within_tolerance_and_with_the_same_argmax() -> None:
    b = {"p": np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)}
    assert compare_outputs({"p": b["p"] + 5e-5}, b, atol=1e-4, rtol=0) == AGREE
    assert compare_outputs({"p": b["p"] + 1e-3}, b, atol=1e-4, rtol=1e-3) == DISAGREE
    assert compare_outputs({"p": b["p"][:, ::-1].copy()}, b, atol=1e-4, rtol=1e-3) == DISAGREE  # flipped
    # Within tolerance, but the predicted class changes: a disagreement.
    tie = {"p": np.array([[0.50002, 0.49998]], np.float32)}
    other = {"p": np.array([[0.49998, 0.50002]], np.float32)}
    assert compare_outputs(other, tie, atol=1e-3, rtol=0) == DISAGREE
    assert compare_outputs({"p": b["p"].astype(np.float64)}, b, 1, 1) == DISAGREE  # datatype
    assert compare_outputs({"p": b["p"][:1]}, b, 1, 1) == DISAGREE  # shape
    assert compare_outputs({"q": b["p"]}, b, 1, 1) == DISAGREE  # outputs
    labels = {"l": np.array([b"cat", b"dog"], dtype=np.object_)}
    assert compare_outputs(labels, {"l": labels["l"].copy()}, 0, 0) == AGREE
    assert compare_replies(b"\xff\xff", b"", 0, 0) == ERROR


# -- the data plane --------------------------------------------------------------------------------


@dataclass
class VersionedBackend:
    """`scale` with VERSIONS; version v answers y = v * x. `failing` versions raise; `gate` holds `gated` ones."""

    failing: set[str] = field(default_factory=set)
    gated: set[str] = field(default_factory=set)
    gate: asyncio.Event | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)  # (version argument, version in the bytes)

    def models(self) -> list[str]:
        return [MODEL]

    async def infer(self, model: str, version: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        parsed = pb.ModelInferRequest.FromString(request)
        self.calls.append((version, parsed.model_version))
        if version in self.gated and self.gate is not None:
            await self.gate.wait()
        if version in self.failing:
            raise BackendError(grpc.StatusCode.INTERNAL, f"version {version} is broken")
        inputs, _ = decode_inputs(parsed, {"x": TensorSpec("x", "FP32", (-1, 4))})
        reply = pb.ModelInferResponse(model_name=model, model_version=parsed.model_version)
        outputs: list[tuple[str, Array]] = [("y", inputs["x"] * float(parsed.model_version))]
        encode_outputs(reply, outputs, raw=True)
        return reply.SerializeToString()

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse:
        metadata = pb.ModelMetadataResponse(
            name=MODEL,
            versions=[version] if version else list(VERSIONS),
            platform="onnxruntime_onnx",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name="x", datatype="FP32", shape=[-1, 4])],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name="y", datatype="FP32", shape=[-1, 4])],
        )
        metadata.properties["max_batch_size"].string_param = "8"
        return metadata

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse()

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return True

    async def close(self) -> None:
        return None


def key(request: pb.ModelInferRequest, decoded: dict[str, Array], tenant: str, version: str) -> bytes:
    return cache_key(key_parts_from_request(request, decoded, tenant=tenant, version=version))


def plane(backend: VersionedBackend, seed: int = 18) -> GatewayDataPlane:
    return GatewayDataPlane(
        backend,
        GatewayMetrics("test"),
        Tracing(),
        cache=PredictionCache(l1=L1Cache(1 << 20)),
        flights=SingleFlight[bytes](),
        key_function=key,
        traffic=TrafficTable(),
    )


async def serve_bytes(dp: GatewayDataPlane, data: bytes) -> InferOutcome:
    """What the gRPC servicer does with ModelInfer's bytes (gateway/servicer.py ModelInferRaw)."""
    wire = dp.wire_lookup(data)
    outcome = await dp.wire_hit(wire) if wire is not None else None
    if outcome is None:
        outcome = await dp.infer(pb.ModelInferRequest.FromString(data), raw_request=data, wire=wire)
    return outcome


def served_by(outcome: InferOutcome) -> str:
    """The version that computed the reply, checked against its outputs (y = v * x)."""
    reply = pb.ModelInferResponse.FromString(outcome.payload)
    np.testing.assert_array_equal(output_arrays(reply)["y"], X * float(reply.model_version))
    return reply.model_version


async def settle(dp: GatewayDataPlane) -> None:
    async with asyncio.timeout(30):
        while dp._shadows:
            await asyncio.sleep(0.01)


def test_unversioned_requests_split_and_named_ones_never_do() -> None:
    async def run() -> tuple[Counter[str], Counter[str], set[str]]:
        dp = plane(VersionedBackend())
        await dp.model(MODEL)
        dp.traffic.put(MODEL, update(weights={"1": 60, "2": 40}), VERSIONS)
        split: Counter[str] = Counter()
        wire: Counter[str] = Counter()
        for i in range(400):  # the same input over and over: the cache answers most, per version
            split[served_by(await dp.infer(build_request(MODEL, {"x": X}, request_id=str(i))))] += 1
            data = build_request(MODEL, {"x": X}, request_id=f"w{i}").SerializeToString()
            wire[served_by(await serve_bytes(dp, data))] += 1
        named = {served_by(await dp.infer(build_request(MODEL, {"x": X}, version="3"))) for _ in range(50)}
        return split, wire, named

    split, wire, named = asyncio.run(run())
    for counts in (split, wire):
        assert set(counts) == {"1", "2"}  # never 3, the latest, which has no weight
        assert 180 < counts["1"] < 300, counts  # 60 % of 400 = 240, sd ~10
    assert named == {"3"}


def test_a_canary_never_serves_the_other_versions_cached_answer() -> None:
    async def run() -> list[tuple[str, str]]:
        dp = plane(VersionedBackend())
        await dp.model(MODEL)
        seen = []
        for weights in ({"1": 100}, {"2": 100}, {"1": 100}, {"2": 100}):
            dp.traffic.put(MODEL, update(weights=weights), VERSIONS)
            for _ in range(2):
                outcome = await serve_bytes(dp, build_request(MODEL, {"x": X}).SerializeToString())
                seen.append((served_by(outcome), outcome.cache))
        return seen

    # Each version fills and hits its own entry (the key carries the resolved version).
    assert asyncio.run(run()) == [
        ("1", "miss"),
        ("1", "hit-l1"),
        ("2", "miss"),
        ("2", "hit-l1"),
        ("1", "hit-l1"),
        ("1", "hit-l1"),
        ("2", "hit-l1"),
        ("2", "hit-l1"),
    ]


def test_metrics_carry_the_version_that_served() -> None:
    async def run() -> GatewayDataPlane:
        dp = plane(VersionedBackend())
        await dp.infer(build_request(MODEL, {"x": X}))  # the latest: 3
        await dp.infer(build_request(MODEL, {"x": X}, version="1"))
        with pytest.raises(Exception, match="no version '7'"):
            await dp.infer(build_request(MODEL, {"x": X}, version="7"))
        return dp

    dp = asyncio.run(run())
    requests = dp.metrics.requests
    assert requests.labels("test", MODEL, "3", "OK", "miss").value == 1
    assert requests.labels("test", MODEL, "1", "OK", "miss").value == 1
    assert requests.labels("test", MODEL, "", "NOT_FOUND", "bypass").value == 1  # no version resolved
    assert dp.metrics.function_calls.labels("test", MODEL, "1", "OK").value == 1
    assert dp.metrics.function_calls.labels("test", MODEL, "3", "OK").value == 1
    text = generate_latest(dp.metrics.registry).decode()
    assert f'{GATEWAY_TRAFFIC_WEIGHT}{{model="{MODEL}",region="test",version="3"}} 100.0' in text  # the default
    dp.traffic.put(MODEL, update(weights={"1": 75, "2": 25}), VERSIONS)
    text = generate_latest(dp.metrics.registry).decode()
    assert f'{GATEWAY_TRAFFIC_WEIGHT}{{model="{MODEL}",region="test",version="1"}} 75.0' in text
    assert f'{GATEWAY_TRAFFIC_WEIGHT}{{model="{MODEL}",region="test",version="2"}} 25.0' in text
    assert 'version="3"} 100.0' not in text


def test_shadow_copies_are_compared_and_counted_apart_from_the_requests() -> None:
    backend = VersionedBackend(failing={"3"})

    async def run() -> GatewayDataPlane:
        dp = plane(backend)
        await dp.model(MODEL)
        dp.traffic.put(MODEL, update(weights={"1": 100}, shadow={"version": "2", "percent": 100}), VERSIONS)
        for i in range(10):
            served_by(await dp.infer(build_request(MODEL, {"x": X}, request_id=str(i))))
            served_by(await serve_bytes(dp, build_request(MODEL, {"x": X}).SerializeToString()))
        # Named versions are never copied; nor is a request that the shadow version itself serves.
        await dp.infer(build_request(MODEL, {"x": X}, version="1"))
        await settle(dp)
        # A candidate equal to the baseline agrees (copies of version 2 to itself never happen: use 1 as baseline).
        dp.traffic.put(MODEL, update(weights={"2": 100}, shadow={"version": "2", "percent": 100}), VERSIONS)
        await dp.infer(build_request(MODEL, {"x": X}))
        dp.traffic.put(MODEL, update(weights={"1": 100}, shadow={"version": "3", "percent": 100}), VERSIONS)
        await dp.infer(build_request(MODEL, {"x": X}))
        await settle(dp)
        return dp

    dp = asyncio.run(run())
    shadow = dp.metrics.shadow_comparisons
    assert shadow.labels("test", MODEL, "1", "2", "disagree").value == 20  # y = 2x against y = x: each copy
    assert shadow.labels("test", MODEL, "1", "3", "error").value == 1
    assert shadow.labels("test", MODEL, "2", "2", "agree").value == 0
    # The copies went to version 2 by name, with the version in their bytes, and counted nowhere else.
    assert backend.calls.count(("2", "2")) == 20 + 1  # the copies, and the one request version 2 served
    assert dp.metrics.function_calls.labels("test", MODEL, "2", "OK").value == 1
    (stats,) = dp.statistics(MODEL, "2").model_stats
    assert stats.inference_stats.success.count == 1 and stats.execution_count == 1


def test_an_agreeing_candidate_counts_agreement() -> None:
    @dataclass
    class Twin(VersionedBackend):
        async def infer(self, model: str, version: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
            parsed = pb.ModelInferRequest.FromString(request)
            parsed.model_version = "1"  # every version computes what version 1 does
            return await super().infer(model, version, parsed.SerializeToString(), timeout, metadata)

    async def run() -> GatewayDataPlane:
        dp = plane(Twin())
        await dp.model(MODEL)
        dp.traffic.put(MODEL, update(weights={"1": 100}, shadow={"version": "2", "percent": 100}), VERSIONS)
        for i in range(5):
            await dp.infer(build_request(MODEL, {"x": X}, request_id=str(i)))
        await settle(dp)
        return dp

    assert asyncio.run(run()).metrics.shadow_comparisons.labels("test", MODEL, "1", "2", "agree").value == 5


def test_shadow_copies_beyond_the_bound_are_dropped_never_queued() -> None:
    backend = VersionedBackend(gated={"2"}, gate=None)

    async def run() -> tuple[GatewayDataPlane, int]:
        backend.gate = asyncio.Event()
        dp = plane(backend)
        await dp.model(MODEL)
        dp.traffic.put(MODEL, update(weights={"1": 100}, shadow={"version": "2", "percent": 100}), VERSIONS)
        for i in range(MAX_SHADOWS_IN_FLIGHT + 5):
            # The replies come at once although every copy is held: a copy never delays its reply.
            served_by(await dp.infer(build_request(MODEL, {"x": X}, request_id=str(i))))
        held = len(dp._shadows)
        backend.gate.set()
        await settle(dp)
        return dp, held

    dp, held = asyncio.run(run())
    assert held == MAX_SHADOWS_IN_FLIGHT
    shadow = dp.metrics.shadow_comparisons
    assert shadow.labels("test", MODEL, "1", "2", "dropped").value == 5
    assert shadow.labels("test", MODEL, "1", "2", "disagree").value == MAX_SHADOWS_IN_FLIGHT


@dataclass
class TaggedBackend(VersionedBackend):
    """A backend that routes versions by Knative traffic tag, as the knative backend does (set_tags)."""

    tags_set: list[dict[str, str]] = field(default_factory=list)

    def set_tags(self, model: str, tags: dict[str, str]) -> None:
        if "too-long-for-the-host" in tags.values():  # a tag the policy allows whose host name would not fit
            raise ValueError("the tag's host is not a DNS label")
        self.tags_set.append(dict(tags))


def test_a_policys_tags_reach_the_backend_at_load_and_on_every_change(tmp_path: Path) -> None:
    path = tmp_path / TRAFFIC_FILE
    saved = TrafficTable(path)
    saved.put(MODEL, update(weights={"1": 100}, tags={"1": "current", "2": "candidate"}), VERSIONS)
    asyncio.run(saved.save())

    async def run() -> TaggedBackend:
        backend = TaggedBackend()
        table = TrafficTable(path)
        table.load()
        dp = GatewayDataPlane(backend, GatewayMetrics("test"), Tracing(), traffic=table)
        assert backend.tags_set == [{"1": "current", "2": "candidate"}]  # the loaded policy's, at start
        dp.traffic.put(MODEL, update(weights={"1": 50, "2": 50}, tags={"1": "current", "2": "candidate"}), VERSIONS)
        assert len(backend.tags_set) == 1  # the same tags: nothing to change
        dp.traffic.put(MODEL, update(weights={"2": 100}, tags={"2": "current"}), VERSIONS)
        dp.traffic.clear(MODEL)
        with pytest.raises(ValueError, match="DNS label"):
            dp.traffic.put(MODEL, update(tags={"2": "too-long-for-the-host"}), VERSIONS)
        assert dp.traffic.get(MODEL).tags == {}  # refused whole: the policy did not change
        return backend

    backend = asyncio.run(run())
    assert backend.tags_set[1:] == [{"2": "current"}, {}]


def test_an_undone_pick_is_given_again() -> None:
    split = compile_split(TrafficPolicy(weights={"1": 50, "2": 50}))
    assert split is not None
    first = split.pick()
    split.undo(first)  # the wire lookup gave up on it: the request is picked again, and gets the same
    assert split.pick() == first
    assert Counter(split.pick() for _ in range(99)) + Counter([first]) == {"1": 50, "2": 50}
