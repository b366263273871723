"""What a canary did in a window: requests by gRPC code, p99 from the latency histogram and shadow agreement, per
version of one model in one region, and the three checks a step is judged on.

Two sources answer the same question (`MetricsSource`):

- `EmbeddedSource` scrapes the region gateway's own /metrics (AdminClient.metrics) and subtracts two snapshots.
  A gateway with workers labels each series with `worker`: the sums below run over every label but the ones
  kept, so the region is seen whole. A counter that went down (a restarted gateway or worker) counts from 0
  again, as Prometheus's increase() does.
- `PrometheusSource` asks Prometheus's HTTP API (/api/v1/query) with PromQL: increase() and histogram_quantile()
  over the window. `queries()` writes the PromQL out; docs/rollout.md lists the same text.

Judging (`judge`): the checks are absolute thresholds on the candidate; the baseline's numbers are carried
beside them for the report. A check fails only once it has enough data; a step passes only when every check
has enough data and holds; otherwise it is inconclusive and never passes.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from edgeinfer.gateway.metrics import (
    GATEWAY_READY,
    GATEWAY_REQUEST_SECONDS,
    GATEWAY_REQUESTS,
    GATEWAY_SHADOW_COMPARISONS,
    GATEWAY_SHADOW_SECONDS,
    SHADOW_RESULTS,
)

# gRPC codes that are the caller's fault: a canary is not blamed for them (contract C4).
CLIENT_ERROR_CODES = frozenset(
    {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "FAILED_PRECONDITION",
        "OUT_OF_RANGE",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "CANCELLED",
    }
)
QUANTILE = 0.99
_BUCKETS = GATEWAY_REQUEST_SECONDS + "_bucket"
_SHADOW_BUCKETS = GATEWAY_SHADOW_SECONDS + "_bucket"


class SourceError(Exception):
    """The metrics could not be read this time (a gateway or Prometheus that does not answer, a bad reply)."""


# -- the window ------------------------------------------------------------------------------------------------


@dataclass
class VersionStats:
    """One version's requests in a window. `buckets` are cumulative counts by upper bound (seconds, +Inf last)."""

    requests: float = 0.0
    by_code: dict[str, float] = field(default_factory=dict)
    buckets: list[tuple[float, float]] = field(default_factory=list)
    p99_s: float | None = None  # set by PrometheusSource (histogram_quantile there); else from `buckets`

    @property
    def server_errors(self) -> float:
        return sum(n for code, n in self.by_code.items() if code != "OK" and code not in CLIENT_ERROR_CODES)

    @property
    def client_errors(self) -> float:
        return sum(n for code, n in self.by_code.items() if code in CLIENT_ERROR_CODES)

    @property
    def error_rate(self) -> float | None:
        return self.server_errors / self.requests if self.requests > 0 else None

    @property
    def p99_ms(self) -> float | None:
        seconds = self.p99_s if self.p99_s is not None else histogram_quantile(QUANTILE, self.buckets)
        return None if seconds is None else seconds * 1000.0


