"""Merge the workers' results into one report; print it, or write it as JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.table import Table

from edgeinfer.loadgen.options import BenchOptions
from edgeinfer.loadgen.worker import WorkerResult, new_histogram

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)


@dataclass(frozen=True, slots=True)
class BenchReport:
    """One run's outcome. `sent == ok + sum(errors.values())`; latencies cover OK requests only."""

    target: str
    model: str
    arrival: str
    processes: int
    concurrency_limit: int | None
    batch_size: int
    warmup_s: float
    duration_s: float
    offered_rate: float
    sent: int
    ok: int
    errors: dict[str, int]
    # Measurement start to the last completion (at least duration_s); achieved = ok / elapsed.
    elapsed_s: float
    achieved_rate: float
    # min, mean, p50, p90, p99, p99.9, max in ms; empty when no request succeeded.
    latency_ms: dict[str, float]
    # Worst lag of a send behind its schedule: large means the client or the concurrency limit fell behind.
    max_send_lag_ms: float
    # Base64 HdrHistogram encoding of OK latencies in microseconds (HdrHistogram.decode reads it).
    histogram: str
    histogram_unit: str = "us"
    # With record_events: every measured request as (intended offset s, latency s, status, region), by offset.
    events: list[tuple[float, float, str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.events:
            del data["events"]
        return data

    def decode_histogram(self) -> HdrHistogram:
        return HdrHistogram.decode(self.histogram.encode("ascii"))

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def latency_summary(histogram: HdrHistogram) -> dict[str, float]:
    if histogram.get_total_count() == 0:
        return {}
    summary = {"min": histogram.get_min_value() / 1000, "mean": histogram.get_mean_value() / 1000}
    for name, percentile in PERCENTILES:
        summary[name] = histogram.get_value_at_percentile(percentile) / 1000
    summary["max"] = histogram.get_max_value() / 1000
    return summary


def merge(options: BenchOptions, results: Sequence[WorkerResult]) -> BenchReport:
    histogram = new_histogram()
    errors: Counter[str] = Counter()
    for result in results:
        histogram.add(HdrHistogram.decode(result.histogram))
        errors.update(result.errors)
    ok = sum(r.ok for r in results)
    elapsed = max(r.elapsed for r in results)
    return BenchReport(
        target=options.target,
        model=options.model,
        arrival=options.arrival,
        processes=options.processes,
        concurrency_limit=options.concurrency_limit,
        batch_size=options.batch_size,
        warmup_s=options.warmup,
        duration_s=options.duration,
        offered_rate=options.rate,
        sent=sum(r.sent for r in results),
        ok=ok,
        errors=dict(sorted(errors.items())),
        elapsed_s=elapsed,
        achieved_rate=ok / elapsed,
        latency_ms=latency_summary(histogram),
        max_send_lag_ms=max(r.max_lag for r in results) * 1000,
        histogram=histogram.encode().decode("ascii"),
        events=sorted(e for r in results for e in r.events),
    )


def render(report: BenchReport, console: Console) -> None:
    table = Table(title=f"edgeinfer bench: {report.model} @ {report.target}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("offered rate", f"{report.offered_rate:,.1f} req/s ({report.arrival})")
    table.add_row("achieved rate", f"{report.achieved_rate:,.1f} req/s")
    table.add_row("duration", f"{report.duration_s:g} s (+{report.warmup_s:g} s warmup)")
    table.add_row("sent / ok", f"{report.sent:,} / {report.ok:,}")
    errors = ", ".join(f"{code} {count:,}" for code, count in report.errors.items())
    table.add_row("errors", f"[red]{errors}[/red]" if errors else "0")
    for name in ("mean", *(p for p, _ in PERCENTILES), "max"):
        value = report.latency_ms.get(name)
        table.add_row(f"latency {name}", "-" if value is None else f"{value:,.3f} ms")
    table.add_row("max send lag", f"{report.max_send_lag_ms:,.1f} ms")
    console.print(table)
