"""The live check's report: per-region SLO misses are reported, not hidden under an aggregate p99."""

from __future__ import annotations

import numpy as np

from edgeinfer.tuner.replay import measured_by_region, slo_misses


def test_a_region_over_the_slo_is_reported_when_the_aggregate_is_under() -> None:
    # 300 requests: us-east and ap-south fast, eu-west with 5% of its requests at 150 ms (its p99 over 100 ms).
    fast = np.full(100, 0.010)
    slow = np.concatenate([np.full(95, 0.010), np.full(5, 0.150)])
    latency = np.concatenate([fast, slow, fast])
    failed = np.zeros(len(latency), dtype=bool)
    regions = np.array(["us-east"] * 100 + ["eu-west"] * 100 + ["ap-south"] * 100)
    by_region = measured_by_region(latency, failed, regions, slo_ms=100.0)
    assert by_region["eu-west"]["p99_over_slo"] is True
    assert by_region["eu-west"]["measured_p99_ms"] == 150.0
    assert by_region["eu-west"]["share_over_slo"] == 0.05
    assert by_region["us-east"]["p99_over_slo"] is False and by_region["ap-south"]["share_over_slo"] == 0.0
    # With 2 slow requests in eu-west (2% of it, 0.7% of the run) the run's p99 is under the SLO, eu-west's is not.
    slow2 = np.concatenate([np.full(98, 0.010), np.full(2, 0.150)])
    latency2 = np.concatenate([fast, slow2, fast])
    overall_p99 = float(np.quantile(latency2, 0.99)) * 1000
    assert overall_p99 < 100.0  # the aggregate alone would say every region met the SLO
    result = {"regions": measured_by_region(latency2, failed, regions, 100.0), "measured_p99_ms": overall_p99}
    misses = slo_misses(result, 100.0)
    assert len(misses) == 1 and misses[0].startswith("eu-west: p99 ") and "> SLO 100 ms" in misses[0]


def test_failed_requests_count_as_over_the_slo() -> None:
    latency = np.array([0.010] * 99 + [np.nan])
    failed = np.isnan(latency)
    by_region = measured_by_region(latency, failed, np.array(["eu-west"] * 100), slo_ms=100.0)
    assert by_region["eu-west"]["failed"] == 1 and by_region["eu-west"]["share_over_slo"] == 0.01
    all_failed = measured_by_region(np.full(3, np.nan), np.ones(3, dtype=bool), np.array(["us-east"] * 3), 100.0)
    assert all_failed["us-east"]["measured_p99_ms"] is None and all_failed["us-east"]["p99_over_slo"] is True
    assert slo_misses({"regions": all_failed, "measured_p99_ms": None}, 100.0)[-1].startswith("all regions")
