"""Gateway cache benchmark: L1 hits, Redis hits and the miss path, against a bare gRPC echo ceiling.

All in one run, on loopback, driven by `edgeinfer bench` (open-loop, latency from the
intended send time, HDR histograms):
- ceiling: the bare grpc.aio echo server (benchmarks/common/echo_server.py);
- L1 hit: the gateway answering a repeated `fraud` request from its in-process cache;
- Redis hit: the same with the L1 off, so every request reads Redis;
for each, the highest rate whose p99 stays within the bound (5 ms by default);
- miss path: every request distinct (`--unique`), through the gateway and straight to the
  function at the same rate; the median the gateway adds is the difference of the p50s.

    python benchmarks/gateway_cache.py [--quick] [--report FILE]

It prints ratios against the ceiling measured in the same run and writes a JSON report
and a PNG plot next to it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common.bench import (
    REPO_ROOT,
    Criteria,
    LoadSettings,
    SearchPlan,
    Step,
    describe,
    edgeinfer_command,
    judge,
    run_step,
    search_max_rate,
)
from benchmarks.common.procs import ManagedProcess, free_port, managed, wait_ready
from edgeinfer.cache.redis_server import RedisServer

FRAUD_INPUT = "features:FP32:1,30"
DEFAULT_REPORT = REPO_ROOT / "benchmarks" / "results" / "gateway_cache.json"


def start(name: str, argv: Sequence[str], log_dir: Path, target: str) -> ManagedProcess:
    process = ManagedProcess(name, argv, log_dir / f"{name}.log", cwd=REPO_ROOT)
    wait_ready(process, target, timeout=60)
    return process


def fixed_rate(target: str, rate: float, duration: float, log_dir: Path, unique: bool) -> Step:
    """One open-loop run at `rate`; with `unique`, every request carries distinct input bytes."""
    load = LoadSettings(
        duration_s=duration, warmup_s=1.0, processes=1, concurrency_limit=None, timeout_ms=5000, inputs=(FRAUD_INPUT,)
    )
    if not unique:
        return run_step(target, "fraud", rate, load, log_dir)
    report_path = log_dir / f"unique-{target.replace(':', '-')}.json"
    argv = [
        *edgeinfer_command("bench"),
        "--target",
        target,
        "--model",
        "fraud",
        "--rate",
        f"{rate:g}",
        "--json",
        str(report_path),
        "--quiet",
        "--unique",
        *load.argv(),
    ]
    import subprocess

    subprocess.run(argv, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL, timeout=duration + 120)
    report = json.loads(report_path.read_text())
    step = Step(
        offered_rate=rate,
        achieved_rate=report["achieved_rate"],
        sent=report["sent"],
        ok=report["ok"],
        errors=report["errors"],
        latency_ms=report["latency_ms"],
    )
    return step


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steps, coarser search")
    parser.add_argument("--p99-ms", type=float, default=5.0, help="p99 bound for the rate searches")
    parser.add_argument("--miss-rate", type=float, default=200.0, help="requests/s for the miss-path comparison")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console()
    duration, warmup = (3.0, 1.0) if args.quick else (6.0, 2.0)
    load = LoadSettings(
        duration_s=duration,
        warmup_s=warmup,
        processes=2,
        concurrency_limit=None,
        timeout_ms=5000,
        inputs=(FRAUD_INPUT,),
    )
    plan = SearchPlan(start_rate=400.0, growth=1.4, bisect_steps=1 if args.quick else 3)
    criteria = Criteria(p99_ms=args.p99_ms)
    work = Path(tempfile.mkdtemp(prefix="edgeinfer-gateway-bench-"))
    logs = work / "logs"
    results: dict[str, Any] = {
        "command": "python benchmarks/gateway_cache.py" + (" --quick" if args.quick else ""),
        "p99_bound_ms": args.p99_ms,
        "load": asdict(load),
        "searches": {},
    }
    started = time.monotonic()
    try:
        repo = work / "models"
        import subprocess

        subprocess.run(
            [*edgeinfer_command("examples"), str(repo)], cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL
        )
        redis = RedisServer(free_port(), dir=work / "redis")
        redis.start()
        redis.wait_ready()
        echo_port, fn_port, l1_port, redis_port = (free_port() for _ in range(4))
        echo = start(
            "echo",
            [sys.executable, "benchmarks/common/echo_server.py", "--port", str(echo_port)],
            logs,
            f"127.0.0.1:{echo_port}",
        )
        function = start(
            "function",
            [*edgeinfer_command("function"), "--model-repo", str(repo), "--port", str(fn_port)],
            logs,
            f"127.0.0.1:{fn_port}",
        )
        route = ["--route", f"fraud=127.0.0.1:{fn_port}"]
        gw_l1 = start(
            "gateway-l1",
            [*edgeinfer_command("gateway"), "--port", str(l1_port), *route, "--redis", redis.url],
            logs,
            f"127.0.0.1:{l1_port}",
        )
        gw_redis = start(
            "gateway-redis",
            [
                *edgeinfer_command("gateway"),
                "--port",
                str(redis_port),
                *route,
                "--redis",
                redis.url,
                "--l1-max-bytes",
                "0",
            ],
            logs,
            f"127.0.0.1:{redis_port}",
        )
        with managed(echo), managed(function), managed(gw_l1), managed(gw_redis):
            targets = {
                "echo ceiling": f"127.0.0.1:{echo_port}",
                "gateway L1 hit": f"127.0.0.1:{l1_port}",
                "gateway Redis hit": f"127.0.0.1:{redis_port}",
            }
            best: dict[str, float] = {}
            for name, target in targets.items():
                console.print(f"[bold]{name}[/]: searching the highest rate with p99 ≤ {args.p99_ms:g} ms")

                def step(rate: float, target: str = target, name: str = name) -> Step:
                    return run_step(target, "fraud", rate, load, logs / name)

                result = search_max_rate(
                    step,
                    plan,
                    criteria,
                    on_step=lambda s: console.print(
                        f"  {s.offered_rate:8,.0f}/s → {s.achieved_rate:8,.0f}/s "
                        f"p50 {s.p50:6.2f} ms p99 {s.p99:7.2f} ms {s.reason}"
                    ),
                )
                best[name] = result.best.achieved_rate if result.best else 0.0
                results["searches"][name] = {
                    "best": result.best.to_dict() if result.best else None,
                    "steps": [s.to_dict() for s in result.steps],
                    "summary": describe(result.steps),
                }
            console.print(f"[bold]miss path[/]: distinct requests at {args.miss_rate:g}/s, gateway vs function")
            miss_duration = 5.0 if args.quick else 10.0
            via = judge(
                fixed_rate(targets["gateway L1 hit"], args.miss_rate, miss_duration, logs, True), Criteria(p99_ms=1e9)
            )
            direct = judge(
                fixed_rate(f"127.0.0.1:{fn_port}", args.miss_rate, miss_duration, logs, True), Criteria(p99_ms=1e9)
            )
            added = via.p50 - direct.p50
            results["miss_path"] = {
                "rate": args.miss_rate,
                "gateway": via.to_dict(),
                "function": direct.to_dict(),
                "added_p50_ms": added,
            }
        redis.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ceiling = best["echo ceiling"] or float("nan")
    ratios = {name: rate / ceiling for name, rate in best.items()}
    results["best_rates"] = best
    results["ratios_to_ceiling"] = ratios
    results["wall_s"] = time.monotonic() - started
    table = Table(title=f"Gateway cache: highest rate with p99 ≤ {args.p99_ms:g} ms (fraud, loopback, 2 cores)")
    for column in ("path", "requests/s", "× ceiling", "target"):
        table.add_column(column)
    targets_ratio = {"gateway L1 hit": 0.8, "gateway Redis hit": 0.6}
    for name, rate in best.items():
        goal = targets_ratio.get(name)
        table.add_row(name, f"{rate:,.0f}", f"{ratios[name]:.2f}", f"≥ {goal:.1f}" if goal else "")
    console.print(table)
    console.print(
        f"miss path at {args.miss_rate:g}/s: gateway p50 {via.p50:.3f} ms, function p50 {direct.p50:.3f} ms "
        f"→ the gateway adds {added:.3f} ms at the median (target ≤ 0.5 ms); errors "
        f"{via.errors or 'none'} / {direct.errors or 'none'}"
    )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.report.with_suffix(".png"))
    console.print(f"report: {args.report} and {args.report.with_suffix('.png')}")
    return 0


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, search in results["searches"].items():
        steps = sorted((s for s in search["steps"] if s["latency_ms"]), key=lambda s: s["achieved_rate"])
        left.plot([s["achieved_rate"] for s in steps], [s["latency_ms"]["p99"] for s in steps], "o-", label=name)
    left.axhline(results["p99_bound_ms"], color="grey", linestyle="--", label="p99 bound")
    left.set_xlabel("achieved requests/s")
    left.set_ylabel("p99 latency, ms (log)")
    left.set_yscale("log")
    left.set_title("p99 vs throughput")
    left.legend()
    miss = results["miss_path"]
    labels = ["function direct", "through gateway"]
    p50 = [miss["function"]["latency_ms"].get("p50", 0), miss["gateway"]["latency_ms"].get("p50", 0)]
    p99 = [miss["function"]["latency_ms"].get("p99", 0), miss["gateway"]["latency_ms"].get("p99", 0)]
    xs = range(len(labels))
    right.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50")
    right.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99")
    right.set_xticks(list(xs), labels)
    right.set_ylabel("latency, ms")
    right.set_title(f"miss path at {miss['rate']:g}/s (adds {miss['added_p50_ms']:.3f} ms at p50)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
