"""Per-model configuration: `DIR/<model>/config.yaml`, with Triton's names where they exist."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Provider = Literal["tensorrt", "cuda", "cpu"]


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


class ConfigError(ValueError):
    """A config.yaml that cannot be used; the message names the file and field."""


def load_config(path: Path) -> ModelConfig:
    if not path.exists():
        return ModelConfig()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc
