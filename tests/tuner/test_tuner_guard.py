"""Regression guard for docs/tuning.md's headline results: the documented 24-hour, three-region run (day seed 1,
history seed 2, the commands of the doc's "24-hour, three-region comparison") is simulated again, and the
tuner's ratios against Knative, fixed peak and hybrid are asserted with bounds; so is the doc's other day (seed 3).

The bounds are the issue's targets and a band around the documented figures. A tuner that falls back to
Knative's behaviour (about 1× the waits) or to fixed peak's (100% of its instance-hours) fails both.

The run takes minutes (about 9 million requests a day through four policies' simulators; 322 s for both days), so it
is kept out of the default suite (it is marked slow as well): `.venv/bin/pytest -m tuner_guard -n 0`, a step of
.ci/run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.tuner_guard, pytest.mark.slow, pytest.mark.timeout(1800)]

# docs/tuning.md, the 24-hour comparison (benchmarks/results/tuning.json): Knative 4,362 waits, fixed peak 1,464.2
# instance-hours, hybrid 2,210 waits and 810.6 instance-hours, the tuner 260 waits and 717.0 instance-hours.
DOCUMENTED_WAITS_RATIO = 16.8  # Knative's cold-start waits / the tuner's
DOCUMENTED_PEAK_SHARE = 0.490  # the tuner's instance-hours / fixed peak's
# The simulation is seeded, so a rerun gives the same figures; the band allows small model changes that keep the
# documented claims true, and anything outside it means the doc (and its result file) must be redone.
WAITS_BAND = (15.0, 19.0)
PEAK_SHARE_BAND = (0.47, 0.50)


def edgeinfer(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeinfer.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1500, check=False)  # fmt: skip


def _run(*args: str, cwd: Path) -> None:
    done = edgeinfer(*args, cwd=cwd)
    assert done.returncode == 0, f"edgeinfer {' '.join(args)}: {done.stderr[-2000:]}"


def _simulate(work: Path, day: str) -> dict[str, Any]:
    _run("simulate", "--trace", day, "--history", "history.csv.gz", "--policy", "knative,fixed-peak,hybrid,tuner",
         "--json", "sim.json", cwd=work)  # fmt: skip
    report: dict[str, Any] = json.loads((work / "sim.json").read_text())
    return report


@pytest.fixture(scope="module")
def history_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("tuner-guard")
    _run("trace", "generate", "--hours", "168", "--seed", "2", "--resolution-s", "10", "--start-hour-of-week", "0",
         "--out", "history.csv.gz", cwd=work)  # fmt: skip
    return work


@pytest.fixture(scope="module")
def day_one(history_dir: Path) -> dict[str, Any]:
    _run("trace", "generate", "--hours", "24", "--seed", "1", "--out", "day.csv.gz", cwd=history_dir)
    return _simulate(history_dir, "day.csv.gz")


def test_the_tuner_has_many_times_fewer_cold_waits_than_knative(day_one: dict[str, Any]) -> None:
    by = {p["policy"]: p for p in day_one["policies"]}
    ratio = by["knative"]["cold_waits"] / max(by["tuner"]["cold_waits"], 1)
    assert ratio >= 10.0, f"{ratio:.1f}× fewer cold-start waits than Knative: the target is at least 10×"
    assert WAITS_BAND[0] <= ratio <= WAITS_BAND[1], (
        f"{ratio:.2f}× (tuner {by['tuner']['cold_waits']}, Knative {by['knative']['cold_waits']}), documented "
        f"{DOCUMENTED_WAITS_RATIO}×: redo docs/tuning.md and benchmarks/results/tuning.json"
    )
    assert day_one["checks"]["knative_cold_waits_over_tuner"] == pytest.approx(ratio, abs=0.01)


def test_the_tuner_needs_under_half_of_fixed_peaks_instance_hours(day_one: dict[str, Any]) -> None:
    by = {p["policy"]: p for p in day_one["policies"]}
    share = by["tuner"]["instance_hours"] / by["fixed-peak"]["instance_hours"]
    assert share <= 0.50, f"{share:.1%} of fixed peak's instance-hours: the target is at most 50%"
    assert PEAK_SHARE_BAND[0] <= share <= PEAK_SHARE_BAND[1], (
        f"{share:.1%} (tuner {by['tuner']['instance_hours']}, fixed peak {by['fixed-peak']['instance_hours']}), "
        f"documented {DOCUMENTED_PEAK_SHARE:.1%}: redo docs/tuning.md and benchmarks/results/tuning.json"
    )
    # And Knative's own scaling is far cheaper than fixed peak (the baseline the share is taken against).
    assert by["knative"]["instance_hours"] < 0.3 * by["fixed-peak"]["instance_hours"]


def test_the_tuner_beats_hybrid_on_both_axes(day_one: dict[str, Any]) -> None:
    by = {p["policy"]: p for p in day_one["policies"]}
    tuner, hybrid = by["tuner"], by["hybrid"]
    # The documented margins: 260 vs 2,210 waits (8.5×), 717.0 vs 810.6 instance-hours (88%).
    assert tuner["cold_waits"] * 5 <= hybrid["cold_waits"], (tuner["cold_waits"], hybrid["cold_waits"])
    assert tuner["instance_hours"] <= 0.95 * hybrid["instance_hours"], (
        tuner["instance_hours"],
        hybrid["instance_hours"],
    )


def test_the_tuner_keeps_every_region_hour_under_the_slo(day_one: dict[str, Any]) -> None:
    by = {p["policy"]: p for p in day_one["policies"]}
    assert by["tuner"]["region_hours"] == 72
    assert by["tuner"]["region_hours_over_slo"] == 0, by["tuner"]
    assert by["tuner"]["worst_region_hour_p99_ms"] < 90.0  # documented 75.7 ms
    # Knative misses the SLO in some region-hours on this day (documented 6 of 72): the day still tests something.
    assert by["knative"]["region_hours_over_slo"] >= 1


def test_the_run_reproduces_the_committed_result_file(day_one: dict[str, Any]) -> None:
    """benchmarks/results/tuning.json is what docs/tuning.md's table quotes: the rerun gives its figures."""
    committed = {p["policy"]: p for p in json.loads((ROOT / "benchmarks/results/tuning.json").read_text())["policies"]}
    for policy in day_one["policies"]:
        was = committed[policy["policy"]]
        for key in ("requests", "cold_waits", "cold_starts", "region_hours_over_slo"):
            assert policy[key] == was[key], (policy["policy"], key, policy[key], was[key])
        assert policy["instance_hours"] == pytest.approx(was["instance_hours"], abs=0.05), policy["policy"]


def test_the_seed_3_day_keeps_its_documented_figures(history_dir: Path) -> None:
    """docs/tuning.md's other day (benchmarks/results/tuning-seed3.json): the waits target holds (18.0×), the
    instance-hour one does not (56.0% of fixed peak), and the tuner still beats hybrid on both axes."""
    _run("trace", "generate", "--hours", "24", "--seed", "3", "--out", "day3.csv.gz", cwd=history_dir)
    by = {p["policy"]: p for p in _simulate(history_dir, "day3.csv.gz")["policies"]}
    ratio = by["knative"]["cold_waits"] / max(by["tuner"]["cold_waits"], 1)
    share = by["tuner"]["instance_hours"] / by["fixed-peak"]["instance_hours"]
    assert 16.0 <= ratio <= 20.0, ratio  # documented 18.0×
    assert 0.54 <= share <= 0.58, share  # documented 56.0%
    assert by["tuner"]["cold_waits"] * 5 <= by["hybrid"]["cold_waits"]
    assert by["tuner"]["instance_hours"] <= 0.95 * by["hybrid"]["instance_hours"]
    assert by["tuner"]["region_hours_over_slo"] == 0
    committed = {p["policy"]: p for p in json.loads((ROOT / "benchmarks/results/tuning-seed3.json").read_text())[
        "policies"]}  # fmt: skip
    for policy, got in by.items():
        assert got["cold_waits"] == committed[policy]["cold_waits"], policy
        assert got["instance_hours"] == pytest.approx(committed[policy]["instance_hours"], abs=0.05), policy
