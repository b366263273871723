"""`edgeinfer drill --scenario bad-canary-*|good-canary` end to end: the stack of `edgeinfer up` for one region on
free ports, a candidate fraud/2 written by `edgeinfer examples --canary`, open-loop load through Envoy and the
rollout, its report and plot checked against the measures they state.

The wrong canary runs in the default suite: it is judged by disagreement alone (every copy's argmax flips), which
no busy machine can blur. The others' verdicts lean on latency (the slow one's copies, the good one's p99), so
they are slow-marked: `pytest -m slow -n 0 tests/rollout/test_drill.py`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit.procs import free_port


def _topology(tmp_path: Path) -> Path:
    region = {
        "name": "us-east",
        "gateway": {"grpc": [f"127.0.0.1:{free_port()}"], "admin": f"127.0.0.1:{free_port()}"},
        "redis": f"redis://127.0.0.1:{free_port()}/0",
    }
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump({"entry": free_port(), "envoy_admin": free_port(), "regions": [region]}))
    return path


def _drill(scenario: str, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    report = tmp_path / f"{scenario}.json"
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "drill", "--scenario", scenario, "--rps", "100",
         "--interval", "4s", "--shadow-percent", "25", "--min-requests", "20", "--warmup", "1",
         "--topology", str(_topology(tmp_path)), "--report", str(report), "--state-dir", str(tmp_path / "state"),
         *extra],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert report.exists(), f"no report; the drill exited with {result.returncode}:\n{result.stdout}{result.stderr}"
    return result, json.loads(report.read_text())


@pytest.mark.timeout(300)
def test_a_wrong_canary_is_rolled_back_before_any_caller_gets_its_answer(tmp_path: Path) -> None:
    # 8 s of load: the shadow step sees its 20 copies (25 % of 100 req/s) within ~1 s.
    result, data = _drill("bad-canary-wrong", tmp_path, "--steps", "100", "--duration", "8")
    output = result.stdout + result.stderr
    rollout = data["rollout"]
    assert isinstance(rollout, dict)
    assert rollout["outcome"] == "rolled_back", output
    assert rollout["failed_check"]["name"] == "disagreement" and rollout["failed_check"]["value"] == 1.0
    # Caught in the shadow step: version 2 never answered a caller, and no caller failed.
    assert [s["weight"] for s in rollout["steps"]] == [0]
    served = data["served_by_version"]
    assert isinstance(served, dict)
    assert not any(key.startswith("2/") for key in served) and served.get("1/OK", 0) > 0, served
    assert data["load"] == {**data["load"], "by_status": {"OK": data["load"]["sent"]}}  # type: ignore[dict-item]
    measures = {m["name"]: m for m in data["measures"]}  # type: ignore[attr-defined]
    assert measures["time from the first failing check to 0 % (s)"]["value"] <= 4.0
    assert data["passed"] is True and result.returncode == 0, output
    assert (tmp_path / "bad-canary-wrong.png").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("scenario", "outcome", "check"),
    [
        ("bad-canary-slow", "rolled_back", "p99"),
        ("bad-canary-errors", "rolled_back", "error rate"),
        ("good-canary", "promoted", None),
    ],
)
def test_each_canary_drill_meets_its_measures(scenario: str, outcome: str, check: str | None, tmp_path: Path) -> None:
    result, data = _drill(scenario, tmp_path)
    output = result.stdout + result.stderr
    rollout = data["rollout"]
    assert isinstance(rollout, dict)
    assert rollout["outcome"] == outcome, output
    assert (rollout["failed_check"] or {}).get("name") == check
    assert data["passed"] is True and result.returncode == 0, output
