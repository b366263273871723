"""`edgeinfer gateway --workers N`: real worker processes on one port (SO_REUSEPORT), the parent's admin port,
restarts, drain, no orphans; the flag's validation and the CPU count."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import generate_latest
from testkit.procs import Proc, start_gateway

from edgeinfer.cli import build_parser
from edgeinfer.gateway.metrics import GATEWAY_REQUESTS, GatewayMetrics
from edgeinfer.gateway.server import settings_from
from edgeinfer.gateway.workers import cgroup_cpu_quota, usable_cpus
from edgeinfer.gateway.workers_admin import GATEWAY_WORKER_UP, merge_metrics, merge_pools
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request
from edgeinfer.stack.observe import model_figures
from edgeinfer.stack.procfs import is_running

# A fresh TCP connection per call (no shared subchannel): the kernel picks a worker for each.
FRESH = [("grpc.use_local_subchannel_pool", 1)]
# 127.0.0.1 in /proc/net/tcp, and as gRPC binds it (IPv6, v4-mapped) in /proc/net/tcp6.
LOOPBACK = frozenset({"0100007F", "0000000000000000FFFF00000100007F"})
# Connections to try before both workers must have been picked: each misses one worker with probability 1/2.
MAX_CONNECTIONS = 200


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = reply.read()
            status = reply.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode()


def infer_fresh(address: str) -> None:
    request = build_request("fraud", {"features": np.full((1, 30), 7.0, np.float32)})
    with grpc.insecure_channel(address, options=FRESH) as channel:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)


def requests_by_worker(admin: str) -> dict[str, int]:
    """OK inference requests per worker label, from the parent's /metrics."""
    status, text = get(f"{admin}/metrics")
    assert status == 200
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith(GATEWAY_REQUESTS + "{") and 'code="OK"' in line:
            worker = line.split('worker="', 1)[1].split('"', 1)[0]
            counts[worker] = counts.get(worker, 0) + int(float(line.rsplit(" ", 1)[1]))
    return counts


def workers(admin: str) -> list[dict[str, Any]]:
    status, body = get(f"{admin}/v1/workers")
    assert status == 200, body
    result: list[dict[str, Any]] = body["workers"]
    return result


def start_group(tmp_path: Path, function_address: str, count: int = 2, *extra: str) -> tuple[Proc, dict[str, str]]:
    proc, addresses = start_gateway(
        tmp_path, {"fraud": [function_address]}, "--workers", str(count), *extra, region="wk", rest=True
    )
    # gRPC answered from one worker; the parent's /readyz waits for all of them.
    proc.wait_until(lambda: get(f"{addresses['admin']}/readyz")[0] == 200, 30, "every worker ready")
    return proc, addresses


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (from /proc/net/tcp, as hex)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                    found.add(address)
    return found


