"""Drive `edgeinfer bench` as a subprocess, judge each step, and search for the highest passing rate.

A step passes when every request succeeded, the achieved rate is close to the offered one
and p99 latency (measured by the load generator from each request's intended send time)
is within the bound. The search steps the offered rate up geometrically until a step
fails, then bisects (geometrically) between the last pass and the first failure.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def edgeinfer_command(*subcommand: str) -> list[str]:
    """`edgeinfer SUBCOMMAND` as `python -m edgeinfer.cli`, to run with cwd=REPO_ROOT.

    Run from the repository root this uses the working tree's packages even when the
    environment's editable install predates a newly added top-level package.
    """
    return [sys.executable, "-m", "edgeinfer.cli", *subcommand]


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """How every step drives load; the same for every server in a comparison."""

    duration_s: float
    warmup_s: float
    processes: int
    concurrency_limit: int | None
    timeout_ms: float
    inputs: tuple[str, ...]  # NAME:DATATYPE:DIMS, so no step depends on ModelMetadata
    channels: int = 1  # gRPC channels (TCP connections) per process: several spread load over SO_REUSEPORT workers
    unique: bool = False  # every request's input bytes distinct (cache misses)
    seed: int | None = None  # payload data; a new seed per --unique run, or a rerun repeats the last run's inputs
    batch_size: int = 1  # rows per request

    def argv(self) -> list[str]:
        args = [
            "--duration", f"{self.duration_s:g}",
            "--warmup", f"{self.warmup_s:g}",
            "--processes", str(self.processes),
            "--timeout-ms", f"{self.timeout_ms:g}",
        ]  # fmt: skip
        if self.concurrency_limit is not None:
            args += ["--concurrency-limit", str(self.concurrency_limit)]
        if self.channels != 1:
            args += ["--channels", str(self.channels)]
        if self.unique:
            args.append("--unique")
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        if self.batch_size != 1:
            args += ["--batch-size", str(self.batch_size)]
        for spec in self.inputs:
            args += ["--input", spec]
        return args


@dataclass(frozen=True, slots=True)
class Criteria:
    p99_ms: float
    min_achieved_fraction: float = 0.95


@dataclass(slots=True)
class Step:
    """One `edgeinfer bench` run and the verdict on it."""

    offered_rate: float
    achieved_rate: float = 0.0
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    max_send_lag_ms: float = 0.0
    passed: bool = False
    reason: str = ""
    phase: str = ""  # "up", "retry", "bisect", "down"
    wall_s: float = 0.0
    # CPUs' worth of other work on the box: just before the step, and on average during it.
    busy_before: float = 0.0
    foreign_cores: float = 0.0

    @property
    def p50(self) -> float:
        return self.latency_ms.get("p50", math.inf)

    @property
    def p99(self) -> float:
        return self.latency_ms.get("p99", math.inf)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(step: Step, criteria: Criteria) -> Step:
    problems = []
    if step.sent == 0:
        problems.append("nothing sent")
    if step.errors:
        problems.append("errors " + ", ".join(f"{code} {n}" for code, n in step.errors.items()))
    if step.achieved_rate < criteria.min_achieved_fraction * step.offered_rate:
        problems.append(f"achieved {step.achieved_rate:,.0f}/s < {criteria.min_achieved_fraction:.0%} of offered")
    if step.p99 > criteria.p99_ms:
        problems.append(f"p99 {step.p99:,.1f} ms > {criteria.p99_ms:g} ms")
    step.passed = not problems
    step.reason = "; ".join(problems) if problems else "ok"
    return step


def marginal(step: Step, criteria: Criteria) -> bool:
    """A failure that noise could explain: no errors, nearly the offered rate, p99 under twice the bound."""
    return (
        not step.passed
        and not step.errors
        and step.achieved_rate >= 0.9 * step.offered_rate
        and step.p99 <= 2 * criteria.p99_ms
    )


def run_step(
    target: str, model: str, rate: float, load: LoadSettings, log_dir: Path, env: dict[str, str] | None = None
) -> Step:
    """One `edgeinfer bench --json` run; a run that fails to produce a report becomes a failed Step. `env`: the
    bench's environment (default: this process's)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    fd, json_name = tempfile.mkstemp(prefix=f"{model}-{rate:.0f}-", suffix=".json", dir=log_dir)
    os.close(fd)
    json_path = Path(json_name)
    argv = [
        *edgeinfer_command("bench"),
        "--target", target,
        "--model", model,
        "--rate", f"{rate:.3f}",
        "--json", str(json_path),
        "--quiet",
        *load.argv(),
    ]  # fmt: skip
    step = Step(offered_rate=rate)
    limit = load.warmup_s + load.duration_s + load.timeout_ms / 1000 + 120
    start = time.monotonic()
    # Its own process group, so the bench workers it spawns die with it whatever happens here.
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        output = b""
        step.reason = f"edgeinfer bench did not finish within {limit:.0f} s"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        else:
            # The leader exited; make sure no worker of its group outlives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    step.wall_s = time.monotonic() - start
    try:
        report: dict[str, Any] = json.loads(json_path.read_text()) if json_path.stat().st_size else {}
    except (OSError, ValueError):
        report = {}
    finally:
        json_path.unlink(missing_ok=True)
    if not report:
        text = output.decode(errors="replace").strip().splitlines()
        step.reason = step.reason or f"edgeinfer bench exited {proc.returncode}: {' | '.join(text[-3:])}"
        step.errors = {"BENCH_FAILED": 1}
        return step
    step.achieved_rate = float(report["achieved_rate"])
    step.sent = int(report["sent"])
    step.ok = int(report["ok"])
    step.errors = {str(k): int(v) for k, v in report["errors"].items()}
    step.latency_ms = {str(k): float(v) for k, v in report["latency_ms"].items()}
    step.max_send_lag_ms = float(report.get("max_send_lag_ms", 0.0))
    return step


