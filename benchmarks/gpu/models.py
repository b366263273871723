"""The ranker for every variant, written where it runs: `DIR/ranker/1/model.onnx` or `model.pt2` and config.yaml.

The ONNX file is `functions.examples.build_ranker()` (seeded weights); the `.pt2` is `build_ranker_pt()`, the
same seeded weights as a `torch.export` program (`export_pt2` below, with the weights read back from the ONNX
file, stands in where an older tree lacks it). `parity()` checks the two give the same outputs. Both are built by
the machine that serves them: an ExportedProgram saved by a newer torch need not load in an older one, so
nothing is carried pre-built.

config.yaml is the shipped ranker config (RANKER_CONFIG: max_batch_size 64, dynamic batching with a 1 ms queue
delay, one intra-op thread, warm-up) with warm-up at batch 1, 8 and 64, plus per variant:
- ONNX Runtime: `execution_providers: [cpu]`, `[cuda]` or `[tensorrt]` (no fallback, so a variant is what it says);
- PyTorch: `platform: pytorch`, `device: cpu|cuda`, on CUDA `cuda_graphs: true|false`, and the inputs and
  outputs the config must declare for a PyTorch model (RANKER_PT_CONFIG's: embedding FP32 [512], scores [1000]).
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

MODEL = "ranker"
INPUT = "embedding"
OUTPUT = "scores"
BATCHES = (1, 8, 64)


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    label: str
    runtime: str  # "onnxruntime" | "pytorch"
    device: str  # "cpu" | "cuda"
    provider: str = ""  # ONNX Runtime: the execution provider it needs
    cuda_graphs: bool | None = None  # PyTorch on CUDA only

    @property
    def gpu(self) -> bool:
        return self.device == "cuda"


VARIANTS: tuple[Variant, ...] = (
    # GPU first: if the time budget runs short, what only the accelerator can measure is already done.
    Variant("pytorch-cuda-graphs", "PyTorch CUDA, graphs on", "pytorch", "cuda", cuda_graphs=True),
    Variant("pytorch-cuda", "PyTorch CUDA, graphs off", "pytorch", "cuda", cuda_graphs=False),
    Variant("onnxruntime-cuda", "ONNX Runtime CUDA", "onnxruntime", "cuda", provider="CUDAExecutionProvider"),
    Variant(
        "onnxruntime-tensorrt", "ONNX Runtime TensorRT", "onnxruntime", "cuda", provider="TensorrtExecutionProvider"
    ),
    Variant("pytorch-cpu", "PyTorch CPU", "pytorch", "cpu"),
    Variant("onnxruntime-cpu", "ONNX Runtime CPU", "onnxruntime", "cpu", provider="CPUExecutionProvider"),
)
_ORT_PROVIDER_NAMES = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "tensorrt",
}


def ranker_onnx() -> bytes:
    from edgeinfer.functions.examples import build_ranker

    return build_ranker()


def onnx_layers(model: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W [fan_in, fan_out], B [fan_out]) per Gemm, in graph order, read from the ONNX file."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(model)
    weights = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    layers = []
    for node in proto.graph.node:
        if node.op_type != "Gemm":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("transB", 0) or attrs.get("alpha", 1.0) != 1.0:
            raise ValueError(f"unexpected Gemm attributes {attrs} in the ranker")
        layers.append((weights[node.input[1]], weights[node.input[2]]))
    return layers


def export_pt2(model: bytes, path: Path, max_batch_size: int) -> dict[str, Any]:
    """torch.export the ranker (Linear+ReLU ×3, Linear) with `model`'s weights; batch dimension 1..max."""
    import time

    import torch

    started = time.perf_counter()
    layers = onnx_layers(model)

    class Ranker(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            linears = []
            for w, b in layers:
                linear = torch.nn.Linear(w.shape[0], w.shape[1])
                with torch.no_grad():
                    linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                    linear.bias.copy_(torch.from_numpy(np.array(b)))
                linears.append(linear)
            self.layers = torch.nn.ModuleList(linears)

        def forward(self, embedding: torch.Tensor) -> torch.Tensor:
            h = embedding
            for i, layer in enumerate(self.layers):
                h = layer(h)
                if i < len(self.layers) - 1:
                    h = torch.relu(h)
            return h

    module = Ranker().eval()
    batch = torch.export.Dim("batch", min=1, max=max_batch_size)
    example = torch.zeros(2, layers[0][0].shape[0])
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes={INPUT: {0: batch}})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return {"torch": torch.__version__, "export_s": time.perf_counter() - started, "bytes": path.stat().st_size}


