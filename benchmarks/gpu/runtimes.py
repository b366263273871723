"""ranker on every runtime and device this machine has, through real function processes (issue 19).

    bash benchmarks/gpu/run.sh [--device auto|cpu|cuda] [--quick] [--out DIR]

Variants (benchmarks/gpu/models.py): PyTorch on CUDA with CUDA graphs on and off, ONNX Runtime's CUDA and
TensorRT providers, PyTorch on the CPU, ONNX Runtime on the CPU. One that this machine lacks is reported
with the reason ("not in this build", "no CUDA device", "--device cpu") and costs no time. Each measured
variant gets its own model repository and `python -m edgeinfer.cli function --model-repo DIR --port P
--metrics-port M`, and, at batch 1, 8 and 64 (rows per request):

1. cold start: process spawn → the function's ready line, a few times (the last process stays up for the rest),
   with the cold start the function reports itself and every cold-start/load phase its /metrics exports;
2. single requests, one at a time (no queueing): p50/p99 end to end over gRPC, in an HDR histogram, and the
   server's own compute per batch (the mean of edgeinfer_function_compute_seconds over exactly those batches);
3. throughput with dynamic batching: `edgeinfer bench` (open loop, constant arrivals, latency from each
   request's intended send time, HDR histograms) at rates stepped up ×growth until a step fails, then bisected;
   a step passes with zero errors, ≥ 95 % of the offered rate achieved and p99 ≤ --p99-ms (10 ms). Bounded in
   steps and in time; a batch whose single requests' p50 already misses the bound is not searched;
4. the compute floor (benchmarks/gpu/floor.py): FLOPs per row, the FLOP/s each batch size reaches (server compute,
   end to end, and sustained at the best rate) and, on a GPU in the peak table, its share of the FP32 and TF32 peaks.

The time budget (--budget-s) is split over the measured variants and, within each, over the phases; the report
says where a phase was cut short. Writes gpu_runtimes.json (rewritten after every variant) and gpu_runtimes.png
to --out (default $OUT when set, else benchmarks/results/gpu/).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

GPU_DIR = Path(__file__).resolve().parent
REPO_ROOT = GPU_DIR.parents[1]
if str(REPO_ROOT) not in sys.path:
    # Appended: a PYTHONPATH that run.sh set (the working tree, or its shadow when links did not survive a copy)
    # keeps precedence for `edgeinfer`; the repository root is only needed for `benchmarks`.
    sys.path.append(str(REPO_ROOT))

from benchmarks.common.bench import (  # noqa: E402
    Criteria,
    LoadSettings,
    SearchPlan,
    Step,
    describe,
    run_step,
    search_max_rate,
)
from benchmarks.gpu import floor, models  # noqa: E402
from benchmarks.gpu.models import BATCHES, INPUT, MODEL, VARIANTS, Variant  # noqa: E402

READY_LINE = "edgeinfer function ready on "
LOOPBACK = "127.0.0.1"
METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
# /metrics samples that describe a start: cold start, load, warm-up, capture, CUDA context, phases.
PHASE_WORDS = ("cold_start", "phase", "load", "capture", "cuda", "startup", "context", "warm", "graph")
INPUT_WIDTH = 512
GPU_SHARE = 1.5
START_PHASE_METRIC = "edgeinfer_function_start_phase_seconds"  # functions/metrics.py FUNCTION_START_PHASE_SECONDS


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 150, highlight=False)


console = _console()


class BudgetSpent(Exception):
    """The phase's share of the time budget is used up."""


@dataclass(frozen=True, slots=True)
class Settings:
    quick: bool
    budget_s: float
    p99_ms: float
    cold_spawns: int
    latency_requests: int
    latency_seconds: float
    step_warmup_s: float
    step_duration_s: float
    growth: float
    bisect_steps: int
    max_steps: int
    bench_processes: int
    concurrency_limit: int
    timeout_ms: float
    ready_timeout_s: float
    cpu_threads: int | None


