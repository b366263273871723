"""ranker on each execution provider: cold start (fresh process → session ready → first inference at every batch
size), without and with a cached TensorRT engine, and p50/p99 of inference at batch 1, 8 and 64.

Each cold start runs in a fresh process, as a scaled-from-zero function would. Run through
benchmarks/gpu/run.sh; writes gpu_providers.json and gpu_providers.png to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BATCHES = (1, 8, 64)
VARIANTS: dict[str, dict[str, Any]] = {
    "cpu": {"execution_providers": ["cpu"]},
    "cuda": {"execution_providers": ["cuda"]},
    "tensorrt-fp16": {"execution_providers": ["tensorrt"], "tensorrt": {"fp16": True}},
}
WANTED = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt-fp16": "TensorrtExecutionProvider"}


def child(model: Path, variant: str, cache_dir: Path, runs: int) -> dict[str, Any]:
    """In a fresh process: load, first inference per batch size (the cold start), then timed runs."""
    started = time.perf_counter()
    from edgeinfer.functions.config import ModelConfig
    from edgeinfer.functions.runtime import OnnxModel

    settings = {**VARIANTS[variant], "max_batch_size": 64, "warmup": {"enabled": False}}
    settings.setdefault("tensorrt", {})["engine_cache_dir"] = str(cache_dir)
    config = ModelConfig.model_validate(settings)
    loaded = OnnxModel.load("ranker", "1", model, config)
    session_s = time.perf_counter() - started
    for batch in BATCHES:
        loaded.run(loaded.example_inputs(batch))
    cold_s = time.perf_counter() - started
    latency: dict[str, dict[str, float]] = {}
    for batch in BATCHES:
        example = loaded.example_inputs(batch)
        times = []
        for _ in range(runs if batch < 64 or loaded.provider != "CPUExecutionProvider" else max(10, runs // 5)):
            begin = time.perf_counter()
            loaded.run(example)
            times.append((time.perf_counter() - begin) * 1000)
        times.sort()
        latency[str(batch)] = {
            "p50_ms": times[len(times) // 2],
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
            "runs": len(times),
        }
    return {"provider": loaded.provider, "session_s": session_s, "cold_start_s": cold_s, "latency": latency}


def run_child(model: Path, variant: str, cache_dir: Path, runs: int, timeout: float) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", variant, "--model", str(model), "--cache", str(cache_dir)]
    argv += ["--runs", str(runs)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        return {"error": (result.stderr or result.stdout).strip().splitlines()[-1:]}
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--budget-s", type=float, default=450.0)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--child")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.child, args.cache, args.runs)))
        return 0

    import onnxruntime as ort

    from edgeinfer.functions.examples import build_ranker

    deadline = time.monotonic() + args.budget_s
    available = ort.get_available_providers()
    work = Path(tempfile.mkdtemp(prefix="edgeinfer-gpu-"))
    model = work / "ranker.onnx"
    model.write_bytes(build_ranker())
    report: dict[str, Any] = {
        "command": "bash benchmarks/gpu/run.sh",
        "onnxruntime": ort.__version__,
        "available_providers": available,
        "variants": {},
    }
    for variant, provider in WANTED.items():
        if provider not in available:
            report["variants"][variant] = {"skipped": f"{provider} is not in this onnxruntime build"}
            print(f"{variant}: skipped ({provider} not available)", flush=True)
            continue
        cache = work / f"cache-{variant}"
        cache.mkdir()
        entry: dict[str, Any] = {}
        for phase in ("no_cache", "cached"):
            left = deadline - time.monotonic()
            if left < 20:
                entry[phase] = {"error": "time budget spent"}
                continue
            entry[phase] = run_child(model, variant, cache, args.runs, timeout=left)
            shown = entry[phase].get("cold_start_s", entry[phase].get("error"))
            print(f"{variant} {phase}: cold start {shown}", flush=True)
        entry["engine_files"] = sorted(p.name for p in cache.iterdir())
        report["variants"][variant] = entry
    shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_providers.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    plot(report, args.out / "gpu_providers.png")
    return 0


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{'variant':<15}{'cold (no cache)':>17}{'cold (cached)':>15}"
        + "".join(f"{f'b{b} p50/p99 ms':>20}" for b in BATCHES)
    )
    for variant, entry in report["variants"].items():
        if "skipped" in entry:
            print(f"{variant:<15}{entry['skipped']}")
            continue
        cold = [entry.get(p, {}).get("cold_start_s") for p in ("no_cache", "cached")]
        cells = [f"{c:.2f} s" if isinstance(c, float) else "-" for c in cold]
        latency = entry.get("cached", {}).get("latency") or entry.get("no_cache", {}).get("latency") or {}
        lat = [
            f"{latency[str(b)]['p50_ms']:.2f}/{latency[str(b)]['p99_ms']:.2f}" if str(b) in latency else "-"
            for b in BATCHES
        ]
        print(f"{variant:<15}{cells[0]:>17}{cells[1]:>15}" + "".join(f"{x:>20}" for x in lat))


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = {v: e for v, e in report["variants"].items() if "skipped" not in e and "latency" in e.get("cached", {})}
    fig, (cold, lat) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(measured)
    for offset, phase in ((-0.2, "no_cache"), (0.2, "cached")):
        values = [measured[n][phase].get("cold_start_s", 0.0) for n in names]
        cold.bar([i + offset for i in range(len(names))], values, width=0.4, label=phase.replace("_", " "))
    cold.set_xticks(range(len(names)), names)
    cold.set_ylabel("cold start (s)")
    cold.legend()
    for name in names:
        latency = measured[name]["cached"]["latency"]
        lat.plot(BATCHES, [latency[str(b)]["p50_ms"] for b in BATCHES], marker="o", label=f"{name} p50")
        lat.plot(BATCHES, [latency[str(b)]["p99_ms"] for b in BATCHES], linestyle="--", label=f"{name} p99")
    lat.set_xscale("log", base=2)
    lat.set_yscale("log")
    lat.set_xlabel("batch size")
    lat.set_ylabel("inference (ms)")
    lat.legend(fontsize=7)
    fig.suptitle("ranker per execution provider")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