def write_pt2(model: bytes, path: Path, max_batch_size: int) -> dict[str, Any]:
    """model.pt2: the examples' own PyTorch ranker (`build_ranker_pt`) where this tree has it, else `export_pt2`."""
    import time

    from edgeinfer.functions import examples

    build = getattr(examples, "build_ranker_pt", None)
    if build is None:
        return {**export_pt2(model, path, max_batch_size), "built_by": "benchmarks/gpu/models.py export_pt2"}
    import torch

    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build())
    return {
        "torch": torch.__version__,
        "export_s": time.perf_counter() - started,
        "bytes": path.stat().st_size,
        "built_by": "functions/examples.py build_ranker_pt",
    }


def parity(onnx_path: Path, pt2_path: Path, batch: int = 8) -> dict[str, Any]:
    """Max |ONNX Runtime − PyTorch| over one batch on the CPU: the two files are one model."""
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(0).standard_normal((batch, 512)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (expected,) = session.run([OUTPUT], {INPUT: x})
    program = torch.export.load(str(pt2_path))
    with torch.no_grad():
        got = program.module()(torch.from_numpy(x)).numpy()
    diff = float(np.max(np.abs(expected - got)))
    scale = float(np.max(np.abs(expected)))
    return {"batch": batch, "max_abs_diff": diff, "max_abs_output": scale, "ok": diff <= 1e-4 * max(1.0, scale)}


def ranker_config(variant: Variant, work: Path, cpu_threads: int | None) -> dict[str, Any]:
    from edgeinfer.functions.examples import RANKER_CONFIG

    config: dict[str, Any] = copy.deepcopy(RANKER_CONFIG)
    config["warmup"] = {"enabled": True, "batch_sizes": list(BATCHES)}
    if cpu_threads is not None:
        config["intra_op_threads"] = cpu_threads
    if variant.runtime == "onnxruntime":
        config["execution_providers"] = [_ORT_PROVIDER_NAMES[variant.provider]]
        if variant.provider == "TensorrtExecutionProvider":
            config["tensorrt"] = {"engine_cache_dir": str(work / "trt-cache")}
    else:
        from edgeinfer.functions import examples

        declared = getattr(examples, "RANKER_PT_CONFIG", {})
        config["platform"] = "pytorch"
        config["device"] = variant.device
        if variant.gpu:
            config["cuda_graphs"] = bool(variant.cuda_graphs)
        config["inputs"] = copy.deepcopy(declared.get("inputs", [{"name": INPUT, "datatype": "FP32", "dims": [512]}]))
        config["outputs"] = copy.deepcopy(
            declared.get("outputs", [{"name": OUTPUT, "datatype": "FP32", "dims": [1000]}])
        )
    return config


def write_repository(variant: Variant, root: Path, files: dict[str, Path], cpu_threads: int | None) -> Path:
    """`root/ranker/1/model.{onnx,pt2}` (a hard link to the one file built, else a copy) and its config.yaml."""
    source = files["onnx" if variant.runtime == "onnxruntime" else "pt2"]
    version = root / MODEL / "1"
    version.mkdir(parents=True, exist_ok=True)
    target = version / source.name
    if not target.exists():
        try:
            os.link(source, target)  # one file for every variant; a hard link reads as a plain file
        except OSError:
            shutil.copyfile(source, target)
    config = ranker_config(variant, root, cpu_threads)
    (root / MODEL / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root