def settings_from(args: argparse.Namespace) -> Settings:
    quick = bool(args.quick)
    cpus = os.cpu_count() or 2
    return Settings(
        quick=quick,
        budget_s=args.budget_s if args.budget_s is not None else (150.0 if quick else 320.0),
        p99_ms=args.p99_ms,
        cold_spawns=args.cold_spawns if args.cold_spawns is not None else (1 if quick else 3),
        latency_requests=200 if quick else 1000,
        latency_seconds=1.5 if quick else 3.0,
        step_warmup_s=0.3 if quick else 0.5,
        step_duration_s=1.0 if quick else 2.0,
        growth=2.0,
        bisect_steps=1 if quick else 2,
        max_steps=4 if quick else 7,
        bench_processes=args.bench_processes or max(1, min(6, cpus // 2)),
        concurrency_limit=256,
        timeout_ms=1000.0,
        ready_timeout_s=120.0,
        cpu_threads=args.cpu_threads,
    )


# ---------------------------------------------------------------- processes and metrics


def child_env() -> dict[str, str]:
    """The environment of every process started here: `edgeinfer` importable from where this one imported it."""
    import edgeinfer

    tree = str(Path(edgeinfer.__file__).parent.parent)  # not resolved: a shadow tree of links stays itself
    paths = [tree, str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    seen: list[str] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(seen), "PYTHONUNBUFFERED": "1"}


def scrape(port: int) -> dict[str, float]:
    """Every sample of the function's /metrics: 'name{labels}' -> value."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = METRIC_LINE.match(line)
        if match:
            with contextlib.suppress(ValueError):
                samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def sample(samples: dict[str, float], name: str, model: str = MODEL) -> float:
    """Sum of `name` over every label set that names `model` (or has no model label)."""
    total = 0.0
    for key, value in samples.items():
        metric, _, labels = key.partition("{")
        if metric == name and (not labels or f'model="{model}"' in labels):
            total += value
    return total


def phases(samples: dict[str, float]) -> dict[str, float]:
    """The start-up samples the function exports (cold start, load, capture, ...), buckets left out."""
    out = {}
    for key, value in samples.items():
        metric = key.partition("{")[0]
        if not metric.startswith("edgeinfer_function_") or metric.endswith(("_bucket", "_created")):
            continue
        if any(word in metric for word in PHASE_WORDS):
            out[key] = value
    return out


def start_phases(samples: dict[str, float]) -> dict[str, float]:
    """The cold start by phase, from edgeinfer_function_start_phase_seconds{model, phase}: the process's own
    (process: start to first load; ready: start to ready) and the ranker's runtime's (torch_import, cuda_context,
    load, capture, warmup), in the order exported."""
    out = {}
    for key, value in samples.items():
        metric, _, labels = key.partition("{")
        if metric != START_PHASE_METRIC:
            continue
        model = re.search(r'model="([^"]*)"', labels)
        phase = re.search(r'phase="([^"]*)"', labels)
        if phase and (model is None or model.group(1) in ("", MODEL)):
            out[phase.group(1)] = value
    return out


def ready_fields(line: str) -> dict[str, float | str]:
    """`key=value` pairs of the ready line (cold_start_s=..., and any phase the function adds there)."""
    out: dict[str, float | str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            try:
                out[key] = float(value.rstrip("s")) if key.endswith("_s") else float(value)
            except ValueError:
                out[key] = value
    return out


@dataclass
class Function:
    """One `edgeinfer function` process for a variant's repository."""

    variant: Variant
    repo: Path
    logs: Path
    settings: Settings
    index: int = 0
    process: Any = None
    port: int = 0
    metrics_port: int = 0
    spawn_to_ready_s: float = 0.0
    ready: dict[str, float | str] = field(default_factory=dict)

    def start(self, until: float) -> Function:
        from benchmarks.common.procs import ManagedProcess, free_port

        self.port, self.metrics_port = free_port(), free_port()
        argv = [
            sys.executable, "-m", "edgeinfer.cli", "function",
            "--model-repo", str(self.repo), "--host", LOOPBACK, "--port", str(self.port),
            "--metrics-port", str(self.metrics_port), "--log-level", "WARNING",
        ]  # fmt: skip
        log = self.logs / f"{self.variant.key}-function-{self.index}.log"
        started = time.monotonic()
        self.process = ManagedProcess(self.variant.key, argv, log, env=child_env(), cwd=self.repo)
        # Never longer than the variant's share of the budget (at least 30 s): a hung start must not eat the run.
        deadline = started + min(self.settings.ready_timeout_s, max(30.0, until - started))
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            at = text.find(READY_LINE)
            if at >= 0 and "\n" in text[at:]:
                self.spawn_to_ready_s = time.monotonic() - started
                self.ready = ready_fields(text[at:].split("\n", 1)[0])
                return self
            if not self.process.alive():
                raise RuntimeError(f"function exited with {self.process.proc.returncode}:\n{self.process.log_tail(15)}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"function not ready after {time.monotonic() - started:.0f} s")
            time.sleep(0.005)

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5.0)


# ---------------------------------------------------------------- phases


def cold_starts(
    variant: Variant, repo: Path, logs: Path, s: Settings, until: float, variant_until: float
) -> tuple[Function, dict[str, Any]]:
    """Spawn → ready `s.cold_spawns` times (fewer once `until` comes); the last one is kept running."""
    spawns: list[dict[str, Any]] = []
    index = 0
    while True:
        function = Function(variant, repo, logs, s, index=index).start(variant_until)
        samples = scrape(function.metrics_port)
        by_phase = start_phases(samples)
        spawns.append(
            {
                "spawn_to_ready_s": function.spawn_to_ready_s,
                "ready_line": function.ready,
                "start_phases_s": by_phase,
                "start_metrics": phases(samples),
            }
        )
        shown = ", ".join(f"{name} {seconds:.3f}" for name, seconds in by_phase.items()) or "none exported"
        console.print(
            f"  cold start {index + 1}: spawn→ready {function.spawn_to_ready_s:.3f} s "
            f"(function's own: {function.ready.get('cold_start_s', '?')} s; phases, s: {shown})"
        )
        index += 1
        last = index >= s.cold_spawns or time.monotonic() + function.spawn_to_ready_s * 1.5 > until
        if last:
            break
        function.stop()
    times = [sp["spawn_to_ready_s"] for sp in spawns]
    summary = {
        "spawns": spawns,
        "count": len(spawns),
        "spawn_to_ready_median_s": statistics.median(times),
        "spawn_to_ready_min_s": min(times),
        "spawn_to_ready_max_s": max(times),
        "function_cold_start_median_s": _median([sp["ready_line"].get("cold_start_s") for sp in spawns]),
        "start_phases_median_s": {
            name: statistics.median(sp["start_phases_s"][name] for sp in spawns if name in sp["start_phases_s"])
            for name in spawns[-1]["start_phases_s"]
        },
        "note": "spawn→ready: Popen to the ready line on stdout; function_cold_start: the function's own figure "
        "(its process age at ready, from /proc); start_phases: edgeinfer_function_start_phase_seconds (process: "
        "start to first load, ready: start to ready, and the runtime's torch_import, cuda_context, load, capture, "
        "warmup); start_metrics: every start-up sample of /metrics",
    }
    return function, summary


def _median(values: Sequence[Any]) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return statistics.median(numbers) if numbers else None


def single_requests(function: Function, batch: int, s: Settings, until: float) -> dict[str, Any]:
    """One request at a time with `batch` rows: end-to-end latency (HDR histogram, µs) and server compute per batch."""
    import grpc
    import numpy as np

    from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
    from edgeinfer.protocol.tensors import build_request

    try:
        from hdrh.histogram import HdrHistogram

        histogram: Any = HdrHistogram(1, 60_000_000, 3)
    except ImportError:  # check_env.py makes hdrhistogram required; this keeps the phase usable without it
        histogram = None
    x = np.random.default_rng(batch).standard_normal((batch, INPUT_WIDTH)).astype(np.float32)
    request = build_request(MODEL, {INPUT: x})
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    times_us: list[float] = []
    with grpc.insecure_channel(function.target, options=options) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        for _ in range(5):  # the channel and the batch's path, not measured
            stub.ModelInfer(request, timeout=30)
        before = scrape(function.metrics_port)
        stop_at = min(until, time.monotonic() + s.latency_seconds)
        while len(times_us) < s.latency_requests and (len(times_us) < 20 or time.monotonic() < stop_at):
            begin = time.perf_counter()
            stub.ModelInfer(request, timeout=30)
            times_us.append((time.perf_counter() - begin) * 1e6)
        after = scrape(function.metrics_port)
    if histogram is not None:
        for value in times_us:
            histogram.record_value(max(1, round(value)))
    name = "edgeinfer_function_compute_seconds"
    batches = sample(after, f"{name}_count") - sample(before, f"{name}_count")
    compute = sample(after, f"{name}_sum") - sample(before, f"{name}_sum")
    rows = sample(after, "edgeinfer_function_batch_size_sum") - sample(before, "edgeinfer_function_batch_size_sum")

    def pct(q: float) -> float:
        if histogram is not None:
            return float(histogram.get_value_at_percentile(q)) / 1000
        ordered = sorted(times_us)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))] / 1000

    return {
        "batch": batch,
        "requests": len(times_us),
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": max(times_us) / 1000,
        "mean_ms": statistics.fmean(times_us) / 1000,
        "server_batches": batches,
        "server_rows_per_batch": rows / batches if batches else None,
        "server_compute_mean_ms": compute / batches * 1000 if batches else None,
    }


