"""What a rollout did, for `--report FILE`: its configuration, a sample per poll, each step's verdict, the
failing check with its numbers, the time to roll back, each region's outcome; and a PNG beside it (weight, p99,
errors and disagreement over time).

`Recorder` is the controller's observer that collects it; `RolloutReport.to_dict()` is the JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Sample:
    """One poll of one region: where the split stood and what the window so far measured."""

    t: float  # seconds since the rollout started
    region: str
    step: int  # index into the steps; -1 while pinned
    weight: int  # percent to the candidate
    attempt: int  # 1 for a step's first interval, 2... for its extensions
    candidate_requests: float | None
    baseline_requests: float | None
    error_rate: float | None
    baseline_error_rate: float | None
    p99_ms: float | None
    baseline_p99_ms: float | None
    disagreement: float | None
    comparisons: float | None
    verdict: str  # pending | pass | fail | inconclusive | no-data
    shadow_p99_ms: float | None = None  # the shadow copies' own p99 (judged at the 0 % step)


@dataclass
class StepResult:
    region: str
    step: int
    weight: int
    attempt: int
    started_t: float
    ended_t: float
    verdict: str  # pass | fail | inconclusive
    reason: str
    checks: list[dict[str, Any]]


@dataclass
class Rollback:
    detected_t: float  # the poll at which the check failed
    zero_t: float | None  # the gateway confirmed the candidate at 0 %
    seconds: float | None  # zero_t - detected_t


@dataclass
class RegionOutcome:
    region: str
    state: str  # promoted | rolled_back | aborted | preempted | not_started
    baseline: str | None = None
    candidate: str | None = None
    reason: str | None = None
    check: dict[str, Any] | None = None  # the failing check: name, value, threshold, basis, baseline
    rollback: Rollback | None = None
    drained: int | None = None  # old-version instances drained after the promotion
    resumed_from: int | None = None  # the step a taken-over rollout went on from


@dataclass
class RolloutReport:
    model: str
    candidate: str
    command: str
    config: dict[str, Any]
    started_at: float  # wall clock
    samples: list[Sample] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    regions: list[RegionOutcome] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def promoted(self) -> bool:
        return bool(self.regions) and all(r.state == "promoted" for r in self.regions)

    @property
    def outcome(self) -> str:
        if self.promoted:
            return "promoted"
        for region in self.regions:
            if region.state not in ("promoted", "not_started"):
                return region.state
        return "not_started"

    def failure(self) -> RegionOutcome | None:
        return next((r for r in self.regions if r.state != "promoted" and r.state != "not_started"), None)

    def to_dict(self) -> dict[str, Any]:
        failed = self.failure()
        return {
            "model": self.model,
            "candidate": self.candidate,
            "command": self.command,
            "config": self.config,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "outcome": self.outcome,
            "failed_check": failed.check if failed is not None else None,
            "rollback": asdict(failed.rollback) if failed is not None and failed.rollback is not None else None,
            "regions": [asdict(r) for r in self.regions],
            "steps": [asdict(s) for s in self.steps],
            "timeline": [asdict(s) for s in self.samples],
            "notes": self.notes,
        }


class Recorder:
    """The controller's observer that fills a RolloutReport."""

    def __init__(self, report: RolloutReport) -> None:
        self.report = report

    def sample(self, sample: Sample) -> None:
        self.report.samples.append(sample)

    def step(self, result: StepResult) -> None:
        self.report.steps.append(result)

    def note(self, t: float, region: str, text: str) -> None:
        self.report.notes.append({"t": round(t, 3), "region": region, "text": text})

    def outcome(self, outcome: RegionOutcome) -> None:
        self.report.regions.append(outcome)


def write(report: RolloutReport, path: Path) -> Path:
    """The JSON at `path`, the PNG beside it (same name, .png); returns the PNG's path."""
    data = report.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    png = path.with_suffix(".png")
    plot(data, png)
    return png


def _series(rows: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    return [r[key] * scale if r[key] is not None else math.nan for r in rows]


def plot(data: dict[str, Any], path: Path) -> None:
    """Weight, p99, error rate and disagreement per region over time; steps' ends and rollbacks marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[dict[str, Any]] = data["timeline"]
    config = data["config"]
    regions = list(dict.fromkeys(r["region"] for r in rows))
    fig, (weight, p99, errors, disagreement) = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    for region in regions:
        mine = [r for r in rows if r["region"] == region]
        t = [r["t"] for r in mine]
        label = region if len(regions) > 1 else None
        weight.step(t, [r["weight"] for r in mine], where="post", label=label)
        p99.plot(t, _series(mine, "p99_ms"), "-", label=f"{region} candidate" if label else "candidate")
        p99.plot(t, _series(mine, "baseline_p99_ms"), ":", label=f"{region} baseline" if label else "baseline")
        errors.plot(t, _series(mine, "error_rate", 100), "-", label=f"{region} candidate" if label else "candidate")
        errors.plot(
            t, _series(mine, "baseline_error_rate", 100), ":", label=f"{region} baseline" if label else "baseline"
        )
        disagreement.plot(t, _series(mine, "disagreement", 100), "-", label=label)
    weight.set_ylabel("candidate weight (%)")
    weight.set_ylim(-5, 105)
    p99.axhline(config["max_p99_ms"], color="red", linewidth=0.8, label="limit")
    p99.set_ylabel("p99 (ms)")
    errors.axhline(config["max_error_rate"] * 100, color="red", linewidth=0.8, label="limit")
    errors.set_ylabel("server errors (%)")
    disagreement.axhline(config["max_disagreement"] * 100, color="red", linewidth=0.8, label="limit")
    disagreement.set_ylabel("disagreement (%)")
    disagreement.set_xlabel("seconds since the rollout started (each point: the step's window so far)")
    for axis in (weight, p99, errors, disagreement):
        for step in data["steps"]:
            axis.axvline(step["ended_t"], color="grey", linewidth=0.5, linestyle="--")
        for region in data["regions"]:
            rollback = region.get("rollback")
            if rollback:
                axis.axvline(rollback["detected_t"], color="red", linewidth=0.8, linestyle="-.")
        handles, _ = axis.get_legend_handles_labels()
        if handles:
            axis.legend(loc="upper left", fontsize=7)
    failed = data.get("failed_check")
    detail = f"; failed: {failed['name']}" if failed else ""
    rollback = data.get("rollback")
    if rollback and rollback.get("seconds") is not None:
        detail += f", at 0 % {rollback['seconds']:.2f} s after the failing check"
    fig.suptitle(f"rollout of {data['model']} to version {data['candidate']}: {data['outcome']}{detail}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
