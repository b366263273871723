"""What a failover drill measured: budgets, per-second timeline, pass or fail, and its PNG plot."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Event = tuple[float, float, str, str]  # (seconds from the measured start, latency s, status, serving region)


@dataclass(frozen=True)
class Budgets:
    """What a drill must hold. The detection window is the time the stack is allowed to notice a change (fault
    or restore) before the p99 budget applies again: Envoy's health checks need 2 × 0.2 s, plus slack."""

    failed_requests: int = 0
    p99_ms: float = 100.0
    detection_window_s: float = 1.0
    failover_s: float = 1.0
    rejoin_s: float = 10.0
    max_latency_ms: float | None = None  # every request, window or not (blackhole and slow: 250 ms)


@dataclass
class Action:
    at: float  # seconds from the measured start
    what: str  # "fault", "restore", "kill", "restart", ...


@dataclass
class HealthChange:
    at: float
    region: str
    state: str  # "healthy" or Envoy's flags (failed_active_hc, failed_outlier_check, ...)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


def windows(actions: Sequence[Action], width: float) -> list[tuple[float, float]]:
    return [(a.at, a.at + width) for a in actions]


def inside(t: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(start <= t < end for start, end in spans)


def timeline(events: Sequence[Event], duration: float) -> list[dict[str, Any]]:
    """Per second of intended send time: sent, ok, errors, p50/p99 (ms) of OK requests, served per region."""
    seconds = max(1, math.ceil(duration))
    buckets: list[list[Event]] = [[] for _ in range(seconds)]
    for event in events:
        index = min(seconds - 1, max(0, int(event[0])))
        buckets[index].append(event)
    rows = []
    for second, bucket in enumerate(buckets):
        ok = [e[1] * 1000 for e in bucket if e[2] == "OK"]
        rows.append(
            {
                "second": second,
                "sent": len(bucket),
                "ok": len(ok),
                "errors": len(bucket) - len(ok),
                "p50_ms": percentile(ok, 50),
                "p99_ms": percentile(ok, 99),
                "max_ms": max(ok) if ok else None,
                "regions": dict(Counter(e[3] for e in bucket if e[2] == "OK")),
            }
        )
    return rows


@dataclass
class DrillResult:
    scenario: str
    region: str
    rps: float
    duration_s: float
    command: str
    budgets: Budgets
    actions: list[Action]
    health: list[HealthChange]
    events: list[Event] = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def _first_health_change(self, after: float) -> HealthChange | None:
        for change in self.health:
            if change.region == self.region and change.at >= after and change.state != "healthy":
                return change
        return None

    def analyse(self) -> dict[str, Any]:
        b = self.budgets
        faults = [a for a in self.actions if a.what in ("fault", "kill", "stop", "slow")]
        restores = [a for a in self.actions if a.what in ("restore", "restart", "continue", "fast")]
        spans = windows([*faults, *restores], b.detection_window_s)
        failed = [e for e in self.events if e[2] != "OK"]
        ok = [e for e in self.events if e[2] == "OK"]
        outside = [e[1] * 1000 for e in ok if not inside(e[0], spans)]
        all_ms = [e[1] * 1000 for e in ok]
        first_fault = faults[0].at if faults else None
        detected = self._first_health_change(first_fault) if first_fault is not None else None
        failover = (detected.at - first_fault) if detected is not None and first_fault is not None else None
        last_restore = restores[-1].at if restores else None
        rejoined = None
        if last_restore is not None:
            back = [e[0] for e in ok if e[0] >= last_restore and e[3] == self.region]
            rejoined = (min(back) - last_restore) if back else None
        by_region = Counter(e[3] for e in ok)
        p99_outside = percentile(outside, 99)
        checks = {
            "failed requests": (len(failed), f"<= {b.failed_requests}", len(failed) <= b.failed_requests),
            "p99 outside the detection windows (ms)": (
                p99_outside,
                f"< {b.p99_ms:g}",
                p99_outside is not None and p99_outside < b.p99_ms,
            ),
            "time to fail over (s)": (
                failover,
                f"<= {b.failover_s:g}",
                failover is not None and failover <= b.failover_s,
            ),
            "time to rejoin after the restore (s)": (
                rejoined,
                f"<= {b.rejoin_s:g}",
                rejoined is not None and rejoined <= b.rejoin_s,
            ),
        }
        if b.max_latency_ms is not None:
            slowest = max(all_ms) if all_ms else None
            checks["slowest request (ms)"] = (
                slowest,
                f"<= {b.max_latency_ms:g}",
                slowest is not None and slowest <= b.max_latency_ms,
            )
        return {
            "sent": len(self.events),
            "ok": len(ok),
            "failed": len(failed),
            "failed_by_status": dict(Counter(e[2] for e in failed)),
            "served_by_region": dict(by_region),
            "latency_ms": {
                "p50": percentile(all_ms, 50),
                "p99": percentile(all_ms, 99),
                "p99.9": percentile(all_ms, 99.9),
                "max": max(all_ms) if all_ms else None,
                "p99_outside_windows": p99_outside,
            },
            "detection": (
                {"at_s": detected.at, "state": detected.state, "after_fault_s": failover} if detected else None
            ),
            "rejoin_after_restore_s": rejoined,
            "windows": spans,
            "checks": {
                name: {"value": value, "budget": budget, "pass": passed}
                for name, (value, budget, passed) in checks.items()
            },
            "passed": all(passed for _, _, passed in checks.values()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "region": self.region,
            "rps": self.rps,
            "duration_s": self.duration_s,
            "command": self.command,
            "budgets": asdict(self.budgets),
            "actions": [asdict(a) for a in self.actions],
            "health": [asdict(h) for h in self.health],
            "notes": self.notes,
            "result": self.analyse(),
            "timeline": timeline(self.events, self.duration_s),
        }


def plot(report: dict[str, Any], path: Path) -> None:
    """Throughput by serving region, p50/p99 and errors per second, with the faults and restores marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    seconds = [r["second"] + 0.5 for r in rows]
    regions = sorted({name for r in rows for name in r["regions"]})
    fig, (served, latency, errors) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    bottom = [0.0] * len(rows)
    for name in regions:
        values = [float(r["regions"].get(name, 0)) for r in rows]
        served.bar(seconds, values, width=1.0, bottom=bottom, label=name)
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    served.set_ylabel("OK requests/s")
    served.legend(loc="lower left", fontsize=8, title="served by")
    for key, style in (("p50_ms", "-"), ("p99_ms", "--"), ("max_ms", ":")):
        latency.plot(seconds, [r[key] if r[key] is not None else math.nan for r in rows], style, label=key[:-3])
    latency.axhline(report["budgets"]["p99_ms"], color="red", linewidth=0.8, label="p99 budget")
    latency.set_yscale("log")
    latency.set_ylabel("latency (ms)")
    latency.legend(loc="upper left", fontsize=8)
    errors.bar(seconds, [r["errors"] for r in rows], width=1.0, color="crimson")
    errors.set_ylabel("failed/s")
    errors.set_xlabel("seconds since the measured start")
    for axis in (served, latency, errors):
        for start, end in report["result"]["windows"]:
            axis.axvspan(start, end, color="orange", alpha=0.15)
        for action in report["actions"]:
            axis.axvline(action["at"], color="black", linewidth=0.6, linestyle="-.")
    result = report["result"]
    verdict = "PASS" if result["passed"] else "FAIL"
    fig.suptitle(
        f"drill {report['scenario']} of {report['region']} at {report['rps']:g} req/s: {verdict} "
        f"({result['failed']} failed of {result['sent']}; shaded: detection windows)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
