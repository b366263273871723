"""Faults under load: for each fault, open-loop load through the stack of `edgeinfer up` (Envoy in front of three
regions), the fault injected mid-run into the serving region (us-east) and then undone; every request is
counted as completed, failed with a status the client may retry, or lost (any other status: nothing
acknowledged may be lost).

    python benchmarks/faults.py [--rps 100] [--phase 15] [--out benchmarks/results]

Faults: SIGKILL of a function instance; a Redis restart; a Redis that answers slowly (CLIENT PAUSE, 300 ms
of every second); a restart of Envoy; SIGTERM of a gateway (it drains). Writes faults.json and faults.png.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
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

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from edgeinfer.functions.examples import write_examples  # noqa: E402
from edgeinfer.gateway.admin_client import AdminClient  # noqa: E402
from edgeinfer.loadgen import BenchOptions  # noqa: E402
from edgeinfer.loadgen.runner import BackgroundBench  # noqa: E402
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


def run_fault(stack: LocalStack, name: str, fault: Fault, rps: float, phase: float) -> dict[str, Any]:
    """Load in a thread; the fault from this (main) thread, which outlives whatever it starts: a child's
    parent-death signal follows the thread that started it."""
    inject, undo = fault
    marks: dict[str, float] = {}
    options = BenchOptions(
        target=stack.entry, model="fraud", rate=rps, duration=phase, unique=True, record_events=True, timeout_ms=2000
    )
    bench = BackgroundBench(options)
    start = bench.start()
    if start is not None:
        time.sleep(max(0.0, start + phase / 3 - time.time()))
        inject()
        marks["fault"] = time.time() - start
        time.sleep(max(0.0, start + 2 * phase / 3 - time.time()))
        undo()
        marks["undo"] = time.time() - start
    report = bench.result()
    statuses = Counter(e[2] for e in report.events)
    completed = statuses.pop("OK", 0)
    retryable = sum(n for code, n in statuses.items() if code in RETRYABLE)
    lost = sum(n for code, n in statuses.items() if code not in RETRYABLE)
    latencies = sorted(e[1] * 1000 for e in report.events if e[2] == "OK")
    return {
        "fault": name,
        "sent": len(report.events),
        "completed": completed,
        "failed_retryable": retryable,
        "lost": lost,
        "statuses": dict(statuses),
        "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else None,
        "max_ms": latencies[-1] if latencies else None,
        "marks_s": marks,
        "timeline": [(round(e[0], 3), round(e[1] * 1000, 2), e[2]) for e in report.events],
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(10, 2.2 * len(results)), sharex=True)
    for axis, result in zip(axes, results, strict=True):
        ok = [(t, ms) for t, ms, code in result["timeline"] if code == "OK"]
        bad = [(t, ms) for t, ms, code in result["timeline"] if code != "OK"]
        axis.scatter([t for t, _ in ok], [ms for _, ms in ok], s=2, label="completed")
        axis.scatter([t for t, _ in bad], [ms for _, ms in bad], s=8, color="crimson", label="failed (retryable)")
        for mark in result["marks_s"].values():
            axis.axvline(mark, color="black", linestyle="-.", linewidth=0.7)
        axis.set_yscale("log")
        axis.set_ylabel("ms")
        axis.set_title(
            f"{result['fault']}: {result['completed']}/{result['sent']} completed, {result['lost']} lost", fontsize=9
        )
    axes[-1].set_xlabel("seconds (dash-dot: fault, undo)")
    axes[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--phase", type=float, default=15.0, help="seconds of load per fault")
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
            console.print(f"[bold]{name}[/]: {args.rps:g} req/s for {args.phase:g}s")
            result = run_fault(stack, name, fault, args.rps, args.phase)
            console.print(
                f"  sent {result['sent']}, completed {result['completed']}, retryable {result['failed_retryable']} "
                f"{result['statuses']}, lost {result['lost']}"
            )
            results.append(result)
    finally:
        stack.shutdown()
    table = Table(title="faults under load")
    for column in ("fault", "sent", "completed", "failed-retryable", "lost", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "fault" else "right")
    for r in results:
        table.add_row(
            r["fault"], str(r["sent"]), str(r["completed"]), str(r["failed_retryable"]), str(r["lost"]),
            f"{r['p99_ms']:.1f}", f"{r['max_ms']:.1f}",
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
