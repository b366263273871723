"""PyTorch models: `model.pt2` (a torch.export ExportedProgram) or `model.pt` (TorchScript), on CPU or CUDA.

torch is an optional extra (`pip install 'edgeinfer[torch]'`) and is imported only when a PyTorch model loads, so
an ONNX-only function never pays for it. The model's inputs and outputs are config.yaml's `inputs:`/`outputs:`
(a .pt2's own input names may be generic, a .pt has none); the load checks them against the program and a run.

On CUDA (`device: cuda`) each instance (instance_count) has its own lane: a CUDA stream, pinned host buffers
its inputs are staged in and its outputs copied back to, and, with `cuda_graphs: true`, one CUDA graph per
batch-size bucket: a batch is padded up to the smallest bucket that holds it, replayed, and the result sliced
back to its rows. Warm-up covers every bucket before the function reports ready. docs/pytorch.md has the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeinfer.functions.config import ModelConfig, Platform, TensorDecl
from edgeinfer.functions.metadata import declared_specs
from edgeinfer.functions.runtime import ModelLoadError, example_inputs, time_runs
from edgeinfer.protocol.datatypes import NUMPY_DTYPES
from edgeinfer.protocol.tensors import Array, TensorSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'edgeinfer[torch]'"
CUDA_HINT = (
    "install a CUDA build of torch (e.g. pip install torch --index-url https://download.pytorch.org/whl/cu128) on a "
    "host with an NVIDIA GPU and its driver (nvidia-smi lists it), or set device: cpu in config.yaml"
)


class TorchMissing(ModelLoadError):
    """A PyTorch model, and no torch in this environment."""


class CudaUnavailable(ModelLoadError):
    """device: cuda, and torch sees no CUDA device."""


# -- batch-size buckets (pure: tested without a GPU) ------------------------------------------------------------


def graph_buckets(max_batch_size: int, configured: Sequence[int] = ()) -> tuple[int, ...]:
    """The batch sizes a CUDA graph is captured for, ascending: `configured` (cuda_graph_batch_sizes) with the
    largest batch added, else powers of two below max_batch_size and max_batch_size itself. A model that does not
    batch (max_batch_size 0) has one: its one fixed shape, as size 1."""
    largest = max(1, max_batch_size)
    if configured:
        return tuple(sorted({*configured, largest}))
    sizes = {largest}
    size = 1
    while size < largest:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def bucket_for(rows: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `rows`; ValueError when none does."""
    for bucket in buckets:
        if bucket >= rows:
            return bucket
    raise ValueError(f"a batch of {rows} rows exceeds the largest bucket ({buckets[-1] if buckets else 0})")


def fill_padded(dest: Array, src: Array) -> None:
    """Copy `src` into the first rows of `dest` (a bucket's staging buffer) and zero the rows after them: the
    padding a graph computes on is zeros, never an earlier batch's data."""
    rows = src.shape[0]
    dest[:rows] = src
    if rows < dest.shape[0]:
        dest[rows:] = 0


def slice_rows(outputs: Sequence[Array], rows: int) -> list[Array]:
    """A padded batch's outputs cut back to its own rows (copies: the buffers they come from are reused)."""
    return [np.array(out[:rows], copy=True) for out in outputs]


# -- torch, lazily --------------------------------------------------------------------------------------------

_import_seconds: float | None = None
_import_reported = False


def import_torch(what: str) -> ModuleType:
    """torch, imported on first use (its import time kept for the cold start's torch_import phase); TorchMissing
    naming the extra when it is not installed."""
    global _import_seconds
    started = time.perf_counter()
    already = "torch" in sys.modules
    try:
        import torch
    except ImportError as exc:
        raise TorchMissing(f"{what} is a PyTorch model but torch is not installed ({exc}): {INSTALL_HINT}") from None
    if not already and _import_seconds is None:
        _import_seconds = time.perf_counter() - started
    return torch


def torch_dtypes(torch: ModuleType) -> dict[str, torch.dtype]:
    return {
        "BOOL": torch.bool,
        "UINT8": torch.uint8,
        "INT8": torch.int8,
        "INT16": torch.int16,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "FP16": torch.float16,
        "FP32": torch.float32,
        "FP64": torch.float64,
    }


def check_cuda(torch: ModuleType, what: str) -> None:
    """CudaUnavailable, naming what to install, when this torch cannot run on a GPU here."""
    if not torch.cuda.is_available():
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise CudaUnavailable(
            f"{what}: device: cuda, but torch {torch.__version__} ({build}) sees no CUDA device "
            f"(torch.cuda.is_available() is False): {CUDA_HINT}"
        )


