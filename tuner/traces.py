"""Request traces: a synthetic multi-region generator with documented parameters, the trace file, and a reader
for what a gateway recorded (its `--trace console --trace-file` spans).

A trace file is CSV with a JSON header line:

    # edgeinfer-trace 1
    # {"duration_s": 86400, "resolution_s": 1, "day_s": 86400, "start_hour_of_week": 24, "models": {...}, ...}
    t_s,region,model,count

With resolution_s > 0 each row counts the requests of one bin [t_s, t_s + resolution_s) (only non-empty bins
are written; replay spreads them uniformly inside the bin). With resolution_s = 0 each row is one request at
t_s exactly, as a recorded trace is. `.gz` paths are gzip-compressed.

The generator follows the published statistics of the Azure Functions trace (Shahrad et al., ATC'20): 45% of
applications are invoked at most once an hour, 81% at most once a minute, and 40% have an inter-arrival CV
above 1. Each region runs the same model catalog on local time (diurnal cycles shifted by time zone); the
popular models carry bursts whose onsets have heavy-tailed (Pareto) inter-arrival times.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

MAGIC = "# edgeinfer-trace 1"
Pool = tuple[str, str]  # (region, model)


class TraceError(ValueError):
    """A trace file or span file that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    profile: str  # a name in tuner.profiles
    hit_ratio: float = 0.0  # share of requests the gateway cache answers
    kind: str = "poisson"  # popular | poisson | timer | bursty
    daily_rate: float = 0.0  # generator's mean requests/s before the region scale


@dataclass
class Trace:
    duration_s: float
    resolution_s: float  # 0: `times` holds exact arrivals
    day_s: float = 86400.0  # length of one diurnal cycle (shorter in a compressed trace)
    start_hour_of_week: float = 0.0  # hour of the week (UTC, Monday 00:00 = 0) at t = 0
    models: dict[str, ModelInfo] = field(default_factory=dict)
    regions: dict[str, float] = field(default_factory=dict)  # region -> UTC offset in hours
    counts: dict[Pool, np.ndarray] = field(default_factory=dict)
    times: dict[Pool, np.ndarray] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def pools(self) -> list[Pool]:
        return sorted(set(self.counts) | set(self.times))

    def total(self, pool: Pool) -> int:
        if pool in self.times:
            return len(self.times[pool])
        return int(self.counts[pool].sum()) if pool in self.counts else 0

    def arrivals(self, pool: Pool, rng: np.random.Generator) -> np.ndarray:
        """Sorted arrival times (s); binned counts are spread uniformly inside their bin."""
        if pool in self.times:
            return np.sort(self.times[pool])
        counts = self.counts.get(pool)
        if counts is None:
            return np.empty(0)
        starts = np.repeat(np.arange(len(counts), dtype=np.float64) * self.resolution_s, counts)
        return np.sort(starts + rng.random(len(starts)) * self.resolution_s)

    def binned(self, pool: Pool, resolution_s: float) -> np.ndarray:
        """Counts per bin of `resolution_s` over the whole duration."""
        bins = max(1, math.ceil(self.duration_s / resolution_s - 1e-9))
        if pool in self.times:
            index = np.minimum((self.times[pool] / resolution_s).astype(np.int64), bins - 1)
            return np.bincount(index, minlength=bins)
        counts = self.counts.get(pool)
        if counts is None:
            return np.zeros(bins, dtype=np.int64)
        ratio = resolution_s / self.resolution_s
        if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
            raise ValueError(f"cannot rebin a {self.resolution_s}s trace to {resolution_s}s bins")
        step = round(ratio)
        padded = np.zeros(bins * step, dtype=np.int64)
        padded[: min(len(counts), len(padded))] = counts[: len(padded)]
        return np.asarray(padded.reshape(bins, step).sum(axis=1))

    # -- files ---------------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration_s,
            "resolution_s": self.resolution_s,
            "day_s": self.day_s,
            "start_hour_of_week": self.start_hour_of_week,
            "models": {name: asdict(info) for name, info in sorted(self.models.items())},
            "regions": self.regions,
            "params": self.params,
        }

    def write(self, path: Path) -> None:
        with _open(path, "w") as out:
            out.write(MAGIC + "\n# " + json.dumps(self.header()) + "\nt_s,region,model,count\n")
            for region, model in self.pools():
                if (region, model) in self.times:
                    for t in np.sort(self.times[(region, model)]):
                        out.write(f"{t:.6f},{region},{model},1\n")
                    continue
                counts = self.counts[(region, model)]
                for i in np.flatnonzero(counts):
                    out.write(f"{i * self.resolution_s:g},{region},{model},{int(counts[i])}\n")


