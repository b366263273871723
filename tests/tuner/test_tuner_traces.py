"""The synthetic generator's statistics, the trace file, and recorded gateway spans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.tuner.traces import TraceError, TraceParams, generate, read_trace, trace_stats


def test_generated_trace_follows_the_azure_statistics() -> None:
    trace = generate(TraceParams(hours=24, seed=3, resolution_s=10, popular_rates=(3.0, 1.0, 0.3)))
    stats = trace_stats(trace)
    assert stats.pools == 48
    assert abs(stats.share_hourly_or_less - 0.45) <= 0.1
    assert abs(stats.share_minutely_or_less - 0.81) <= 0.1
    assert abs(stats.share_cv_above_1 - 0.40) <= 0.12


def test_diurnal_cycles_follow_each_region_s_time_zone() -> None:
    trace = generate(TraceParams(hours=24, seed=4, resolution_s=60, popular_rates=(5.0,), models=6,
                                   burst_gap_mean_s=1e9))
    peak_hours = {}
    for region in ("us-east", "eu-west", "ap-south"):
        per_hour = trace.binned((region, "m00"), 3600.0)
        peak_hours[region] = int(np.argmax(per_hour))
    # Peak at 14:00 local: eu-west ~14 UTC, us-east ~19 UTC, ap-south ~8-9 UTC.
    assert abs(peak_hours["eu-west"] - 14) <= 2
    assert abs(peak_hours["us-east"] - 19) <= 2
    assert abs(peak_hours["ap-south"] - 8.5) <= 2


def test_trace_file_round_trip(tmp_path: Path) -> None:
    trace = generate(TraceParams(hours=2, seed=5, resolution_s=1, popular_rates=(2.0, 0.5), models=5))
    path = tmp_path / "t.csv.gz"
    trace.write(path)
    back = read_trace(path)
    busy = [p for p in trace.pools() if trace.total(p)]  # a pool without requests has no rows
    assert back.pools() == busy
    for pool in busy:
        assert np.array_equal(back.counts[pool], trace.counts[pool])
    assert back.models == trace.models and back.duration_s == trace.duration_s


def test_bad_trace_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('# edgeinfer-trace 1\n# {"duration_s": 60, "resolution_s": 1}\nt_s,region,model,count\n1,a,b,x\n')
    with pytest.raises(TraceError, match="line 4"):
        read_trace(path)


def test_recorded_gateway_spans_become_a_trace(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    lines = []
    for i, (model, region) in enumerate([("fraud", "eu-west"), ("ranker", "eu-west"), ("fraud", "us-east")] * 3):
        lines.append(json.dumps({
            "name": "gateway.ModelInfer", "start_time": f"2025-01-01T10:00:{i:02d}.000000Z",
            "attributes": {"model": model}, "resource": {"attributes": {"service.name": f"edgeinfer-gateway-{region}"}},
        }))  # fmt: skip
    lines.append(json.dumps({"name": "cache.lookup", "start_time": "2025-01-01T10:00:00Z", "attributes": {}}))
    spans.write_text("\n".join(lines) + "\n")
    trace = read_trace(spans)
    assert trace.pools() == [("eu-west", "fraud"), ("eu-west", "ranker"), ("us-east", "fraud")]
    assert trace.total(("eu-west", "fraud")) == 3
    assert trace.times[("eu-west", "fraud")].tolist() == [0.0, 3.0, 6.0]
