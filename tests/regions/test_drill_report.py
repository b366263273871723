"""The drill's verdict: windows, budgets and the checks that fail when the stack does not hold."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.regions.drill_report import Action, Budgets, DrillResult, HealthChange, plot, timeline


def _result(events: list[tuple[float, float, str, str]], health: list[HealthChange], **budgets: float) -> DrillResult:
    return DrillResult(
        scenario="kill",
        region="us-east",
        rps=100,
        duration_s=10,
        command="edgeinfer drill --scenario kill",
        budgets=Budgets(**budgets),  # type: ignore[arg-type]
        actions=[Action(3.0, "kill"), Action(6.0, "restart")],
        health=health,
        events=events,
    )


def _steady(region_at: dict[int, str], latency: float = 0.005) -> list[tuple[float, float, str, str]]:
    return [(t / 10, latency, "OK", region_at.get(int(t / 10), "us-east")) for t in range(100)]


def test_a_clean_failover_passes_every_check() -> None:
    served = {3: "eu-west", 4: "eu-west", 5: "eu-west", 6: "eu-west"}
    health = [HealthChange(3.2, "us-east", "failed_active_health_check"), HealthChange(8.0, "us-east", "healthy")]
    result = _result(_steady(served), health).analyse()
    assert result["passed"], result["checks"]
    assert abs(result["checks"]["time to fail over (s)"]["value"] - 0.2) < 1e-9
    assert abs(result["checks"]["time to rejoin after the restore (s)"]["value"] - 1.0) < 1e-9
    assert result["served_by_region"] == {"us-east": 60, "eu-west": 40}


def test_each_budget_fails_when_it_is_broken() -> None:
    events = _steady({3: "eu-west", 4: "eu-west", 5: "eu-west", 6: "eu-west", 7: "eu-west", 8: "eu-west", 9: "eu-west"})
    events[50] = (5.0, 0.0, "UNAVAILABLE", "")  # a lost request
    events[52] = (5.2, 0.300, "OK", "eu-west")  # slow outside any window...
    events[53] = (5.3, 0.300, "OK", "eu-west")
    result = _result(events, [], max_latency_ms=250.0).analyse()
    checks = result["checks"]
    assert not result["passed"]
    assert checks["failed requests"]["value"] == 1 and not checks["failed requests"]["pass"]
    assert not checks["p99 outside the detection windows (ms)"]["pass"]
    assert checks["time to fail over (s)"]["value"] is None and not checks["time to fail over (s)"]["pass"]
    assert not checks["time to rejoin after the restore (s)"]["pass"]  # us-east never served again
    assert not checks["slowest request (ms)"]["pass"]


def test_a_slow_request_inside_the_detection_window_is_allowed() -> None:
    events = _steady({3: "eu-west", 4: "eu-west", 5: "eu-west", 6: "eu-west"})
    events[31] = (3.1, 0.400, "OK", "eu-west")  # right after the kill: inside the 1 s window
    health = [HealthChange(3.3, "us-east", "failed_outlier_check")]
    assert _result(events, health).analyse()["checks"]["p99 outside the detection windows (ms)"]["pass"]


def test_timeline_and_plot(tmp_path: Path) -> None:
    events = _steady({5: "eu-west"})
    rows = timeline(events, 10)
    assert [r["sent"] for r in rows] == [10] * 10 and rows[5]["regions"] == {"eu-west": 10}
    report = _result(events, []).to_dict()
    plot(report, tmp_path / "drill.png")
    assert (tmp_path / "drill.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
