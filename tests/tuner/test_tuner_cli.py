"""The commands end to end: trace generate → simulate, and tune --apply against a real gateway's local pool."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml
from testkit.procs import start_gateway

ROOT = Path(__file__).resolve().parents[2]


def edgeinfer(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeinfer.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def test_generate_then_simulate_every_policy(tmp_path: Path) -> None:
    small = ["--hours", "24", "--day-s", "3600", "--models", "6", "--popular", "2", "--popular-rates", "2,0.5",
             "--trough-ratio", "0.05", "--burst-gap-mean-s", "600", "--burst-duration-median-s", "20"]  # fmt: skip
    trace, history = tmp_path / "day.csv", tmp_path / "history.csv.gz"
    made = edgeinfer("trace", "generate", *small, "--seed", "1", "--out", str(trace))
    assert made.returncode == 0, made.stderr
    assert "at most once an hour" in made.stdout
    made = edgeinfer("trace", "generate", *small, "--hours", "168", "--seed", "2", "--start-hour-of-week", "0",
                     "--resolution-s", "5", "--out", str(history))  # fmt: skip
    assert made.returncode == 0, made.stderr
    out = tmp_path / "sim.json"
    sim = edgeinfer("simulate", "--trace", str(trace), "--history", str(history), "--json", str(out),
                    "--plot", str(tmp_path / "sim.png"))  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    report = json.loads(out.read_text())
    names = [p["policy"] for p in report["policies"]]
    assert names == ["knative", "fixed-peak", "keepalive-10m", "hybrid", "tuner"]
    by = {p["policy"]: p for p in report["policies"]}
    assert by["fixed-peak"]["instance_hours"] > by["knative"]["instance_hours"]
    assert by["fixed-peak"]["cold_waits"] <= by["knative"]["cold_waits"]
    assert len(report["region_hours"]["tuner"]) == 3 * 24
    assert (tmp_path / "sim.png").stat().st_size > 0


def test_simulate_names_a_missing_history(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    assert edgeinfer("trace", "generate", "--hours", "1", "--models", "3", "--popular", "1", "--popular-rates", "1",
                     "--out", str(trace)).returncode == 0  # fmt: skip
    sim = edgeinfer("simulate", "--trace", str(trace), "--policy", "tuner")
    assert sim.returncode == 2 and "--history FILE" in sim.stderr


def test_tune_applies_min_scale_through_the_pool_admin_api(model_repo: Path, tmp_path: Path) -> None:
    proc, addresses = start_gateway(
        tmp_path, {}, "--backend", "local", "--model-repo", str(model_repo), "--state-dir", str(tmp_path / "state"),
        "--l1-max-bytes", "0", region="eu-west",
    )  # fmt: skip
    try:
        admin = addresses["admin"].removeprefix("http://")
        topology = tmp_path / "topology.yaml"
        topology.write_text(yaml.safe_dump({"regions": [{
            "name": "eu-west", "gateway": {"grpc": [addresses["grpc"]], "admin": admin},
            "redis": "redis://127.0.0.1:1/0"}]}))  # fmt: skip
        # A stale setting: min-scale 1 on fraud. Without traffic the plan is 0, and --apply must set it.
        request = urllib.request.Request(f"{addresses['admin']}/v1/pools/fraud", data=b'{"min-scale": 1}',
                                         method="PATCH", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()
        tune = edgeinfer("tune", "--topology", str(topology), "--region", "eu-west", "--sample-s", "1", "--apply",
                         "--gateway-ms", "3", "--network-ms", "0")  # fmt: skip
        assert tune.returncode == 0, tune.stderr
        assert "eu-west/fraud" in tune.stdout and "eu-west/ranker" in tune.stdout
        assert "min-scale 0 (now 1)" in tune.stdout and "applied min-scale 0 to eu-west/fraud" in tune.stdout
        pools = json.loads(urllib.request.urlopen(f"{addresses['admin']}/v1/pools", timeout=5).read())["pools"]
        assert pools["fraud"]["knobs"]["min-scale"] == 0
        bad = edgeinfer("tune", "--topology", str(topology), "--region", "nowhere")
        assert bad.returncode == 2 and "not in the topology" in bad.stderr
    finally:
        proc.stop()
