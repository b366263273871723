"""The drill's verdict: windows, budgets and the checks that fail when the stack does not hold."""

from __future__ import annotations

from pathlib import Path

import pytest

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


CLEAN_SERVED = {3: "eu-west", 4: "eu-west", 5: "eu-west", 6: "eu-west"}  # us-east back from 7 s: rejoin 1 s
CLEAN_HEALTH = [HealthChange(3.2, "us-east", "failed_active_health_check"), HealthChange(8.0, "us-east", "healthy")]


def _over_one_budget(broken: str) -> DrillResult:
    """A clean kill drill (every check passes) with exactly one budget exceeded, by a little."""
    events = _steady(CLEAN_SERVED)
    health = list(CLEAN_HEALTH)
    budgets: dict[str, float] = {"max_latency_ms": 250.0}
    if broken == "failed requests":
        events[15] = (1.5, 0.0, "DEADLINE_EXCEEDED", "")
    elif broken == "p99 outside the detection windows (ms)":
        events[15] = (1.5, 0.101, "OK", "us-east")  # 101 ms, outside every window: the p99 of 80 is the slowest
    elif broken == "time to fail over (s)":
        health[0] = HealthChange(4.1, "us-east", "failed_active_health_check")  # 1.1 s after the kill
    elif broken == "time to rejoin after the restore (s)":
        budgets["rejoin_s"] = 0.9  # us-east serves again 1.0 s after the restart
    elif broken == "slowest request (ms)":
        events[35] = (3.5, 0.251, "OK", "eu-west")  # inside the kill's window (p99 spares it), over the max
    return _result(events, health, **budgets)


def test_the_clean_drill_with_a_latency_cap_passes() -> None:
    result = _result(_steady(CLEAN_SERVED), CLEAN_HEALTH, max_latency_ms=250.0).to_dict()["result"]
    assert result["passed"] and all(c["pass"] for c in result["checks"].values()), result["checks"]
    assert len(result["checks"]) == 5


@pytest.mark.parametrize(
    "broken",
    [
        "failed requests",
        "p99 outside the detection windows (ms)",
        "time to fail over (s)",
        "time to rejoin after the restore (s)",
        "slowest request (ms)",
    ],
)
def test_a_report_over_one_budget_fails(broken: str) -> None:
    """Each budget alone fails the report: its check, and the verdict (the drill's exit status follows it)."""
    report = _over_one_budget(broken).to_dict()
    checks = report["result"]["checks"]
    assert [name for name, check in checks.items() if not check["pass"]] == [broken], checks
    assert report["result"]["passed"] is False
