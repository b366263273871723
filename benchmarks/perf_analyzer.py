"""perf_analyzer as a second load generator: NVIDIA's C++ client (tritonclient 2.45.0's binary, unchanged), which
pays none of the Python client's cost, beside our `edgeinfer bench` (edgeinfer/loadgen).

All in one run, on loopback, against one function (the examples) and one gateway in front of it (L1 + Redis):
- generators: `fraud` at the same offered rate, through each generator in turn (alternating which goes first, per
  round), against the function and against the gateway: achieved rate, p50/p99 latency, and the hit rate from the
  target's own ModelStatistics (cache hits / successful requests, read before and after each run). Both generators
  send one random tensor over and over, so the gateway answers all but the first request from its cache;
- shared memory: `ranker`, a 64×512 batch (64×1000 out), perf_analyzer at concurrency 1 against the function,
  plain gRPC against `--shared-memory system` (inputs and outputs in registered system shared memory regions),
  alternating per round.

    python benchmarks/perf_analyzer.py [--rounds N] [--quick] [--dry-run] [--report FILE]

`--dry-run` starts everything and runs every step once with tiny windows (seconds, figures meaningless) to check
the harness. perf_analyzer's venv is tests/testkit/perf_analyzer.py's (built if missing; it needs Debian's
libb64-0d). Latency: perf_analyzer's is from each request's actual send, `edgeinfer bench`'s from its intended send
time (open loop), so the Python figures also carry any send lag. The report (JSON) and a plot (PNG) go to
benchmarks/results/perf_analyzer.{json,png}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from benchmarks.common.bench import REPO_ROOT, LoadSettings, edgeinfer_command, run_step
from benchmarks.common.procs import ManagedProcess, free_port, managed, wait_ready
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc

DEFAULT_REPORT = REPO_ROOT / "benchmarks" / "results" / "perf_analyzer.json"
FRAUD_INPUT = "features:FP32:1,30"
RANKER_BATCH = 64
RANKER_OUTPUT_BYTES = RANKER_BATCH * 1000 * 4  # scores FP32 [64, 1000]: more than perf_analyzer's default region
RETRIES = 2  # reruns of a perf_analyzer run that found no stable windows


def load_testkit() -> ModuleType:
    """tests/testkit/perf_analyzer.py by path (standard library only): its venv, its runner and its parser."""
    path = REPO_ROOT / "tests" / "testkit" / "perf_analyzer.py"
    spec = importlib.util.spec_from_file_location("testkit_perf_analyzer", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


pa = load_testkit()


def statistics_of(target: str, model: str) -> dict[str, int]:
    """The target's ModelStatistics for `model` (Triton's meanings), the counts this benchmark compares."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=30)
    stats = reply.model_stats[0]
    return {
        "success": int(stats.inference_stats.success.count),
        "fail": int(stats.inference_stats.fail.count),
        "cache_hit": int(stats.inference_stats.cache_hit.count),
        "cache_miss": int(stats.inference_stats.cache_miss.count),
        "inference": int(stats.inference_count),
        "execution": int(stats.execution_count),
    }


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in before}


def hit_rate(counts: dict[str, int]) -> float:
    return counts["cache_hit"] / counts["success"] if counts["success"] else 0.0


