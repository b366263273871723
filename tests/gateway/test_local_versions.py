"""Versions side by side in the local pool: a real gateway (--backend local) on a repository with fraud/1 and
fraud/2, each version a pool of its own whose function processes see only that version."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from testkit.procs import start_gateway

from edgeinfer.functions.examples import write_canary, write_examples
from edgeinfer.gateway.admin_client import AdminClient, AdminError
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays

# Each version starts one instance and keeps it a while; ticks fast, so a wrong decision shows soon.
KNOBS = {"initial-scale": 1, "window": "6s", "scale-to-zero-pod-retention-period": "120s"}
SLOW_MS = 3000  # version 2's delay in the drain test: a call that is surely in flight while the drain is sent


def write_repo(root: Path, kind: str, faults: dict[str, Any] | None = None) -> Path:
    """fraud/1 and fraud/2 (write_canary's `kind`), the knobs above, the cache off; `faults`: version 2's
    faults.yaml (a drill feature of the function)."""
    write_examples(root, only=("fraud",))
    write_canary(root, kind)
    config_path = root / "fraud" / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) or {}
    config["autoscaling"] = KNOBS
    config["cache"] = {"enabled": False}
    config_path.write_text(yaml.safe_dump(config))
    if faults is not None:
        (root / "fraud" / "2" / "faults.yaml").write_text(yaml.safe_dump(faults))
    return root


@pytest.fixture
def versions_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    kind, faults = request.param
    repo = write_repo(tmp_path / "repo", kind, faults)
    state = tmp_path / "state"
    proc, addresses = start_gateway(
        tmp_path,
        {},
        *("--backend", "local", "--model-repo", str(repo), "--state-dir", str(state)),
        *("--autoscale-tick", "0.5", "--l1-max-bytes", "0"),
    )
    try:
        yield addresses, state
    finally:
        proc.stop()
    assert not function_pids(state), "function processes outlived the gateway"


def function_pids(state_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if " function " in cmdline and str(state_dir) in cmdline:
                pids.append(int(entry.name))
    return pids


def admin(addresses: dict[str, str]) -> AdminClient:
    return AdminClient(addresses["admin"].removeprefix("http://"), timeout=10)


def fraud(addresses: dict[str, str]) -> dict[str, Any]:
    status: dict[str, Any] = admin(addresses).pools()["fraud"]
    return status


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def features() -> np.ndarray:
    return np.random.default_rng(7).random((4, 30)).astype(np.float32) * 20


def infer(address: str, version: str = "", timeout: float = 60) -> pb.ModelInferResponse:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply: pb.ModelInferResponse = stub.ModelInfer(
            build_request("fraud", {"features": features()}, version=version), timeout=timeout
        )
        return reply


def metadata(address: str, version: str = "") -> pb.ModelMetadataResponse:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply: pb.ModelMetadataResponse = stub.ModelMetadata(
            pb.ModelMetadataRequest(name="fraud", version=version), timeout=10
        )
        return reply


@pytest.mark.parametrize("versions_gateway", [("wrong", None)], indirect=True)
def test_each_version_is_a_pool_whose_instances_serve_only_it(
    versions_gateway: tuple[dict[str, str], Path],
) -> None:
    addresses, state = versions_gateway
    wait_for(lambda: all(v["ready"] == 1 for v in fraud(addresses)["versions"].values()), 60, "one ready per version")
    status = fraud(addresses)
    assert set(status["versions"]) == {"1", "2"}
    # The model's entry keeps its shape: counts summed over the versions, each instance naming its version.
    assert status["ready"] == 2 and status["starting"] == 0
    assert sorted(i["version"] for i in status["instances"]) == ["1", "2"]
    for version, pool in status["versions"].items():
        assert pool["version"] == version and pool["drained"] is False
        assert [i["version"] for i in pool["instances"]] == [version]
        # Its view: the model's files and this version's directory, never the other's.
        view = state / "repos" / f"fraud@{version}" / "fraud"
        assert sorted(p.name for p in view.iterdir()) == sorted([version, "config.yaml"])
    # Asked directly, each instance has its own version only.
    for version, pool in status["versions"].items():
        direct = pool["instances"][0]["address"]
        assert list(metadata(direct).versions) == [version]
        other = "2" if version == "1" else "1"
        with pytest.raises(grpc.RpcError) as missing:
            infer(direct, other)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # Through the gateway, a request naming a version gets that version's answer: version 2 ("wrong") flips the
    # probabilities of version 1.
    one, two = infer(addresses["grpc"], "1"), infer(addresses["grpc"], "2")
    assert (one.model_version, two.model_version) == ("1", "2")
    p1, p2 = output_arrays(one)["probabilities"], output_arrays(two)["probabilities"]
    np.testing.assert_allclose(p2, p1[:, ::-1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(p1, p2)  # the inputs make the two distinguishable
    # Metadata per version, from the files; the unversioned answer lists both.
    assert list(metadata(addresses["grpc"]).versions) == ["1", "2"]
    assert list(metadata(addresses["grpc"], "2").versions) == ["2"]
    with pytest.raises(grpc.RpcError) as unknown:
        metadata(addresses["grpc"], "3")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND and "available: 1, 2" in (unknown.value.details() or "")

    # Knobs: one version's, or every version's.
    client = admin(addresses)
    one_version = client.update_pool("fraud", {"max-scale": 3}, version="1")
    assert one_version["version"] == "1" and one_version["knobs"]["max-scale"] == 3
    status = fraud(addresses)
    assert status["versions"]["1"]["knobs"]["max-scale"] == 3 and status["versions"]["2"]["knobs"]["max-scale"] == 0
    every = client.update_pool("fraud", {"max-scale": 2})
    assert {v: k["max-scale"] for v, k in every["versions"].items()} == {"1": 2, "2": 2}
    assert every["knobs"]["max-scale"] == 2
    for bad, code in (("/v1/pools/fraud/3", 404), ("/v1/pools/nope/1", 404)):
        with pytest.raises(AdminError) as refused:
            client.json("PATCH", bad, {"max-scale": 1})
        assert refused.value.status == code
    with pytest.raises(AdminError) as invalid:
        client.update_pool("fraud", {"min-scale": 5}, version="2")  # above max-scale 2
    assert invalid.value.status == 400 and "min-scale (5) is above max-scale (2)" in str(invalid.value)
    with pytest.raises(AdminError) as no_version:
        client.drain("fraud", "3")
    assert no_version.value.status == 404


@pytest.mark.parametrize("versions_gateway", [("good", {"delay_ms": SLOW_MS})], indirect=True)
def test_a_drain_finishes_the_calls_in_flight_then_the_version_is_gone_until_a_request_names_it(
    versions_gateway: tuple[dict[str, str], Path],
) -> None:
    addresses, _ = versions_gateway
    client = admin(addresses)
    wait_for(lambda: all(v["ready"] == 1 for v in fraud(addresses)["versions"].values()), 60, "one ready per version")
    victim = fraud(addresses)["versions"]["2"]["instances"][0]["pid"]
    results: list[Any] = []

    def call() -> None:
        try:
            results.append(infer(addresses["grpc"], "2"))
        except grpc.RpcError as exc:
            results.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        # In flight on version 2's instance (the gateway counts it there until its answer comes back).
        wait_for(lambda: fraud(addresses)["versions"]["2"]["instances"][0]["inflight"] == 1, 30, "a call in flight")
        assert client.drain("fraud", "2") == 1
        drained = fraud(addresses)["versions"]["2"]
        assert drained["drained"] is True and drained["knobs"]["min-scale"] == 0
        assert [i["state"] for i in drained["instances"]] == ["draining"]
    finally:
        caller.join(60)
    # The call in flight was answered by the drained instance, not cut off.
    assert len(results) == 1 and isinstance(results[0], pb.ModelInferResponse), results
    assert results[0].model_version == "2"
    wait_for(lambda: fraud(addresses)["versions"]["2"]["instances"] == [], 60, "the drained instance to exit")
    assert not Path(f"/proc/{victim}").exists()  # exited and reaped
    # Held at zero: several autoscaler ticks (0.5 s) pass with no instance of version 2, although the call above
    # kept its concurrency above zero in the window.
    held_until = time.monotonic() + 3
    while time.monotonic() < held_until:
        status = fraud(addresses)
        assert status["versions"]["2"]["instances"] == [], status["versions"]["2"]
        time.sleep(0.2)
    assert status["versions"]["1"]["ready"] == 1  # the other version is untouched
    # A model-wide change keeps the drained version at min-scale 0 (it would revive it otherwise).
    every = client.update_pool("fraud", {"min-scale": 1})
    assert {v: k["min-scale"] for v, k in every["versions"].items()} == {"1": 1, "2": 0}
    assert fraud(addresses)["versions"]["2"]["instances"] == []
    # A request naming the drained version wakes it.
    woken = infer(addresses["grpc"], "2")
    assert woken.model_version == "2"
    status = fraud(addresses)["versions"]["2"]
    assert status["drained"] is False and status["ready"] == 1


def test_admin_client_paths_escape_names() -> None:
    """The client builds one path segment per name (a '/' in a name cannot reach another route)."""
    client = AdminClient("127.0.0.1:9", timeout=0.5)
    with pytest.raises(AdminError) as refused:
        client.drain("a/b", "1")
    assert "/v1/pools/a%2Fb/1/drain" in str(refused.value)


def test_a_pytorch_versions_metadata_and_config_name_its_runtime(tmp_path: Path) -> None:
    """Read from the files, as the pool answers without waking a function: a PyTorch version says so."""
    pytest.importorskip("torch")
    from edgeinfer.functions import repository
    from edgeinfer.functions.examples import write_pytorch_examples
    from edgeinfer.gateway.backends.local import LocalBackend
    from edgeinfer.gateway.metrics import GatewayMetrics

    repo = tmp_path / "models"
    write_pytorch_examples(repo, only=("fraud-pt",))
    backend = LocalBackend(repo, region="r", state_dir=tmp_path / "state", metrics=GatewayMetrics("r"))
    (entry,) = repository.scan(repo)
    backend._read_files(entry)
    for version in ("", "1"):
        assert backend._metadata[(entry.name, version)].platform == "pytorch_libtorch"
        config = backend._configs[(entry.name, version)].config
        assert config.platform == "pytorch_libtorch" and config.backend == "pytorch"
