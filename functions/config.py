"""Per-model configuration: `DIR/<model>/config.yaml`, with Triton's names where they exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

Provider = Literal["tensorrt", "cuda", "cpu"]
Platform = Literal["onnxruntime", "pytorch"]
Device = Literal["cpu", "cuda"]
# Open Inference datatypes a PyTorch model can take or give (torch has no string tensors; numpy no bfloat16).
TorchDatatype = Literal["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DynamicBatching(_Strict):
    """Triton's dynamic_batching block: join concurrent requests along dimension 0."""

    enabled: bool = True
    max_queue_delay_microseconds: int = Field(default=100, ge=0, le=10_000_000)
    # Requests waiting for an instance; beyond it a request gets RESOURCE_EXHAUSTED.
    max_queue_size: int = Field(default=1024, ge=1)


class TensorRT(_Strict):
    fp16: bool = False
    # Engines and timing caches live here so a restart skips the engine build.
    engine_cache_dir: str = "/tmp/edgeinfer-trt-cache"
    max_workspace_bytes: int = Field(default=1 << 30, ge=1 << 20)


class Warmup(_Strict):
    enabled: bool = True
    batch_sizes: tuple[int, ...] = (1,)


class Cache(_Strict):
    """Read by the gateway: whether and how long it may cache this model's responses."""

    enabled: bool = True
    ttl_seconds: float = Field(default=300.0, gt=0)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a Go-style duration such as "60s", "1m30s", "500ms" (Knative's form)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '60s'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration like '60s', '1m30s' or '500ms'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError("a duration must be a number of seconds or a string like '60s'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Autoscaling(_Strict):
    """Knative's autoscaling knobs, with Knative's names (annotation suffixes) and defaults.

    The local pool of `edgeinfer up` honours them; `edgeinfer deploy` writes them
    as `autoscaling.knative.dev/*` annotations.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    min_scale: int = Field(default=0, ge=0, alias="min-scale")
    max_scale: int = Field(default=0, ge=0, alias="max-scale")  # 0: no limit (the local pool caps it)
    initial_scale: int = Field(default=1, ge=0, alias="initial-scale")
    activation_scale: int = Field(default=1, ge=1, alias="activation-scale")
    # Soft concurrency target per instance, and the share of it the autoscaler aims for.
    target: float = Field(default=100.0, gt=0, alias="target")
    target_utilization_percentage: float = Field(default=70.0, gt=0, le=100, alias="target-utilization-percentage")
    # The hard limit of concurrent requests per instance (Knative's containerConcurrency); 0 = none.
    container_concurrency: int = Field(default=0, ge=0, alias="container-concurrency")
    window: Duration = Field(default=60.0, ge=6.0, le=3600.0, alias="window")
    panic_window_percentage: float = Field(default=10.0, ge=1.0, le=100.0, alias="panic-window-percentage")
    panic_threshold_percentage: float = Field(default=200.0, ge=110.0, le=1000.0, alias="panic-threshold-percentage")
    scale_down_delay: Duration = Field(default=0.0, ge=0.0, le=3600.0, alias="scale-down-delay")
    scale_to_zero_pod_retention_period: Duration = Field(
        default=0.0, ge=0.0, alias="scale-to-zero-pod-retention-period"
    )
    # Cluster-wide in Knative (config-autoscaler); per model here.
    scale_to_zero_grace_period: Duration = Field(default=30.0, ge=0.0, alias="scale-to-zero-grace-period")

    @model_validator(mode="after")
    def _consistent(self) -> Autoscaling:
        if self.max_scale and self.min_scale > self.max_scale:
            raise ValueError(f"min-scale ({self.min_scale}) is above max-scale ({self.max_scale})")
        return self

    @property
    def panic_window(self) -> float:
        return self.window * self.panic_window_percentage / 100

    @property
    def effective_target(self) -> float:
        """Concurrency per instance the autoscaler aims for: target × utilization, within containerConcurrency."""
        target = min(self.target, self.container_concurrency) if self.container_concurrency else self.target
        return target * self.target_utilization_percentage / 100


class TensorDecl(_Strict):
    """One input or output of a PyTorch model, as Triton's config.pbtxt declares it: `dims` leave out the batch
    dimension when max_batch_size > 0; -1 is a free dimension."""

    name: str = Field(min_length=1, max_length=256)
    datatype: TorchDatatype
    dims: tuple[int, ...]

    @model_validator(mode="after")
    def _dims(self) -> TensorDecl:
        if any(d < -1 or d == 0 for d in self.dims):
            raise ValueError(f"tensor '{self.name}': dims {list(self.dims)}: each is a size >= 1, or -1 (free)")
        return self


class ModelConfig(_Strict):
    # Triton meaning: 0 = the model does not batch; >0 = dimension 0 is the batch, up to this.
    max_batch_size: int = Field(default=0, ge=0)
    dynamic_batching: DynamicBatching = DynamicBatching()
    # Batches that may run at once (Triton's instance_group count).
    instance_count: int = Field(default=1, ge=1, le=64)
    execution_providers: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")
    intra_op_threads: int = Field(default=0, ge=0)  # 0: min(2, CPU count)
    tensorrt: TensorRT = TensorRT()
    warmup: Warmup = Warmup()
    cache: Cache = Cache()
    # Run batches on the event loop when the largest batch computes in less than this
    # (measured at warm-up): a thread hand-off costs more than such a model. 0 = never.
    inline_compute_max_microseconds: int = Field(default=150, ge=0, le=1000)
    # Default per-request timeout when the caller sets no deadline.
    timeout_ms: int = Field(default=10_000, gt=0)
    autoscaling: Autoscaling = Autoscaling()
    # The runtime: onnxruntime (model.onnx) or pytorch (model.pt2, a torch.export program; model.pt, TorchScript).
    # None: from the file a version holds (docs/pytorch.md).
    platform: Platform | None = None
    # PyTorch models only (ONNX models pick their device from execution_providers): where the model runs. cpu by
    # default, never a silent fallback: cuda on a host without CUDA fails the load, naming what to install.
    device: Device = "cpu"
    # PyTorch on CUDA only: capture a CUDA graph per batch-size bucket and replay it (a batch is padded up to its
    # bucket, the result sliced back).
    cuda_graphs: bool = False
    # The buckets; empty: powers of two up to max_batch_size, and max_batch_size itself.
    cuda_graph_batch_sizes: tuple[Annotated[int, Field(ge=1)], ...] = ()
    # A PyTorch model's inputs and outputs, in the order its forward takes and returns them (an ONNX model's come
    # from its graph: leave these out).
    inputs: tuple[TensorDecl, ...] = ()
    outputs: tuple[TensorDecl, ...] = ()

    @model_validator(mode="after")
    def _runtime(self) -> ModelConfig:
        if self.cuda_graphs and self.device != "cuda":
            raise ValueError("cuda_graphs: true needs device: cuda (CUDA graphs run on a GPU)")
        if self.cuda_graph_batch_sizes and not self.cuda_graphs:
            raise ValueError("cuda_graph_batch_sizes needs cuda_graphs: true")
        too_big = [b for b in self.cuda_graph_batch_sizes if b > max(1, self.max_batch_size)]
        if too_big:
            raise ValueError(
                f"cuda_graph_batch_sizes {too_big} exceed max_batch_size {self.max_batch_size}: a bucket holds at most "
                "the largest batch"
            )
        if self.platform == "onnxruntime":
            check_platform(self, "onnxruntime")
        elif self.platform == "pytorch":
            check_platform(self, "pytorch")
        return self

    def resolved_platform(self, model_file: Path) -> Platform:
        """The platform that serves `model_file`: config.yaml's, else the file's."""
        return self.platform or platform_of(model_file)


def platform_of(model_file: Path) -> Platform:
    return "onnxruntime" if model_file.suffix == ".onnx" else "pytorch"


def check_platform(config: ModelConfig, platform: Platform) -> None:
    """ValueError naming the field when `config` cannot serve a model of `platform`."""
    if platform == "onnxruntime":
        if config.device != "cpu" or config.cuda_graphs:
            raise ValueError(
                "device and cuda_graphs apply to pytorch models; an ONNX model picks its device from "
                "execution_providers"
            )
        if config.inputs or config.outputs:
            raise ValueError("inputs and outputs apply to pytorch models; an ONNX model's come from its graph")
        return
    if not config.inputs or not config.outputs:
        raise ValueError(
            "a pytorch model needs inputs: and outputs: (each a list of {name, datatype, dims}, in the order its "
            "forward takes and returns them; docs/pytorch.md)"
        )
    names = [t.name for t in (*config.inputs, *config.outputs)]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"tensor names must be unique across inputs and outputs: {', '.join(duplicated)}")
    if config.cuda_graphs:
        free = [t.name for t in (*config.inputs, *config.outputs) if -1 in t.dims]
        if free:
            raise ValueError(
                f"cuda_graphs: true needs fixed dims apart from the batch dimension; free (-1) in {', '.join(free)}"
            )


class Faults(_Strict):
    """A drill feature: `DIR/<model>/<version>/faults.yaml` makes that version slow or failing on purpose, so a
    canary rollout can be shown to catch it (docs/drills.md). Read and applied by the function only."""

    # Added to every request of the version, without holding the batcher or blocking the event loop.
    delay_ms: float = Field(default=0.0, ge=0.0, le=60_000.0, allow_inf_nan=False, strict=True)
    # The share of requests that fail with INTERNAL.
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False, strict=True)
    # Seeds the draw of which requests fail, so a drill (or a test) fails the same requests every run.
    seed: int | None = Field(default=None, strict=True)

    def describe(self) -> str:
        parts = [f"delay_ms {self.delay_ms:g}"] if self.delay_ms else []
        if self.error_rate:
            parts.append(f"error_rate {self.error_rate:g}")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        return ", ".join(parts) or "none"


class ConfigError(ValueError):
    """A config.yaml (or faults.yaml) that cannot be used; the message names the file and field."""


def _read_mapping(path: Path) -> dict[str, object]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors())


def load_config(path: Path) -> ModelConfig:
    if not path.exists():
        return ModelConfig()
    data = _read_mapping(path)
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from exc


def load_faults(path: Path) -> Faults | None:
    """The faults of one version's `faults.yaml`, or None without the file; ConfigError naming it if it is bad."""
    if not path.exists():
        return None
    data = _read_mapping(path)
    try:
        return Faults.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: {_problems(exc)} (expected delay_ms: a number >= 0, error_rate: 0..1, seed: an integer)"
        ) from exc
