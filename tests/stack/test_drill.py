"""`edgeinfer drill` end to end: the whole stack (Redis, gateways with local pools, Envoy), load through Envoy,
a region killed and restarted. Slow (about a minute): `pytest -m slow -n 0 tests/stack/test_drill.py`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit.procs import free_port

REGIONS = ("us-east", "eu-west", "ap-south")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("scenario", ["kill", "blackhole"])
def test_drill_loses_nothing(scenario: str, model_repo: Path, tmp_path: Path) -> None:
    regions = [
        {
            "name": name,
            "gateway": {"grpc": [f"127.0.0.1:{free_port()}"], "admin": f"127.0.0.1:{free_port()}"},
            "redis": f"redis://127.0.0.1:{free_port()}/0",
            "neighbours": [n for n in REGIONS if n != name],
        }
        for name in REGIONS
    ]
    topology = tmp_path / "topology.yaml"
    topology.write_text(yaml.safe_dump({"entry": free_port(), "envoy_admin": free_port(), "regions": regions}))
    report = tmp_path / f"{scenario}.json"
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "drill", "--scenario", scenario, "--rps", "100",
         "--duration", "16", "--fault-at", "3", "--restore-at", "6", "--topology", str(topology),
         "--model-repo", str(model_repo), "--report", str(report), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    data = json.loads(report.read_text())
    checks = data["result"]["checks"]
    assert checks["failed requests"]["value"] == 0, result.stdout + result.stderr
    assert set(data["result"]["served_by_region"]) >= {"us-east", "eu-west"}
    assert checks["time to rejoin after the restore (s)"]["pass"], checks
    assert report.with_suffix(".png").exists()
