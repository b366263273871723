"""Faults under load: for each fault, open-loop load through the stack of `edgeinfer up` (Envoy in front of three
regions), the fault injected mid-run into the serving region (us-east) and then undone; every request is
counted as completed, failed with a status the client may retry, or lost (any other status: nothing
acknowledged may be lost).

    python benchmarks/faults.py [--rps 100] [--phase 15] [--hit-rps 50] [--hit-keys 16] [--out benchmarks/results]

Two open-loop streams run through each fault: the miss path (--rps of unique inputs: every one reaches a
function) and the hit path (--hit-rps cycling over --hit-keys inputs, sent once each before the stream so that
they are cached). Each hit-path reply names the tier that answered it (the gateway's `x-edgeinfer-cache`
trailer: hit-l1, hit-redis, miss, coalesced), so the report says what the cache served while the fault was on.

Faults: SIGKILL of a function instance; a Redis restart; a Redis that answers slowly (CLIENT PAUSE, 300 ms
of every second); a restart of Envoy; SIGTERM of a gateway (it drains). Writes faults.json and faults.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import grpc  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from edgeinfer.functions.examples import write_examples  # noqa: E402
from edgeinfer.gateway.admin_client import AdminClient  # noqa: E402
from edgeinfer.loadgen import BenchOptions  # noqa: E402
from edgeinfer.loadgen.payload import unique_offset  # noqa: E402
from edgeinfer.loadgen.runner import BackgroundBench, prepare_payload  # noqa: E402
from edgeinfer.regions.topology import default_topology  # noqa: E402
from edgeinfer.stack.local import LocalStack, Region  # noqa: E402

RETRYABLE = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED"}
Fault = tuple[Callable[[], None], Callable[[], None]]


def _admin(region: Region) -> AdminClient:
    assert region.endpoints.admin is not None
    return AdminClient(region.endpoints.admin)


def _pools(region: Region) -> dict[str, Any]:
    return _admin(region).pools()


def faults(stack: LocalStack, region: Region) -> dict[str, Fault]:
    import redis

    assert region.redis is not None
    redis_server = region.redis.server
    pausing = threading.Event()

    def kill_function() -> None:
        ready = [i for i in _pools(region)["fraud"]["instances"] if i["state"] == "ready"]
        os.kill(ready[0]["pid"], signal.SIGKILL)

    def pause_loop() -> None:
        client = redis.Redis.from_url(redis_server.url)
        while pausing.is_set():
            client.execute_command("CLIENT", "PAUSE", "300", "ALL")  # type: ignore[no-untyped-call]
            time.sleep(1.0)  # the fault's own rhythm: 300 ms of every second unanswered

    def slow_redis() -> None:
        pausing.set()
        threading.Thread(target=pause_loop, daemon=True).start()

    def kill_envoy() -> None:
        assert stack.envoy is not None
        stack.envoy.signal(signal.SIGKILL)
        stack.envoy.wait(30)

    def start_envoy() -> None:
        assert stack.envoy is not None
        stack.start_envoy()
        stack.supervisor.wait_ready([stack.envoy], 30)

    def restart_envoy() -> None:
        kill_envoy()
        start_envoy()

    def term_gateway() -> None:
        assert region.gateway is not None
        region.gateway.signal(signal.SIGTERM)

    def restart_gateway() -> None:
        assert region.gateway is not None
        region.gateway.wait(30)
        stack.restart_gateway(region)

    return {
        "SIGKILL of a function instance": (kill_function, lambda: None),
        "Redis restart": (lambda: redis_server.stop(signal.SIGKILL), redis_server.start),
        "Redis answering slowly": (slow_redis, pausing.clear),
        "Envoy restart (SIGKILL, started again at once)": (restart_envoy, lambda: None),
        "SIGTERM of a gateway (drain)": (term_gateway, restart_gateway),
    }


MODEL = "fraud"
TIMEOUT_S = 2.0
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
# The hit path's inputs carry this tag in the high bits of their counter: the miss path's (worker index << 48 |
# counter, worker 0) never reaches it.
_HIT_TAG = 0xFFFF << 48


def hit_payloads(target: str, keys: int) -> list[bytes]:
    """`keys` distinct requests for the hit path, built like the load generator's unique ones."""
    base = prepare_payload(BenchOptions(target=target, model=MODEL, rate=1.0, duration=1.0))
    offset = unique_offset(base)
    payloads = []
    for key in range(keys):
        data = bytearray(base)
        struct.pack_into("<Q", data, offset, _HIT_TAG | key)
        payloads.append(bytes(data))
    return payloads


def _trailer(metadata: Any, key: str) -> str:
    for name, value in metadata or ():
        if name == key:
            return str(value)
    return ""


