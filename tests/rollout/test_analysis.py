"""The analysis: Prometheus text to windows, histogram_quantile as PromQL computes it, the checks, and the PromQL
the Prometheus source sends."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from edgeinfer.rollout.analysis import (
    CLIENT_ERROR_CODES,
    FAIL,
    INCONCLUSIVE,
    PASS,
    PENDING,
    EmbeddedSource,
    PrometheusSource,
    SourceError,
    Thresholds,
    VersionStats,
    Window,
    histogram_quantile,
    increase,
    judge,
    parse_metrics,
    promql_queries,
    window_from_series,
)

TEXT = """# TYPE edgeinfer_gateway_requests_total counter
edgeinfer_gateway_requests_total{model="fraud",version="2",code="OK",cache="miss",worker="0"} 60
edgeinfer_gateway_requests_total{model="fraud",version="2",code="OK",cache="hit-l1",worker="1"} 30
edgeinfer_gateway_requests_total{model="fraud",version="2",code="INTERNAL",cache="bypass",worker="0"} 4
edgeinfer_gateway_requests_total{model="fraud",version="2",code="INVALID_ARGUMENT",cache="bypass",worker="1"} 6
edgeinfer_gateway_requests_total{model="fraud",version="1",code="OK",cache="miss",worker="0"} 900
edgeinfer_gateway_requests_total{model="ranker",version="2",code="INTERNAL",cache="miss",worker="0"} 99
edgeinfer_gateway_requests_total{model="fraud",version="",code="NOT_FOUND",cache="bypass",worker="0"} 7
# TYPE edgeinfer_gateway_request_seconds histogram
edgeinfer_gateway_request_seconds_bucket{model="fraud",version="2",cache="miss",worker="0",le="0.01"} 50
edgeinfer_gateway_request_seconds_bucket{model="fraud",version="2",cache="miss",worker="0",le="0.1"} 90
edgeinfer_gateway_request_seconds_bucket{model="fraud",version="2",cache="miss",worker="0",le="+Inf"} 100
edgeinfer_gateway_request_seconds_count{model="fraud",version="2",cache="miss",worker="0"} 100
edgeinfer_gateway_request_seconds_sum{model="fraud",version="2",cache="miss",worker="0"} 3.2
# TYPE edgeinfer_gateway_shadow_comparisons_total counter
edgeinfer_gateway_shadow_comparisons_total{model="fraud",baseline="1",version="2",result="agree"} 97
edgeinfer_gateway_shadow_comparisons_total{model="fraud",baseline="1",version="2",result="disagree"} 3
edgeinfer_gateway_shadow_comparisons_total{model="fraud",baseline="1",version="2",result="dropped"} 11
edgeinfer_gateway_shadow_comparisons_total{model="fraud",baseline="3",version="2",result="disagree"} 50
"""


def test_histogram_quantile_interpolates_as_promql() -> None:
    # 100 observations: 50 ≤ 10 ms, 40 in (10, 100] ms, 10 above. Rank 0.99*100 = 99 falls in +Inf:
    # PromQL answers the highest finite bound.
    buckets = [(0.01, 50.0), (0.1, 90.0), (math.inf, 100.0)]
    assert histogram_quantile(0.99, buckets) == 0.1
    # Rank 50 → the top of the first bucket; rank 70 → 20 of the 40 in (0.01, 0.1]: halfway.
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.055)
    # The first bucket starts at 0: rank 25 of 50 in [0, 0.01] → 0.005.
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.005)
    # The gateway's buckets, every observation at 4 ms: p99 = 0.002 + 0.003 * 0.99.
    assert histogram_quantile(0.99, [(0.002, 0.0), (0.005, 1000.0), (math.inf, 1000.0)]) == pytest.approx(0.00497)


def test_histogram_quantile_nan_cases_and_non_monotonic_buckets() -> None:
    assert histogram_quantile(0.99, []) is None
    assert histogram_quantile(0.99, [(math.inf, 10.0)]) is None  # fewer than two buckets
    assert histogram_quantile(0.99, [(0.1, 5.0), (0.2, 10.0)]) is None  # no +Inf
    assert histogram_quantile(0.99, [(0.1, 0.0), (math.inf, 0.0)]) is None  # nothing observed
    # A bucket scraped lower than the one below it takes the lower one's count (PromQL's monotonicity fix).
    assert histogram_quantile(0.5, [(0.1, 10.0), (0.2, 8.0), (math.inf, 10.0)]) == pytest.approx(0.05)


def test_parse_sums_workers_and_caches_excludes_client_codes_and_other_models() -> None:
    series = parse_metrics(TEXT, "fraud")
    window = window_from_series(series, 10.0, baseline="1", candidate="2")
    c = window.candidate
    assert c.requests == 100  # 60 + 30 + 4 + 6, both workers, both caches
    assert c.server_errors == 4  # INVALID_ARGUMENT is the caller's
    assert c.client_errors == 6
    assert c.error_rate == pytest.approx(0.04)
    assert window.baseline.requests == 900
    assert "INVALID_ARGUMENT" in CLIENT_ERROR_CODES and "INTERNAL" not in CLIENT_ERROR_CODES
    assert c.p99_ms == pytest.approx(100.0)
    # Only comparisons of this candidate against this baseline; dropped ones are not compared.
    assert window.shadow == {"agree": 97, "disagree": 3, "dropped": 11}
    assert window.comparisons == 100
    assert window.disagreement == pytest.approx(0.03)


def test_increase_treats_a_drop_as_a_reset() -> None:
    key = ("edgeinfer_gateway_requests_total", frozenset({("version", "2"), ("code", "OK")}))
    new = ("edgeinfer_gateway_requests_total", frozenset({("version", "2"), ("code", "INTERNAL")}))
    gained = increase({key: 100.0}, {key: 30.0, new: 5.0})
    assert gained == {key: 30.0, new: 5.0}
    assert increase({key: 100.0}, {key: 130.0})[key] == 30.0


def test_embedded_source_measures_from_begin() -> None:
    texts = [TEXT, TEXT.replace("} 60\n", "} 160\n").replace('result="disagree"} 3', 'result="disagree"} 13')]
    now = [0.0]
    source = EmbeddedSource(lambda: texts[0 if now[0] == 0 else 1], "fraud", "1", "2", clock=lambda: now[0])
    source.begin()
    now[0] = 5.0
    window = source.window()
    assert window.seconds == 5.0
    assert window.candidate.requests == 100
    assert window.candidate.by_code["OK"] == 100 and window.candidate.server_errors == 0
    assert window.shadow.get("disagree") == 10


def test_embedded_source_errors_become_source_errors() -> None:
    from edgeinfer.gateway.admin_client import AdminError

    def down() -> str:
        raise AdminError("GET /metrics: refused")

    source = EmbeddedSource(down, "fraud", "1", "2")
    with pytest.raises(SourceError, match="refused"):
        source.begin()
    with pytest.raises(SourceError, match="not Prometheus text"):
        EmbeddedSource(lambda: "garbage{{{ 1 2 3", "fraud", "1", "2").window()


def _window(
    requests: float, errors: float = 0, latency_ok: bool = True, agree: float = 0, disagree: float = 0
) -> Window:
    bound = 0.005 if latency_ok else 0.25
    candidate = VersionStats(
        requests=requests,
        by_code={"OK": requests - errors, "INTERNAL": errors} if errors else {"OK": requests},
        buckets=[(bound, requests), (math.inf, requests)],
    )
    baseline = VersionStats(requests=1000, by_code={"OK": 1000}, buckets=[(0.005, 1000), (math.inf, 1000)])
    return Window(10.0, candidate, baseline, {"agree": agree, "disagree": disagree})


def test_judge_pass_fail_inconclusive() -> None:
    t = Thresholds(max_p99_ms=100, max_error_rate=0.01, min_requests=50, max_disagreement=0.01)
    good = judge(_window(200, agree=100), t, shadow=True, final=True)
    assert good.verdict == PASS and good.failing is None
    assert judge(_window(200, agree=100), t, shadow=True, final=False).verdict == PENDING

    errors = judge(_window(200, errors=40, agree=100), t, shadow=True, final=False)
    assert errors.verdict == FAIL
    assert errors.failing is not None and errors.failing.name == "error rate"
    assert errors.failing.value == pytest.approx(0.2)
    assert "40 server errors of 200 requests" in errors.reason
    assert "baseline 0.0000" in errors.reason

    slow = judge(_window(200, latency_ok=False, agree=100), t, shadow=True, final=False)
    assert slow.failing is not None and slow.failing.name == "p99"
    assert slow.failing.value is not None and slow.failing.value > 100

    wrong = judge(_window(200, agree=10, disagree=90), t, shadow=True, final=False)
    assert wrong.failing is not None and wrong.failing.name == "disagreement"
    assert [c.failed for c in wrong.checks] == [False, False, True]

    few = judge(_window(49, errors=49), t, shadow=True, final=True)
    assert few.verdict == INCONCLUSIVE  # 100 % errors, but too few requests to judge: never a pass either
    assert "49 requests (< 50)" in few.reason

    no_shadow = judge(_window(200, agree=10), t, shadow=True, final=True)
    assert no_shadow.verdict == INCONCLUSIVE and "10 shadow comparisons (< 50)" in no_shadow.reason
    # Without the shadow (off, or at 100 %) agreement is not judged.
    assert judge(_window(200), t, shadow=False, final=True).verdict == PASS


def test_client_errors_do_not_fail_a_canary() -> None:
    t = Thresholds(min_requests=50)
    window = _window(200)
    window.candidate.by_code = {"OK": 100, "INVALID_ARGUMENT": 50, "NOT_FOUND": 30, "CANCELLED": 20}
    verdict = judge(window, t, shadow=False, final=True)
    assert verdict.verdict == PASS
    assert verdict.checks[0].value == 0.0


def test_promql_queries() -> None:
    queries = promql_queries("us-east", "fraud", "1", "2", 30)
    assert queries["requests"] == (
        'sum by (version, code) (increase(edgeinfer_gateway_requests_total{region="us-east", model="fraud", '
        'version=~"1|2"}[30s]))'
    )
    assert queries["p99"] == (
        "histogram_quantile(0.99, sum by (version, le) (increase(edgeinfer_gateway_request_seconds_bucket"
        '{region="us-east", model="fraud", version=~"1|2"}[30s])))'
    )
    assert queries["shadow"] == (
        'sum by (result) (increase(edgeinfer_gateway_shadow_comparisons_total{region="us-east", model="fraud", '
        'baseline="1", version="2"}[30s]))'
    )
    assert queries["shadow_p99"] == (
        "histogram_quantile(0.99, sum by (le) (increase(edgeinfer_gateway_shadow_seconds_bucket"
        '{region="us-east", model="fraud", version="2"}[30s])))'
    )


def test_the_shadow_step_judges_the_copies_errors_and_latency() -> None:
    enough = Thresholds(min_requests=20)
    nobody = VersionStats()
    slow = Window(5.0, nobody, nobody, {"agree": 40.0}, shadow_p99_ms=240.0)
    verdict = judge(slow, enough, shadow=True, final=False, shadow_only=True)
    assert verdict.verdict == FAIL and verdict.failing is not None and verdict.failing.name == "p99"
    failing = Window(5.0, nobody, nobody, {"agree": 32.0, "error": 8.0}, shadow_p99_ms=3.0)
    verdict = judge(failing, enough, shadow=True, final=False, shadow_only=True)
    assert verdict.failing is not None and verdict.failing.name == "error rate"
    assert verdict.failing.value == 0.2 and "8 errors of 40 shadow copies" in verdict.failing.basis
    healthy = Window(5.0, nobody, nobody, {"agree": 40.0}, shadow_p99_ms=3.0)
    assert judge(healthy, enough, shadow=True, final=True, shadow_only=True).verdict == PASS  # no caller needed
    few = Window(5.0, nobody, nobody, {"agree": 10.0}, shadow_p99_ms=3.0)
    assert judge(few, enough, shadow=True, final=True, shadow_only=True).verdict == INCONCLUSIVE


def _vector(rows: list[tuple[dict[str, str], str]]) -> bytes:
    result = [{"metric": labels, "value": [0, value]} for labels, value in rows]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def test_prometheus_source_reads_the_vectors() -> None:
    asked: list[str] = []
    now = [100.0]

    def get(url: str, timeout: float) -> bytes:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(url).query)["query"][0]
        asked.append(query)
        if "requests_total" in query:
            return _vector(
                [
                    ({"version": "2", "code": "OK"}, "95.5"),
                    ({"version": "2", "code": "UNAVAILABLE"}, "4.5"),
                    ({"version": "2", "code": "CANCELLED"}, "3"),
                    ({"version": "1", "code": "OK"}, "900"),
                ]
            )
        if "histogram_quantile" in query:
            return _vector([({"version": "2"}, "0.25"), ({"version": "1"}, "NaN")])
        return _vector([({"result": "agree"}, "40"), ({"result": "disagree"}, "10")])

    source = PrometheusSource("http://prom:9090/", "us-east", "fraud", "1", "2", wall=lambda: now[0], get=get)
    source.begin()
    now[0] = 112.4
    window = source.window()
    assert all("[13s]" in q for q in asked)  # the window since begin(), rounded up
    assert window.candidate.requests == pytest.approx(103)
    assert window.candidate.server_errors == pytest.approx(4.5)
    assert window.candidate.p99_ms == pytest.approx(250)
    assert window.baseline.p99_s is None  # NaN: no data
    assert window.disagreement == pytest.approx(0.2)


def test_prometheus_source_errors() -> None:
    def bad(url: str, timeout: float) -> bytes:
        return json.dumps({"status": "error", "errorType": "bad_data", "error": "parse error"}).encode()

    def empty(url: str, timeout: float) -> bytes:
        return _vector([])

    with pytest.raises(SourceError, match="parse error"):
        PrometheusSource("http://prom:9090", "us-east", "fraud", "1", "2", get=bad).window()
    with pytest.raises(SourceError, match="does not scrape the gateway of region us-east"):
        PrometheusSource("http://prom:9090", "us-east", "fraud", "1", "2", get=empty).check_scraped()
    source: Any = PrometheusSource("http://127.0.0.1:1", "us-east", "fraud", "1", "2", timeout=1.0)
    with pytest.raises(SourceError, match=r"127\.0\.0\.1:1"):
        source.window()