def bench_step(function: Function, rate: float, batch: int, s: Settings, logs: Path) -> tuple[Step, float]:
    """One `edgeinfer bench` run at `rate` requests/s of `batch` rows, and the server's mean executed batch."""
    load = LoadSettings(
        duration_s=s.step_duration_s,
        warmup_s=s.step_warmup_s,
        processes=s.bench_processes,
        concurrency_limit=s.concurrency_limit,
        timeout_ms=s.timeout_ms,
        inputs=(f"{INPUT}:FP32:-1,{INPUT_WIDTH}",),
        batch_size=batch,
    )
    before = scrape(function.metrics_port)
    step = run_step(function.target, MODEL, rate, load, logs, env=child_env())
    after = scrape(function.metrics_port)
    if step.errors.get("BENCH_FAILED"):
        return step, math.nan
    batches = sample(after, "edgeinfer_function_batch_size_count") - sample(
        before, "edgeinfer_function_batch_size_count"
    )
    rows = sample(after, "edgeinfer_function_batch_size_sum") - sample(before, "edgeinfer_function_batch_size_sum")
    # The mean rows per batch the server executed during the step (its warm-up included).
    return step, (rows / batches if batches else math.nan)


def throughput(
    function: Function, batch: int, single: dict[str, Any], s: Settings, logs: Path, until: float
) -> dict[str, Any]:
    """Highest open-loop rate of `batch`-row requests whose step passes (p99 ≤ s.p99_ms), bounded in steps and time."""
    criteria = Criteria(p99_ms=s.p99_ms)
    if single["p50_ms"] > s.p99_ms:
        # Half the requests miss the bound with no queue at all: no rate can hold p99 within it.
        return {
            "searched": False,
            "reason": f"single requests already take p50 {single['p50_ms']:.2f} ms > {s.p99_ms:g} ms",
            "best": None,
            "steps": [],
        }
    serial = 1000.0 / max(single["p50_ms"], 1e-3)
    plan = SearchPlan(
        # Serial capacity (one request at a time) as the start: dynamic batching should at least reach it.
        start_rate=max(5.0, serial),
        growth=s.growth,
        max_rate=2000.0 * s.bench_processes,
        min_rate=5.0,
        bisect_steps=s.bisect_steps,
        tolerance=0.1,
        retries=0,
    )
    extra: list[dict[str, Any]] = []
    estimate = s.step_warmup_s + s.step_duration_s + 2.0
    truncated = ""

    def run(rate: float) -> Step:
        nonlocal estimate
        if len(extra) >= s.max_steps:
            raise BudgetSpent(f"{s.max_steps} steps")
        if time.monotonic() + estimate > until:
            raise BudgetSpent("time share spent")
        step, rows_per_batch = bench_step(function, rate, batch, s, logs)
        estimate = max(estimate, step.wall_s)
        extra.append({"rows_per_batch": rows_per_batch})
        return step

    steps: list[Step] = []

    def on_step(step: Step) -> None:
        steps.append(step)
        note = extra[len(steps) - 1]
        note.update(step.to_dict())
        mark = "[green]pass[/]" if step.passed else f"[red]fail[/] ({escape(step.reason)})"
        console.print(
            f"    b{batch} {step.offered_rate:>8,.0f}/s offered → {step.achieved_rate:>8,.0f}/s, "
            f"p99 {step.p99:7.2f} ms, rows/batch {note['rows_per_batch']:.1f}: {mark}"
        )

    try:
        result = search_max_rate(run, plan, criteria, on_step=on_step)
        best, first_failure = result.best, result.first_failure
    except BudgetSpent as exc:
        truncated = str(exc)
        passing = [st for st in steps if st.passed]
        best = max(passing, key=lambda st: st.offered_rate) if passing else None
        failing = [
            st.offered_rate for st in steps if not st.passed and (best is None or st.offered_rate > best.offered_rate)
        ]
        first_failure = min(failing) if failing else None
    best_note = extra[steps.index(best)] if best is not None else None
    return {
        "searched": True,
        "plan": asdict(plan),
        "criteria": asdict(criteria),
        "best": (
            {
                "offered_rate": best.offered_rate,
                "achieved_rate": best.achieved_rate,
                "rows_per_s": best.achieved_rate * batch,
                "p50_ms": best.p50,
                "p99_ms": best.p99,
                "rows_per_batch": best_note["rows_per_batch"] if best_note else None,
            }
            if best is not None
            else None
        ),
        "first_failure": first_failure,
        "truncated": truncated,
        "steps_summary": describe(steps),
        "steps": extra,
    }


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    args: argparse.Namespace
    settings: Settings
    out: Path
    work: Path
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    report: dict[str, Any] = field(default_factory=dict)

    def write(self, complete: bool) -> Path:
        self.report["complete"] = complete
        self.report["finished_at"] = dt.datetime.now(dt.UTC).isoformat()
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "gpu_runtimes.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        tmp.replace(path)
        return path


