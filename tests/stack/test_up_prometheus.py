"""`edgeinfer up --prometheus`: a real Prometheus beside the stack, scraping every region's gateway admin port,
with the rules of deploy/prometheus/; gone when the stack stops. Without the binary: exit 2 and how to get it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from testkit.prometheus import Prometheus, require_binary
from testkit.up import REGIONS, Up, alive, env, free_ports, listening, mentioning, write_topology


def test_up_with_prometheus_scrapes_every_region(tmp_path: Path, fraud_repo: Path) -> None:
    require_binary("prometheus")
    *ports, prometheus_port = free_ports(13)
    up = Up(
        tmp_path,
        fraud_repo,
        ports,
        extra=("--prometheus", "--prometheus-port", str(prometheus_port), "--prometheus-scrape-interval", "1s"),
    )
    try:
        up.wait_ready()
        up.collect()
        address = f"127.0.0.1:{prometheus_port}"
        prometheus = Prometheus(address)
        targets = prometheus.wait_targets_up(len(REGIONS), timeout=30)
        admins = [r["gateway"]["admin"] for r in yaml.safe_load(up.topology.read_text())["regions"]]
        assert sorted(t["scrapeUrl"] for t in targets) == sorted(f"http://{a}/metrics" for a in admins)
        # Each region's own series, through Prometheus; and the rules of the checkout are loaded.
        ready = prometheus.wait_for_series("edgeinfer_gateway_ready == 1", timeout=30)
        assert sorted(s["metric"]["region"] for s in ready) == sorted(REGIONS)
        groups = prometheus.api("rules")["data"]["groups"]
        assert {"edgeinfer-gateway.rules", "edgeinfer-gateway-slo.alerts"} <= {g["name"] for g in groups}
        assert f"Prometheus: http://{address}" in up.output()
        assert (up.state_dir / "prometheus" / "data").is_dir()
        up.collect()
        assert sum("prometheus" in cmd.split()[0] for _, cmd in up.seen.values() if cmd) == 1, up.seen

        up.popen.send_signal(signal.SIGTERM)
        assert up.popen.wait(40) == 0, up.output()
        left = [f"{pid}: {cmd}" for pid, (started, cmd) in up.seen.items() if alive(pid, started)]
        assert not left, left
        assert not mentioning(str(tmp_path))
        assert not listening({prometheus_port})
    finally:
        up.close()


def test_up_prometheus_without_the_binary_exits_2_saying_how_to_get_it(tmp_path: Path, fraud_repo: Path) -> None:
    ports = free_ports(12)
    write_topology(tmp_path / "topology.yaml", ports)
    redis = shutil.which("redis-server") or shutil.which("valkey-server")
    # Only the interpreter's directory on PATH: no `prometheus` there (Redis named outright, Envoy is the wheel's).
    path = os.path.dirname(sys.executable)
    assert shutil.which("prometheus", path=path) is None
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "up", "--prometheus", "--topology", str(tmp_path / "topology.yaml"),
         "--port", str(ports[10]), "--model-repo", str(fraud_repo), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=env(PATH=path, **({"EDGEINFER_REDIS_SERVER": redis} if redis else {})),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgeinfer up: --prometheus: no `prometheus` on PATH")
    assert "apt-get install --no-install-recommends prometheus" in lines[0]
    assert "https://prometheus.io/download/" in lines[0]
    assert not mentioning(str(tmp_path))
    assert not (tmp_path / "state" / "up.json").exists()
