"""The traffic split and shadow traffic through real processes: a real `edgeinfer gateway` (static backend, cache
on) over gRPC to a real `edgeinfer function` serving fraud 1 (the baseline), 2 (a wrong canary: its probabilities
flipped) and 3 (a good one: version 1's model), and the admin API that sets the policy."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from testkit.procs import Proc, start_function, start_gateway

from edgeinfer.functions.examples import write_canary
from edgeinfer.gateway.admin_client import AdminClient, AdminError
from edgeinfer.gateway.metrics import (
    GATEWAY_FUNCTION_CALLS,
    GATEWAY_REQUESTS,
    GATEWAY_SHADOW_COMPARISONS,
    GATEWAY_TRAFFIC_WEIGHT,
)
from edgeinfer.gateway.traffic import TRAFFIC_FILE
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays

MODEL = "fraud"
ROWS = np.random.default_rng(18).normal(0, 300, size=(12, 30)).astype(np.float32)
SHARED = len(ROWS) - 1  # the rows most tests send; the last is the cache test's own
WAIT_S = 30.0


@pytest.fixture(scope="module")
def repo(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("canary-models")
    shutil.copytree(model_repo / MODEL, root / MODEL)
    write_canary(root, "wrong")  # fraud/2: probabilities flipped
    write_canary(root, "good", "3")  # fraud/3: version 1's model
    return root


@pytest.fixture(scope="module")
def function(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, address = start_function(repo, tmp_path_factory.mktemp("function"))
    yield address
    proc.stop()


@pytest.fixture(scope="module")
def gateway(function: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("gateway-state")
    proc, addresses = start_gateway(
        tmp_path_factory.mktemp("gateway"), {MODEL: [function]}, "--state-dir", str(state), region="canary"
    )
    yield {**addresses, "state": str(state)}
    proc.stop()


@pytest.fixture
def admin(gateway: dict[str, str]) -> Iterator[AdminClient]:
    client = AdminClient(gateway["admin"].removeprefix("http://"))
    yield client
    client.clear_traffic(MODEL)  # each test starts from the default policy


class Client:
    """One channel to a gateway; infer() returns (version that answered, probabilities, cache status)."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def infer(self, row: int, version: str = "") -> tuple[str, np.ndarray, str]:
        request = build_request(MODEL, {"features": ROWS[row : row + 1]}, version=version)
        reply: pb.ModelInferResponse = self.stub.ModelInfer(request, timeout=30)
        return reply.model_version, output_arrays(reply)["probabilities"], reply.parameters["cache_status"].string_param

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def client(gateway: dict[str, str]) -> Iterator[Client]:
    c = Client(gateway["grpc"])
    yield c
    c.close()


@pytest.fixture(scope="module")
def baseline(gateway: dict[str, str]) -> list[np.ndarray]:
    """Version 1's answer for each row, asked by name."""
    c = Client(gateway["grpc"])
    try:
        answers = []
        for row in range(len(ROWS)):
            version, probabilities, _ = c.infer(row, version="1")
            assert version == "1"
            answers.append(probabilities)
    finally:
        c.close()
    # The rows are far apart enough that every answer is sure of its class: the flip always changes it.
    assert all(abs(float(p[0, 0]) - float(p[0, 1])) > 0.5 for p in answers)
    return answers


def expected(baseline: list[np.ndarray], row: int, version: str) -> np.ndarray:
    """What `version` answers for `row`: 2 flips version 1's probabilities; 3 is version 1's model."""
    return baseline[row][:, ::-1] if version == "2" else baseline[row]


def check(baseline: list[np.ndarray], row: int, answer: tuple[str, np.ndarray, str]) -> str:
    version, probabilities, _ = answer
    np.testing.assert_allclose(probabilities, expected(baseline, row, version), atol=1e-6)
    return version


def samples(admin: AdminClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The series of one family from /metrics: label items (sorted) -> value."""
    found = {}
    for family in text_string_to_metric_families(admin.metrics()):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def total(admin: AdminClient, name: str, **labels: str) -> float:
    return sum(v for k, v in samples(admin, name).items() if labels.items() <= dict(k).items())


def wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {WAIT_S}s")
        time.sleep(0.05)


# -- the split -------------------------------------------------------------------------------------


def test_unversioned_requests_follow_the_weights(admin: AdminClient, client: Client, baseline: list[Any]) -> None:
    policy = admin.set_traffic(MODEL, {"weights": {"1": 70, "2": 30}})
    assert policy["weights"] == {"1": 70, "2": 30} and policy["generation"] >= 1
    counts = Counter(check(baseline, i % SHARED, client.infer(i % SHARED)) for i in range(300))
    # 30 % of 300 = 90, one standard deviation ~8: these bounds are over 5 of them away.
    assert set(counts) == {"1", "2"} and 45 < counts["2"] < 135, counts


def test_a_request_that_names_a_version_is_never_split(admin: AdminClient, client: Client, baseline: list[Any]) -> None:
    admin.set_traffic(MODEL, {"weights": {"2": 100}})
    assert {check(baseline, i % 3, client.infer(i % 3, version="1")) for i in range(30)} == {"1"}
    assert {check(baseline, i % 3, client.infer(i % 3, version="3")) for i in range(30)} == {"3"}
    assert {check(baseline, i % 3, client.infer(i % 3)) for i in range(30)} == {"2"}
    admin.clear_traffic(MODEL)
    assert {check(baseline, 0, client.infer(0))} == {"3"}  # the default: the latest version


def test_a_canary_never_serves_the_other_versions_cached_answer(
    admin: AdminClient, client: Client, baseline: list[Any]
) -> None:
    row = SHARED  # a row no other test sends unversioned
    seen = []
    for weights in ({"1": 100}, {"2": 100}, {"1": 100}, {"2": 100}):
        admin.set_traffic(MODEL, {"weights": weights})
        for _ in range(2):
            answer = client.infer(row)
            seen.append((check(baseline, row, answer), answer[2]))
    # Version 1 had answered this row by name already (the baseline fixture): its entry is there from the start.
    assert seen == [
        ("1", "hit-l1"),
        ("1", "hit-l1"),
        ("2", "miss"),
        ("2", "hit-l1"),
        ("1", "hit-l1"),
        ("1", "hit-l1"),
        ("2", "hit-l1"),
        ("2", "hit-l1"),
    ]
    # Split half and half over the same rows: every reply is its own version's answer, hit or miss.
    admin.set_traffic(MODEL, {"weights": {"1": 50, "2": 50}})
    answers = [client.infer(i % 4) for i in range(100)]
    versions = Counter(check(baseline, i % 4, a) for i, a in enumerate(answers))
    assert set(versions) == {"1", "2"}
    assert {a[2] for a in answers} >= {"hit-l1"}


# -- shadow traffic --------------------------------------------------------------------------------


def test_shadow_copies_measure_agreement_and_never_reach_the_caller(
    admin: AdminClient, client: Client, baseline: list[Any]
) -> None:
    def count(version: str, result: str) -> float:
        return total(admin, GATEWAY_SHADOW_COMPARISONS, model=MODEL, baseline="1", version=version, result=result)

    before = {(v, r): count(v, r) for v in ("2", "3") for r in ("agree", "disagree", "error", "dropped")}
    served = {(n, v): total(admin, n, model=MODEL, version=v) for n in (GATEWAY_REQUESTS, GATEWAY_FUNCTION_CALLS)
              for v in ("2", "3")}  # fmt: skip
    admin.set_traffic(MODEL, {"weights": {"1": 100}, "shadow": {"version": "2", "percent": 100}})
    replies = {check(baseline, i % SHARED, client.infer(i % SHARED)) for i in range(20)}
    assert replies == {"1"}  # the wrong canary's answers are only compared, never sent back
    wait_for(lambda: count("2", "disagree") - before[("2", "disagree")] == 20, "20 disagreements")
    # The good candidate agrees with every reply.
    admin.set_traffic(MODEL, {"weights": {"1": 100}, "shadow": {"version": "3", "percent": 100}})
    replies = {check(baseline, i % SHARED, client.infer(i % SHARED)) for i in range(20)}
    assert replies == {"1"}
    wait_for(lambda: count("3", "agree") - before[("3", "agree")] == 20, "20 agreements")
    assert count("2", "agree") == before[("2", "agree")] and count("3", "disagree") == before[("3", "disagree")]
    assert count("2", "error") == before[("2", "error")] and count("3", "error") == before[("3", "error")]
    # The copies are counted there only: no more requests or function calls of versions 2 and 3.
    for (name, version), value in served.items():
        assert total(admin, name, model=MODEL, version=version) == value, (name, version)


def test_metrics_carry_the_version_and_the_weights(admin: AdminClient, client: Client, baseline: list[Any]) -> None:
    admin.set_traffic(MODEL, {"weights": {"1": 80, "2": 20}})
    before = {v: total(admin, GATEWAY_REQUESTS, model=MODEL, version=v, code="OK") for v in ("1", "2")}
    counts = Counter(check(baseline, i % SHARED, client.infer(i % SHARED)) for i in range(60))
    for version in ("1", "2"):
        served = total(admin, GATEWAY_REQUESTS, model=MODEL, version=version, code="OK") - before[version]
        assert served == counts[version]
    assert total(admin, GATEWAY_FUNCTION_CALLS, model=MODEL, version="2") > 0
    weights = {dict(k)["version"]: v for k, v in samples(admin, GATEWAY_TRAFFIC_WEIGHT).items()}
    assert weights == {"1": 80.0, "2": 20.0}
    with pytest.raises(grpc.RpcError) as caught:
        client.infer(0, version="9")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert total(admin, GATEWAY_REQUESTS, model=MODEL, version="", code="NOT_FOUND") >= 1
    assert not any(dict(k).get("version") == "9" for k in samples(admin, GATEWAY_REQUESTS))


# -- the admin API ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"weights": {"1": 90, "2": 20}}, "weights sum to 110, not 100"),
        ({"weights": {"1": 50, "7": 50}}, "weights names version '7', which the model does not have"),
        ({"shadow": {"version": "2", "percent": 150}}, "shadow.percent"),
        ({"shadow": {"version": "8", "percent": 5}}, "shadow.version names version '8'"),
        ({"revert_to": "0"}, "revert_to names version '0'"),
        ({"wieghts": {"1": 100}}, "wieghts: unknown field"),
    ],
)
def test_bad_policies_are_400_and_change_nothing(admin: AdminClient, body: dict[str, Any], message: str) -> None:
    before = admin.traffic(MODEL)
    with pytest.raises(AdminError) as caught:
        admin.set_traffic(MODEL, body)
    assert caught.value.status == 400 and message in str(caught.value), caught.value
    assert admin.traffic(MODEL) == before


def test_the_admin_api_lists_sets_locks_and_clears(admin: AdminClient, gateway: dict[str, str]) -> None:
    with pytest.raises(AdminError) as caught:
        admin.set_traffic("nosuch", {"weights": {"1": 100}})
    assert caught.value.status == 400 and "unknown model 'nosuch'; this gateway routes: fraud" in str(caught.value)
    for raw in (b"[1, 2]", b"{not json", b""):
        with pytest.raises(AdminError) as caught:
            admin.request("PUT", f"/v1/traffic/{MODEL}", None) if not raw else _put_raw(admin, raw)
        assert caught.value.status == 400
    start = admin.traffic(MODEL)["generation"]
    stored = admin.set_traffic(
        MODEL,
        {"weights": {"1": 90, "2": 10}, "tags": {"1": "current", "2": "candidate"}, "rollout": {"to": "2"}},
        expect_generation=start,
    )
    assert stored["generation"] == start + 1 and stored["updated_at"] > 0
    assert admin.traffic()[MODEL] == stored == admin.traffic(MODEL)
    with pytest.raises(AdminError) as caught:  # the lock: someone else changed it since generation `start`
        admin.set_traffic(MODEL, {"weights": {"2": 100}}, expect_generation=start)
    assert caught.value.status == 409 and f"at generation {start + 1}, not {start}" in str(caught.value)
    assert admin.traffic(MODEL)["weights"] == {"1": 90, "2": 10}
    saved = json.loads((Path(gateway["state"]) / TRAFFIC_FILE).read_text())
    assert saved["models"][MODEL]["generation"] == start + 1  # written before it was answered
    cleared = admin.clear_traffic(MODEL)
    assert cleared["weights"] == {} and cleared["generation"] == start + 2 and cleared["rollout"] is None


def _put_raw(admin: AdminClient, body: bytes) -> bytes:
    import urllib.request

    request = urllib.request.Request(f"{admin.base}/v1/traffic/{MODEL}", data=body, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            data: bytes = reply.read()
            return data
    except urllib.error.HTTPError as exc:
        raise AdminError(exc.read().decode(), status=exc.code) from None


# -- persistence, leases, workers ------------------------------------------------------------------


def test_policies_survive_a_restart_and_leases_revert_them(function: str, baseline: list[Any], tmp_path: Path) -> None:
    state = tmp_path / "state"

    def start() -> tuple[Proc, AdminClient, Client]:
        proc, addresses = start_gateway(tmp_path, {MODEL: [function]}, "--state-dir", str(state), region="lease")
        return proc, AdminClient(addresses["admin"].removeprefix("http://")), Client(addresses["grpc"])

    proc, admin, client = start()
    try:
        stored = admin.set_traffic(MODEL, {"weights": {"2": 100}, "revert_to": "1", "lease_seconds": 600})
    finally:
        client.close()
        proc.stop()
    proc, admin, client = start()
    try:
        assert admin.traffic(MODEL) == stored  # read back at start
        assert check(baseline, 0, client.infer(0)) == "2"
        # A short lease that nobody renews: back to revert_to, by the gateway itself.
        admin.set_traffic(MODEL, {"weights": {"2": 100}, "revert_to": "1", "lease_seconds": 1})
        wait_for(lambda: admin.traffic(MODEL)["weights"] == {"1": 100}, "the lease reverted the weights")
        reverted = admin.traffic(MODEL)
        assert reverted["shadow"] is None and reverted["lease_until"] is None
        assert check(baseline, 0, client.infer(0)) == "1"
        admin.set_traffic(MODEL, {"weights": {"2": 100}, "revert_to": "1", "lease_seconds": 600})
    finally:
        client.close()
        proc.stop()
    # A lease that ran out while the gateway was down is applied before it serves.
    saved = json.loads((state / TRAFFIC_FILE).read_text())
    saved["models"][MODEL]["lease_until"] = time.time() - 5
    (state / TRAFFIC_FILE).write_text(json.dumps(saved))
    proc, admin, client = start()
    try:
        assert admin.traffic(MODEL)["weights"] == {"1": 100}
        assert check(baseline, 0, client.infer(0)) == "1"
    finally:
        client.close()
        proc.stop()


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal policies but for when each was stamped."""
    stamps = ("updated_at", "lease_until")
    return {k: v for k, v in a.items() if k not in stamps} == {k: v for k, v in b.items() if k not in stamps}


def test_workers_each_hold_the_policy_and_share_its_file(function: str, baseline: list[Any], tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, addresses = start_gateway(
        tmp_path, {MODEL: [function]}, "--workers", "2", "--state-dir", str(state), region="wk"
    )
    try:
        admin = AdminClient(addresses["admin"].removeprefix("http://"))
        wait_for(lambda: admin.ready(), "every worker ready")
        stored = admin.set_traffic(MODEL, {"weights": {"1": 40, "2": 60}})
        workers = admin.json("GET", "/v1/workers")["workers"]
        assert len(workers) == 2
        for worker in workers:  # each worker's own admin port holds the same policy (each stamps its own clock)
            assert same(AdminClient(worker["admin"]).traffic(MODEL), stored)
        assert admin.traffic(MODEL) == stored and admin.traffic()[MODEL] == stored  # the first worker's
        assert json.loads((state / TRAFFIC_FILE).read_text())["models"][MODEL]["weights"] == {"1": 40, "2": 60}
        with pytest.raises(AdminError) as caught:
            admin.set_traffic(MODEL, {"weights": {"1": 100}}, expect_generation=stored["generation"] - 1)
        assert caught.value.status == 409
        cleared = admin.clear_traffic(MODEL)
        for worker in workers:
            assert same(AdminClient(worker["admin"]).traffic(MODEL), cleared)
    finally:
        proc.stop()


def test_the_local_pool_serves_each_version_from_its_own_pool(repo: Path, baseline: list[Any], tmp_path: Path) -> None:
    local_repo = tmp_path / "repo"
    shutil.copytree(repo / MODEL, local_repo / MODEL, ignore=shutil.ignore_patterns("3"))  # versions 1 and 2
    state = tmp_path / "state"
    proc, addresses = start_gateway(
        tmp_path, {}, "--backend", "local", "--model-repo", str(local_repo), "--state-dir", str(state), region="pool"
    )
    client = Client(addresses["grpc"])
    try:
        admin = AdminClient(addresses["admin"].removeprefix("http://"))
        admin.set_traffic(MODEL, {"weights": {"1": 50, "2": 50}, "shadow": {"version": "2", "percent": 100}})
        counts = Counter(check(baseline, i % SHARED, client.infer(i % SHARED)) for i in range(40))
        assert set(counts) == {"1", "2"}, counts  # each reply its own version's answer, from its own pool
        assert {check(baseline, 0, client.infer(0, version="1")) for _ in range(5)} == {"1"}
        pools = admin.pools()[MODEL]
        assert set(pools.get("versions", {})) == {"1", "2"}, pools
        # The copies of version 1's requests went to version 2's pool, and disagreed.
        wait_for(
            lambda: total(admin, GATEWAY_SHADOW_COMPARISONS, baseline="1", version="2", result="disagree") > 0,
            "a disagreement from version 2's pool",
        )
        assert (state / TRAFFIC_FILE).exists()
    finally:
        client.close()
        proc.stop()