def probe() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(GPU_DIR / "probe.py")], capture_output=True, text=True, env=child_env(), timeout=120
    )
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-3:]}
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def availability(variant: Variant, found: dict[str, Any], device: str) -> str:
    """'' when the variant can run here, else why not."""
    if device != "auto" and variant.device != device:
        return f"--device {device}"
    if variant.runtime == "onnxruntime":
        ort = found.get("onnxruntime", {})
        if not ort.get("available"):
            return f"onnxruntime does not import: {ort.get('error', '?')}"
        if variant.provider not in ort.get("providers", []):
            return f"{variant.provider} is not in this build (onnxruntime {ort.get('version')}: {ort.get('providers')})"
        return ""
    torch = found.get("torch", {})
    if not torch.get("available"):
        return f"torch does not import: {torch.get('error', '?')}"
    if variant.gpu and not torch.get("cuda_available"):
        return f"no CUDA device (torch {torch.get('version')}: torch.cuda.is_available() is False)"
    return ""


def build_files(run: Run, needed: set[str]) -> dict[str, Any]:
    """ranker.onnx always; ranker.pt2 (and the parity check) when a PyTorch variant runs."""
    started = time.perf_counter()
    onnx_bytes = models.ranker_onnx()
    files = {"onnx": run.work / "files" / "model.onnx"}
    files["onnx"].parent.mkdir(parents=True, exist_ok=True)
    files["onnx"].write_bytes(onnx_bytes)
    info: dict[str, Any] = {"onnx_s": time.perf_counter() - started, "onnx_bytes": len(onnx_bytes)}
    if "pytorch" in needed:
        files["pt2"] = run.work / "files" / "model.pt2"
        try:
            info["pt2"] = models.write_pt2(onnx_bytes, files["pt2"], max_batch_size=max(BATCHES))
            info["parity"] = models.parity(files["onnx"], files["pt2"])
        except Exception as exc:  # reported; the PyTorch variants then fail with it
            info["pt2_error"] = f"{type(exc).__name__}: {exc}"
            files.pop("pt2")
    info["files"] = {k: str(v) for k, v in files.items()}
    return info


