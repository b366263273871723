"""The global entry with the real Envoy binary: generated configs validate, the nearest healthy region serves,
priority failover, a pinned region, drain on SIGTERM, and EDS updates without a restart. Three real gateways
(static backend) front one real function."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from testkit.procs import Proc, free_port, grpc_ready, start_gateway

from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request
from edgeinfer.regions.envoy_binary import find_envoy, validate
from edgeinfer.regions.envoy_config import EDS_DIR, EnvoyPorts, bootstrap, write_config, write_eds
from edgeinfer.regions.topology import Topology, default_topology, parse_topology
from edgeinfer.stack.envoy import envoy_argv, host_health, is_ready

REGIONS = ("us-east", "eu-west", "ap-south")
NEIGHBOURS = {"us-east": ["eu-west", "ap-south"], "eu-west": ["us-east", "ap-south"], "ap-south": ["eu-west"]}


def _fraud_request(value: float = 1.0) -> object:
    return build_request("fraud", {"features": np.full((1, 30), value, dtype=np.float32)})


def infer(address: str, pin: str | None = None, value: float = 1.0, timeout: float = 10.0) -> str:
    """One fraud inference; returns the region that served it (trailing metadata)."""
    metadata = (("x-edgeinfer-region", pin),) if pin else None
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply, call = stub.ModelInfer.with_call(_fraud_request(value), timeout=timeout, metadata=metadata)
    assert reply.outputs[0].name == "probabilities"
    return str(dict(call.trailing_metadata())["x-edgeinfer-region"])


@dataclass
class Edge:
    topology: Topology
    config: Path
    entry: str
    admin_port: int
    envoy: Proc
    gateways: dict[str, Proc]

    def health(self) -> dict[str, str]:
        return host_health(self.admin_port).get("edge", {})

    def wait_health(self, address: str, healthy: bool, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.health().get(address) == "healthy") == healthy:
                return
            time.sleep(0.05)  # poll interval; Envoy's admin view is the condition
        raise AssertionError(f"{address} not {'healthy' if healthy else 'unhealthy'} in {timeout}s: {self.health()}")


def _topology(ports: dict[str, int]) -> Topology:
    return parse_topology(
        {
            "entry": free_port(),
            "envoy_admin": free_port(),
            "regions": [
                {
                    "name": name,
                    "gateway": {"grpc": [f"127.0.0.1:{ports[name]}"]},
                    "redis": f"redis://127.0.0.1:{free_port()}/0",
                    "neighbours": NEIGHBOURS[name],
                }
                for name in REGIONS
            ],
        }
    )


def start_envoy(config: Path, admin_port: int, entry: str, log_dir: Path) -> Proc:
    proc = Proc(envoy_argv(config), log_dir / "envoy.log")
    try:
        # Ready: Envoy initialized, and a region passed its health checks (ServerReady answers through it).
        proc.wait_until(lambda: is_ready(admin_port) and grpc_ready(entry), 30, f"envoy on {entry}")
    except BaseException:
        proc.stop()
        raise
    return proc


@pytest.fixture
def edge(function_address: str, tmp_path: Path) -> Iterator[Edge]:
    gateways: dict[str, Proc] = {}
    ports: dict[str, int] = {}
    try:
        for name in REGIONS:
            # us-east drains for 1 s on SIGTERM, as in production; the others need not.
            extra = ("--drain-delay", "1") if name == "us-east" else ()
            proc, addresses = start_gateway(tmp_path, {"fraud": [function_address]}, *extra, region=name)
            gateways[name] = proc
            ports[name] = int(addresses["grpc"].rsplit(":", 1)[1])
        topology = _topology(ports)
        config = tmp_path / "envoy" / "envoy.yaml"
        write_config(topology, "us-east", config)
        entry = f"127.0.0.1:{topology.entry}"
        envoy = start_envoy(config, topology.envoy_admin, entry, tmp_path)
        yield Edge(topology, config, entry, topology.envoy_admin, envoy, gateways)
        envoy.stop()
    finally:
        for proc in gateways.values():
            proc.stop(signal.SIGKILL)


def test_every_generated_config_passes_envoy_validate(tmp_path: Path) -> None:
    topology = default_topology()
    for name in topology.names:
        output = tmp_path / name / "envoy.yaml"
        written = write_config(topology, name, output)
        assert {p.name for p in written} == {"envoy.yaml", "edge.yaml"} | {f"region-{n}.yaml" for n in topology.names}
        ok, text = validate(output)
        assert ok, text
    # The check can fail: a config Envoy rejects is reported as such.
    broken = yaml.safe_load(output.read_text())
    broken["static_resources"]["clusters"][0]["outlier_detection"]["interval"] = "soon"
    bad = tmp_path / "broken.yaml"
    bad.write_text(yaml.safe_dump(broken))
    ok, text = validate(bad)
    assert not ok and "interval" in text


def test_the_checked_in_envoy_configs_are_what_envoy_config_writes(tmp_path: Path) -> None:
    repo_envoy = Path(__file__).resolve().parents[2] / "envoy"
    for name in default_topology().names:
        output = tmp_path / name / "envoy.yaml"
        written = write_config(default_topology(), name, output, relative=True)
        for path in written:
            checked_in = repo_envoy / path.relative_to(tmp_path)
            assert checked_in.read_text() == path.read_text(), (
                f"{checked_in} is stale: run "
                f"`edgeinfer envoy-config --edge {name} -o envoy/{name}/envoy.yaml --relative`"
            )


def test_priorities_follow_the_neighbours_and_the_config_has_what_failover_needs(tmp_path: Path) -> None:
    topology = default_topology()
    document = bootstrap(topology, "ap-south", tmp_path, EnvoyPorts("127.0.0.1", 8001, 9901))
    write_eds(topology, "ap-south", tmp_path)
    eds = yaml.safe_load((tmp_path / "edge.yaml").read_text())["resources"][0]["endpoints"]
    assert [(e["locality"]["region"], e["priority"]) for e in eds] == [("ap-south", 0), ("eu-west", 1), ("us-east", 2)]
    cluster = document["static_resources"]["clusters"][0]
    assert cluster["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}, "update_merge_window": "0s"}
    assert cluster["health_checks"][0]["grpc_health_check"]["service_name"] == "inference.GRPCInferenceService"
    assert cluster["ignore_health_on_host_removal"] is True
    assert cluster["circuit_breakers"]["thresholds"][0]["retry_budget"]["min_retry_concurrency"] >= 100
    manager = document["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    nearest = manager["route_config"]["virtual_hosts"][0]["routes"][-1]["route"]
    assert set(nearest["retry_policy"]["retry_on"].split(",")) == {
        "unavailable",
        "reset",
        "connect-failure",
        "refused-stream",
    }
    assert nearest["retry_policy"]["per_try_timeout"] == "0.05s" and nearest["hedge_policy"]["hedge_on_per_try_timeout"]
    assert [f["name"] for f in manager["http_filters"]] == ["envoy.filters.http.fault", "envoy.filters.http.router"]
    assert document["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    with pytest.raises(ValueError, match="unknown region"):
        bootstrap(topology, "mars", tmp_path, EnvoyPorts("127.0.0.1", 8001, 9901))


def test_nearest_region_serves_then_priority_failover_loses_nothing(edge: Edge) -> None:
    assert infer(edge.entry) == "us-east"
    edge.gateways["us-east"].stop(signal.SIGKILL)
    # Straight after the kill, before any health check noticed: retried on the next region, none fails.
    # (A try slower than the per-try timeout on a busy machine is hedged one priority further: a few may.)
    served = [infer(edge.entry, value=float(i)) for i in range(40)]
    assert "us-east" not in served and served.count("eu-west") >= 30, served
    edge.gateways["eu-west"].stop(signal.SIGKILL)
    served = [infer(edge.entry, value=float(i)) for i in range(40)]
    assert set(served) == {"ap-south"}, served
    address = edge.topology.region("us-east").gateway.grpc_address
    edge.wait_health(address, healthy=False)


def test_a_pinned_region_serves_and_an_unknown_one_is_not_found(edge: Edge) -> None:
    for name in REGIONS:
        assert infer(edge.entry, pin=name) == name
    with pytest.raises(grpc.RpcError) as caught:
        infer(edge.entry, pin="mars")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "us-east, eu-west, ap-south" in (caught.value.details() or "")


def test_sigterm_drains_the_gateway_and_envoy_moves_traffic_first(edge: Edge, tmp_path: Path) -> None:
    us_east = edge.topology.region("us-east").gateway.grpc_address
    admin = edge.gateways["us-east"].output()
    assert "admin=127.0.0.1:" in admin
    admin_port = int(admin.split("admin=127.0.0.1:")[1].split()[0])
    # Calls in flight for 400 ms, straight to the gateway.
    request = urllib.request.Request(
        f"http://127.0.0.1:{admin_port}/v1/fault", data=json.dumps({"delay_ms": 400}).encode(), method="PUT"
    )
    urllib.request.urlopen(request, timeout=5).read()
    results: list[str | BaseException] = []

    def slow_call(i: int) -> None:
        try:
            results.append(infer(us_east, value=100.0 + i))
        except BaseException as exc:
            results.append(exc)

    callers = [threading.Thread(target=slow_call, args=(i,)) for i in range(8)]
    for caller in callers:
        caller.start()
    time.sleep(0.1)  # the calls are in the gateway now (they take 400 ms)
    edge.gateways["us-east"].popen.send_signal(signal.SIGTERM)
    # While it drains, the entry keeps answering: Envoy sees NOT_SERVING and moves on; no call fails.
    through_envoy = [infer(edge.entry, value=float(i)) for i in range(30)]
    for caller in callers:
        caller.join(10)
    assert results == ["us-east"] * 8, results  # every call in flight finished
    assert edge.gateways["us-east"].popen.wait(15) == 0
    assert "eu-west" in through_envoy and through_envoy[-1] == "eu-west"
    edge.wait_health(us_east, healthy=False)
    with pytest.raises(grpc.RpcError) as refused:  # and then it takes no new calls
        infer(us_east, timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_eds_file_update_moves_traffic_without_restarting_envoy(edge: Edge) -> None:
    assert infer(edge.entry) == "us-east"
    pid = edge.envoy.pid
    eds_dir = edge.config.parent / EDS_DIR
    write_eds(edge.topology, "ap-south", eds_dir, version="2")  # ap-south becomes the nearest
    deadline = time.monotonic() + 10
    while infer(edge.entry) != "ap-south":
        assert time.monotonic() < deadline, edge.health()
        time.sleep(0.05)  # poll interval while Envoy reloads the file
    # A broken file is rejected and the endpoints in force stay.
    tmp = eds_dir / ".edge.yaml.tmp"
    tmp.write_text("version_info: '3'\nresources: [{'@type': 'not a type'}]\n")
    tmp.replace(eds_dir / "edge.yaml")
    deadline = time.monotonic() + 10
    while (
        _stat(edge.admin_port, "cluster.edge.update_failure") + _stat(edge.admin_port, "cluster.edge.update_rejected")
        < 1
    ):
        assert time.monotonic() < deadline, "Envoy never read the broken file"
        time.sleep(0.05)  # poll interval while Envoy reads the file
    for i in range(20):
        assert infer(edge.entry, value=float(i)) == "ap-south"
    assert edge.envoy.popen.poll() is None and edge.envoy.pid == pid


def _stat(admin_port: int, name: str) -> int:
    url = f"http://127.0.0.1:{admin_port}/stats?filter=^{name}$"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def test_gateway_reports_not_serving_when_no_function_can_be_reached(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    port = free_port()
    argv = [sys.executable, "-m", "edgeinfer.cli", "gateway", "--port", str(port), "--route", f"fraud={dead}"]
    proc = Proc([*argv, "--drain-delay", "0"], tmp_path / "gateway.log")
    try:

        def answers() -> bool:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                try:
                    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                except grpc.RpcError:
                    return False
                return True

        proc.wait_until(answers, 30, "gateway health")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("", "inference.GRPCInferenceService"):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        proc.stop()


def test_envoy_binary_comes_from_the_wheel() -> None:
    binary = find_envoy()
    assert binary.is_file() and binary.stat().st_mode & 0o111
