"""What this machine offers: torch and its CUDA (device name, capability, memory), ONNX Runtime and its
execution providers. Run in a child process of its own, so the benchmark's own process never holds a CUDA
context while the functions it measures start theirs. Prints one JSON object.

    python benchmarks/gpu/probe.py
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from typing import Any


def probe_torch() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        import torch
    except Exception as exc:  # ImportError, or a broken install
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    out: dict[str, Any] = {
        "available": True,
        "version": torch.__version__,
        "import_s": time.perf_counter() - started,
        "cuda_build": torch.version.cuda,
        "cuda_available": False,
        "threads": torch.get_num_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }
    try:
        out["cuda_available"] = bool(torch.cuda.is_available())
    except Exception as exc:
        out["cuda_error"] = f"{type(exc).__name__}: {exc}"
    if out["cuda_available"]:
        index = torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        out.update(
            {
                "device_count": torch.cuda.device_count(),
                "device_name": torch.cuda.get_device_name(index),
                "capability": list(torch.cuda.get_device_capability(index)),
                "multiprocessors": props.multi_processor_count,
                "memory_bytes": props.total_memory,
                "cudnn": torch.backends.cudnn.version(),  # type: ignore[no-untyped-call]
            }
        )
    return out


def probe_onnxruntime() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except Exception as exc:
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "available": True,
        "version": ort.__version__,
        "device": ort.get_device(),
        "providers": list(ort.get_available_providers()),
    }


def nvidia_smi() -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def main() -> int:
    report = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "nvidia_smi": nvidia_smi(),
        "torch": probe_torch(),
        "onnxruntime": probe_onnxruntime(),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
