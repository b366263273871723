"""The gateway's hit and miss paths against the transport's limit and a real Triton: issue 17's done list, one run.

On loopback, fraud requests, each rate search at p99 ≤ 5 ms (benchmarks/common/bench.py: rates stepped ×1.5,
then bisected; a step passes with no errors, ≥ 95 % of the offered rate achieved and p99 within the bound),
every contender started once and idle while the others are measured:
- echo: the bare grpc.aio echo ceiling (benchmarks/common/echo_server.py, described for perf_analyzer);
- gateway L1 hit: `edgeinfer gateway` (L1 + Redis) in front of one `edgeinfer function`, one request repeated;
- gateway Redis hit: the same with `--l1-max-bytes 0`, so every hit reads Redis;
- Triton response cache: tritonserver 2.51 from nvidia-pytriton 0.7.0 (benchmarks/common/triton_peer.py), its
  local response cache on, dynamic batching with the function's max queue delay, the same repeated request;
- gateway --workers 2, L1 hit: skipped, with a note, where `edgeinfer gateway` has no --workers flag;
- miss path: distinct requests at --miss-rate through the gateway, through one bare grpc.aio hop
  (benchmarks/common/grpc_hop.py) and straight to the function; each path's added p50 is its p50 minus the
  function's, and the gateway's is compared with the hop's.
Each is measured under both load generators: `edgeinfer bench` (open loop, latency from each request's
intended send time, HDR histograms) and perf_analyzer (tritonclient 2.45's C++ client at a fixed request rate,
latency from the actual send; tests/testkit/perf_analyzer.py). Both keep several connections open (bench
`--channels`, perf_analyzer one channel per thread), the same for every contender: SO_REUSEPORT spreads
connections, not requests, over a gateway's workers.

--rounds (3) repeats everything, contenders in reverse order every other round; every ratio is taken within
a round, then its median and range are reported (benchmarks/common/rounds.py). Steadiness: a contender's
reported maximum is the median of its rounds' maxima, and it is steady when no step at or below that rate
failed in any round (a step the search reran as noise counts by its rerun). Each server's hit rate is read
from its own ModelStatistics around every search.

    python benchmarks/gateway_vs_triton.py [--quick] [--rounds N] [--generators bench,perf_analyzer]
        [--report benchmarks/results/gateway_vs_triton.json]

--quick: one round, one short step per contender at a fixed rate (a smoke test of the harness, seconds per
step; its figures mean nothing). Output: the done-list table with each ratio and its target, a JSON report
and a PNG plot beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.common.bench import (
    REPO_ROOT,
    Criteria,
    LoadSettings,
    SearchPlan,
    SearchResult,
    Step,
    describe,
    edgeinfer_command,
    judge,
    run_step,
    search_max_rate,
)
from benchmarks.common.cpu import ForeignCpu
from benchmarks.common.procs import ManagedProcess, free_port, wait_ready
from benchmarks.common.rounds import summarise
from benchmarks.common.triton_peer import TritonPeer, start_triton
from benchmarks.perf_analyzer import pa
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc

MODEL = "fraud"
FRAUD_INPUT = "features:FP32:1,30"
FRAUD_FEATURES = 30
DEFAULT_REPORT = REPO_ROOT / "benchmarks" / "results" / "gateway_vs_triton.json"
GENERATORS = ("bench", "perf_analyzer")
GENERATOR_LABELS = {"bench": "edgeinfer bench", "perf_analyzer": "perf_analyzer"}
# perf_analyzer's C++ client shares one gRPC channel among up to 6 client threads unless told otherwise.
PA_CHANNEL_SHARE = "TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT"

# The done list: (key, measure, target, comparison) — ratios of rates are "≥", the miss path's added p50 "≤".
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("l1_vs_echo", "L1 hit ÷ bare grpc.aio echo", 0.95, ">="),
    ("redis_vs_echo", "Redis hit ÷ echo", 0.8, ">="),
    ("miss_added_vs_hop", "miss, added p50 ÷ one bare hop's added p50", 1.2, "<="),
    ("l1_vs_triton", "L1 hit, one worker ÷ Triton response cache", 0.8, ">="),
    ("workers2_vs_triton", "--workers 2 L1 hit ÷ Triton response cache", 1.0, ">="),
)


@dataclass(slots=True)
class Contender:
    key: str
    label: str
    target: str
    pids: Callable[[], list[int]]
    has_statistics: bool  # answers ModelStatistics with cache counts


@dataclass(slots=True)
class Profile:
    """How long and how finely each generator measures; --quick shrinks it to one short step per search."""

    rounds: int
    bench_duration_s: float
    bench_warmup_s: float
    pa_window_ms: int
    plans: dict[str, SearchPlan]
    miss_duration_s: float


def profile_for(args: argparse.Namespace) -> Profile:
    if args.quick:
        one_step = SearchPlan(start_rate=300.0, growth=2.0, max_rate=300.0, min_rate=300.0, bisect_steps=0, retries=0)
        return Profile(1, 1.5, 0.5, 500, {"bench": one_step, "perf_analyzer": one_step}, 1.5)
    return Profile(
        rounds=args.rounds,
        # About 10 minutes for 3 rounds on 2 cores: ~4 s a bench step (2 s measured, plus its processes' start),
        # ~2.5 s a perf_analyzer step (3 windows), ~6 steps a search, 10 searches and 6 miss runs a round.
        bench_duration_s=2.0,
        bench_warmup_s=0.5,
        pa_window_ms=600,
        plans={
            "bench": SearchPlan(start_rate=600.0, growth=1.5, bisect_steps=1),
            # The C++ client reaches higher rates: start higher, so the search takes as many steps.
            "perf_analyzer": SearchPlan(start_rate=1000.0, growth=1.5, bisect_steps=1),
        },
        miss_duration_s=3.0,
    )


# ---------------------------------------------------------------- servers


class Stack(contextlib.ExitStack):
    """Every server of the run, stopped (process groups killed) on exit whatever happens."""

    def __init__(self, work: Path) -> None:
        super().__init__()
        self.work = work
        self.logs = work / "logs"

    def process(self, name: str, argv: Sequence[str], ready_timeout: float = 120.0) -> tuple[ManagedProcess, str]:
        port = free_port()
        process = ManagedProcess(name, [*argv, "--port", str(port)], self.logs / f"{name}.log", cwd=REPO_ROOT)
        self.callback(process.stop)
        address = f"127.0.0.1:{port}"
        wait_ready(process, address, timeout=ready_timeout)
        return process, address


def gateway_has_workers() -> bool:
    done = subprocess.run(
        [*edgeinfer_command("gateway"), "--help"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    return "--workers" in done.stdout


def statistics_of(target: str) -> dict[str, int] | None:
    """Success and cache-hit counts from the target's ModelStatistics for fraud (None where it has none)."""
    try:
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            reply = stub.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL), timeout=10)
    except grpc.RpcError:
        return None
    if not reply.model_stats:
        return None
    stats = reply.model_stats[0].inference_stats
    return {"success": int(stats.success.count), "cache_hit": int(stats.cache_hit.count)}


