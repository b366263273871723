"""edgeinfer functions vs. peer model servers, on the same box, the same models, the same load generator.

    python benchmarks/functions_vs_peers.py [--quick] [--servers edgeinfer,mlserver,kserve,echo]
        [--models fraud,ranker] [--report benchmarks/results/functions_vs_peers.json]

Servers, each bound to 127.0.0.1 on free ports and started fresh for each model:

- edgeinfer: `edgeinfer function` on the repository `edgeinfer examples` writes, config.yaml as
  shipped (dynamic batching on); for ranker also a copy with `dynamic_batching.enabled: false`.
- MLServer (pinned below, own venv): benchmarks/peers/mlserver_onnx.py, an ONNX Runtime MLModel.
  settings.json sets host 127.0.0.1 (gRPC and the REST server that cannot be turned off, on a
  spare port) and metrics_endpoint null (no metrics server); no adaptive batching.
- KServe (pinned below, own venv): benchmarks/peers/kserve_onnx.py, an ONNX Runtime kserve.Model
  in kserve.ModelServer. KServe hard-codes `[::]` for gRPC and `0.0.0.0` for REST; the launcher
  rebinds both to 127.0.0.1 (see its docstring). No batching, latency logging off.
- echo: benchmarks/common/echo_server.py, a grpc.aio server answering a fixed reply without parsing
  the request: the ceiling for a Python gRPC server driven by this load generator on this box.

Every ONNX Runtime session uses one intra-op thread (the edgeinfer example config's setting).
The load generator is `edgeinfer bench` (open loop, constant arrivals, latency from each request's
intended send time), identical settings for every server: raw tensor payloads from `--input`
(no metadata round trip), a concurrency cap so an overloaded step cannot flood a server for the
next one, and a per-request deadline. It runs on the same 2 cores as the server; one client
process tops out first (~1,000 req/s with p99 under 10 ms against the echo server), so the default
is `--processes 2`, letting the OS spread client and server over both cores.

For each (model, server) the highest passing offered rate is searched: rates step up
geometrically until a step fails, then bisect. A step passes with zero errors, achieved
>= 95 % of offered and p99 <= the model's bound (fraud 10 ms, ranker 50 ms by default).
The box is shared and small, so each step first waits for a quiet box (--quiet-cores) and
records how many CPUs other processes took while it ran ("other work"); a failing step that
other work may explain is rerun once. Ratios compare servers measured in the same round; with
--rounds N every server is measured N times (order reversed every other round), each ratio is
computed within each round, and the report gives its median and range across rounds
(benchmarks/common/rounds.py), never a ratio of two servers' best rounds, which could mix rounds.
Results: a table on stdout, a JSON report (--report, rewritten after every server so an
interrupted run keeps its data) and a p99-vs-load PNG next to it. `--recompute` rewrites an
existing report's ratios and summary from its per-round runs, measuring nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from rich.console import Console
from rich.table import Table

from benchmarks.common.bench import (
    REPO_ROOT,
    Criteria,
    LoadSettings,
    SearchPlan,
    Step,
    describe,
    edgeinfer_command,
    run_step,
    search_max_rate,
)
from benchmarks.common.cpu import ForeignCpu
from benchmarks.common.procs import (
    LOOPBACK,
    ManagedProcess,
    ServerFailed,
    ensure_venv,
    free_port,
    is_loopback,
    listening_addresses,
    package_versions,
    server_ready,
    wait_ready,
)
from benchmarks.common.rounds import rates_by_round, ratios_across_rounds, ratios_from_report

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / "peers"
ECHO_SERVER = BENCH_DIR / "common" / "echo_server.py"
DEFAULT_REPORT = BENCH_DIR / "results" / "functions_vs_peers.json"

# Versions that install on Python 3.11 here. uvloop 0.22 breaks MLServer's inference worker
# processes (MLServer#2286), hence the uvloop pin; onnxruntime matches the project's venv.
MLSERVER_REQUIREMENTS = (
    "mlserver==1.7.1",
    "uvloop==0.21.0",
    "onnxruntime==1.32.0",
    "numpy==2.4.6",
    "grpcio==1.85.3",
)
KSERVE_REQUIREMENTS = (
    "kserve==0.21.0",
    "onnxruntime==1.32.0",
    "numpy==2.4.6",
    "grpcio==1.85.3",
)
VERSION_PACKAGES = ("onnxruntime", "grpcio", "protobuf", "numpy", "uvloop")

SERVERS = ("edgeinfer", "mlserver", "kserve", "echo")
MODELS = ("fraud", "ranker")
READY_TIMEOUT_S = 180.0

# Wide enough for the tables when stdout is a pipe or a file (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 150)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    input: str  # NAME:DATATYPE:DIMS for `edgeinfer bench --input`
    input_name: str
    input_dims: tuple[int, ...]
    output_name: str
    output_dims: tuple[int, ...]
    p99_ms: float
    start_rate: float
    timeout_ms: float


def model_specs(args: argparse.Namespace) -> dict[str, ModelSpec]:
    return {
        "fraud": ModelSpec(
            "fraud", "features:FP32:-1,30", "features", (-1, 30), "probabilities", (-1, 2),
            p99_ms=args.fraud_p99_ms, start_rate=200.0, timeout_ms=1000.0,
        ),
        "ranker": ModelSpec(
            "ranker", "embedding:FP32:-1,512", "embedding", (-1, 512), "scores", (-1, 1000),
            p99_ms=args.ranker_p99_ms, start_rate=50.0, timeout_ms=2000.0,
        ),
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Contender:
    """One server configuration measured on one model."""

    key: str  # unique per model, e.g. "edgeinfer", "edgeinfer-nobatch"
    server: str  # one of SERVERS
    label: str
    batching: bool | None = None  # edgeinfer only


def contenders(model: str, servers: Sequence[str]) -> list[Contender]:
    out: list[Contender] = []
    # The ceiling first, then the contenders, each started fresh.
    if "echo" in servers:
        out.append(Contender("echo", "echo", "echo (ceiling)"))
    if "edgeinfer" in servers:
        out.append(Contender("edgeinfer", "edgeinfer", "edgeinfer (batching on)", batching=True))
        if model == "ranker":
            out.append(Contender("edgeinfer-nobatch", "edgeinfer", "edgeinfer (batching off)", batching=False))
    if "mlserver" in servers:
        out.append(Contender("mlserver", "mlserver", "MLServer"))
    if "kserve" in servers:
        out.append(Contender("kserve", "kserve", "KServe"))
    return out


@dataclass(slots=True)
class RunResult:
    model: str
    contender: Contender
    p99_bound_ms: float
    round: int = 1
    steps: list[Step] = field(default_factory=list)
    best: Step | None = None
    first_failure: float | None = None
    listeners: list[str] = field(default_factory=list)
    ready_s: float = 0.0
    loadavg_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    loadavg_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    error: str = ""

    @property
    def max_rate(self) -> float:
        return self.best.achieved_rate if self.best else 0.0

    @property
    def foreign_cores(self) -> float:
        """Other work on the box, in CPUs, averaged over this run's steps (weighted by their length)."""
        wall = sum(s.wall_s for s in self.steps)
        return sum(s.foreign_cores * s.wall_s for s in self.steps) / wall if wall else 0.0

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "model": self.model,
            "contender": self.contender.key,
            "server": self.contender.server,
            "label": self.contender.label,
            "batching": self.contender.batching,
            "round": self.round,
            "p99_bound_ms": self.p99_bound_ms,
            "max_offered_rate": best.offered_rate if best else None,
            "max_achieved_rate": best.achieved_rate if best else None,
            "p50_ms_at_max": best.p50 if best else None,
            "p99_ms_at_max": best.p99 if best else None,
            "first_failing_rate": self.first_failure,
            "steps": [s.to_dict() for s in self.steps],
            "listeners": self.listeners,
            "foreign_cores_mean": self.foreign_cores,
            "ready_s": self.ready_s,
            "loadavg_before": list(self.loadavg_before),
            "loadavg_after": list(self.loadavg_after),
            "error": self.error,
        }


