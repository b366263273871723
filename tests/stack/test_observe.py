from __future__ import annotations

import math

import pytest

from edgeinfer.metrics import quantile_from_buckets
from edgeinfer.stack.observe import model_figures

INF = math.inf

METRICS = """\
# TYPE edgeinfer_gateway_requests_total counter
edgeinfer_gateway_requests_total{cache="miss",code="OK",model="fraud",region="eu-west"} 6.0
edgeinfer_gateway_requests_total{cache="hit-l1",code="OK",model="fraud",region="eu-west"} 3.0
edgeinfer_gateway_requests_total{cache="hit-redis",code="OK",model="fraud",region="eu-west"} 1.0
edgeinfer_gateway_requests_total{cache="bypass",code="INVALID_ARGUMENT",model="fraud",region="eu-west"} 2.0
# TYPE edgeinfer_gateway_request_seconds histogram
edgeinfer_gateway_request_seconds_bucket{cache="miss",le="0.001",model="fraud",region="eu-west"} 0.0
edgeinfer_gateway_request_seconds_bucket{cache="miss",le="0.01",model="fraud",region="eu-west"} 5.0
edgeinfer_gateway_request_seconds_bucket{cache="miss",le="+Inf",model="fraud",region="eu-west"} 6.0
edgeinfer_gateway_request_seconds_count{cache="miss",model="fraud",region="eu-west"} 6.0
edgeinfer_gateway_request_seconds_sum{cache="miss",model="fraud",region="eu-west"} 1.0
edgeinfer_gateway_request_seconds_bucket{cache="hit-l1",le="0.001",model="fraud",region="eu-west"} 94.0
edgeinfer_gateway_request_seconds_bucket{cache="hit-l1",le="0.01",model="fraud",region="eu-west"} 94.0
edgeinfer_gateway_request_seconds_bucket{cache="hit-l1",le="+Inf",model="fraud",region="eu-west"} 94.0
# TYPE edgeinfer_gateway_cold_start_seconds histogram
edgeinfer_gateway_cold_start_seconds_bucket{le="+Inf",model="fraud",region="eu-west"} 2.0
edgeinfer_gateway_cold_start_seconds_count{model="fraud",region="eu-west"} 2.0
edgeinfer_gateway_cold_start_seconds_count{model="ranker",region="eu-west"} 1.0
"""


def test_quantile_interpolates_within_the_bucket() -> None:
    buckets = [(0.1, 50.0), (0.2, 100.0), (INF, 100.0)]
    median, above = quantile_from_buckets(0.5, buckets)
    assert median == pytest.approx(0.1) and not above
    p99, above = quantile_from_buckets(0.99, buckets)
    assert p99 == pytest.approx(0.198) and not above
    assert quantile_from_buckets(0.99, []) == (None, False)
    assert quantile_from_buckets(0.99, [(0.1, 0.0), (INF, 0.0)]) == (None, False)
    # Beyond the largest finite bound: that bound, flagged.
    assert quantile_from_buckets(0.99, [(0.1, 1.0), (INF, 10.0)]) == (0.1, True)


def test_model_figures_from_metrics_and_pools() -> None:
    pools = {"fraud": {"ready": 2, "starting": 1}, "ranker": {"ready": 0, "starting": 0}}
    figures = model_figures(METRICS, pools)
    fraud, ranker = figures["fraud"], figures["ranker"]
    assert (fraud.warm, fraud.starting, ranker.warm) == (2, 1, 0)
    assert (fraud.cold_starts, ranker.cold_starts) == (2, 1)
    assert (fraud.requests, fraud.ok, fraud.hits) == (12, 10, 4)
    assert fraud.hit_ratio == pytest.approx(0.4)
    assert ranker.hit_ratio is None
    # 100 observations: 94 under 1 ms, 5 more under 10 ms, 1 above; rank 99 is the last of the second bucket.
    p99, above = fraud.p99()
    assert p99 == pytest.approx(0.01) and not above
    assert model_figures(None, None) == {}