@dataclass(frozen=True, slots=True)
class SearchPlan:
    start_rate: float
    growth: float = 1.5  # offered rate multiplier while stepping up
    max_rate: float = 100_000.0
    min_rate: float = 5.0  # stepping down below the start rate stops here
    bisect_steps: int = 3
    tolerance: float = 0.05  # stop bisecting once fail/pass < 1 + tolerance
    # A failing rate that noise could explain (a narrow miss, or other work took more than
    # `noisy_cores` CPUs during it) is rerun this many times before it counts as a failure.
    retries: int = 1
    noisy_cores: float = 0.3


@dataclass(slots=True)
class SearchResult:
    best: Step | None
    steps: list[Step]
    first_failure: float | None


def search_max_rate(
    run: Callable[[float], Step],
    plan: SearchPlan,
    criteria: Criteria,
    *,
    on_step: Callable[[Step], None] | None = None,
    settle: Callable[[Step], None] | None = None,
) -> SearchResult:
    """Highest offered rate whose step passes `criteria`. `run(rate)` does one step."""
    steps: list[Step] = []

    def attempt(rate: float, phase: str) -> Step:
        step = Step(offered_rate=rate)
        for i in range(plan.retries + 1):
            step = judge(run(rate), criteria)
            step.phase = phase if i == 0 else "retry"
            steps.append(step)
            if on_step:
                on_step(step)
            if settle:
                settle(step)
            if step.passed or not (marginal(step, criteria) or step.foreign_cores > plan.noisy_cores):
                break
        return step

    best: Step | None = None
    fail: float | None = None
    rate = plan.start_rate
    step = attempt(rate, "up")
    if step.passed:
        best = step
        while rate < plan.max_rate:
            rate = min(rate * plan.growth, plan.max_rate)
            step = attempt(rate, "up")
            if not step.passed:
                fail = rate
                break
            best = step
    else:
        fail = rate
        while rate / plan.growth >= plan.min_rate:
            rate /= plan.growth
            step = attempt(rate, "down")
            if step.passed:
                best = step
                break
            fail = rate
    if best is not None and fail is not None:
        for _ in range(plan.bisect_steps):
            if fail / best.offered_rate <= 1 + plan.tolerance:
                break
            mid = math.sqrt(best.offered_rate * fail)
            step = attempt(mid, "bisect")
            if step.passed:
                best = step
            else:
                fail = mid
    return SearchResult(best=best, steps=steps, first_failure=fail)


def describe(steps: Sequence[Step]) -> str:
    return ", ".join(f"{s.offered_rate:.0f}{'✓' if s.passed else '✗'}" for s in steps)