# ---------------------------------------------------------------- the two generators


def unique_input_data(path: Path, count: int, seed: int) -> Path:
    """perf_analyzer --input-data: `count` distinct fraud inputs, sent in turn (so every request is a miss)."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((count, FRAUD_FEATURES)).astype(np.float32)
    path.write_text(json.dumps({"data": [{"features": [float(v) for v in row]} for row in rows]}))
    return path


@dataclass(slots=True)
class Generators:
    profile: Profile
    logs: Path
    channels: int
    data_dir: Path
    unique_count: int = 0  # distinct inputs in each perf_analyzer --input-data file
    unique_runs: int = 0  # every run of distinct requests gets inputs no earlier run sent
    failures: list[dict[str, str]] = field(default_factory=list)

    def bench(self, target: str, rate: float, *, unique: bool = False, duration: float | None = None) -> Step:
        load = LoadSettings(
            duration_s=duration or self.profile.bench_duration_s,
            warmup_s=self.profile.bench_warmup_s,
            processes=2,
            concurrency_limit=None,
            timeout_ms=5000,
            inputs=(FRAUD_INPUT,),
            channels=self.channels,
            unique=unique,
            seed=1000 + self._next_unique_run() if unique else None,
        )
        return run_step(target, MODEL, rate, load, self.logs / "bench")

    def perf_analyzer(self, target: str, rate: float, *, unique: bool = False, window_ms: int | None = None) -> Step:
        args = [
            "-m", MODEL, "-u", target, "-i", "grpc",
            "--request-rate-range", f"{rate:g}",
            "-p", str(window_ms or self.profile.pa_window_ms),
            "-s", "10000",  # any three windows: the verdict is the step's p99, not perf_analyzer's stability rule
            "--max-trials", "3",
        ]  # fmt: skip
        if unique:
            # Each client thread walks the data from its first entry: with several, their requests repeat each
            # other's (hits, and misses the gateway coalesces). One thread sends every entry once, in turn.
            run = self._next_unique_run()
            data = unique_input_data(self.data_dir / f"unique-{run}.json", self.unique_count, seed=run)
            args += ["--input-data", str(data), "--max-threads", "1"]
        env = {PA_CHANNEL_SHARE: "1"} if self.channels > 1 else None
        step = Step(offered_rate=rate)
        started = time.monotonic()
        try:
            result = pa.run_perf_analyzer(args, timeout=120.0, env=env)
        except pa.PerfAnalyzerFailed as failure:
            self.failures.append({"command": "perf_analyzer " + " ".join(args), "error": str(failure)[-1500:]})
            step.errors = {"PERF_ANALYZER_FAILED": 1}
            step.reason = str(failure).splitlines()[0][:200]
            step.wall_s = time.monotonic() - started
            return step
        m = result.last
        step.wall_s = time.monotonic() - started
        step.achieved_rate = float(m.throughput)
        count = next((int(line.split(":")[1]) for line in m.client_lines if line.startswith("Request count:")), 0)
        step.sent = step.ok = count
        step.latency_ms = {f"p{p}": us / 1000 for p, us in sorted(m.latency_us.items())}
        return step

    def _next_unique_run(self) -> int:
        self.unique_runs += 1
        return self.unique_runs

    def run(self, generator: str, target: str, rate: float, *, unique: bool = False) -> Step:
        if generator == "bench":
            return self.bench(target, rate, unique=unique, duration=self.profile.miss_duration_s if unique else None)
        return self.perf_analyzer(target, rate, unique=unique)


# ---------------------------------------------------------------- one run


@dataclass(slots=True)
class SearchRecord:
    round: int
    generator: str
    contender: str
    result: SearchResult
    hit_rate: float | None
    wall_s: float

    @property
    def max_rate(self) -> float:
        return self.result.best.achieved_rate if self.result.best else 0.0

    def to_dict(self) -> dict[str, Any]:
        best = self.result.best
        return {
            "round": self.round,
            "generator": self.generator,
            "contender": self.contender,
            "max_rate": self.max_rate,
            "max_offered_rate": best.offered_rate if best else 0.0,
            "best": best.to_dict() if best else None,
            "first_failure": self.result.first_failure,
            "steps": [s.to_dict() for s in self.result.steps],
            "summary": describe(self.result.steps),
            "hit_rate": self.hit_rate,
            "wall_s": self.wall_s,
        }


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b is not None and a > 0 and b > 0 else None


def round_ratios(rates: dict[str, float], miss: dict[str, float]) -> dict[str, float | None]:
    """One round's, one generator's done-list ratios from its max rates and miss-path p50s."""
    added_gateway = miss["gateway"] - miss["function"] if {"gateway", "function"} <= miss.keys() else None
    added_hop = miss["hop"] - miss["function"] if {"hop", "function"} <= miss.keys() else None
    return {
        "l1_vs_echo": ratio(rates.get("l1"), rates.get("echo")),
        "redis_vs_echo": ratio(rates.get("redis"), rates.get("echo")),
        "miss_added_vs_hop": ratio(added_gateway, added_hop),
        "l1_vs_triton": ratio(rates.get("l1"), rates.get("triton")),
        "workers2_vs_triton": ratio(rates.get("workers2"), rates.get("triton")),
        "miss_added_gateway_ms": added_gateway,
        "miss_added_hop_ms": added_hop,
    }


def steadiness(records: Sequence[SearchRecord], reported: float) -> dict[str, Any]:
    """Steps at offered rates ≤ `reported` whose final verdict failed, in any round (reruns judge a step)."""
    misses = []
    for record in records:
        steps = record.result.steps
        for i, step in enumerate(steps):
            rerun = i + 1 < len(steps) and steps[i + 1].phase == "retry"
            if not step.passed and not rerun and step.offered_rate <= reported * 1.0001:
                misses.append({"round": record.round, "offered_rate": step.offered_rate, "reason": step.reason})
    never = [record.round for record in records if record.result.best is None]
    return {
        "reported_max_rate": reported,
        "rounds": len(records),
        "misses_below": misses,
        "rounds_without_a_passing_rate": never,
        "steady": reported > 0 and not misses and not never,
    }


def verdict(value: float | None, target: float, comparison: str) -> str:
    if value is None:
        return "n/a"
    met = value >= target if comparison == ">=" else value <= target
    return "met" if met else "missed"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: one round, one short step per search")
    parser.add_argument("--rounds", type=int, default=3, help="runs in a row (steadiness and ratio ranges)")
    parser.add_argument("--p99-ms", type=float, default=5.0, help="p99 bound of every rate search")
    parser.add_argument("--miss-rate", type=float, default=200.0, help="requests/s of the miss-path comparison")
    parser.add_argument("--channels", type=int, default=2, help="gRPC connections per bench process (2 processes)")
    parser.add_argument("--generators", default=",".join(GENERATORS), help="bench, perf_analyzer or both")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    args = parser.parse_args(argv)
    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    if not generators or any(g not in GENERATORS for g in generators):
        parser.error(f"--generators: one or both of {', '.join(GENERATORS)}")
    profile = profile_for(args)
    criteria = Criteria(p99_ms=args.p99_ms)
    console = Console(width=None if sys.stdout.isatty() else 150)
    command = "python benchmarks/gateway_vs_triton.py" + (" --quick" if args.quick else "")
    for flag, value, default in (
        ("--rounds", args.rounds, 3), ("--miss-rate", args.miss_rate, 200.0), ("--channels", args.channels, 2),
        ("--generators", args.generators, ",".join(GENERATORS)), ("--p99-ms", args.p99_ms, 5.0),
    ):  # fmt: skip
        if value != default and not (args.quick and flag == "--rounds"):
            command += f" {flag} {value}"

    report: dict[str, Any] = {
        "command": command,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": _cpus(), "python": platform.python_version(), "loadavg_start": _loadavg()},
        "p99_bound_ms": args.p99_ms,
        "quick": args.quick,
        "profile": asdict(profile),
        "client": {
            "bench": f"edgeinfer bench, 2 processes × {args.channels} channels, open loop, constant arrivals",
            "perf_analyzer": f"tritonclient {pa.TRITONCLIENT_VERSION} perf_analyzer, fixed request rate "
            f"(sync calls, thread pool), latency from the actual send"
            + (f", {PA_CHANNEL_SHARE}=1 (a channel per thread)" if args.channels > 1 else ""),
        },
        "notes": [],
    }
    started = time.monotonic()
    if "perf_analyzer" in generators:
        console.print(f"perf_analyzer: {pa.ensure_perf_analyzer().binary}")
    work = Path(tempfile.mkdtemp(prefix="edgeinfer-gateway-vs-triton-"))
    records: list[SearchRecord] = []
    miss_runs: list[dict[str, Any]] = []
    try:
        with Stack(work) as stack:
            contenders, miss_targets, triton = start_servers(stack, console, report)
            # Enough distinct inputs for every window perf_analyzer may take (3 trials of 3), with room to spare.
            unique_count = int(args.miss_rate * (profile.pa_window_ms / 1000 * 9 + 10)) + 1000
            gens = Generators(profile, stack.logs, args.channels, work, unique_count)
            report["triton"] = triton.describe()
            records, miss_runs = measure(args, profile, criteria, contenders, miss_targets, gens, generators, console)
            report["perf_analyzer_failures"] = gens.failures
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summarize(report, records, miss_runs, generators)
    report["wall_s"] = time.monotonic() - started
    report["machine"]["loadavg_end"] = _loadavg()
    print_tables(console, report, generators)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.report.with_suffix(".png"))
    console.print(f"report: {args.report} and {args.report.with_suffix('.png')} ({report['wall_s']:.0f} s)")
    return 0


def start_servers(
    stack: Stack, console: Console, report: dict[str, Any]
) -> tuple[list[Contender], dict[str, str], TritonPeer]:
    with console.status("starting Redis, the function, the echo, the hop, the gateways and Triton"):
        repo = stack.work / "models"
        subprocess.run(
            [*edgeinfer_command("examples"), str(repo)], cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL
        )
        redis = RedisServer(free_port(), dir=stack.work / "redis")
        redis.start()
        stack.callback(redis.stop)
        redis.wait_ready()
        function, fn = stack.process("function", [*edgeinfer_command("function"), "--model-repo", str(repo)])
        echo, echo_address = stack.process(
            "echo",
            [sys.executable, "benchmarks/common/echo_server.py", "--model", MODEL,
             "--input", "features:FP32:-1,30", "--max-batch-size", "64"],
        )  # fmt: skip
        hop, hop_address = stack.process("hop", [sys.executable, "benchmarks/common/grpc_hop.py", "--upstream", fn])
        route = ["--route", f"{MODEL}={fn}", "--redis", redis.url]
        gateway = [*edgeinfer_command("gateway"), *route]
        l1, l1_address = stack.process("gateway-l1", gateway)
        redis_only, redis_address = stack.process("gateway-redis", [*gateway, "--l1-max-bytes", "0"])
        triton = start_triton(repo, MODEL, stack.logs, response_cache=True)
        stack.callback(triton.stop)

        def with_redis(process: ManagedProcess) -> Callable[[], list[int]]:
            return lambda: [*process.group_pids(), *([redis.pid] if redis.pid else [])]

        contenders = [
            Contender("echo", "bare grpc.aio echo", echo_address, echo.group_pids, False),
            Contender("l1", "gateway L1 hit", l1_address, with_redis(l1), True),
            Contender("redis", "gateway Redis hit", redis_address, with_redis(redis_only), True),
            Contender("triton", "Triton response cache", triton.address, triton.process.group_pids, True),
        ]
        if gateway_has_workers():
            workers, workers_address = stack.process("gateway-workers2", [*gateway, "--workers", "2"])
            contenders.append(Contender("workers2", "gateway --workers 2 L1 hit", workers_address,
                                        with_redis(workers), True))  # fmt: skip
        else:
            report["notes"].append(
                "gateway --workers 2: skipped, `edgeinfer gateway` has no --workers flag in this tree"
            )
            console.print("[yellow]gateway --workers 2: skipped, `edgeinfer gateway` has no --workers flag[/]")
        del function, hop  # kept alive by the stack
    miss_targets = {"function": fn, "hop": hop_address, "gateway": l1_address}
    return contenders, miss_targets, triton


def measure(
    args: argparse.Namespace,
    profile: Profile,
    criteria: Criteria,
    contenders: list[Contender],
    miss_targets: dict[str, str],
    gens: Generators,
    generators: list[str],
    console: Console,
) -> tuple[list[SearchRecord], list[dict[str, Any]]]:
    records: list[SearchRecord] = []
    miss_runs: list[dict[str, Any]] = []
    total = profile.rounds * len(generators) * (len(contenders) + len(miss_targets))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("measurements", total=total)
        for r in range(1, profile.rounds + 1):
            order = contenders if r % 2 else list(reversed(contenders))
            gen_order = generators if r % 2 else list(reversed(generators))
            for contender in order:
                for generator in gen_order:
                    progress.update(task, description=f"round {r}: {contender.label} / {GENERATOR_LABELS[generator]}")
                    records.append(search(r, generator, contender, profile, criteria, gens, progress.console))
                    progress.advance(task)
            for generator in gen_order:
                targets = list(miss_targets.items()) if r % 2 else list(reversed(miss_targets.items()))
                for name, target in targets:
                    progress.update(task, description=f"round {r}: miss path, {name} / {GENERATOR_LABELS[generator]}")
                    before = statistics_of(target) if name == "gateway" else None
                    step = judge(gens.run(generator, target, args.miss_rate, unique=True), Criteria(p99_ms=1e9))
                    if not step.passed:  # a failed run (not a slow one: no p99 bound here) is measured once more
                        step = judge(gens.run(generator, target, args.miss_rate, unique=True), Criteria(p99_ms=1e9))
                    after = statistics_of(target) if name == "gateway" else None
                    hits = hit_rate_between(before, after)
                    miss_runs.append(
                        {"round": r, "generator": generator, "path": name, "step": step.to_dict(), "hit_rate": hits}
                    )
                    progress.console.print(
                        f"  r{r} miss {name:8} {GENERATOR_LABELS[generator]:15} {step.achieved_rate:7,.0f}/s "
                        f"p50 {step.p50:6.3f} ms p99 {step.p99:7.3f} ms "
                        + (f"hits {hits:.1%} " if hits is not None else "")
                        + step.reason
                    )
                    progress.advance(task)
    return records, miss_runs


def search(
    r: int, generator: str, contender: Contender, profile: Profile, criteria: Criteria, gens: Generators, out: Console
) -> SearchRecord:
    foreign = ForeignCpu(contender.pids)

    def step(rate: float) -> Step:
        before = foreign.snapshot()
        result = gens.run(generator, contender.target, rate)
        result.foreign_cores = foreign.cores_since(before)
        return result

    def show(s: Step) -> None:
        out.print(
            f"  r{r} {contender.key:8} {GENERATOR_LABELS[generator]:15} {s.offered_rate:8,.0f}/s → "
            f"{s.achieved_rate:8,.0f}/s p50 {s.p50:6.2f} ms p99 {s.p99:7.2f} ms "
            f"other {s.foreign_cores:.2f} cores {s.reason}"
        )

    started = time.monotonic()
    before = statistics_of(contender.target) if contender.has_statistics else None
    result = search_max_rate(step, profile.plans[generator], criteria, on_step=show)
    after = statistics_of(contender.target) if contender.has_statistics else None
    hit_rate = hit_rate_between(before, after)
    return SearchRecord(r, generator, contender.key, result, hit_rate, time.monotonic() - started)


def hit_rate_between(before: dict[str, int] | None, after: dict[str, int] | None) -> float | None:
    if not before or not after or after["success"] <= before["success"]:
        return None
    return (after["cache_hit"] - before["cache_hit"]) / (after["success"] - before["success"])


# ---------------------------------------------------------------- results


def summarize(
    report: dict[str, Any], records: list[SearchRecord], miss_runs: list[dict[str, Any]], generators: list[str]
) -> None:
    report["searches"] = [record.to_dict() for record in records]
    report["miss_runs"] = miss_runs
    rounds = sorted({record.round for record in records})
    per_generator: dict[str, Any] = {}
    for generator in generators:
        mine = [rec for rec in records if rec.generator == generator]
        contenders = list(dict.fromkeys(rec.contender for rec in mine))
        per_round = {}
        for r in rounds:
            rates = {rec.contender: rec.max_rate for rec in mine if rec.round == r}
            miss = {
                run["path"]: run["step"]["latency_ms"].get("p50", math.inf)
                for run in miss_runs
                if run["round"] == r and run["generator"] == generator and run["step"]["latency_ms"]
            }
            per_round[str(r)] = {"rates": rates, "miss_p50_ms": miss, "ratios": round_ratios(rates, miss)}
        ratio_names = sorted({name for entry in per_round.values() for name in entry["ratios"]})
        ratios = {name: summarise(per_round[str(r)]["ratios"][name] for r in rounds) for name in ratio_names}
        rates_summary = {
            c: summarise(per_round[str(r)]["rates"].get(c) for r in rounds) for c in contenders
        }  # fmt: skip
        steady = {
            c: steadiness([rec for rec in mine if rec.contender == c], rates_summary[c]["median"] or 0.0)
            for c in contenders
        }
        hit_rates = {c: [rec.hit_rate for rec in mine if rec.contender == c] for c in contenders}
        per_generator[generator] = {
            "rounds": per_round,
            "max_rate": rates_summary,
            "ratios": ratios,
            "steadiness": steady,
            "hit_rates": hit_rates,
        }
    report["results"] = per_generator
    done = []
    for key, measure, target, comparison in TARGETS:
        row: dict[str, Any] = {"key": key, "measure": measure, "target": f"{comparison} {target:g}"}
        for generator in generators:
            value = per_generator[generator]["ratios"].get(key, {})
            row[generator] = {**value, "verdict": verdict(value.get("median"), target, comparison)}
        done.append(row)
    steady_row: dict[str, Any] = {"key": "steadiness", "measure": "no rate ≤ the reported max misses p99",
                                  "target": f"{len(rounds)} runs in a row"}  # fmt: skip
    for generator in generators:
        steady = per_generator[generator]["steadiness"]
        unsteady = sorted(c for c, s in steady.items() if not s["steady"])
        row_value = {"unsteady": unsteady, "verdict": "met" if not unsteady and len(rounds) >= 3 else "missed"}
        if len(rounds) < 3:
            row_value["verdict"] = "n/a (fewer than 3 rounds)"
        steady_row[generator] = row_value
    done.append(steady_row)
    report["done_list"] = done


def _fmt(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def print_tables(console: Console, report: dict[str, Any], generators: list[str]) -> None:
    results = report["results"]
    rates = Table(title=f"highest rate with p99 ≤ {report['p99_bound_ms']:g} ms (fraud, loopback), across rounds")
    rates.add_column("contender")
    for generator in generators:
        rates.add_column(escape(f"{GENERATOR_LABELS[generator]}: median [min–max]"), justify="right")
        rates.add_column("hits", justify="right")
        rates.add_column("steady", justify="center")
    contenders = list(dict.fromkeys(c for g in generators for c in results[g]["max_rate"]))
    for c in contenders:
        cells = [c]
        for generator in generators:
            s = results[generator]["max_rate"].get(c)
            hits = [h for h in results[generator]["hit_rates"].get(c, []) if h is not None]
            steady = results[generator]["steadiness"].get(c)
            cells.append(
                escape(f"{s['median']:,.0f} [{s['min']:,.0f}–{s['max']:,.0f}]/s") if s and s["median"] else "—"
            )
            cells.append(f"{min(hits):.1%}" if hits else "")
            cells.append("✓" if steady and steady["steady"] else "✗")
        rates.add_row(*cells)
    console.print(rates)

    done = Table(title=escape("issue 17 done list: each ratio within a round, median [range] across rounds"))
    done.add_column("measure")
    done.add_column("target")
    for generator in generators:
        done.add_column(GENERATOR_LABELS[generator], justify="right")
    for row in report["done_list"]:
        cells = [row["measure"], row["target"]]
        for generator in generators:
            value = row[generator]
            if row["key"] == "steadiness":
                unsteady = ", ".join(value["unsteady"]) or "all steady"
                cells.append(f"{unsteady} — {value['verdict']}")
            else:
                low, high = _fmt(value.get("min")), _fmt(value.get("max"))
                cells.append(escape(f"{_fmt(value.get('median'))} [{low}–{high}] — {value['verdict']}"))
        done.add_row(*cells)
    console.print(done)
    for generator in generators:
        ratios = results[generator]["ratios"]
        gateway, hop = (_fmt(ratios[k]["median"], 3) for k in ("miss_added_gateway_ms", "miss_added_hop_ms"))
        console.print(
            f"{GENERATOR_LABELS[generator]}: at the median a miss adds {gateway} ms through the gateway, "
            f"{hop} ms through one bare hop (each over the function alone)"
        )
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generators = list(report["results"])
    fig, axes = plt.subplots(1, len(generators) + 1, figsize=(6 * (len(generators) + 1), 4.8), squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, generator in zip(axes[0], generators, strict=False):
        for i, contender in enumerate(dict.fromkeys(s["contender"] for s in report["searches"])):
            color = f"C{i}"
            for search_ in (
                s for s in report["searches"] if s["generator"] == generator and s["contender"] == contender
            ):
                steps = sorted((s for s in search_["steps"] if s["latency_ms"]), key=lambda s: s["achieved_rate"])
                ax.plot(
                    [s["achieved_rate"] for s in steps], [s["latency_ms"]["p99"] for s in steps],
                    marker="o", linestyle=styles[(search_["round"] - 1) % len(styles)], color=color,
                    label=contender if search_["round"] == 1 else None,
                )  # fmt: skip
        ax.axhline(report["p99_bound_ms"], color="grey", linestyle="--", label="p99 bound")
        ax.set_xlabel("achieved requests/s")
        ax.set_ylabel("p99 latency, ms (log)")
        ax.set_yscale("log")
        ax.set_title(f"{GENERATOR_LABELS[generator]} (line style: round)")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    keys = [key for key, *_ in TARGETS]
    width = 0.8 / max(len(generators), 1)
    for j, generator in enumerate(generators):
        ratios = report["results"][generator]["ratios"]
        medians = [ratios.get(k, {}).get("median") or 0.0 for k in keys]
        ax.bar([i + j * width for i in range(len(keys))], medians, width=width, label=GENERATOR_LABELS[generator])
    for i, (_, _, target, _) in enumerate(TARGETS):
        ax.hlines(target, i - 0.1, i + 0.9, colors="black", linestyles="dotted")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))], ["L1÷echo", "Redis÷echo", "miss÷hop", "L1÷Triton",
                  "w2÷Triton"])  # fmt: skip
    ax.set_title("done-list ratios, median of rounds (dotted: target)")
    ax.legend(fontsize=8)
    fig.suptitle(report["command"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


if __name__ == "__main__":
    raise SystemExit(main())