class Environment:
    """Paths, venvs and model repositories shared by every run."""

    def __init__(self, args: argparse.Namespace, specs: dict[str, ModelSpec]) -> None:
        self.args = args
        self.specs = specs
        self.work: Path = Path(args.work_dir).resolve()
        self.venvs: Path = Path(args.venv_dir).resolve()
        self.logs = self.work / "logs"
        self.examples = self.work / "examples"
        self.pythons: dict[str, Path] = {}
        self.versions: dict[str, dict[str, str]] = {}

    def prepare(self, servers: Sequence[str], models: Sequence[str]) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        self.logs.mkdir(parents=True)
        self._write_examples()
        for name, requirements in (("mlserver", MLSERVER_REQUIREMENTS), ("kserve", KSERVE_REQUIREMENTS)):
            if name not in servers:
                continue
            path = self.venvs / name
            with console.status(f"[bold]{name}[/]: virtualenv {path} (pip install, can take minutes)"):
                self.pythons[name] = ensure_venv(path, requirements, self.logs / f"venv-{name}.log")
            self.versions[name] = package_versions(self.pythons[name], (name, *VERSION_PACKAGES))
        self.versions["edgeinfer"] = package_versions(sys.executable, ("edgeinfer", *VERSION_PACKAGES))
        ort = {v["onnxruntime"] for v in self.versions.values()}
        if len(ort) > 1:
            console.print(f"[yellow]warning: onnxruntime versions differ between servers: {sorted(ort)}[/]")
        for model in models:
            self._edgeinfer_repo(model, batching=True)
            if model == "ranker":
                self._edgeinfer_repo(model, batching=False)

    def _write_examples(self) -> None:
        argv = edgeinfer_command("examples")
        with console.status("edgeinfer examples: building the fraud and ranker models"):
            done = subprocess.run(
                [*argv, str(self.examples), "--force"], capture_output=True, text=True, cwd=REPO_ROOT, check=False
            )
        if done.returncode != 0:
            raise SystemExit(f"edgeinfer examples failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        for model in MODELS:
            if not self.model_file(model).exists():
                raise SystemExit(f"edgeinfer examples wrote no {self.model_file(model)}")

    def model_file(self, model: str) -> Path:
        return self.examples / model / "1" / "model.onnx"

    def edgeinfer_repo(self, model: str, batching: bool) -> Path:
        return self.work / "repos" / f"{model}-{'batching' if batching else 'nobatching'}"

    def _edgeinfer_repo(self, model: str, batching: bool) -> None:
        """A repository holding only `model`, with dynamic batching as asked."""
        repo = self.edgeinfer_repo(model, batching)
        shutil.copytree(self.examples / model, repo / model)
        config_path = repo / model / "config.yaml"
        config: dict[str, Any] = yaml.safe_load(config_path.read_text()) or {}
        config.setdefault("dynamic_batching", {})["enabled"] = batching
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    # ---- server launchers: each returns the process (already started) and its gRPC target ----

    def launch(self, contender: Contender, model: str) -> tuple[ManagedProcess, str]:
        port = free_port()
        log = self.logs / f"{model}-{contender.key}.log"
        spec = self.specs[model]
        if contender.server == "edgeinfer":
            argv = [
                *edgeinfer_command("function"),
                "--model-repo", str(self.edgeinfer_repo(model, bool(contender.batching))),
                "--host", LOOPBACK, "--port", str(port), "--log-level", "WARNING",
            ]  # fmt: skip
            return ManagedProcess(contender.key, argv, log, cwd=REPO_ROOT), f"{LOOPBACK}:{port}"
        if contender.server == "echo":
            argv = [
                sys.executable, str(ECHO_SERVER), "--host", LOOPBACK, "--port", str(port),
                "--model", model, "--output", spec.output_name,
                "--output-elements", str(math.prod(d for d in spec.output_dims if d > 0)),
            ]  # fmt: skip
            return ManagedProcess(contender.key, argv, log), f"{LOOPBACK}:{port}"
        if contender.server == "mlserver":
            root = self._mlserver_settings(model, port)
            mlserver = self.pythons["mlserver"].parent / "mlserver"
            env = {"PYTHONPATH": str(PEERS_DIR)}
            proc = ManagedProcess(contender.key, [str(mlserver), "start", str(root)], log, env=env, cwd=root)
            return proc, f"{LOOPBACK}:{port}"
        if contender.server == "kserve":
            argv = [
                str(self.pythons["kserve"]), str(PEERS_DIR / "kserve_onnx.py"),
                "--model", f"{model}={self.model_file(model)}",
                "--bind", LOOPBACK,
                "--grpc_port", str(port), "--http_port", str(free_port()),
                "--enable_latency_logging", "false",
            ]  # fmt: skip
            return ManagedProcess(contender.key, argv, log), f"{LOOPBACK}:{port}"
        raise ValueError(f"unknown server {contender.server}")

    def _mlserver_settings(self, model: str, grpc_port: int) -> Path:
        spec = self.specs[model]
        root = self.work / "mlserver" / model
        (root / model).mkdir(parents=True, exist_ok=True)
        settings = {
            "host": LOOPBACK,
            "grpc_port": grpc_port,
            "http_port": free_port(),  # REST cannot be disabled: a loopback port nobody uses
            "metrics_endpoint": None,  # no metrics server
            "parallel_workers": self.args.mlserver_workers,
            "debug": False,
        }
        model_settings = {
            "name": model,
            "implementation": "mlserver_onnx.OnnxModel",
            "parameters": {"uri": str(self.model_file(model)), "version": "1"},
            "inputs": [{"name": spec.input_name, "datatype": "FP32", "shape": list(spec.input_dims)}],
            "outputs": [{"name": spec.output_name, "datatype": "FP32", "shape": list(spec.output_dims)}],
        }
        (root / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        (root / model / "model-settings.json").write_text(json.dumps(model_settings, indent=2) + "\n")
        return root


def load_settings(args: argparse.Namespace, spec: ModelSpec) -> LoadSettings:
    return LoadSettings(
        duration_s=args.duration,
        warmup_s=args.warmup,
        processes=args.bench_processes,
        concurrency_limit=args.concurrency_limit or None,
        timeout_ms=spec.timeout_ms,
        inputs=(spec.input,),
    )


def search_plan(args: argparse.Namespace, spec: ModelSpec) -> SearchPlan:
    if args.quick:
        return SearchPlan(start_rate=spec.start_rate, growth=2.0, bisect_steps=1, retries=0)
    return SearchPlan(start_rate=spec.start_rate, growth=1.5, bisect_steps=3, retries=1)


def show_step(label: str, step: Step) -> None:
    mark = "[green]pass[/]" if step.passed else f"[red]fail[/] ({step.reason})"
    p99 = f"{step.p99:,.2f}" if math.isfinite(step.p99) else "-"
    p50 = f"{step.p50:,.2f}" if math.isfinite(step.p50) else "-"
    console.print(
        f"    {label:<26} offered {step.offered_rate:>8,.0f}/s  achieved {step.achieved_rate:>8,.0f}/s  "
        f"p50 {p50:>7} ms  p99 {p99:>8} ms  other work {step.foreign_cores:4.2f} CPUs  {mark}"
    )


def settle_after(target: str, proc: ManagedProcess) -> Any:
    """Between steps: let an overloaded server drain, and wait until it answers ServerReady again."""

    def settle(step: Step) -> None:
        time.sleep(1.0 if step.passed else 3.0)
        deadline = time.monotonic() + 30.0
        while proc.alive() and not server_ready(target, timeout=1.0) and time.monotonic() < deadline:
            time.sleep(0.5)

    return settle


def measure(env: Environment, model: str, contender: Contender, round_no: int) -> RunResult:
    args = env.args
    spec = env.specs[model]
    result = RunResult(model=model, contender=contender, p99_bound_ms=spec.p99_ms, round=round_no)
    result.loadavg_before = os.getloadavg()
    rounds = f"  round {round_no}/{args.rounds}" if args.rounds > 1 else ""
    console.rule(f"[bold]{model}[/] on [bold]{contender.label}[/]  (p99 ≤ {spec.p99_ms:g} ms){rounds}")
    proc: ManagedProcess | None = None
    try:
        proc, target = env.launch(contender, model)
        result.ready_s = wait_ready(proc, target, READY_TIMEOUT_S)
        result.listeners = listening_addresses(proc.group_pids())
        exposed = [a for a in result.listeners if not is_loopback(a)]
        console.print(f"    ready in {result.ready_s:.1f} s on {target}; listening on {', '.join(result.listeners)}")
        if exposed:
            raise ServerFailed(f"{contender.label} listens beyond loopback: {', '.join(exposed)}")
        load = load_settings(args, spec)
        steps_dir = env.logs / "steps"
        live = proc

        cpu = ForeignCpu(live.group_pids)

        def one(rate: float) -> Step:
            if not live.alive():
                return Step(offered_rate=rate, errors={"SERVER_EXITED": 1}, reason="server exited")
            # Do not start a step while other work on the box is busy; then measure what it took during the step.
            busy = cpu.wait_quiet(args.quiet_cores, max_wait=args.quiet_wait)
            before = cpu.snapshot()
            step = run_step(target, model, rate, load, steps_dir)
            step.foreign_cores = cpu.cores_since(before)
            step.busy_before = busy
            return step

        search = search_max_rate(
            one,
            search_plan(args, spec),
            Criteria(p99_ms=spec.p99_ms),
            on_step=lambda step: show_step(contender.label, step),
            settle=settle_after(target, proc),
        )
        result.steps, result.best, result.first_failure = search.steps, search.best, search.first_failure
        if not proc.alive():
            result.error = f"server exited during the run (code {proc.proc.returncode}); log {proc.log_path}"
        best = result.best
        summary = f"{best.achieved_rate:,.0f} req/s (p99 {best.p99:.2f} ms)" if best else "no passing rate"
        console.print(f"    [bold]max: {summary}[/]; steps: {describe(result.steps)}")
    except ServerFailed as exc:
        result.error = str(exc)
        console.print(f"[red]    {contender.label}: {exc}[/]")
    finally:
        if proc is not None:
            proc.stop()
        result.loadavg_after = os.getloadavg()
    return result


# ---------------------------------------------------------------- ratios, table, report, plot


def round_ratios(results: Sequence[RunResult]) -> dict[str, Any]:
    """Each ratio within each round, and its median and range across rounds (benchmarks/common/rounds.py)."""
    return ratios_across_rounds(
        rates_by_round(
            {"model": r.model, "contender": r.contender.key, "round": r.round, "max_rate": r.max_rate} for r in results
        )
    )


def rate_summary(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One entry per (model, contender): its rate in every round, and their median and range."""
    keys: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        keys.setdefault((r.model, r.contender.key), []).append(r)
    out = []
    for (model, _), runs in keys.items():
        rates = [o.max_rate for o in sorted(runs, key=lambda o: o.round)]
        first = runs[0]
        out.append(
            {
                "model": model,
                "contender": first.contender.key,
                "label": first.contender.label,
                "p99_bound_ms": first.p99_bound_ms,
                "each_round": rates,
                "median_rate": statistics.median(rates),
                "min_rate": min(rates),
                "max_rate": max(rates),
                "foreign_cores_each_round": [o.foreign_cores for o in sorted(runs, key=lambda o: o.round)],
            }
        )
    return out


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def render(results: Sequence[RunResult], summary: dict[str, Any]) -> None:
    """Every round's rates (one row per model, server and round), then each ratio's median and range."""
    table = Table(title="Highest throughput within the p99 bound (open loop, same load generator), every round")
    for name, justify in (
        ("model", "left"), ("server", "left"), ("round", "right"), ("p99 bound", "right"), ("max req/s", "right"),
        ("p50 ms", "right"), ("p99 ms", "right"), ("first fail", "right"), ("vs echo", "right"),
        ("steps", "right"), ("other work", "right"), ("note", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in sorted(results, key=lambda r: (MODELS.index(r.model), r.contender.key, r.round)):
        rounds = summary.get(r.model, {}).get("rounds", {})
        vs_echo = rounds.get(str(r.round), {}).get("vs_echo", {}).get(r.contender.key)
        best = r.best
        table.add_row(
            r.model,
            r.contender.label,
            str(r.round),
            f"{r.p99_bound_ms:g} ms",
            f"{best.achieved_rate:,.0f}" if best else "-",
            f"{best.p50:.2f}" if best else "-",
            f"{best.p99:.2f}" if best else "-",
            f"{r.first_failure:,.0f}" if r.first_failure else "-",
            _fmt_ratio(vs_echo) if r.contender.key != "echo" else "1.00×",
            str(len(r.steps)),
            f"{r.foreign_cores:.2f} CPUs",
            r.error[:60],
        )
    console.print(table)
    console.print(
        "other work: CPUs' worth of processes outside this benchmark, averaged over the run's steps "
        "(the box is shared; high values mean noisy numbers)"
    )
    ratio_table = Table(title="Ratios, each within one round: median, range (lowest – highest) and every round")
    ratio_table.add_column("comparison")
    ratio_table.add_column("median", justify="right")
    ratio_table.add_column("range", justify="right")
    ratio_table.add_column("each round", justify="right")
    for model, entry in summary.items():
        peers = " / ".join(str(p) for p in entry["best_peer"].values())
        for name, stats in entry["summary"].items():
            label = f"{model}: {name}" + (f" (best peer by round: {peers})" if name == "edgeinfer_vs_best_peer" else "")
            ratio_table.add_row(
                label,
                _fmt_ratio(stats["median"]),
                f"{_fmt_ratio(stats['min'])} – {_fmt_ratio(stats['max'])}",
                " / ".join(_fmt_ratio(v) for v in stats["each_round"]),
            )
    console.print(ratio_table)


COLORS = {
    "echo": "tab:gray",
    "edgeinfer": "tab:blue",
    "edgeinfer-nobatch": "tab:cyan",
    "mlserver": "tab:orange",
    "kserve": "tab:green",
}


def plot(results: Sequence[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if any(r.model == m for r in results)]
    if not models:
        return
    rounds = max(r.round for r in results)
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        bound = 0.0
        for r in (r for r in results if r.model == model):
            bound = r.p99_bound_ms
            # Open loop: p99 against the offered load, the curve's natural x (achieved falls behind past the knee).
            points = sorted((s.offered_rate, s.p99, s.passed) for s in r.steps if math.isfinite(s.p99))
            if not points:
                continue
            color = COLORS.get(r.contender.key)
            name = f"{r.contender.label} r{r.round}" if rounds > 1 else r.contender.label
            label = f"{name}: {r.max_rate:,.0f}/s" if r.best else f"{name}: none passed"
            style = "-" if r.round % 2 else "--"
            # A rerun rate shows both points; the line goes through the better one.
            line: dict[float, float] = {}
            for rate, p99, _ in points:
                line[rate] = min(p99, line.get(rate, math.inf))
            ax.plot(list(line), list(line.values()), style, color=color, alpha=0.6, label=label)
            for passed, marker in ((True, "o"), (False, "x")):
                chosen = [p for p in points if p[2] == passed]
                ax.scatter([p[0] for p in chosen], [p[1] for p in chosen], marker=marker, color=color, s=22)
            if r.best:
                ax.scatter([r.best.offered_rate], [r.best.p99], marker="*", s=160, color=color, edgecolor="black")
        ax.axhline(bound, linestyle="--", color="red", linewidth=1, label=f"p99 bound {bound:g} ms")
        ax.set_yscale("log")
        ax.set_xlabel("offered load (req/s); passing steps achieve ≥ 95 % of it")
        ax.set_ylabel("p99 latency (ms, from intended send time)")
        ax.set_title(f"{model}: p99 vs throughput (o pass, x fail, ★ max)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- entry point


def _csv(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        unknown = [t for t in items if t not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}; got {text!r}")
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: shorter steps, coarser search")
    parser.add_argument(
        "--replot", action="store_true", help="only redraw the PNG from an existing --report, measuring nothing"
    )
    parser.add_argument(
        "--recompute", action="store_true",
        help="only rewrite --report's ratios and summary from its per-round runs, and redraw the PNG; measures nothing",
    )  # fmt: skip
    parser.add_argument("--servers", type=_csv(SERVERS), default=",".join(SERVERS), help="comma-separated servers")
    parser.add_argument("--models", type=_csv(MODELS), default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="JSON report; the PNG goes next to it")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="measure every server this many times (order alternating); ratios within each round, then median",
    )  # fmt: skip
    parser.add_argument("--fraud-p99-ms", type=float, default=10.0, help="p99 bound for fraud")
    parser.add_argument(
        "--ranker-p99-ms", type=float, default=50.0,
        help="p99 bound for ranker (a batch of 64 takes ~22 ms on one core here; batch 1 ~4.5 ms)",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per step (6; quick 3)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per step (2; quick 1)")
    parser.add_argument(
        "--bench-processes", type=int, default=2,
        help="load generator processes (the box has 2 cores; one Python client process saturates first)",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency-limit", type=int, default=256,
        help="cap on outstanding requests per step (0: none); waiting counts as latency",
    )  # fmt: skip
    parser.add_argument(
        "--mlserver-workers", type=int, default=0,
        help="MLServer parallel_workers (0: infer in the server process; MLServer's default is 1)",
    )  # fmt: skip
    parser.add_argument(
        "--quiet-cores", type=float, default=0.25,
        help="before each step, wait until the box (idle server included) uses fewer CPUs than this",
    )  # fmt: skip
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="longest wait for a quiet box, seconds")
    parser.add_argument("--venv-dir", type=Path, default=BENCH_DIR / ".venvs", help="peer virtualenvs")
    parser.add_argument(
        "--work-dir", type=Path, default=BENCH_DIR / ".work" / "functions_vs_peers",
        help="scratch: model repositories, server settings, logs (recreated each run)",
    )  # fmt: skip
    return parser


def replot(report_path: Path) -> Path:
    """Draw the PNG again from a JSON report (every round's runs), without measuring anything."""
    report = json.loads(report_path.read_text())
    results = []
    for run in report["runs"]:
        contender = Contender(run["contender"], run["server"], run["label"], run.get("batching"))
        result = RunResult(run["model"], contender, run["p99_bound_ms"], round=run.get("round", 1))
        result.steps = [Step(**step) for step in run["steps"]]
        passing = [step for step in result.steps if step.passed]
        result.best = max(passing, key=lambda step: step.offered_rate) if passing else None
        results.append(result)
    plot_path = report_path.with_suffix(".png")
    plot(results, plot_path)
    return plot_path


def recompute(report_path: Path) -> Path:
    """Rewrite a report's `summary` and `ratios` from its per-round `runs`: each ratio within one round,
    then median and range across rounds. For reports written when the best round of each server counted."""
    report = json.loads(report_path.read_text())
    runs = report["runs"]
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        run.pop("selected", None)
        by_key.setdefault((run["model"], run["contender"]), []).append(run)
    summary = []
    for (model, contender), each in by_key.items():
        each.sort(key=lambda run: run.get("round", 1))
        rates = [float(run["max_achieved_rate"] or 0.0) for run in each]
        summary.append(
            {
                "model": model,
                "contender": contender,
                "label": each[0]["label"],
                "p99_bound_ms": each[0]["p99_bound_ms"],
                "each_round": rates,
                "median_rate": statistics.median(rates),
                "min_rate": min(rates),
                "max_rate": max(rates),
                "foreign_cores_each_round": [run.get("foreign_cores_mean", 0.0) for run in each],
            }
        )
    report["summary"] = summary
    report["ratios"] = ratios_from_report(report)
    report["recomputed"] = {
        "at": dt.datetime.now(dt.UTC).isoformat(),
        "how": "python benchmarks/functions_vs_peers.py --recompute: ratios within each round, median and range",
    }
    tmp = report_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(report_path)
    return report_path


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.bench_processes < 1:
        parser.error("--rounds and --bench-processes must be at least 1")
    if args.replot:
        console.print(f"plot: {replot(args.report)}")
        return 0
    if args.recompute:
        console.print(f"report: {recompute(args.report)}\nplot:   {replot(args.report)}")
        return 0
    if args.duration is None:
        args.duration = 3.0 if args.quick else 6.0
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    specs = model_specs(args)
    env = Environment(args, specs)
    started = dt.datetime.now(dt.UTC)
    console.print(
        f"[bold]functions vs peers[/]: servers {','.join(args.servers)}; models {','.join(args.models)}; "
        f"{os.cpu_count()} CPUs; steps {args.warmup:g}+{args.duration:g} s; "
        f"bench --processes {args.bench_processes}"
    )
    env.prepare(args.servers, args.models)
    results: list[RunResult] = []
    for round_no in range(1, args.rounds + 1):
        for model in args.models:
            order = contenders(model, args.servers)
            # Alternate the order between rounds so slow drift in background load evens out.
            for contender in order if round_no % 2 else order[::-1]:
                results.append(measure(env, model, contender, round_no))
                write_report(args, env, specs, started, argv, results, final=False)
    summary = round_ratios(results)
    render(results, summary)
    report_path = write_report(args, env, specs, started, argv, results, final=True)
    plot_path = report_path.with_suffix(".png")
    plot(results, plot_path)
    console.print(f"report: {report_path}\nplot:   {plot_path}\nlogs:   {env.logs}")
    return 0 if all(not r.error for r in results) else 1


def write_report(
    args: argparse.Namespace,
    env: Environment,
    specs: dict[str, ModelSpec],
    started: dt.datetime,
    argv: Sequence[str] | None,
    results: Sequence[RunResult],
    *,
    final: bool,
) -> Path:
    """The JSON report; rewritten after every run so an interrupted benchmark keeps what it measured."""
    report = {
        "benchmark": "functions_vs_peers",
        "complete": final,
        "started_at": started.isoformat(),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "command": [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
        "host": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "quick": args.quick,
            "rounds": args.rounds,
            "criteria": {
                "p99_ms": {m: specs[m].p99_ms for m in args.models},
                "zero_errors": True,
                "min_achieved_fraction": Criteria(p99_ms=0).min_achieved_fraction,
            },
            "load": {m: asdict(load_settings(args, specs[m])) for m in args.models},
            "search": {m: asdict(search_plan(args, specs[m])) for m in args.models},
            "mlserver_parallel_workers": args.mlserver_workers,
            "onnxruntime_intra_op_threads": 1,
            "quiet_gate": {"max_cores": args.quiet_cores, "max_wait_s": args.quiet_wait},
        },
        "versions": env.versions,
        "pins": {"mlserver": list(MLSERVER_REQUIREMENTS), "kserve": list(KSERVE_REQUIREMENTS)},
        "summary": rate_summary(results),
        "ratios": round_ratios(results),
        "runs": [r.to_dict() for r in results],
    }
    report_path: Path = args.report
    report_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = report_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    tmp.replace(report_path)
    return report_path


if __name__ == "__main__":
    sys.exit(main())