@contextlib.contextmanager
def _open(path: Path, mode: str) -> Iterator[IO[str]]:
    if str(path).endswith(".gz"):
        with gzip.open(path, mode + "t", encoding="utf-8") as handle:
            yield handle  # type: ignore[misc]
    else:
        with open(path, mode, encoding="utf-8", newline="") as handle:
            yield handle


def read_trace(path: Path) -> Trace:
    """A trace file (this module's CSV) or a gateway span file (JSON lines), chosen by its first line."""
    try:
        with _open(path, "r") as handle:
            first = handle.readline()
            if first.startswith("{"):
                return read_spans([path])
            if first.strip() != MAGIC:
                raise TraceError(f"{path}: line 1: expected '{MAGIC}' or a JSON span; is this a trace file?")
            return _read_csv(path, handle)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_csv(path: Path, handle: IO[str]) -> Trace:
    line = handle.readline()
    try:
        header = json.loads(line.lstrip("# "))
        duration, resolution = float(header["duration_s"]), float(header["resolution_s"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise TraceError(f"{path}: line 2: the JSON header needs duration_s and resolution_s ({exc})") from None
    if duration <= 0 or resolution < 0:
        raise TraceError(f"{path}: line 2: duration_s must be > 0 and resolution_s >= 0")
    models = {name: ModelInfo(**info) for name, info in (header.get("models") or {}).items()}
    trace = Trace(
        duration, resolution, float(header.get("day_s", 86400.0)), float(header.get("start_hour_of_week", 0.0)),
        models, dict(header.get("regions") or {}), params=dict(header.get("params") or {}),
    )  # fmt: skip
    if handle.readline().strip() != "t_s,region,model,count":
        raise TraceError(f"{path}: line 3: expected the column line 't_s,region,model,count'")
    rows: dict[Pool, tuple[list[float], list[int]]] = {}
    for number, row in enumerate(csv.reader(handle), start=4):
        if not row:
            continue
        try:
            t, region, model, count = float(row[0]), row[1], row[2], int(row[3])
        except (ValueError, IndexError):
            raise TraceError(f"{path}: line {number}: expected t_s,region,model,count, got {','.join(row)!r}") from None
        if t < 0 or t >= duration + 1e-6 or count < 0:
            raise TraceError(f"{path}: line {number}: t_s must be in [0, {duration:g}) and count >= 0")
        times, counts = rows.setdefault((region, model), ([], []))
        times.append(t)
        counts.append(count)
    bins = max(1, math.ceil(duration / resolution - 1e-9)) if resolution > 0 else 0
    for pool, (times, counts) in rows.items():
        t_arr, c_arr = np.asarray(times), np.asarray(counts, dtype=np.int64)
        if resolution == 0:
            trace.times[pool] = np.sort(np.repeat(t_arr, c_arr))
        else:
            trace.counts[pool] = np.bincount(
                np.minimum((t_arr / resolution + 1e-9).astype(np.int64), bins - 1), c_arr, minlength=bins
            ).astype(np.int64)
    return trace


def read_spans(paths: Iterable[Path], hit_ratio: float = 0.0) -> Trace:
    """A recorded trace from gateway span files (`edgeinfer gateway --trace console --trace-file F`): one request
    per `gateway.ModelInfer` span, the region from the span's service name `edgeinfer-gateway-<region>`."""
    arrivals: dict[Pool, list[float]] = {}
    for path in paths:
        with _open(Path(path), "r") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    span = json.loads(line)
                except json.JSONDecodeError:
                    raise TraceError(f"{path}: line {number}: not a JSON span") from None
                if span.get("name") != "gateway.ModelInfer":
                    continue
                service = str(span.get("resource", {}).get("attributes", {}).get("service.name", ""))
                region = service.removeprefix("edgeinfer-gateway-") or "local"
                model = span.get("attributes", {}).get("model")
                try:
                    start = datetime.fromisoformat(str(span["start_time"]).replace("Z", "+00:00")).timestamp()
                except (KeyError, ValueError):
                    raise TraceError(f"{path}: line {number}: span has no ISO start_time") from None
                if not model:
                    raise TraceError(f"{path}: line {number}: span has no 'model' attribute")
                arrivals.setdefault((region, str(model)), []).append(start)
    if not arrivals:
        raise TraceError("no gateway.ModelInfer spans found; record with `edgeinfer gateway --trace console "
                         "--trace-file FILE`")  # fmt: skip
    origin = min(min(v) for v in arrivals.values())
    times = {pool: np.sort(np.asarray(v) - origin) for pool, v in arrivals.items()}
    duration = max(float(t[-1]) for t in times.values()) + 1.0
    models = {model: ModelInfo("fraud" if model == "fraud" else "ranker", hit_ratio) for _, model in times}
    return Trace(duration, 0.0, models=models, regions={r: 0.0 for r, _ in times}, times=times)


# -- the generator ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionSpec:
    name: str
    utc_offset_h: float
    scale: float  # traffic relative to the largest region


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    profile: str
    kind: str  # popular | poisson | timer | bursty
    daily_rate: float  # mean requests/s over a day, before the region scale
    hit_ratio: float


DEFAULT_REGIONS = (RegionSpec("us-east", -5.0, 1.0), RegionSpec("eu-west", 0.0, 0.8), RegionSpec("ap-south", 5.5, 0.6))


@dataclass(frozen=True)
class TraceParams:
    """Every knob of the synthetic trace; `edgeinfer trace generate --help` documents the flags."""

    hours: float = 24.0
    seed: int = 1  # arrivals and bursts
    catalog_seed: int = 1  # which models exist, their kinds and rates
    resolution_s: float = 1.0
    day_s: float = 86400.0  # one diurnal cycle; 600 compresses a day into 10 minutes
    start_hour_of_week: float = 24.0  # Tuesday 00:00 UTC
    regions: tuple[RegionSpec, ...] = DEFAULT_REGIONS
    peak_local_hour: float = 14.0
    trough_ratio: float = 0.1  # night rate / afternoon peak rate
    weekend_factor: float = 0.7
    models: int = 16
    # Azure Functions: 45% of apps at most once an hour, 81% at most once a minute, 40% with IAT CV > 1.
    share_hourly_or_less: float = 0.45
    share_minutely_or_less: float = 0.81
    share_cv_above_1: float = 0.40
    popular_rates: tuple[float, ...] = (30.0, 8.0, 2.0)  # daily-mean rps of the most popular models
    popular_profiles: tuple[str, ...] = ("vision", "reranker", "embedder")
    other_profiles: tuple[str, ...] = ("embedder", "reranker", "vision")
    # Bursts of popular models: onsets with Pareto inter-arrival times (heavy tail), log-normal durations,
    # and a Pareto-distributed rate multiplier.
    burst_gap_mean_s: float = 7200.0
    burst_gap_alpha: float = 1.5
    burst_duration_median_s: float = 90.0
    burst_duration_sigma: float = 0.8
    burst_multiplier_min: float = 2.0
    burst_multiplier_alpha: float = 2.0
    burst_multiplier_max: float = 8.0
    session_mean_requests: float = 8.0  # bursty models: requests per session
    session_gap_s: float = 20.0  # bursty models: mean gap inside a session
    hit_ratio: float = 0.3
    popular: int | None = None  # number of popular models (default: from share_minutely_or_less)
    names: tuple[str, ...] = ()  # model names in catalog order (default m00, m01, ...)
    # Compressed traces only: multiply every rate (keeps a 10-minute day's load within one machine).
    rate_scale: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["regions"] = [asdict(r) for r in self.regions]
        return data


def catalog(params: TraceParams, rng: np.random.Generator) -> list[CatalogEntry]:
    """The model catalog: popular models first, then medium (at most once a minute) and rare (at most hourly)."""
    n = params.models
    n_popular = min(len(params.popular_rates), max(0, round(n * (1 - params.share_minutely_or_less))))
    if params.popular is not None:
        n_popular = min(len(params.popular_rates), params.popular, n)
    n_rare = round(n * params.share_hourly_or_less)
    n_medium = n - n_popular - n_rare
    entries: list[CatalogEntry] = []
    for i in range(n_popular):
        entries.append(
            CatalogEntry(f"m{i:02d}", params.popular_profiles[i % len(params.popular_profiles)], "popular",
                         params.popular_rates[i], params.hit_ratio)
        )  # fmt: skip
    # Popular models have CV > 1 (diurnal cycle and bursts); the rest of the CV > 1 share are bursty sessions.
    n_bursty = max(0, round(n * params.share_cv_above_1) - n_popular)
    others = n_medium + n_rare
    kinds = ["bursty"] * min(n_bursty, others)
    n_timer = (others - len(kinds)) // 2
    kinds += ["timer"] * n_timer + ["poisson"] * (others - len(kinds) - n_timer)
    kinds = list(rng.permutation(kinds)) if kinds else []
    for j in range(others):
        rare = j >= n_medium
        # Requests per hour: medium between 1.5 and 50 (under one a minute), rare between 0.1 and 0.9.
        low, high = (0.1, 0.9) if rare else (1.5, 50.0)
        per_hour = float(math.exp(rng.uniform(math.log(low), math.log(high))))
        entries.append(
            CatalogEntry(f"m{n_popular + j:02d}", params.other_profiles[j % len(params.other_profiles)],
                         str(kinds[j]), per_hour / 3600.0, params.hit_ratio)
        )  # fmt: skip
    if params.names:
        named = dict(zip(range(len(entries)), params.names, strict=False))
        entries = [CatalogEntry(named.get(i, e.name), e.profile, e.kind, e.daily_rate, e.hit_ratio)
                   for i, e in enumerate(entries)]  # fmt: skip
    return entries


def diurnal(params: TraceParams, region: RegionSpec, t: np.ndarray) -> np.ndarray:
    """Rate multiplier at times t (s), mean 1 over a weekday: a raised cosine peaking at peak_local_hour."""
    day_fraction = ((t / params.day_s) * 24.0 + params.start_hour_of_week + region.utc_offset_h) % 24.0
    wave = 0.5 * (1 + np.cos(2 * np.pi * (day_fraction - params.peak_local_hour) / 24.0))
    shape = params.trough_ratio + (1 - params.trough_ratio) * wave
    mean = params.trough_ratio + (1 - params.trough_ratio) * 0.5
    weekday = ((t / params.day_s) + (params.start_hour_of_week + region.utc_offset_h) / 24.0) % 7.0
    week = np.where(weekday >= 5.0, params.weekend_factor, 1.0)
    return np.asarray(shape / mean * week)


def _burst_multiplier(params: TraceParams, rng: np.random.Generator, seconds: int) -> np.ndarray:
    """Per-second rate multiplier of one popular pool: 1 outside bursts."""
    out = np.ones(seconds)
    alpha = params.burst_gap_alpha
    scale = params.burst_gap_mean_s * (alpha - 1) / alpha  # Pareto mean = alpha·scale/(alpha-1)
    t = float(rng.random() * params.burst_gap_mean_s)
    while t < seconds:
        duration = params.burst_duration_median_s * math.exp(params.burst_duration_sigma * rng.standard_normal())
        multiplier = min(params.burst_multiplier_max,
                         params.burst_multiplier_min * (1 - rng.random()) ** (-1 / params.burst_multiplier_alpha))
        start, end = int(t), min(seconds, int(t + duration) + 1)
        out[start:end] = np.maximum(out[start:end], multiplier)
        t += scale * (1 - rng.random()) ** (-1 / alpha)
    return out


def _timer_arrivals(rate: float, duration: float, rng: np.random.Generator) -> np.ndarray:
    period = 1.0 / rate
    phase = rng.random() * period
    base = np.arange(phase, duration, period)
    return np.clip(base + rng.normal(0, 0.02 * period, len(base)), 0, duration - 1e-6)


def _session_arrivals(params: TraceParams, rate_fn: Any, mean_rate: float, duration: float,
                      rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    sessions_rate = mean_rate / params.session_mean_requests
    starts = _poisson_times(lambda t: sessions_rate * rate_fn(t), sessions_rate * 2.5, duration, rng)
    out: list[np.ndarray] = []
    for start in starts:
        size = int(rng.geometric(1.0 / params.session_mean_requests))
        out.append(start + np.cumsum(np.concatenate([[0.0], rng.exponential(params.session_gap_s, size - 1)])))
    times = np.concatenate(out) if out else np.empty(0)
    return np.sort(times[times < duration])


def _poisson_times(rate_fn: Any, bound: float, duration: float, rng: np.random.Generator) -> np.ndarray:
    """Non-homogeneous Poisson arrivals by thinning (rate_fn(t) <= bound)."""
    n = rng.poisson(bound * duration)
    candidates = np.sort(rng.random(n) * duration)
    keep = rng.random(n) * bound < rate_fn(candidates)
    return np.asarray(candidates[keep])


def generate(params: TraceParams) -> Trace:
    rng = np.random.default_rng(params.seed)
    duration = params.hours * 3600.0 * params.day_s / 86400.0
    if params.resolution_s <= 0:
        raise ValueError("resolution_s must be positive for a generated trace")
    bins = math.ceil(duration / params.resolution_s - 1e-9)
    # The catalog has its own seed: a history and the day after it share their models.
    entries = catalog(params, np.random.default_rng(params.catalog_seed))
    trace = Trace(
        duration, params.resolution_s, params.day_s, params.start_hour_of_week,
        {e.name: ModelInfo(e.profile, e.hit_ratio, e.kind, e.daily_rate) for e in entries},
        {r.name: r.utc_offset_h for r in params.regions}, params=params.as_dict(),
    )  # fmt: skip
    for region in params.regions:
        for entry in entries:
            # Rates are per trace second: a compressed day keeps the rates and shortens the cycle.
            mean = entry.daily_rate * region.scale * params.rate_scale
            if entry.kind == "popular":
                seconds = math.ceil(duration)
                t = np.arange(seconds, dtype=np.float64) + 0.5
                bursts = _burst_multiplier(params, rng, seconds)
                per_second = rng.poisson(mean * diurnal(params, region, t) * bursts)
                counts = np.bincount(np.minimum((np.arange(seconds) / params.resolution_s).astype(np.int64), bins - 1),
                                     per_second, minlength=bins)  # fmt: skip
                trace.counts[(region.name, entry.name)] = counts.astype(np.int64)
                continue
            rate = mean
            if entry.kind == "timer":
                times = _timer_arrivals(rate, duration, rng)
            elif entry.kind == "bursty":
                times = _session_arrivals(params, lambda t, r=region: diurnal(params, r, t), rate, duration, rng)
            else:
                times = _poisson_times(lambda t, r=region, k=rate: k * diurnal(params, r, t), rate * 2.5, duration, rng)
            index = np.minimum((times / params.resolution_s).astype(np.int64), bins - 1)
            trace.counts[(region.name, entry.name)] = np.bincount(index, minlength=bins).astype(np.int64)
    return trace


@dataclass(frozen=True)
class TraceStats:
    pools: int
    requests: int
    share_hourly_or_less: float
    share_minutely_or_less: float
    share_cv_above_1: float
    per_pool: dict[str, dict[str, float]]


def trace_stats(trace: Trace, seed: int = 0) -> TraceStats:
    """The Azure statistics of a trace, per (region, model) pool: invocation frequency and inter-arrival CV."""
    rng = np.random.default_rng(seed)
    hours = trace.duration_s / 3600.0 * 86400.0 / trace.day_s
    per_pool: dict[str, dict[str, float]] = {}
    hourly = minutely = cv_above = 0
    requests = 0
    for pool in trace.pools():
        times = trace.arrivals(pool, rng)
        requests += len(times)
        per_hour = len(times) / hours
        gaps = np.diff(times)
        cv = float(gaps.std() / gaps.mean()) if len(gaps) > 1 and gaps.mean() > 0 else 0.0
        hourly += per_hour <= 1.0
        minutely += per_hour <= 60.0
        cv_above += cv > 1.0
        per_pool[f"{pool[0]}/{pool[1]}"] = {"requests": float(len(times)), "per_hour": per_hour, "iat_cv": cv}
    n = max(1, len(per_pool))
    return TraceStats(len(per_pool), requests, hourly / n, minutely / n, cv_above / n, per_pool)


def format_stats(stats: TraceStats) -> str:
    buffer = io.StringIO()
    buffer.write(
        f"{stats.pools} pools, {stats.requests:,} requests; at most once an hour: "
        f"{100 * stats.share_hourly_or_less:.0f}% (Azure 45%), at most once a minute: "
        f"{100 * stats.share_minutely_or_less:.0f}% (Azure 81%), inter-arrival CV > 1: "
        f"{100 * stats.share_cv_above_1:.0f}% (Azure 40%)\n"
    )
    return buffer.getvalue()