def measure_variant(
    run: Run, variant: Variant, files: dict[str, Path], until: float, peak: floor.Peak | None
) -> dict[str, Any]:
    s = run.settings
    layers = floor.ranker_layers()
    entry: dict[str, Any] = {"status": "measuring", "budget_s": until - time.monotonic()}
    if variant.runtime == "pytorch" and "pt2" not in files:
        return {"status": "failed", "reason": "no model.pt2 (see setup.pt2_error)"}
    repo = models.write_repository(variant, run.work / "repos" / variant.key, files, s.cpu_threads)
    entry["config"] = models.ranker_config(variant, repo, s.cpu_threads)
    logs = run.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    function = None
    try:
        share = until - begin
        function, entry["cold_start"] = cold_starts(variant, repo, logs, s, begin + 0.25 * share, until)
        entry["latency"] = {}
        for batch in BATCHES:
            entry["latency"][str(batch)] = single = single_requests(function, batch, s, until)
            console.print(
                f"  single b{batch}: p50 {single['p50_ms']:.3f} ms, p99 {single['p99_ms']:.3f} ms "
                f"({single['requests']} requests), server compute {_fmt(single['server_compute_mean_ms'], 3)} ms/batch"
            )
        entry["throughput"] = {}
        for i, batch in enumerate(BATCHES):
            share_until = time.monotonic() + (until - time.monotonic()) / (len(BATCHES) - i)
            found = throughput(function, batch, entry["latency"][str(batch)], s, logs, share_until)
            entry["throughput"][str(batch)] = found
            best = found.get("best")
            console.print(
                f"  throughput b{batch}: "
                + (
                    f"{best['achieved_rate']:,.0f} req/s = {best['rows_per_s']:,.0f} rows/s, "
                    f"p99 {best['p99_ms']:.2f} ms"
                    if best
                    else f"none passed ({found.get('reason') or found.get('steps_summary')})"
                )
                + (f" (search cut short: {found['truncated']})" if found.get("truncated") else "")
            )
        entry["floor"] = {}
        for batch in BATCHES:
            single = entry["latency"][str(batch)]
            compute_s = (single["server_compute_mean_ms"] or 0) / 1000 or None
            best = entry["throughput"][str(batch)].get("best")
            gpu_peak = peak if variant.gpu else None
            entry["floor"][str(batch)] = {
                "server_compute": floor.achieved(layers, batch, compute_s, gpu_peak),
                "end_to_end_p50": floor.achieved(layers, batch, single["p50_ms"] / 1000, gpu_peak),
                "sustained_flop_per_s": best["rows_per_s"] * floor.flops_per_row(layers) if best else None,
                "sustained_gflop_per_s": best["rows_per_s"] * floor.flops_per_row(layers) / 1e9 if best else None,
            }
        entry["status"] = "measured"
    except Exception as exc:
        entry["status"] = "failed"
        entry["reason"] = f"{type(exc).__name__}: {exc}"
        console.print(f"  [red]failed[/]: {escape(entry['reason'])}")
    finally:
        if function is not None:
            function.stop()
        entry["wall_s"] = time.monotonic() - begin
    return entry


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="which variants to run")
    parser.add_argument("--quick", action="store_true", help="fewer spawns, shorter steps, fewer rates")
    parser.add_argument("--out", type=Path, default=None, help="default: $OUT, else benchmarks/results/gpu")
    parser.add_argument("--budget-s", type=float, default=None, help="time for everything (320; quick 150)")
    parser.add_argument("--p99-ms", type=float, default=10.0, help="p99 bound of the throughput search")
    parser.add_argument("--cold-spawns", type=int, default=None, help="cold starts per variant (3; quick 1)")
    parser.add_argument("--bench-processes", type=int, default=None, help="load generator processes")
    parser.add_argument(
        "--cpu-threads", type=int, default=None, help="intra_op_threads for every variant (default: the shipped 1)"
    )
    parser.add_argument(
        "--variants", default="", help="comma-separated subset of: " + ",".join(v.key for v in VARIANTS)
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch directory (repos, logs)")
    args = parser.parse_args(argv)
    s = settings_from(args)
    deadline = time.monotonic() + s.budget_s
    out = args.out or Path(os.environ.get("OUT") or REPO_ROOT / "benchmarks" / "results" / "gpu")
    work = Path(tempfile.mkdtemp(prefix="edgeinfer-gpu-runtimes-"))
    run = Run(args, s, out, work)
    signal.signal(signal.SIGTERM, _terminate)
    command = os.environ.get("EDGEINFER_GPU_COMMAND") or "python benchmarks/gpu/runtimes.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    run.report = {
        "benchmark": "gpu_runtimes",
        "issue": 19,
        "command": command.strip(),
        "started_at": run.started.isoformat(),
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": asdict(s),
        "variants": {},
    }
    wanted = {v.strip() for v in args.variants.split(",") if v.strip()}
    complete = False
    console.print(f"[bold]gpu runtimes[/] (issue 19): device {args.device}, budget {s.budget_s:g} s, out {out}")
    try:
        with console.status("probing torch and onnxruntime"):
            found = probe()
        run.report["probe"] = found
        torch_info = found.get("torch", {})
        ort_info = found.get("onnxruntime", {})
        console.print(
            f"torch {torch_info.get('version', '-')} cuda={torch_info.get('cuda_available')} "
            f"{torch_info.get('device_name', '')} cap={torch_info.get('capability', '')}; "
            f"onnxruntime {ort_info.get('version', '-')} providers={ort_info.get('providers')}"
        )
        device_name = str(torch_info.get("device_name", "")) if torch_info.get("cuda_available") else ""
        peak = floor.peak_for(device_name) if device_name else None
        layers = floor.ranker_layers()
        run.report["model"] = floor.describe_model(layers)
        run.report["peak"] = floor.peak_dict(peak, device_name) if device_name else {"device": "", "known": False}
        console.print(
            f"ranker {'-'.join(map(str, layers))}: {floor.flops_per_row(layers) / 1e6:.2f} MFLOP per row, "
            f"weights {floor.weight_bytes(layers) / 2**20:.1f} MiB"
            + (
                f"; peak {peak.name}: FP32 {peak.fp32_flops / 1e12:g} TFLOP/s, "
                f"TF32 dense {peak.tf32_dense_flops / 1e12:g}"
                if peak
                else ""
            )
        )
        plan = []
        for variant in VARIANTS:
            why = (
                "not chosen (--variants)"
                if wanted and variant.key not in wanted
                else availability(variant, found, args.device)
            )
            if why:
                run.report["variants"][variant.key] = {**_describe(variant), "status": "skipped", "reason": why}
                console.print(f"{variant.label}: [yellow]skipped[/] ({escape(why)})")
            else:
                plan.append(variant)
        with console.status(
            "building ranker.onnx" + (" and ranker.pt2" if any(v.runtime == "pytorch" for v in plan) else "")
        ):
            run.report["setup"] = build_files(run, {v.runtime for v in plan})
        files = {k: Path(v) for k, v in run.report["setup"]["files"].items()}
        if "parity" in run.report["setup"]:
            console.print(f"ranker.pt2 against ranker.onnx: {run.report['setup']['parity']}")
        run.write(complete=False)
        for i, variant in enumerate(plan):
            # A GPU variant gets 1.5 shares of what is left, a CPU one 1: the accelerator's figures are the point.
            weights = [GPU_SHARE if v.gpu else 1.0 for v in plan[i:]]
            until = time.monotonic() + (deadline - time.monotonic()) * weights[0] / sum(weights)
            console.print(f"[bold]{variant.label}[/] ({until - time.monotonic():.0f} s)")
            entry = measure_variant(run, variant, files, until, peak)
            run.report["variants"][variant.key] = {**_describe(variant), **entry}
            run.write(complete=False)
        complete = True
    finally:
        # Also when stopped (SIGTERM from run.sh's timeout, Ctrl-C): what was measured is written and drawn.
        path = run.write(complete=complete)
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            console.print(f"scratch kept: {work}")
        try:
            render(run.report)
            png = path.with_suffix(".png")
            plot(run.report, png)
            console.print(f"report: {path}\nplot:   {png}")
        except Exception as exc:
            console.print(f"[red]drawing the report failed[/]: {type(exc).__name__}: {exc}")
    measured = [v for v in run.report["variants"].values() if v.get("status") == "measured"]
    failed = [k for k, v in run.report["variants"].items() if v.get("status") == "failed"]
    return 0 if measured and not failed else 1