@dataclass
class Window:
    """The candidate's and the baseline's requests and the shadow comparisons between them, over `seconds`."""

    seconds: float
    candidate: VersionStats
    baseline: VersionStats
    shadow: dict[str, float] = field(default_factory=dict)  # result -> count
    shadow_p99_ms: float | None = None  # the shadow copies' own p99 (nobody cancels them)

    @property
    def comparisons(self) -> float:
        return self.shadow.get("agree", 0.0) + self.shadow.get("disagree", 0.0)

    @property
    def disagreement(self) -> float | None:
        compared = self.comparisons
        return self.shadow.get("disagree", 0.0) / compared if compared > 0 else None


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """PromQL's histogram_quantile over cumulative (upper bound, count) buckets: linear interpolation inside the
    bucket the rank falls in; the lowest bucket starts at 0; a rank in +Inf answers the highest finite bound.
    None where Prometheus answers NaN (no +Inf bucket, fewer than two buckets, no observations)."""
    ordered = sorted(buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return None
    # Counts must not go down with the bound (they can, when buckets are scraped a moment apart): as Prometheus
    # does, each takes at least the one before.
    fixed: list[tuple[float, float]] = []
    for bound, count in ordered:
        fixed.append((bound, max(count, fixed[-1][1]) if fixed else count))
    total = fixed[-1][1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, (_, count) in enumerate(fixed) if count >= rank)
    if index == len(fixed) - 1:
        return fixed[-2][0]
    upper, count = fixed[index]
    if index == 0 and upper <= 0:
        return upper
    lower, below = (0.0, 0.0) if index == 0 else fixed[index - 1]
    in_bucket = count - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


# -- the checks ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    max_p99_ms: float = 100.0
    max_error_rate: float = 0.01
    min_requests: int = 50
    max_disagreement: float = 0.01
    # Shadow comparisons needed to judge agreement; None = min_requests (docs/rollout.md, "The checks").
    min_comparisons: int | None = None

    @property
    def comparisons_needed(self) -> int:
        return self.min_requests if self.min_comparisons is None else self.min_comparisons


@dataclass
class Check:
    name: str  # "error rate" | "p99" | "disagreement"
    value: float | None
    threshold: float
    enough: bool  # the window holds enough data to judge it
    failed: bool  # enough data and over the threshold
    basis: str  # what it was measured on, e.g. "7 server errors of 312 requests"
    baseline: float | None = None  # the baseline's value, for the report

    def describe(self) -> str:
        shown = "-" if self.value is None else _number(self.name, self.value)
        limit = _number(self.name, self.threshold)
        against = "" if self.baseline is None else f"; baseline {_number(self.name, self.baseline)}"
        return f"{self.name} {shown} > {limit} ({self.basis}{against})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(name: str, value: float) -> str:
    return f"{value:.1f} ms" if name == "p99" else f"{value:.4f}"


PASS, FAIL, INCONCLUSIVE, PENDING = "pass", "fail", "inconclusive", "pending"


@dataclass
class Verdict:
    verdict: str  # pass | fail | inconclusive | pending (mid-interval, nothing failed yet)
    checks: list[Check]
    reason: str = ""

    @property
    def failing(self) -> Check | None:
        return next((c for c in self.checks if c.failed), None)


def judge(window: Window, thresholds: Thresholds, *, shadow: bool, final: bool, shadow_only: bool = False) -> Verdict:
    """The three checks on `window`. `shadow`: agreement is judged (shadow on, and the baseline still gets
    traffic to copy). `final`: the interval is over, so missing data makes the step inconclusive. `shadow_only`:
    the 0 % step, where the candidate serves no caller: only agreement is judged."""
    c, b = window.candidate, window.baseline
    enough_requests = c.requests >= thresholds.min_requests or shadow_only
    served = f"{c.requests:.0f} requests"
    checks = (
        []
        if shadow_only
        else [
            Check(
                "error rate",
                c.error_rate,
                thresholds.max_error_rate,
                enough_requests,
                enough_requests and (c.error_rate or 0.0) > thresholds.max_error_rate,
                f"{c.server_errors:.0f} server errors of {served}"
                + (f", {c.client_errors:.0f} client errors not counted" if c.client_errors else ""),
                b.error_rate,
            ),
            Check(
                "p99",
                c.p99_ms,
                thresholds.max_p99_ms,
                enough_requests and c.p99_ms is not None,
                enough_requests and c.p99_ms is not None and c.p99_ms > thresholds.max_p99_ms,
                f"{served}, from the histogram",
                b.p99_ms,
            ),
        ]
    )
    if shadow_only:
        # No caller reaches the candidate yet: its server errors are those of the shadow copies.
        copies = sum(window.shadow.get(r, 0.0) for r in ("agree", "disagree", "error"))
        enough_copies = copies >= thresholds.comparisons_needed
        copy_errors = window.shadow.get("error", 0.0)
        copy_rate = copy_errors / copies if copies else None
        checks.append(
            Check(
                "error rate",
                copy_rate,
                thresholds.max_error_rate,
                enough_copies,
                enough_copies and (copy_rate or 0.0) > thresholds.max_error_rate,
                f"{copy_errors:.0f} errors of {copies:.0f} shadow copies",
                b.error_rate,
            )
        )
        shadow_p99 = window.shadow_p99_ms
        checks.append(
            Check(
                "p99",
                shadow_p99,
                thresholds.max_p99_ms,
                enough_copies and shadow_p99 is not None,
                enough_copies and shadow_p99 is not None and shadow_p99 > thresholds.max_p99_ms,
                f"{copies:.0f} shadow copies, from the histogram",
                b.p99_ms,
            )
        )
    if shadow:
        needed = thresholds.comparisons_needed
        enough_shadow = window.comparisons >= needed
        disagreement = window.disagreement
        checks.append(
            Check(
                "disagreement",
                disagreement,
                thresholds.max_disagreement,
                enough_shadow,
                enough_shadow and (disagreement or 0.0) > thresholds.max_disagreement,
                f"{window.shadow.get('disagree', 0.0):.0f} of {window.comparisons:.0f} shadow comparisons"
                + _shadow_extra(window.shadow),
            )
        )
    failing = next((check for check in checks if check.failed), None)
    if failing is not None:
        return Verdict(FAIL, checks, failing.describe())
    short = [check for check in checks if not check.enough]
    if not short:
        return Verdict(PASS if final else PENDING, checks)
    reasons = []
    if not enough_requests and not shadow_only:
        reasons.append(f"the candidate served {c.requests:.0f} requests (< {thresholds.min_requests})")
    if shadow and not checks[-1].enough:
        reasons.append(f"{window.comparisons:.0f} shadow comparisons (< {thresholds.comparisons_needed})")
    return Verdict(INCONCLUSIVE if final else PENDING, checks, "; ".join(reasons))


def _shadow_extra(shadow: Mapping[str, float]) -> str:
    extra = [f"{shadow[r]:.0f} {r}" for r in ("error", "dropped") if shadow.get(r)]
    return f" ({', '.join(extra)} not compared)" if extra else ""


# -- sources ---------------------------------------------------------------------------------------------------


class MetricsSource(Protocol):
    """One region's metrics for one model's two versions. `begin()` opens a window (a step's interval);
    `window()` measures from there to now. Both raise SourceError when the metrics cannot be read."""

    def begin(self) -> None: ...

    def window(self) -> Window: ...


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str, model: str) -> Series:
    """The samples of `model` that the analysis reads, keyed by (sample name, every label)."""
    wanted = (GATEWAY_REQUESTS, _BUCKETS, GATEWAY_SHADOW_COMPARISONS, _SHADOW_BUCKETS)
    series: Series = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise SourceError(f"/metrics is not Prometheus text: {exc}") from None
    for family in families:
        for sample in family.samples:
            if sample.name in wanted and sample.labels.get("model") == model:
                series[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return series


def increase(before: Series, after: Series) -> Series:
    """Per series, what it gained; a series that went down was reset and counts from 0 (as increase() does)."""
    gained: Series = {}
    for key, now in after.items():
        then = before.get(key, 0.0)
        gained[key] = now - then if now >= then else now
    return gained


def window_from_series(gained: Series, seconds: float, baseline: str, candidate: str) -> Window:
    """Sum the gained series into the candidate's and the baseline's stats (over every other label: cache,
    worker, region) and the shadow comparisons of candidate against baseline."""
    stats = {baseline: VersionStats(), candidate: VersionStats()}
    buckets: dict[str, dict[float, float]] = {baseline: defaultdict(float), candidate: defaultdict(float)}
    shadow: dict[str, float] = defaultdict(float)
    shadow_buckets: dict[float, float] = defaultdict(float)
    for (name, label_items), value in gained.items():
        labels = dict(label_items)
        version = labels.get("version", "")
        if name == _SHADOW_BUCKETS:
            if version == candidate:
                shadow_buckets[float(labels.get("le", "nan"))] += value
            continue
        if name == GATEWAY_SHADOW_COMPARISONS:
            result = labels.get("result", "")
            if version == candidate and labels.get("baseline") == baseline and result in SHADOW_RESULTS:
                shadow[result] += value
            continue
        if version not in stats:
            continue
        if name == GATEWAY_REQUESTS:
            code = labels.get("code", "")
            stats[version].by_code[code] = stats[version].by_code.get(code, 0.0) + value
            stats[version].requests += value
        elif name == _BUCKETS:
            buckets[version][float(labels.get("le", "nan"))] += value
    for version, by_bound in buckets.items():
        stats[version].buckets = sorted(by_bound.items())
    shadow_p99 = histogram_quantile(QUANTILE, shadow_buckets.items())
    shadow_p99_ms = shadow_p99 * 1000 if shadow_p99 is not None else None
    return Window(seconds, stats[candidate], stats[baseline], dict(shadow), shadow_p99_ms)


class EmbeddedSource:
    """The region gateway's own /metrics: a snapshot at begin(), another at each window()."""

    def __init__(
        self,
        scrape: Callable[[], str],
        model: str,
        baseline: str,
        candidate: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`scrape` returns the /metrics text (AdminClient(address).metrics); it may raise AdminError."""
        self._scrape = scrape
        self.model = model
        self.baseline = baseline
        self.candidate = candidate
        self._clock = clock
        self._start: Series | None = None
        self._started_at = 0.0

    def _read(self) -> Series:
        from edgeinfer.gateway.admin_client import AdminError

        try:
            return parse_metrics(self._scrape(), self.model)
        except AdminError as exc:
            raise SourceError(str(exc)) from None

    def begin(self) -> None:
        self._started_at = self._clock()
        try:
            self._start = self._read()
        except SourceError:
            # The first scrape that answers opens the window instead: a shorter window, never a wrong one.
            self._start = None
            raise

    def window(self) -> Window:
        now = self._read()
        if self._start is None:
            self._start, self._started_at = now, self._clock()
        seconds = self._clock() - self._started_at
        return window_from_series(increase(self._start, now), seconds, self.baseline, self.candidate)


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def promql_queries(region: str, model: str, baseline: str, candidate: str, window_s: int) -> dict[str, str]:
    """The PromQL the analysis sends, by purpose (docs/rollout.md "Queries" shows them with placeholders)."""
    # Versions are Triton's integers (checked by the CLI): nothing to escape in the regex.
    r, m, b, c = (_label_value(v) for v in (region, model, baseline, candidate))
    versions = f"{b}|{c}"
    selector = f'region="{r}", model="{m}", version=~"{versions}"'
    w = f"{window_s}s"
    return {
        "requests": f"sum by (version, code) (increase({GATEWAY_REQUESTS}{{{selector}}}[{w}]))",
        "p99": (f"histogram_quantile({QUANTILE}, sum by (version, le) (increase({_BUCKETS}{{{selector}}}[{w}])))"),
        "shadow": (
            f"sum by (result) (increase({GATEWAY_SHADOW_COMPARISONS}"
            f'{{region="{r}", model="{m}", baseline="{b}", version="{c}"}}[{w}]))'
        ),
        "shadow_p99": (
            f"histogram_quantile({QUANTILE}, sum by (le) (increase({_SHADOW_BUCKETS}"
            f'{{region="{r}", model="{m}", version="{c}"}}[{w}])))'
        ),
        "scraped": f'{GATEWAY_READY}{{region="{r}"}}',
    }


class PrometheusSource:
    """PromQL over Prometheus's HTTP API; the window is [now - begin(), now], in whole seconds."""

    # Below two scrapes increase() has nothing to work with; the window is at least this wide.
    MIN_WINDOW_S = 2

    def __init__(
        self,
        url: str,
        region: str,
        model: str,
        baseline: str,
        candidate: str,
        *,
        timeout: float = 5.0,
        wall: Callable[[], float] = time.time,
        get: Callable[[str, float], bytes] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.region = region
        self.model = model
        self.baseline = baseline
        self.candidate = candidate
        self._timeout = timeout
        self._wall = wall
        self._get = get or _http_get
        self._started_at: float | None = None

    def query(self, promql: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """An instant query → [(labels, value)]; NaN values come back as NaN."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            reply = json.loads(self._get(address, self._timeout).decode())
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"Prometheus {self.url}: {exc}") from None
        if not isinstance(reply, dict) or reply.get("status") != "success":
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise SourceError(f"Prometheus {self.url}: query {promql!r} failed: {error}")
        data = reply.get("data") or {}
        if data.get("resultType") != "vector":
            raise SourceError(
                f"Prometheus {self.url}: query {promql!r}: expected a vector, got {data.get('resultType')}"
            )
        rows = []
        for item in data.get("result", []):
            rows.append((dict(item.get("metric", {})), float(item["value"][1])))
        return rows

    def check_scraped(self) -> None:
        """Preflight: Prometheus scrapes this region's gateway (else the analysis would see no data at all)."""
        rows = self.query(promql_queries(self.region, self.model, self.baseline, self.candidate, 1)["scraped"])
        if not rows:
            raise SourceError(
                f"Prometheus {self.url} has no {GATEWAY_READY}{{region={self.region!r}}}: it does not scrape the "
                f"gateway of region {self.region} (add its admin address to the scrape targets)"
            )

    def begin(self) -> None:
        self._started_at = self._wall()

    def window(self) -> Window:
        now = self._wall()
        started = now if self._started_at is None else self._started_at
        seconds = max(self.MIN_WINDOW_S, math.ceil(now - started))
        queries = promql_queries(self.region, self.model, self.baseline, self.candidate, seconds)
        stats = {self.baseline: VersionStats(), self.candidate: VersionStats()}
        for labels, value in self.query(queries["requests"], now):
            version = stats.get(labels.get("version", ""))
            if version is not None and not math.isnan(value):
                code = labels.get("code", "")
                version.by_code[code] = version.by_code.get(code, 0.0) + value
                version.requests += value
        for labels, value in self.query(queries["p99"], now):
            version = stats.get(labels.get("version", ""))
            if version is not None and not math.isnan(value):
                version.p99_s = value
        shadow = {
            labels.get("result", ""): value
            for labels, value in self.query(queries["shadow"], now)
            if not math.isnan(value)
        }
        shadow_p99 = next((v for _, v in self.query(queries["shadow_p99"], now) if not math.isnan(v)), None)
        shadow_p99_ms = shadow_p99 * 1000 if shadow_p99 is not None else None
        return Window(now - started, stats[self.candidate], stats[self.baseline], shadow, shadow_p99_ms)


def _http_get(address: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(address, timeout=timeout) as reply:
            payload: bytes = reply.read()
            return payload
    except urllib.error.HTTPError as exc:
        # Prometheus answers a bad query with 400 and its JSON error: let the caller read it.
        body: bytes = exc.read()
        if body.startswith(b"{"):
            return body
        raise SourceError(f"GET {address}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(f"GET {address}: {getattr(exc, 'reason', exc)}") from None