class HitStream:
    """The hit path: an open-loop stream that cycles over a few cached inputs, in its own thread and event loop.
    Each event is (offset from the bench's start s, latency s, status, cache tier, region); latency counts from
    the intended send, as the load generator's does."""

    def __init__(self, target: str, payloads: list[bytes], rps: float, duration: float) -> None:
        self.target, self.payloads, self.rps, self.duration = target, payloads, rps, duration
        self.events: list[tuple[float, float, str, str, str]] = []
        self._thread: threading.Thread | None = None
        self._error: list[BaseException] = []

    def prime(self) -> None:
        """Send each input once, so that the stream that follows finds it cached (L1 and Redis)."""
        with grpc.insecure_channel(self.target) as channel:
            call = channel.unary_unary(INFER_METHOD, None, None)
            for payload in self.payloads:
                call(payload, timeout=10)

    def start(self, bench_start_wall: float) -> None:
        def run() -> None:
            try:
                asyncio.run(self._send_all(bench_start_wall))
            except BaseException as exc:  # reported by join()
                self._error.append(exc)

        self._thread = threading.Thread(target=run, name="hit-stream", daemon=True)
        self._thread.start()

    def join(self) -> list[tuple[float, float, str, str, str]]:
        assert self._thread is not None
        self._thread.join(self.duration + 4 * TIMEOUT_S + 30)
        if self._error:
            raise self._error[0]
        return sorted(self.events)

    async def _send_all(self, bench_start_wall: float) -> None:
        channel = grpc.aio.insecure_channel(self.target)
        call = channel.unary_unary(INFER_METHOD, None, None)
        await asyncio.wait_for(channel.channel_ready(), 10)
        # Align with the bench: offsets count from its start, as the fault marks do.
        start = time.monotonic() - (time.time() - bench_start_wall)
        tasks: set[asyncio.Task[None]] = set()

        async def one(k: int, intended: float) -> None:
            metadata: Any
            try:
                pending = call(self.payloads[k % len(self.payloads)], timeout=TIMEOUT_S)
                await pending
                code = "OK"
                metadata = await pending.trailing_metadata()
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                metadata = exc.trailing_metadata()
            tier, region = _trailer(metadata, "x-edgeinfer-cache"), _trailer(metadata, "x-edgeinfer-region")
            self.events.append((intended - start, time.monotonic() - intended, code, tier, region))

        for k in range(int(self.rps * self.duration)):
            intended = start + k / self.rps
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(k, intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
        await channel.close(None)


def _tally(name: str, path: str, events: list[tuple[float, float, str]], marks: dict[str, float]) -> dict[str, Any]:
    """Counts, p99 and max of one stream's (offset s, latency s, status) events."""
    statuses = Counter(e[2] for e in events)
    completed = statuses.pop("OK", 0)
    retryable = sum(n for code, n in statuses.items() if code in RETRYABLE)
    lost = sum(n for code, n in statuses.items() if code not in RETRYABLE)
    latencies = sorted(e[1] * 1000 for e in events if e[2] == "OK")
    return {
        "fault": name,
        "path": path,
        "sent": len(events),
        "completed": completed,
        "failed_retryable": retryable,
        "lost": lost,
        "statuses": dict(statuses),
        "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else None,
        "max_ms": latencies[-1] if latencies else None,
        "marks_s": marks,
        "timeline": [(round(e[0], 3), round(e[1] * 1000, 2), e[2]) for e in events],
    }


def run_fault(stack: LocalStack, name: str, fault: Fault, rps: float, phase: float, hit_rps: float,
              hit_keys: int) -> list[dict[str, Any]]:  # fmt: skip
    """Load in a thread (and the hit path in another); the fault from this (main) thread, which outlives whatever
    it starts: a child's parent-death signal follows the thread that started it. Returns the miss-path row and,
    with hit_rps > 0, the hit-path row."""
    inject, undo = fault
    marks: dict[str, float] = {}
    options = BenchOptions(
        target=stack.entry, model=MODEL, rate=rps, duration=phase, unique=True, record_events=True,
        timeout_ms=TIMEOUT_S * 1000,
    )  # fmt: skip
    hits = HitStream(stack.entry, hit_payloads(stack.entry, hit_keys), hit_rps, phase) if hit_rps > 0 else None
    if hits is not None:
        hits.prime()
    bench = BackgroundBench(options)
    start = bench.start()
    if start is not None:
        if hits is not None:
            hits.start(start)
        time.sleep(max(0.0, start + phase / 3 - time.time()))
        inject()
        marks["fault"] = time.time() - start
        time.sleep(max(0.0, start + 2 * phase / 3 - time.time()))
        undo()
        marks["undo"] = time.time() - start
    report = bench.result()
    rows = [_tally(name, "miss", [(e[0], e[1], e[2]) for e in report.events], marks)]
    if hits is not None and start is not None:
        events = hits.join()
        row = _tally(name, "hit", [(e[0], e[1], e[2]) for e in events], marks)
        during = [e for e in events if marks.get("fault", 0.0) <= e[0] < marks.get("undo", phase)]
        row["served_by"] = dict(Counter(e[3] or e[2] for e in events))
        row["served_by_during_fault"] = dict(Counter(e[3] or e[2] for e in during))
        row["regions"] = dict(Counter(e[4] or "-" for e in events))
        row["served_by_region"] = dict(Counter(f"{e[4] or '-'}/{e[3] or e[2]}" for e in events))
        rows.append(row)
    return rows


def _served(counts: dict[str, int]) -> str:
    order = ("hit-l1", "hit-redis", "coalesced", "miss")
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    return ", ".join(f"{k} {counts[k]}" for k in keys)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """One panel per fault: both paths' completed requests and the failed ones over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["fault"] for r in results))
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names)), sharex=True, squeeze=False)
    colors = {"miss": "tab:blue", "hit": "tab:green"}
    for axis, name in zip(axes[:, 0], names, strict=True):
        rows = [r for r in results if r["fault"] == name]
        for result in rows:
            ok = [(t, ms) for t, ms, code in result["timeline"] if code == "OK"]
            bad = [(t, ms) for t, ms, code in result["timeline"] if code != "OK"]
            label = f"{result['path']} path"
            axis.scatter([t for t, _ in ok], [ms for _, ms in ok], s=2, color=colors.get(result["path"]), label=label)
            axis.scatter([t for t, _ in bad], [ms for _, ms in bad], s=8, color="crimson",
                         label="failed (retryable)" if result["path"] == "miss" else None)  # fmt: skip
        for mark in rows[0]["marks_s"].values():
            axis.axvline(mark, color="black", linestyle="-.", linewidth=0.7)
        axis.set_yscale("log")
        axis.set_ylabel("ms")
        axis.set_title(
            f"{name}: "
            + "; ".join(f"{r['path']} {r['completed']}/{r['sent']} completed, {r['lost']} lost" for r in rows),
            fontsize=9,
        )
    axes[-1, 0].set_xlabel("seconds (dash-dot: fault, undo)")
    axes[0, 0].legend(fontsize=7, loc="upper right", markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--phase", type=float, default=15.0, help="seconds of load per fault")
    parser.add_argument("--hit-rps", type=float, default=50.0, help="hit-path stream: requests/s (0: none)")
    parser.add_argument("--hit-keys", type=int, default=16, help="hit-path stream: distinct cached inputs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="edgeinfer-faults-"))
    repo = work / "models"
    repo.mkdir()
    write_examples(repo)
    (repo / "ranker").rename(work / "ranker-unused")  # the faults need fraud only: spare the cores
    topology = default_topology(base_port=18101, redis_base_port=16380, entry=18001, envoy_admin=19901)
    stack = LocalStack(topology, None, topology.entry, repo, work / "state", 120.0, console)
    stack.install_signal_handlers()
    results = []
    try:
        stack.preflight()
        with Progress(console=console, auto_refresh=False) as progress:
            stack.start(progress)
        region = stack.regions[0]
        for other in stack.regions:  # warm standby, as in the drills
            _admin(other).update_pool("fraud", {"min-scale": 2})
        for name, fault in faults(stack, region).items():
            deadline = time.monotonic() + 60
            while sum(i["state"] == "ready" for i in _pools(region)["fraud"]["instances"]) < 2:
                assert time.monotonic() < deadline, "us-east did not get two warm instances"
                time.sleep(0.2)  # poll interval; the pool's own readiness decides
            console.print(f"[bold]{name}[/]: {args.rps:g} req/s misses, {args.hit_rps:g} req/s hits, {args.phase:g}s")
            for result in run_fault(stack, name, fault, args.rps, args.phase, args.hit_rps, args.hit_keys):
                console.print(
                    f"  {result['path']} path: sent {result['sent']}, completed {result['completed']}, retryable "
                    f"{result['failed_retryable']} {result['statuses']}, lost {result['lost']}"
                    + (f"; during the fault: {_served(result['served_by_during_fault'])}" if "served_by" in result
                       else "")
                )  # fmt: skip
                results.append(result)
    finally:
        stack.shutdown()
    table = Table(title="faults under load")
    for column in ("fault", "path", "sent", "completed", "failed-retryable", "lost", "p99 ms", "max ms",
                   "served during the fault"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("fault", "path", "served during the fault") else "right")
    for r in results:
        table.add_row(
            r["fault"], r["path"], str(r["sent"]), str(r["completed"]), str(r["failed_retryable"]), str(r["lost"]),
            "-" if r["p99_ms"] is None else f"{r['p99_ms']:.1f}", "-" if r["max_ms"] is None else f"{r['max_ms']:.1f}",
            _served(r["served_by_during_fault"]) if "served_by_during_fault" in r else "",
        )  # fmt: skip
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/faults.py " + " ".join(sys.argv[1:])
    summary = [{k: v for k, v in r.items() if k != "timeline"} for r in results]
    (args.out / "faults.json").write_text(json.dumps({"command": command.strip(), "results": summary}, indent=2))
    plot(results, args.out / "faults.png")
    return 0 if all(r["lost"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