def _describe(variant: Variant) -> dict[str, Any]:
    return {
        "label": variant.label,
        "runtime": variant.runtime,
        "device": variant.device,
        "provider": variant.provider or None,
        "cuda_graphs": variant.cuda_graphs,
    }


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------- output


def render(report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"ranker per runtime and device (throughput at p99 ≤ {report['settings']['p99_ms']:g} ms)")
    for name in (
        "variant",
        "cold start (median)",
        *(f"b{b} p50/p99 ms" for b in BATCHES),
        *(f"b{b} max req/s" for b in BATCHES),
    ):
        table.add_column(name, justify="left" if name == "variant" else "right")
    for entry in report["variants"].values():
        if entry.get("status") != "measured":
            continue
        cold = f"{entry['cold_start']['spawn_to_ready_median_s']:.2f} s"
        lat = [f"{entry['latency'][str(b)]['p50_ms']:.2f}/{entry['latency'][str(b)]['p99_ms']:.2f}" for b in BATCHES]
        rates = []
        for b in BATCHES:
            best = entry["throughput"][str(b)].get("best")
            rates.append(f"{best['achieved_rate']:,.0f}" if best else "-")
        table.add_row(entry["label"], cold, *lat, *rates)
    console.print(table)
    for key, entry in report["variants"].items():
        if entry.get("status") != "measured":
            console.print(f"{entry.get('label', key)}: {entry.get('status')}: {entry.get('reason', '')}", markup=False)
    model = report.get("model", {})
    peak = report.get("peak", {})
    floor_table = Table(
        title=f"compute floor: {model.get('flops_per_row', 0) / 1e6:.2f} MFLOP/row"
        + (f"; {peak.get('name')} FP32 {peak.get('fp32_flops', 0) / 1e12:g} TFLOP/s (primary), TF32 dense "
           f"{peak.get('tf32_dense_flops', 0) / 1e12:g}" if peak.get("known") else "; no GPU peak (FLOP/s only)")
    )  # fmt: skip
    for name in (
        "variant",
        "batch",
        "server compute ms",
        "GFLOP/s",
        "% FP32 peak",
        "% TF32 peak",
        "× roofline floor",
        "sustained GFLOP/s",
    ):
        floor_table.add_column(name, justify="left" if name == "variant" else "right")
    for entry in report["variants"].values():
        if entry.get("status") != "measured":
            continue
        for b in BATCHES:
            f = entry["floor"][str(b)]
            sc = f["server_compute"]
            floor_table.add_row(
                entry["label"],
                str(b),
                _fmt(sc["seconds"] * 1000 if sc["seconds"] else None, 3),
                _fmt(sc["flop_per_s"] / 1e9 if sc.get("flop_per_s") else None, 1),
                _fmt(sc["share_of_fp32_peak"] * 100 if "share_of_fp32_peak" in sc else None, 2),
                _fmt(sc["share_of_tf32_dense_peak"] * 100 if "share_of_tf32_dense_peak" in sc else None, 2),
                _fmt(sc.get("times_fp32_roofline_floor"), 1),
                _fmt(f["sustained_flop_per_s"] / 1e9 if f["sustained_flop_per_s"] else None, 1),
            )
    console.print(floor_table)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    measured = {k: v for k, v in report["variants"].items() if v.get("status") == "measured"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    (cold, lat), (rate, flops) = axes
    names = list(measured)
    labels = [measured[k]["label"].replace(", ", "\n") for k in names]
    if names:
        # Stacked: the process's start to its first load, the runtime's phases, and the rest up to ready.
        order = ["process", "torch_import", "cuda_context", "load", "capture", "warmup"]
        bottoms = [0.0] * len(names)
        for phase in order:
            values = [measured[k]["cold_start"].get("start_phases_median_s", {}).get(phase, 0.0) for k in names]
            if any(values):
                cold.bar(range(len(names)), values, bottom=bottoms, label=phase)
                bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        medians = [measured[k]["cold_start"]["spawn_to_ready_median_s"] for k in names]
        rest = [max(0.0, m - b) for m, b in zip(medians, bottoms, strict=True)]
        cold.bar(range(len(names)), rest, bottom=bottoms, color="lightgray", label="rest, to spawn→ready")
        cold.legend(fontsize=7)
        for i, k in enumerate(names):
            spawns = [sp["spawn_to_ready_s"] for sp in measured[k]["cold_start"]["spawns"]]
            cold.scatter([i] * len(spawns), spawns, color="black", s=12, zorder=3)
        cold.set_xticks(range(len(names)), labels, fontsize=8)
    cold.set_ylabel("spawn → ready (s); dots: each spawn")
    cold.set_title("cold start")
    for k in names:
        p50 = [measured[k]["latency"][str(b)]["p50_ms"] for b in BATCHES]
        p99 = [measured[k]["latency"][str(b)]["p99_ms"] for b in BATCHES]
        line = lat.plot(BATCHES, p50, marker="o", label=f"{measured[k]['label']} p50")[0]
        lat.plot(BATCHES, p99, marker="x", linestyle="--", color=line.get_color(), label=f"{measured[k]['label']} p99")
    lat.axhline(report["settings"]["p99_ms"], color="red", linewidth=1, linestyle=":", label="p99 bound")
    lat.set_xscale("log", base=2)
    lat.set_yscale("log")
    lat.yaxis.set_major_formatter(ScalarFormatter())
    lat.set_xlabel("rows per request")
    lat.set_ylabel("single request, end to end (ms)")
    lat.set_title("one request at a time")
    lat.legend(fontsize=7)
    width = 0.8 / max(1, len(names))
    for i, k in enumerate(names):
        values = []
        for b in BATCHES:
            best = measured[k]["throughput"][str(b)].get("best")
            values.append(best["rows_per_s"] if best else 0.0)
        rate.bar([j + i * width for j in range(len(BATCHES))], values, width=width, label=measured[k]["label"])
    rate.set_xticks([j + 0.4 - width / 2 for j in range(len(BATCHES))], [f"batch {b}" for b in BATCHES])
    rate.set_ylabel(f"rows/s at p99 ≤ {report['settings']['p99_ms']:g} ms (0: none passed)")
    rate.set_title("throughput, dynamic batching, open loop")
    rate.legend(fontsize=7)
    for k in names:
        values = [measured[k]["floor"][str(b)]["server_compute"].get("flop_per_s") or math.nan for b in BATCHES]
        flops.plot(BATCHES, [v / 1e9 for v in values], marker="o", label=measured[k]["label"])
    peak = report.get("peak", {})
    if peak.get("known"):
        flops.axhline(
            peak["fp32_flops"] / 1e9, color="red", linestyle="--", linewidth=1, label=f"{peak['name']} FP32 peak"
        )
        flops.axhline(
            peak["tf32_dense_flops"] / 1e9,
            color="purple",
            linestyle=":",
            linewidth=1,
            label=f"{peak['name']} TF32 dense",
        )
    flops.set_xscale("log", base=2)
    flops.set_yscale("log")
    flops.yaxis.set_major_formatter(ScalarFormatter())
    flops.set_xlabel("rows per batch")
    flops.set_ylabel("GFLOP/s (server compute per batch)")
    flops.set_title(f"compute floor: {report.get('model', {}).get('flops_per_row', 0) / 1e6:.1f} MFLOP/row")
    flops.legend(fontsize=7)
    skipped = [
        f"{v.get('label', k)}: {v.get('reason', '')}"
        for k, v in report["variants"].items()
        if v.get("status") != "measured"
    ]
    if skipped:
        fig.text(0.01, 0.005, "not measured — " + "; ".join(s[:90] for s in skipped), fontsize=6, wrap=True)
    fig.suptitle(f"ranker per runtime and device ({report.get('peak', {}).get('device') or 'CPU only'})")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