@pytest.fixture(scope="module")
def group(function_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    proc, addresses = start_group(tmp_path_factory.mktemp("workers"), function_address)
    yield addresses
    proc.stop()


def test_two_workers_both_serve_the_one_port(group: dict[str, str]) -> None:
    listed = workers(group["admin"])
    assert len({w["pid"] for w in listed}) == 2
    before = requests_by_worker(group["admin"])
    sent = 0
    while sent < MAX_CONNECTIONS:
        infer_fresh(group["grpc"])
        sent += 1
        after = requests_by_worker(group["admin"])
        if all(after.get(str(w["worker"]), 0) > before.get(str(w["worker"]), 0) for w in listed):
            break
    else:
        pytest.fail(f"{MAX_CONNECTIONS} connections, all to one worker: {after}")
    # Every request is counted once, by the worker that served it; a reader that sums over labels sees them all.
    assert sum(after.values()) - sum(before.values()) == sent
    text = get(f"{group['admin']}/metrics")[1]
    assert model_figures(text, None)["fraud"].ok == sum(after.values())
    assert f'{GATEWAY_WORKER_UP}{{region="wk",worker="0"}} 1.0' in text
    assert f'{GATEWAY_WORKER_UP}{{region="wk",worker="1"}} 1.0' in text


def test_admin_health_readiness_and_rest(group: dict[str, str]) -> None:
    status, body = get(f"{group['admin']}/healthz")
    assert status == 200 and body["live"] is True and body["workers"] == 2 and body["running"] == 2
    status, body = get(f"{group['admin']}/readyz")
    assert status == 200 and [w["ready"] for w in body["workers"]] == [True, True]
    status, body = get(f"{group['rest']}/v2/health/ready")
    assert status == 200
    # Faults reach every worker, and bad input is refused by them, named.
    request = urllib.request.Request(f"{group['admin']}/v1/fault", data=b'{"delay_ms": -1}', method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and "delay_ms" in refused.value.read().decode()
    for worker in workers(group["admin"]):
        assert get(f"http://{worker['admin']}/v1/fault")[1]["delay_ms"] == 0


def test_competing_traffic_writers_leave_every_worker_with_the_same_policy(group: dict[str, str]) -> None:
    """Writers racing with the same expect_generation (two rollouts starting at once): one wins, the rest get 409,
    and every worker holds the winner's policy: the parent sends one change at a time to all of them."""
    from concurrent.futures import ThreadPoolExecutor

    from edgeinfer.gateway.admin_client import AdminClient, AdminError

    admin = AdminClient(group["admin"].removeprefix("http://"), timeout=30)
    generation = int(admin.traffic("fraud")["generation"])

    def write(writer: int) -> int:
        try:
            admin.set_traffic("fraud", {"weights": {"1": 100}, "rollout": {"writer": writer}}, generation)
        except AdminError as exc:
            return exc.status or 0
        return 200

    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = sorted(pool.map(write, range(8)))
        assert statuses == [200] + [409] * 7, statuses
        held = [AdminClient(w["admin"]).traffic("fraud") for w in workers(group["admin"])]
        assert len({json.dumps(h["rollout"]) for h in held}) == 1 and {h["generation"] for h in held} == {
            generation + 1
        }
    finally:
        admin.clear_traffic("fraud")


def test_ports_stay_on_loopback_by_default(group: dict[str, str]) -> None:
    for name in ("grpc", "rest", "admin"):
        port = int(group[name].rsplit(":", 1)[1])
        assert listening_addresses(port) and listening_addresses(port) <= LOOPBACK, name
    for worker in workers(group["admin"]):
        port = int(worker["admin"].rsplit(":", 1)[1])
        assert listening_addresses(port) and listening_addresses(port) <= LOOPBACK


def test_a_killed_worker_is_restarted_and_sigterm_drains_all(tmp_path: Path, function_address: str) -> None:
    proc, addresses = start_group(tmp_path, function_address)
    try:
        first = workers(addresses["admin"])
        victim = first[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        # Once the parent has reaped it, every thread of it has exited and its listening socket is closed (a
        # zombie leader may still have threads holding it): every new connection reaches the other worker.
        proc.wait_until(lambda: workers(addresses["admin"])[0]["pid"] != victim, 10, "the killed worker reaped")
        for _ in range(10):
            infer_fresh(addresses["grpc"])

        def restarted() -> bool:
            now = workers(addresses["admin"])
            return now[0]["pid"] not in (None, victim) and now[0]["restarts"] == 1

        proc.wait_until(restarted, 30, "worker 0 started again")
        proc.wait_until(lambda: get(f"{addresses['admin']}/readyz")[0] == 200, 30, "both ready again")
        second = workers(addresses["admin"])
        assert second[1]["pid"] == first[1]["pid"] and second[1]["restarts"] == 0
        text = get(f"{addresses['admin']}/metrics")[1]
        assert 'edgeinfer_gateway_worker_restarts_total{region="wk",worker="0"} 1.0' in text
        # SIGTERM to the parent alone (as Kubernetes sends it): every worker drains and exits, then the parent.
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.popen.wait(30) == 0
        for worker in second:
            assert not is_running(worker["pid"]), f"worker {worker['worker']} left running"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", int(addresses["grpc"].rsplit(":", 1)[1])))  # the port is free again
    finally:
        proc.stop()


def test_sigkill_of_the_parent_takes_the_workers_with_it(tmp_path: Path, function_address: str) -> None:
    proc, addresses = start_group(tmp_path, function_address)
    try:
        pids = [w["pid"] for w in workers(addresses["admin"])]
        os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(10)
        for pid in pids:  # their parent-death signal (SIGKILL) comes from the kernel
            deadline = time.monotonic() + 10
            while is_running(pid):
                assert time.monotonic() < deadline, f"worker {pid} outlived its parent"
                time.sleep(0.05)  # poll interval while the kernel delivers it
    finally:
        proc.stop()


def test_a_port_in_use_is_one_clear_line(tmp_path: Path, function_address: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "edgeinfer.cli", "gateway", "--workers", "2", "--port", str(port),
             "--route", f"fraud={function_address}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} for the gRPC port" in done.stderr and "in use" in done.stderr


# -- the flag ----------------------------------------------------------------------------------


def parse(*argv: str) -> Any:
    return build_parser("gateway").parse_args(["gateway", "--route", "fraud=127.0.0.1:1", *argv])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("two", "'two' is not a number of gateway processes"),
        ("-1", "'-1' is not a number of gateway processes"),
        ("1.5", "'1.5' is not a number of gateway processes"),
        ("257", "257 is more than 256 processes"),
    ],
)
def test_bad_workers_values_are_named(value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--workers", value)
    assert exited.value.code == 2
    assert f"argument --workers: {message}" in capsys.readouterr().err


def test_workers_default_env_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from(parse()).workers == 1
    assert settings_from(parse("--workers", "3")).workers == 3
    assert settings_from(parse("--workers", "auto")).workers == usable_cpus()
    assert settings_from(parse("--workers", "0")).workers == usable_cpus()
    monkeypatch.setenv("EDGEINFER_GATEWAY_WORKERS", "auto")
    assert settings_from(parse()).workers == usable_cpus()
    monkeypatch.setenv("EDGEINFER_GATEWAY_WORKERS", "many")
    with pytest.raises(SystemExit):
        parse()


def test_cpu_count_follows_the_cgroup_quota(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    (v2 / "kubepods" / "pod1").mkdir(parents=True)
    (v2 / "kubepods" / "cpu.max").write_text("max 100000\n")
    (v2 / "kubepods" / "pod1" / "cpu.max").write_text("150000 100000\n")
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/kubepods/pod1\n")
    assert cgroup_cpu_quota(v2, cgroup) == 1.5
    assert usable_cpus(v2, cgroup) == min(2, len(os.sched_getaffinity(0)))  # rounded up, capped by affinity
    (v2 / "kubepods" / "pod1" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2, cgroup) is None
    assert usable_cpus(v2, cgroup) == len(os.sched_getaffinity(0))
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct" / "docker" / "abc").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us").write_text("100000\n")
    cgroup.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    assert cgroup_cpu_quota(v1, cgroup) == 0.5
    assert usable_cpus(v1, cgroup) == 1
    assert cgroup_cpu_quota(v1, tmp_path / "missing") is None


# -- merging the workers' answers --------------------------------------------------------------


def test_metrics_merge_labels_each_worker() -> None:
    texts = {}
    for index, hits in ((0, 3), (1, 5)):
        metrics = GatewayMetrics("r")
        for _ in range(hits):
            metrics.observe("fraud", "1", "OK", "hit-l1", 0.0002)
        texts[index] = generate_latest(metrics.registry).decode()
    merged = merge_metrics(texts).decode()
    assert merged.count(f"# TYPE {GATEWAY_REQUESTS} counter") == 1
    labels = 'cache="hit-l1",code="OK",model="fraud",region="r",version="1",worker="1"'
    assert f"{GATEWAY_REQUESTS}{{{labels}}} 5.0" in merged
    figures = model_figures(merged, None)["fraud"]
    assert (figures.ok, figures.hits) == (8, 8)
    assert sum(figures.latency_buckets.values()) > 0


def test_pools_merge_sums_counts_and_tags_instances() -> None:
    pool = {"model": "fraud", "knobs": {"min-scale": 0}, "ready": 1, "starting": 0, "inflight": 2, "queued": 0,
            "desired": 1, "panic": False, "reason": "", "instances": [{"id": 1, "state": "ready"}]}  # fmt: skip
    merged = merge_pools({0: {"fraud": pool}, 1: {"fraud": {**pool, "starting": 1, "panic": True, "reason": "x"}}})
    fraud = merged["fraud"]
    assert (fraud["ready"], fraud["starting"], fraud["inflight"], fraud["desired"]) == (2, 1, 4, 2)
    assert fraud["panic"] is True and fraud["reason"] == "worker 1: x" and fraud["knobs"] == {"min-scale": 0}
    assert [i["worker"] for i in fraud["instances"]] == [0, 1]


def test_the_gateway_image_runs_one_worker_per_cpu() -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "deploy" / "gateway.Dockerfile").read_text()
    assert "EDGEINFER_GATEWAY_WORKERS=auto" in dockerfile