class Harness:
    def __init__(self, args: argparse.Namespace, logs: Path) -> None:
        self.args = args
        self.logs = logs
        dry = args.dry_run
        self.duration_s = 1.0 if dry else (5.0 if args.quick else 10.0)
        self.window_ms = 500 if dry else int(self.duration_s * 1000 / 3)  # 3 stable windows ≈ duration
        self.failures: list[dict[str, str]] = []

    def perf_analyzer(self, target: str, model: str, extra: Sequence[str]) -> dict[str, Any]:
        args = ["-m", model, "-u", target, "-i", "grpc", *extra]
        started = time.monotonic()
        for attempt in range(RETRIES + 1):
            try:
                result = pa.run_perf_analyzer(args, timeout=300.0)
                break
            except pa.PerfAnalyzerFailed as failure:
                # No stable windows on a busy machine: recorded, and measured again.
                self.failures.append({"command": "perf_analyzer " + " ".join(args), "error": str(failure)[-2000:]})
                if attempt == RETRIES:
                    raise
        m = result.last
        return {
            "generator": "perf_analyzer",
            "command": "perf_analyzer " + " ".join(args),
            "achieved_rate": float(m.throughput),
            "latency_ms": {f"p{p}": float(us) / 1000 for p, us in sorted(m.latency_us.items())},
            "avg_latency_ms": float(m.avg_latency_us) / 1000 if m.avg_latency_us is not None else None,
            "server_reported": {str(k): int(v) for k, v in m.server.items()},
            "wall_s": time.monotonic() - started,
        }

    def edgeinfer_bench(self, target: str, rate: float) -> dict[str, Any]:
        load = LoadSettings(
            duration_s=self.duration_s,
            warmup_s=0.5 if self.args.dry_run else 2.0,
            processes=1,
            concurrency_limit=None,
            timeout_ms=5000,
            inputs=(FRAUD_INPUT,),
        )
        started = time.monotonic()
        step = run_step(target, "fraud", rate, load, self.logs / "bench")
        if step.errors:
            raise RuntimeError(f"edgeinfer bench against {target} at {rate:g}/s: {step.reason or step.errors}")
        return {
            "generator": "edgeinfer bench",
            "command": f"edgeinfer bench --target {target} --model fraud --rate {rate:g} " + " ".join(load.argv()),
            "achieved_rate": step.achieved_rate,
            "latency_ms": {k: v for k, v in step.latency_ms.items() if k in ("p50", "p90", "p95", "p99")},
            "wall_s": time.monotonic() - started,
        }

    def generator_run(self, name: str, target: str, generator: str, rate: float) -> dict[str, Any]:
        before = statistics_of(target, "fraud")
        if generator == "perf_analyzer":
            extra = ["--request-rate-range", f"{rate:g}", "-p", str(self.window_ms), "-s", self.stability()]
            run = self.perf_analyzer(target, "fraud", [*extra, "--max-trials", "10"])
        else:
            run = self.edgeinfer_bench(target, rate)
        counts = delta(before, statistics_of(target, "fraud"))
        run.update(target=name, offered_rate=rate, statistics=counts, hit_rate=hit_rate(counts))
        return run

    def shared_memory_run(self, target: str, mode: str) -> dict[str, Any]:
        extra = ["-b", str(RANKER_BATCH), "-p", str(self.window_ms), "-s", self.stability(), "--max-trials", "10"]
        if mode == "system shared memory":
            extra += ["--shared-memory", "system", "--output-shared-memory-size", str(RANKER_OUTPUT_BYTES)]
        run = self.perf_analyzer(target, "ranker", extra)
        # perf_analyzer's throughput counts inferences (rows): a request carries RANKER_BATCH of them.
        run.update(mode=mode, batch=RANKER_BATCH, batches_per_s=run["achieved_rate"] / RANKER_BATCH)
        return run

    def stability(self) -> str:
        # Dry runs check the harness, not a figure: any three windows do.
        return "10000" if self.args.dry_run else "25"


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def median_of(runs: Sequence[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
    return float(statistics.median(get(r) for r in runs))


def summarize(runs: Sequence[dict[str, Any]], with_hits: bool) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "runs": len(runs),
        "achieved_rate": median_of(runs, lambda r: r["achieved_rate"]),
        "p50_ms": median_of(runs, lambda r: r["latency_ms"]["p50"]),
        "p99_ms": median_of(runs, lambda r: r["latency_ms"]["p99"]),
    }
    if with_hits:
        summary["hit_rate"] = median_of(runs, lambda r: r["hit_rate"])
    else:
        summary["batches_per_s"] = median_of(runs, lambda r: r["batches_per_s"])
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every step once")
    parser.add_argument("--rate", type=float, default=400.0, help="offered requests/s of the generator comparison")
    parser.add_argument("--quick", action="store_true", help="5 s steps instead of 10 s")
    parser.add_argument("--dry-run", action="store_true", help="one round of tiny steps: checks the harness only")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    args = parser.parse_args(argv)
    rounds = 1 if args.dry_run else args.rounds

    from rich.console import Console
    from rich.table import Table

    console = Console()
    installation = pa.ensure_perf_analyzer()
    console.print(f"perf_analyzer: {installation.binary}")
    work = Path(tempfile.mkdtemp(prefix="edgeinfer-perf-analyzer-bench-"))
    logs = work / "logs"
    harness = Harness(args, logs)
    command = "python benchmarks/perf_analyzer.py" + "".join(
        f" {flag}" for flag, on in (("--quick", args.quick), ("--dry-run", args.dry_run)) if on
    )
    if args.rounds != 3 and not args.dry_run:
        command += f" --rounds {args.rounds}"
    if args.rate != 400.0:
        command += f" --rate {args.rate:g}"
    results: dict[str, Any] = {
        "command": command,
        "perf_analyzer": f"tritonclient {pa.TRITONCLIENT_VERSION} wheel, unchanged",
        "rounds": rounds,
        "rate": args.rate,
        "duration_s": harness.duration_s,
        "window_ms": harness.window_ms,
        "dry_run": args.dry_run,
        # The machine's other work shows here: 1/5/15-minute load averages at the start and the end.
        "loadavg_start": loadavg(),
    }
    generator_runs: list[dict[str, Any]] = []
    shm_runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        repo = work / "models"
        subprocess.run(
            [*edgeinfer_command("examples"), str(repo)], cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL
        )
        redis = RedisServer(free_port(), dir=work / "redis")
        redis.start()
        redis.wait_ready()
        fn_port, gw_port = free_port(), free_port()
        function = ManagedProcess(
            "function",
            [*edgeinfer_command("function"), "--model-repo", str(repo), "--port", str(fn_port)],
            logs / "function.log",
            cwd=REPO_ROOT,
        )
        wait_ready(function, f"127.0.0.1:{fn_port}", timeout=120)
        routes = [a for m in ("fraud", "ranker") for a in ("--route", f"{m}=127.0.0.1:{fn_port}")]
        gateway = ManagedProcess(
            "gateway",
            [*edgeinfer_command("gateway"), "--port", str(gw_port), *routes, "--redis", redis.url],
            logs / "gateway.log",
            cwd=REPO_ROOT,
        )
        wait_ready(gateway, f"127.0.0.1:{gw_port}", timeout=60)
        targets = {"function": f"127.0.0.1:{fn_port}", "gateway": f"127.0.0.1:{gw_port}"}
        with managed(function), managed(gateway):
            for r in range(rounds):
                generators = ["perf_analyzer", "edgeinfer bench"]
                if r % 2:
                    generators.reverse()
                for name, target in targets.items():
                    for generator in generators:
                        run = harness.generator_run(name, target, generator, args.rate)
                        run["round"] = r
                        generator_runs.append(run)
                        console.print(
                            f"round {r + 1}/{rounds} [bold]{name}[/] {generator:15}: "
                            f"{run['achieved_rate']:8,.0f}/s p50 {run['latency_ms']['p50']:6.3f} ms "
                            f"p99 {run['latency_ms']['p99']:7.3f} ms hits {run['hit_rate']:6.1%}"
                        )
                modes = ["plain gRPC", "system shared memory"]
                if r % 2:
                    modes.reverse()
                for mode in modes:
                    run = harness.shared_memory_run(targets["function"], mode)
                    run["round"] = r
                    shm_runs.append(run)
                    console.print(
                        f"round {r + 1}/{rounds} [bold]ranker {RANKER_BATCH}×512[/] {mode:20}: "
                        f"{run['batches_per_s']:6,.1f} batches/s p50 {run['latency_ms']['p50']:7.3f} ms "
                        f"p99 {run['latency_ms']['p99']:7.3f} ms"
                    )
        redis.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    results["generators"] = {
        f"{target} / {generator}": summarize(
            [r for r in generator_runs if r["target"] == target and r["generator"] == generator], True
        )
        for target in ("function", "gateway")
        for generator in ("perf_analyzer", "edgeinfer bench")
    }
    results["shared_memory"] = {
        mode: summarize([r for r in shm_runs if r["mode"] == mode], False)
        for mode in ("plain gRPC", "system shared memory")
    }
    plain, shm = (results["shared_memory"][m]["p50_ms"] for m in ("plain gRPC", "system shared memory"))
    results["shared_memory_p50_saving_ms"] = plain - shm
    results["runs"] = {"generators": generator_runs, "shared_memory": shm_runs}
    results["perf_analyzer_failures"] = harness.failures
    results["wall_s"] = time.monotonic() - started
    results["loadavg_end"] = loadavg()

    table = Table(title=f"fraud at {args.rate:g}/s offered, median of {rounds} round(s)")
    for column in ("target / generator", "achieved/s", "p50 ms", "p99 ms", "hit rate"):
        table.add_column(column)
    for name, s in results["generators"].items():
        row = f"{s['achieved_rate']:,.0f}", f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}", f"{s['hit_rate']:.1%}"
        table.add_row(name, *row)
    console.print(table)
    shm_table = Table(title=f"ranker, {RANKER_BATCH}×512 batch, perf_analyzer at concurrency 1, against the function")
    for column in ("mode", "batches/s", "p50 ms", "p99 ms"):
        shm_table.add_column(column)
    for mode, s in results["shared_memory"].items():
        shm_table.add_row(mode, f"{s['batches_per_s']:,.1f}", f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}")
    console.print(shm_table)
    if args.dry_run:
        console.print("dry run: the harness works; no report written (the figures mean nothing)")
        return 0
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.report.with_suffix(".png"))
    console.print(f"report: {args.report} and {args.report.with_suffix('.png')}")
    return 0


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = list(results["generators"])
    xs = range(len(names))
    p50 = [results["generators"][n]["p50_ms"] for n in names]
    p99 = [results["generators"][n]["p99_ms"] for n in names]
    left.bar([x - 0.2 for x in xs], p50, width=0.4, label="p50")
    left.bar([x + 0.2 for x in xs], p99, width=0.4, label="p99")
    for x, n in zip(xs, names, strict=True):
        left.annotate(f"hits {results['generators'][n]['hit_rate']:.0%}", (x, max(p99) * 1.02), ha="center")
    left.set_xticks(list(xs), [n.replace(" / ", "\n") for n in names])
    left.set_ylabel("latency, ms")
    left.set_title(f"fraud at {results['rate']:g}/s: perf_analyzer vs edgeinfer bench")
    left.legend()
    modes = list(results["shared_memory"])
    mx = range(len(modes))
    right.bar([x - 0.2 for x in mx], [results["shared_memory"][m]["p50_ms"] for m in modes], width=0.4, label="p50")
    right.bar([x + 0.2 for x in mx], [results["shared_memory"][m]["p99_ms"] for m in modes], width=0.4, label="p99")
    right.set_xticks(list(mx), modes)
    right.set_ylabel("latency, ms")
    right.set_title(f"ranker {RANKER_BATCH}×512 against a function (perf_analyzer, concurrency 1)")
    right.legend()
    fig.suptitle(f"{results['command']} (loopback, median of {results['rounds']} rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
