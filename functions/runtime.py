"""ONNX Runtime sessions: provider choice (TensorRT → CUDA → CPU), metadata, warm-up; and `load_model`, which
picks the runtime of a version's file (PyTorch: functions/torch_runtime.py, imported only for such a model)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from edgeinfer.functions.config import ModelConfig, Platform
from edgeinfer.protocol.datatypes import NUMPY_DTYPES, ONNX_TO_DATATYPE
from edgeinfer.protocol.tensors import Array, TensorSpec

log = logging.getLogger(__name__)

ORT_PROVIDER = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


class ModelLoadError(RuntimeError):
    pass


class Servable(Protocol):
    """What the data plane needs of a loaded model version, whatever runs it."""

    name: str
    version: str
    path: Path
    config: ModelConfig
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    # Where it runs, as the metadata's execution_provider says it (an ONNX Runtime provider; PyTorch: cpu, cuda:0).
    provider: str
    platform: Platform
    # Seconds of each start phase this model went through (load, warmup; PyTorch adds torch_import, cuda_context,
    # capture), in order: the cold start's breakdown.
    phases: dict[str, float]

    @property
    def output_names(self) -> list[str]: ...

    def run(self, inputs: Mapping[str, Array]) -> list[Array]: ...

    def compute_microseconds(self, batch_size: int, runs: int = 20) -> float: ...

    def warm_up(self) -> None: ...


def load_model(name: str, version: str, path: Path, config: ModelConfig) -> Servable:
    """Load one version with the runtime its file (or config.yaml's platform) calls for."""
    if config.resolved_platform(path) == "pytorch":
        from edgeinfer.functions.torch_runtime import TorchModel

        return TorchModel.load(name, version, path, config)
    return OnnxModel.load(name, version, path, config)


def example_inputs(specs: Mapping[str, TensorSpec], batch_size: int) -> dict[str, Array]:
    """Zero-filled inputs for warm-up, with free dimensions set to batch_size (the first) or 1."""
    example: dict[str, Array] = {}
    for spec in specs.values():
        shape = [batch_size if i == 0 and d < 0 else (d if d >= 0 else 1) for i, d in enumerate(spec.shape)]
        if spec.datatype == "BYTES":
            example[spec.name] = np.full(shape, "", dtype=np.object_)
        else:
            example[spec.name] = np.zeros(shape, dtype=NUMPY_DTYPES[spec.datatype])
    return example


def time_runs(model: Servable, batch_size: int, runs: int = 20) -> float:
    """The 90th percentile time of one run of `model` at `batch_size`, in microseconds."""
    example = example_inputs(model.inputs, batch_size)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        model.run(example)
        times.append(time.perf_counter() - started)
    times.sort()
    return times[int(len(times) * 0.9)] * 1e6


def trt_profiles(path: Path, max_batch_size: int) -> dict[str, str]:
    """TensorRT optimization-profile options covering batch 1..max_batch_size, so one engine (built once, then
    cached) serves every batch size instead of a rebuild per new shape. Empty when the inputs have free
    dimensions other than the batch (TensorRT then profiles the shapes it sees)."""
    if max_batch_size <= 0:
        return {}
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    shapes: dict[str, list[int]] = {}
    for tensor in graph.input:
        if tensor.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.type.tensor_type.shape.dim]
        if not dims or any(d < 0 for d in dims[1:]):
            return {}
        shapes[tensor.name] = dims[1:]

    def profile(batch: int) -> str:
        return ",".join(f"{name}:{'x'.join(str(d) for d in [batch, *rest])}" for name, rest in shapes.items())

    return {
        "trt_profile_min_shapes": profile(1),
        "trt_profile_opt_shapes": profile(min(8, max_batch_size)),
        "trt_profile_max_shapes": profile(max_batch_size),
    }


