"""The function's data plane, independent of gRPC or REST: models, metadata, validated inference."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeinfer.functions import repository
from edgeinfer.functions.batching import DynamicBatcher
from edgeinfer.functions.metadata import build_metadata
from edgeinfer.functions.metrics import FunctionMetrics, ModelMetrics
from edgeinfer.functions.priority import lower_current_thread_priority
from edgeinfer.functions.runtime import OnnxModel
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import (
    DeadlineExceeded,
    InferenceError,
    ModelNotFound,
    Unavailable,
)
from edgeinfer.protocol.tensors import Array, batch_size, decode_inputs, encode_outputs, requested_outputs
from edgeinfer.version import __version__

log = logging.getLogger(__name__)

SERVER_NAME = "edgeinfer"
SERVER_VERSION = __version__
EXTENSIONS = ("model_repository_layout", "dynamic_batching", "statistics_prometheus", "stream_infer")


@dataclass
class ServedModel:
    model: OnnxModel
    batcher: DynamicBatcher
    metrics: ModelMetrics
    metadata: pb.ModelMetadataResponse


class DataPlane:
    """Loads a model repository and answers the Open Inference Protocol's requests."""

    def __init__(self, model_repo: Path, metrics: FunctionMetrics | None = None, compute_nice: int = 0) -> None:
        self._repo = model_repo
        # Added to the nice value of the threads that load models and run batches (functions/priority.py).
        self._compute_nice = compute_nice
        self.metrics = metrics or FunctionMetrics()
        self._models: dict[str, dict[str, ServedModel]] = {}
        self._latest: dict[str, str] = {}
        self._all_versions: dict[str, list[str]] = {}
        self._ready = False
        self._executor: ThreadPoolExecutor | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def models(self) -> dict[str, dict[str, ServedModel]]:
        return self._models

    async def load(self) -> None:
        """Load every model version, warm each up, then report ready."""
        entries = repository.scan(self._repo)
        loop = asyncio.get_running_loop()
        instances = sum(e.config.instance_count * len(e.versions) for e in entries)
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, instances),
            thread_name_prefix="ort",
            initializer=lower_current_thread_priority,
            initargs=(self._compute_nice,),
        )
        for entry in entries:
            started = time.monotonic()
            for version, path in entry.versions.items():
                model = await loop.run_in_executor(
                    self._executor, OnnxModel.load, entry.name, version, path, entry.config
                )
                await loop.run_in_executor(self._executor, model.warm_up)
                inline = False
                if entry.config.inline_compute_max_microseconds:
                    largest = max(1, entry.config.max_batch_size)
                    cost = await loop.run_in_executor(self._executor, model.compute_microseconds, largest)
                    inline = cost < entry.config.inline_compute_max_microseconds
                self._models.setdefault(entry.name, {})[version] = self._serve(model, inline)
            self._latest[entry.name] = entry.latest
            self._all_versions[entry.name] = list(entry.versions)
            elapsed = time.monotonic() - started
            self.metrics.model_load.labels(entry.name).set(elapsed)
            latest = self._models[entry.name][entry.latest]
            log.info(
                "model %s versions %s loaded on %s in %.3fs (batches run %s)",
                entry.name,
                ",".join(entry.versions),
                latest.model.provider,
                elapsed,
                "inline" if latest.batcher.inline else "on a worker thread",
            )
        self._ready = True
        self.metrics.ready.set(1)

    def _serve(self, model: OnnxModel, inline: bool) -> ServedModel:
        config = model.config
        metrics = self.metrics.for_model(model.name)
        joins = config.max_batch_size > 0 and config.dynamic_batching.enabled
        assert self._executor is not None
        batcher = DynamicBatcher(
            model.run,
            self._executor,
            max_batch_size=config.max_batch_size if joins else 1,
            max_queue_delay_us=config.dynamic_batching.max_queue_delay_microseconds if joins else 0,
            max_queue_size=config.dynamic_batching.max_queue_size,
            instance_count=config.instance_count,
            inline=inline,
            on_batch=metrics.batch,
            name=model.name,
        )
        batcher.start()
        metadata = build_metadata(
            model.name,
            [model.version],
            model.inputs.values(),
            model.outputs.values(),
            config,
            provider=model.provider,
            inline=inline,
        )
        return ServedModel(model, batcher, metrics, metadata)

    async def close(self) -> None:
        self._ready = False
        for versions in self._models.values():
            for served in versions.values():
                await served.batcher.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- lookups ---------------------------------------------------------------------------

    def resolve(self, name: str, version: str = "") -> ServedModel:
        versions = self._models.get(name)
        if versions is None:
            if not self._ready:
                raise Unavailable(f"model '{name}' is not loaded yet; the function is starting")
            known = ", ".join(sorted(self._models)) or "(none)"
            raise ModelNotFound(f"unknown model '{name}'; this function serves: {known}")
        served = versions.get(version or self._latest[name])
        if served is None:
            raise ModelNotFound(f"model '{name}' has no version '{version}'; available: {', '.join(versions)}")
        return served

    def server_metadata(self) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.resolve(name, version)
        except InferenceError:
            return False
        return self._ready

    def model_metadata(self, name: str, version: str = "") -> pb.ModelMetadataResponse:
        served = self.resolve(name, version)
        if version:
            return served.metadata
        reply = pb.ModelMetadataResponse()
        reply.CopyFrom(served.metadata)
        reply.versions[:] = self._all_versions[name]
        return reply

    # -- inference -------------------------------------------------------------------------

    async def infer(self, request: pb.ModelInferRequest, timeout: float | None = None) -> pb.ModelInferResponse:
        served = self.resolve(request.model_name, request.model_version)
        started = time.monotonic()
        try:
            response = await self._infer(served, request, timeout)
        except InferenceError as exc:
            served.metrics.failed(exc.code.name, time.monotonic() - started)
            raise
        served.metrics.succeeded(time.monotonic() - started)
        return response

    async def _infer(
        self, served: ServedModel, request: pb.ModelInferRequest, timeout: float | None
    ) -> pb.ModelInferResponse:
        model = served.model
        inputs, raw = decode_inputs(request, model.inputs)
        size = batch_size(model.name, inputs, model.config.max_batch_size)
        wanted = requested_outputs(model.name, request, model.output_names)
        if any(spec.datatype == "BYTES" for spec in model.inputs.values()):
            inputs = _strings_for_ort(inputs)
        budget = timeout if timeout is not None else model.config.timeout_ms / 1000
        if served.batcher.inline:  # runs within this turn of the loop: nothing to time out
            results = await served.batcher.submit(inputs, size)
        else:
            results = await self._submit_within(served, inputs, size, budget)
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        names = model.output_names
        pairs = [(n, _ensure_array(r)) for n, r in zip(names, results, strict=True) if wanted is None or n in wanted]
        encode_outputs(response, pairs, raw)
        return response

    @staticmethod
    async def _submit_within(served: ServedModel, inputs: dict[str, Array], size: int, budget: float) -> list[Array]:
        model = served.model
        try:
            async with asyncio.timeout(budget):
                return await served.batcher.submit(inputs, size, deadline=time.monotonic() + budget)
        except TimeoutError:
            raise DeadlineExceeded(
                f"model '{model.name}': no result within {budget * 1000:.0f} ms "
                f"({served.batcher.queued} requests queued)"
            ) from None


def _strings_for_ort(inputs: dict[str, Array]) -> dict[str, Array]:
    """ONNX Runtime takes str elements for tensor(string); BYTES arrive as bytes."""
    converted: dict[str, Array] = {}
    for name, array in inputs.items():
        if array.dtype == np.object_:
            out = np.empty(array.shape, dtype=np.object_)
            flat_in, flat_out = array.reshape(-1), out.reshape(-1)
            for i, item in enumerate(flat_in):
                flat_out[i] = item.decode("utf-8", "surrogateescape") if isinstance(item, bytes) else item
            converted[name] = out
        else:
            converted[name] = array
    return converted


def _ensure_array(value: Array) -> Array:
    return value if isinstance(value, np.ndarray) else np.asarray(value)