def _as_list(result: object) -> list[torch.Tensor]:
    if isinstance(result, list | tuple):
        return list(result)
    return [result]  # type: ignore[list-item]


# -- CUDA lanes -----------------------------------------------------------------------------------------------


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]


@dataclass
class _Lane:
    """One instance's CUDA resources: its stream, its pinned staging buffers (None where a dimension is free:
    staged per call from torch's caching pinned allocator instead) with numpy views of them, its graphs."""

    stream: torch.cuda.Stream
    host_in: list[torch.Tensor | None]
    host_out: list[torch.Tensor | None]
    host_in_np: list[Array | None]
    host_out_np: list[Array | None]
    graphs: dict[int, _Graph] = field(default_factory=dict)
    # The lane's graphs share one memory pool: safe because a lane replays one graph at a time; two lanes replay
    # at once, so each has its own.
    pool: Any = None


@dataclass
class TorchModel:
    """One loaded PyTorch model version (functions/runtime.py's Servable)."""

    name: str
    version: str
    path: Path
    config: ModelConfig
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    provider: str
    module: Any
    platform: Platform = "pytorch"
    phases: dict[str, float] = field(default_factory=dict)
    _torch: Any = None
    _device: Any = None
    _lanes: queue.SimpleQueue[_Lane] = field(default_factory=queue.SimpleQueue)
    _all_lanes: list[_Lane] = field(default_factory=list)
    _buckets: tuple[int, ...] = (1,)

    # -- loading --------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, name: str, version: str, path: Path, config: ModelConfig) -> TorchModel:
        what = f"model '{name}' version {version} ({path.name})"
        torch = import_torch(what)
        phases: dict[str, float] = {}
        global _import_reported
        if _import_seconds is not None and not _import_reported:
            # The model whose load imported torch paid for it: its phases say so, once per process.
            phases["torch_import"] = _import_seconds
            _import_reported = True
        # Inputs decoded from a request's raw bytes are read-only numpy views; the model only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        threads = config.intra_op_threads or min(2, os.cpu_count() or 1)
        torch.set_num_threads(threads)  # process-wide in torch: the last PyTorch model loaded sets it
        with contextlib.suppress(RuntimeError):  # settable once, before any parallel work: already done
            torch.set_num_interop_threads(1)
        device = torch.device("cpu")
        provider = "cpu"
        if config.device == "cuda":
            check_cuda(torch, what)
            started = time.perf_counter()
            torch.cuda.init()
            device = torch.device("cuda", torch.cuda.current_device())
            torch.empty(1, device=device)
            torch.cuda.synchronize(device)
            phases["cuda_context"] = time.perf_counter() - started
            provider = f"cuda:{device.index}"
        started = time.perf_counter()
        module = _load_module(torch, path, config, device, what)
        phases["load"] = time.perf_counter() - started
        inputs, outputs = declared_specs(config)
        model = cls(
            name,
            version,
            path,
            config,
            {s.name: s for s in inputs},
            {s.name: s for s in outputs},
            provider,
            module,
            phases=phases,
            _torch=torch,
            _device=device,
        )
        if config.device == "cuda":
            model._buckets = graph_buckets(config.max_batch_size, config.cuda_graph_batch_sizes)
            for _ in range(config.instance_count):
                lane = model._new_lane()
                model._all_lanes.append(lane)
                model._lanes.put(lane)
        model._check_outputs()
        return model

    @property
    def batched(self) -> bool:
        return self.config.max_batch_size > 0

    @property
    def output_names(self) -> list[str]:
        return list(self.outputs)

    def _shape(self, decl: TensorDecl, rows: int) -> tuple[int, ...]:
        return (rows, *decl.dims) if self.batched else decl.dims

    def _check_outputs(self) -> None:
        """One run at batch 1 (or the fixed shape): the outputs must be the ones config.yaml declares."""
        what = f"model '{self.name}' version {self.version}"
        try:
            results = self._run_unchecked(example_inputs(self.inputs, 1))
        except ModelLoadError:
            raise
        except Exception as exc:  # the model's own error on a well-formed input: the config does not fit it
            raise ModelLoadError(
                f"{what}: a run on zeros shaped as config.yaml's inputs failed ({type(exc).__name__}: {exc}); "
                "check inputs: (order, datatype, dims)"
            ) from None
        declared = self.config.outputs
        if len(results) != len(declared):
            raise ModelLoadError(
                f"{what}: the model returns {len(results)} tensors but config.yaml declares {len(declared)} outputs"
            )
        for decl, result in zip(declared, results, strict=True):
            want = NUMPY_DTYPES[decl.datatype]
            if result.dtype != want:
                raise ModelLoadError(
                    f"{what}: output '{decl.name}' is {result.dtype} but config.yaml declares {decl.datatype}"
                )
            shape = self._shape(decl, 1)
            if len(result.shape) != len(shape) or any(
                d not in (-1, r) for d, r in zip(shape, result.shape, strict=True)
            ):
                raise ModelLoadError(
                    f"{what}: output '{decl.name}' has shape {list(result.shape)} at batch 1; config.yaml declares "
                    f"{list(shape)}"
                )

    # -- running ----------------------------------------------------------------------------------------------

    def run(self, inputs: Mapping[str, Array]) -> list[Array]:
        """Run synchronously (torch releases the GIL while it computes); outputs in config.yaml's order."""
        return self._run_unchecked(inputs)

    def _run_unchecked(self, inputs: Mapping[str, Array]) -> list[Array]:
        if self._all_lanes:
            lane = self._lanes.get()
            try:
                return self._run_cuda(lane, inputs)
            finally:
                self._lanes.put(lane)
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(inputs[d.name])) for d in self.config.inputs]
            results = _as_list(self.module(*args))
        return [r.numpy() for r in results]

    def compute_microseconds(self, batch_size: int, runs: int = 20) -> float:
        return time_runs(self, batch_size, runs)

    def warm_up(self) -> None:
        """On CPU, warmup.batch_sizes as for ONNX models. On CUDA: with cuda_graphs, capture every bucket's graph
        on every lane (the capture phase); then, when warm-up is on, run every bucket once on every lane."""
        config = self.config
        if not self._all_lanes:
            if not config.warmup.enabled:
                return
            started = time.perf_counter()
            for size in config.warmup.batch_sizes if self.batched else (1,):
                self.run(example_inputs(self.inputs, min(size, config.max_batch_size or 1)))
            self.phases["warmup"] = time.perf_counter() - started
            return
        if config.cuda_graphs:
            started = time.perf_counter()
            for lane in self._all_lanes:
                lane.pool = self._torch.cuda.graph_pool_handle()
                for bucket in reversed(self._buckets):  # the largest first: the smaller ones reuse its pool
                    lane.graphs[bucket] = self._capture(lane, bucket)
            self.phases["capture"] = time.perf_counter() - started
        if config.warmup.enabled:
            started = time.perf_counter()
            for lane in self._all_lanes:
                for bucket in self._buckets:
                    self._run_cuda(lane, example_inputs(self.inputs, bucket))
            self.phases["warmup"] = time.perf_counter() - started

    # -- CUDA ---------------------------------------------------------------------------------------------------

    def _pinned(self, decls: Sequence[TensorDecl], rows: int) -> list[torch.Tensor | None]:
        """Pinned host buffers of `rows` rows for tensors whose dims are all fixed; None for the others."""
        th = self._torch
        dtypes = torch_dtypes(th)
        return [
            None if -1 in d.dims else th.zeros(self._shape(d, rows), dtype=dtypes[d.datatype], pin_memory=True)
            for d in decls
        ]

    def _new_lane(self) -> _Lane:
        rows = self._buckets[-1]
        host_in, host_out = self._pinned(self.config.inputs, rows), self._pinned(self.config.outputs, rows)
        return _Lane(
            self._torch.cuda.Stream(device=self._device),
            host_in,
            host_out,
            [None if t is None else t.numpy() for t in host_in],
            [None if t is None else t.numpy() for t in host_out],
        )

    def _capture(self, lane: _Lane, bucket: int) -> _Graph:
        torch = self._torch
        dtypes = torch_dtypes(torch)
        with torch.inference_mode():
            static = [
                torch.zeros(self._shape(d, bucket), dtype=dtypes[d.datatype], device=self._device)
                for d in self.config.inputs
            ]
            # Lazy initialisation (cuBLAS handles, workspaces) must happen before capture, on the capture stream.
            lane.stream.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(lane.stream):
                for _ in range(3):
                    self.module(*static)
            lane.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            # thread_local: another model serving on this GPU while this one captures does not break the capture.
            with torch.cuda.graph(graph, pool=lane.pool, stream=lane.stream, capture_error_mode="thread_local"):
                outputs = _as_list(self.module(*static))
        return _Graph(graph, static, outputs)

    def _run_cuda(self, lane: _Lane, inputs: Mapping[str, Array]) -> list[Array]:
        th = self._torch
        decls = self.config.inputs
        arrays = [inputs[d.name] for d in decls]
        rows = arrays[0].shape[0] if self.batched and arrays else 1
        graphs = lane.graphs
        bucket = bucket_for(rows, self._buckets) if graphs else rows
        with th.inference_mode(), th.cuda.stream(lane.stream):
            staged = []
            for i, array in enumerate(arrays):
                view = lane.host_in_np[i]
                host = lane.host_in[i]
                if view is not None and host is not None:
                    if self.batched:
                        fill_padded(view[:bucket], array)
                        staged.append(host[:bucket])
                    else:
                        view[...] = array
                        staged.append(host)
                else:  # a free dimension: staged per call, from torch's caching pinned allocator
                    staged.append(th.from_numpy(np.ascontiguousarray(array)).pin_memory())
            if graphs:
                graph = graphs[bucket]
                for target, source in zip(graph.inputs, staged, strict=True):
                    target.copy_(source, non_blocking=True)
                graph.graph.replay()
                results = graph.outputs
            else:
                results = _as_list(self.module(*[t.to(self._device, non_blocking=True) for t in staged]))
            copied: list[Array | None] = []
            later: list[torch.Tensor] = []
            for j, result in enumerate(results):
                out_host = lane.host_out[j]
                if out_host is not None and (not self.batched or result.shape[0] <= out_host.shape[0]):
                    target_host = out_host[: result.shape[0]] if self.batched else out_host
                    target_host.copy_(result, non_blocking=True)
                    copied.append(lane.host_out_np[j])
                else:
                    later.append(result)
                    copied.append(None)
            lane.stream.synchronize()
            pending = iter(r.cpu().numpy() for r in later)
            outputs = [next(pending) if view is None else view for view in copied]
        if self.batched:
            return slice_rows(outputs, rows)
        return [np.array(o, copy=True) for o in outputs]