def provider_chain(config: ModelConfig, path: Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The configured providers that this ONNX Runtime build has, in order, with options."""
    available = set(ort.get_available_providers())
    chain: list[tuple[str, dict[str, Any]]] = []
    for name in config.execution_providers:
        provider = ORT_PROVIDER[name]
        if provider not in available:
            continue
        options: dict[str, Any] = {}
        if name == "tensorrt":
            cache_dir = config.tensorrt.engine_cache_dir
            options = {
                "trt_fp16_enable": config.tensorrt.fp16,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": cache_dir,
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": cache_dir,
                "trt_max_workspace_size": config.tensorrt.max_workspace_bytes,
            }
            if path is not None:
                options.update(trt_profiles(path, config.max_batch_size))
        chain.append((provider, options))
    if not any(p == ORT_PROVIDER["cpu"] for p, _ in chain):
        # CPU is always the last resort, even if the config left it out.
        chain.append((ORT_PROVIDER["cpu"], {}))
    return chain


def _usable_engine_cache(
    chain: list[tuple[str, dict[str, Any]]], cache_dir: str, model: str
) -> list[tuple[str, dict[str, Any]]]:
    """The chain as is if the engine cache directory can be written; else TensorRT without its caches (engines
    built in memory at each start: slower cold starts, but serving) and a warning that says why."""
    probe = Path(cache_dir) / f".write-test-{os.getpid()}"
    try:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"x" * 4096)  # a full disk fails here, not in the middle of an engine build
        probe.unlink()
        return chain
    except OSError as exc:
        log.warning(
            "model %s: TensorRT engine cache %s is not writable (%s); building engines without the cache: "
            "free space or fix tensorrt.engine_cache_dir",
            model,
            cache_dir,
            exc.strerror or exc,
        )
    with contextlib.suppress(OSError):
        probe.unlink()
    uncached = {"trt_engine_cache_enable": False, "trt_timing_cache_enable": False}
    return [
        (p, {k: v for k, v in o.items() if not k.endswith("_cache_path")} | uncached)
        if p == ORT_PROVIDER["tensorrt"]
        else (p, o)
        for p, o in chain
    ]


def _session_options(config: ModelConfig) -> ort.SessionOptions:
    options = ort.SessionOptions()
    threads = config.intra_op_threads or min(2, os.cpu_count() or 1)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads steal the cores the gRPC server needs between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _spec(node: Any, batching: bool, model: str) -> TensorSpec:
    datatype = ONNX_TO_DATATYPE.get(node.type)
    if datatype is None:
        raise ModelLoadError(f"model '{model}': tensor '{node.name}' has unsupported type {node.type}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in node.shape)
    if batching and (not shape or shape[0] != -1):
        raise ModelLoadError(
            f"model '{model}': max_batch_size > 0 needs a variable first dimension on "
            f"'{node.name}', found shape {list(shape)}"
        )
    return TensorSpec(node.name, datatype, shape)


@dataclass
class OnnxModel:
    """One loaded model version."""

    name: str
    version: str
    path: Path
    config: ModelConfig
    session: ort.InferenceSession
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    provider: str
    platform: Platform = "onnxruntime"
    phases: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str, version: str, path: Path, config: ModelConfig) -> OnnxModel:
        started = time.perf_counter()
        chain = provider_chain(config, path)
        if any(p == ORT_PROVIDER["tensorrt"] for p, _ in chain):
            chain = _usable_engine_cache(chain, config.tensorrt.engine_cache_dir, name)
        last_error: Exception | None = None
        # A provider that fails to initialise (missing CUDA libraries) falls through to the next.
        for start in range(len(chain)):
            providers = chain[start:]
            try:
                session = ort.InferenceSession(str(path), sess_options=_session_options(config), providers=providers)
                break
            except Exception as exc:  # ORT raises plain RuntimeError/Fail here
                last_error = exc
                log.warning("model %s: provider %s failed (%s); trying the next", name, providers[0][0], exc)
        else:
            raise ModelLoadError(f"model '{name}' version {version}: cannot load {path}: {last_error}")
        batching = config.max_batch_size > 0
        inputs = {n.name: _spec(n, batching, name) for n in session.get_inputs()}
        outputs = {n.name: _spec(n, batching, name) for n in session.get_outputs()}
        provider = session.get_providers()[0]
        model = cls(name, version, path, config, session, inputs, outputs, provider)
        model.phases["load"] = time.perf_counter() - started
        return model

    @property
    def output_names(self) -> list[str]:
        return list(self.outputs)

    def run(self, inputs: Mapping[str, Array]) -> list[Array]:
        """Run synchronously (ONNX Runtime releases the GIL); outputs in metadata order."""
        result: list[Array] = self.session.run(None, inputs)
        return result

    def example_inputs(self, batch_size: int) -> dict[str, Array]:
        """Zero-filled inputs for warm-up, with free dimensions set to batch_size (or 1)."""
        return example_inputs(self.inputs, batch_size)

    def compute_microseconds(self, batch_size: int, runs: int = 20) -> float:
        """The 90th percentile time of one run at `batch_size`, in microseconds."""
        return time_runs(self, batch_size, runs)

    def warm_up(self) -> None:
        if not self.config.warmup.enabled:
            return
        started = time.perf_counter()
        sizes = self.config.warmup.batch_sizes if self.config.max_batch_size > 0 else (1,)
        for size in sizes:
            self.run(self.example_inputs(min(size, self.config.max_batch_size or 1)))
        self.phases["warmup"] = time.perf_counter() - started
