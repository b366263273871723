"""Cold starts of inference functions on this machine, and what a request pays for one.

1. Spawn → ready of `edgeinfer function` for `fraud` and `ranker`, each in a
   repository of its own as the local pool runs them, measured N times: p50, p99.
2. Through a gateway with the local pool (scale to zero after a 6 s window): the
   latency of a request that wakes a model from zero, against requests on a warm
   instance.

    python benchmarks/cold_start.py [--spawns 30] [--wakes 5] [--report FILE]

Writes a JSON report and a PNG plot (benchmarks/results/cold_start.*).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import numpy as np
import yaml

from benchmarks.common.bench import REPO_ROOT, edgeinfer_command
from benchmarks.common.procs import ManagedProcess, free_port, managed, wait_ready
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request

INPUTS = {"fraud": ("features", 30), "ranker": ("embedding", 512)}
READY_LINE = b"edgeinfer function ready on "
DEFAULT_REPORT = REPO_ROOT / "benchmarks" / "results" / "cold_start.json"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def spawn_to_ready(repo: Path) -> float:
    """Seconds from spawning `edgeinfer function` to its ready line (the pool's own measure)."""
    started = time.monotonic()
    process = subprocess.Popen(
        [*edgeinfer_command("function"), "--model-repo", str(repo), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(READY_LINE):
                return time.monotonic() - started
        raise RuntimeError(f"function for {repo} exited with {process.wait()} before it was ready")
    finally:
        process.terminate()
        process.wait(10)


def one_request(stub: Any, model: str) -> float:
    name, width = INPUTS[model]
    x = np.random.default_rng().standard_normal((1, width)).astype(np.float32)
    started = time.monotonic()
    stub.ModelInfer(build_request(model, {name: x}), timeout=60)
    return time.monotonic() - started


def pools(admin: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(urllib.request.urlopen(admin + "/v1/pools", timeout=5).read())["pools"]
    return body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spawns", type=int, default=30, help="cold starts measured per model")
    parser.add_argument("--wakes", type=int, default=5, help="requests that wake a model from zero, per model")
    parser.add_argument("--warm", type=int, default=200, help="requests on a warm instance, per model")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT)
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    console = Console()
    work = Path(tempfile.mkdtemp(prefix="edgeinfer-cold-"))
    report: dict[str, Any] = {
        "command": "python " + " ".join(["benchmarks/cold_start.py", *(argv or sys.argv[1:])]),
        "models": {},
    }
    try:
        repo = work / "models"
        subprocess.run(
            [*edgeinfer_command("examples"), str(repo)], cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL
        )
        for model in INPUTS:
            config = yaml.safe_load((repo / model / "config.yaml").read_text())
            config["autoscaling"] = {"initial-scale": 0, "window": "6s"}
            (repo / model / "config.yaml").write_text(yaml.safe_dump(config))
            alone = work / "alone" / model
            alone.mkdir(parents=True)
            (alone / model).symlink_to(repo / model, target_is_directory=True)
            spawns = [spawn_to_ready(alone) for _ in track(range(args.spawns), description=f"{model} cold starts")]
            report["models"][model] = {"spawn_to_ready_s": spawns}

        port, admin_port = free_port(), free_port()
        gateway = ManagedProcess(
            "gateway",
            [
                *edgeinfer_command("gateway"),
                "--backend",
                "local",
                "--model-repo",
                str(repo),
                "--state-dir",
                str(work / "state"),
                "--port",
                str(port),
                "--admin-port",
                str(admin_port),
                "--l1-max-bytes",
                "0",
                "--autoscale-tick",
                "0.5",
            ],
            work / "gateway.log",
            cwd=REPO_ROOT,
        )
        admin = f"http://127.0.0.1:{admin_port}"
        with managed(gateway):
            wait_ready(gateway, f"127.0.0.1:{port}", timeout=60)
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
                for model in INPUTS:
                    wakes = []
                    for _ in track(range(args.wakes), description=f"{model} wakes from zero"):
                        deadline = time.monotonic() + 60
                        while pools(admin)[model]["ready"] + pools(admin)[model]["starting"] > 0:
                            if time.monotonic() > deadline:
                                raise RuntimeError(f"{model} did not scale to zero")
                            time.sleep(0.2)
                        wakes.append(one_request(stub, model))
                    warm = [one_request(stub, model) for _ in range(args.warm)]
                    report["models"][model].update({"from_zero_request_s": wakes, "warm_request_s": warm})
    finally:
        shutil.rmtree(work, ignore_errors=True)

    table = Table(title="Cold starts on CPU (this machine: 2 cores)")
    for column in ("model", "spawn→ready p50", "p99", "request from zero p50", "warm request p50", "warm p99"):
        table.add_column(column)
    for model, data in report["models"].items():
        spawns, wakes, warm = data["spawn_to_ready_s"], data["from_zero_request_s"], data["warm_request_s"]
        data["summary"] = {
            "spawn_to_ready_p50_s": statistics.median(spawns),
            "spawn_to_ready_p99_s": percentile(spawns, 99),
            "from_zero_p50_s": statistics.median(wakes),
            "warm_p50_s": statistics.median(warm),
            "warm_p99_s": percentile(warm, 99),
        }
        s = data["summary"]
        table.add_row(
            model,
            f"{s['spawn_to_ready_p50_s']:.3f} s",
            f"{s['spawn_to_ready_p99_s']:.3f} s",
            f"{s['from_zero_p50_s']:.3f} s",
            f"{s['warm_p50_s'] * 1000:.2f} ms",
            f"{s['warm_p99_s'] * 1000:.2f} ms",
        )
    console.print(table)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.report.with_suffix(".png"))
    console.print(f"report: {args.report} and {args.report.with_suffix('.png')}")
    return 0


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for model, data in report["models"].items():
        spawns = sorted(data["spawn_to_ready_s"])
        left.plot(spawns, [(i + 1) / len(spawns) for i in range(len(spawns))], "o-", label=model)
    left.set_xlabel("spawn → ready, s")
    left.set_ylabel("fraction of cold starts")
    left.set_title("Cold-start distribution (CDF)")
    left.legend()
    labels, values = [], []
    for model, data in report["models"].items():
        labels += [f"{model}\nfrom zero", f"{model}\nwarm"]
        values += [data["summary"]["from_zero_p50_s"] * 1000, data["summary"]["warm_p50_s"] * 1000]
    right.bar(labels, values, color=["tab:red", "tab:green"] * len(report["models"]))
    right.set_yscale("log")
    right.set_ylabel("request latency p50, ms (log)")
    right.set_title("A request that wakes a model vs a warm one")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