def _load_module(th: ModuleType, path: Path, config: ModelConfig, device: torch.device, what: str) -> Any:
    torch = th
    try:
        if path.suffix == ".pt2":
            program = torch.export.load(str(path))
            _check_program(torch, program, config, what)
            if device.type != "cpu":
                from torch.export.passes import move_to_device_pass

                program = move_to_device_pass(program, device)
            return program.module()
        module = torch.jit.load(str(path), map_location=device)
        module.eval()
        return module
    except ModelLoadError:
        raise
    except Exception as exc:  # torch raises many kinds on a bad file
        raise ModelLoadError(f"{what}: cannot load {path}: {type(exc).__name__}: {exc}") from None


def _check_program(torch: ModuleType, program: Any, config: ModelConfig, what: str) -> None:
    """An ExportedProgram's own input specs against config.yaml's inputs: count, dtype, fixed dims, and a free
    batch dimension when max_batch_size > 0."""
    signature = program.graph_signature
    user_inputs = list(signature.user_inputs)
    if len(user_inputs) != len(config.inputs):
        raise ModelLoadError(
            f"{what}: the program takes {len(user_inputs)} inputs ({', '.join(map(str, user_inputs))}) but "
            f"config.yaml declares {len(config.inputs)}"
        )
    if len(signature.user_outputs) != len(config.outputs):
        raise ModelLoadError(
            f"{what}: the program returns {len(signature.user_outputs)} outputs but config.yaml declares "
            f"{len(config.outputs)}"
        )
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    dtypes = torch_dtypes(torch)
    batched = config.max_batch_size > 0
    for decl, input_name in zip(config.inputs, user_inputs, strict=True):
        node = placeholders.get(str(input_name))
        value = node.meta.get("val") if node is not None else None
        if value is None or not hasattr(value, "dtype"):
            continue
        if value.dtype != dtypes[decl.datatype]:
            raise ModelLoadError(
                f"{what}: input '{decl.name}' (the program's '{input_name}') is {value.dtype}, config.yaml says "
                f"{decl.datatype}"
            )
        shape = list(value.shape)
        expected = [-1, *decl.dims] if batched else list(decl.dims)
        if len(shape) != len(expected):
            raise ModelLoadError(
                f"{what}: input '{decl.name}' has {len(shape)} dimensions in the program, config.yaml's dims "
                f"give {len(expected)}"
            )
        if batched and isinstance(shape[0], int):
            raise ModelLoadError(
                f"{what}: input '{decl.name}' was exported with a fixed batch dimension ({shape[0]}); max_batch_size "
                "> 0 needs a dynamic one (torch.export.export(..., dynamic_shapes={...: {0: Dim.DYNAMIC}}))"
            )
        for i, (have, want) in enumerate(zip(shape, expected, strict=True)):
            if want != -1 and isinstance(have, int) and have != want:
                raise ModelLoadError(
                    f"{what}: input '{decl.name}' dimension {i} is {have} in the program, config.yaml says {want}"
                )
