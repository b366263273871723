"""The function's data plane, independent of gRPC or REST: models, metadata, validated inference, and Triton's
model repository control (load, unload, poll), configuration, statistics and classification extensions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from edgeinfer.functions import classification, repository
from edgeinfer.functions.batching import BatchStats, DynamicBatcher
from edgeinfer.functions.config import ConfigError, Faults, load_faults
from edgeinfer.functions.metadata import build_metadata
from edgeinfer.functions.metrics import FunctionMetrics, ModelMetrics
from edgeinfer.functions.model_config import (
    Override,
    VersionPolicy,
    build_model_config,
    check_declared,
    parse_override,
)
from edgeinfer.functions.priority import lower_current_thread_priority
from edgeinfer.functions.repository import ModelEntry, RepositoryError
from edgeinfer.functions.runtime import ModelLoadError, Servable, load_model
from edgeinfer.functions.statistics import VersionStatistics
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InferenceError,
    Internal,
    InvalidArgument,
    ModelNotFound,
    ResourceExhausted,
    Unavailable,
)
from edgeinfer.protocol.tensors import Array, batch_size, decode_inputs, encode_outputs, requested_outputs
from edgeinfer.version import __version__

log = logging.getLogger(__name__)

SERVER_NAME = "edgeinfer"
SERVER_VERSION = __version__
# Triton's names for its extensions (src/server.cc), then edgeinfer's own.
EXTENSIONS = (
    "classification",
    "model_repository",
    "model_configuration",
    "system_shared_memory",
    "statistics",
    "trace",
    "logging",
    "model_repository_layout",
    "dynamic_batching",
    "statistics_prometheus",
    "stream_infer",
)

ControlMode = Literal["none", "explicit", "poll"]
READY, UNAVAILABLE, LOADING, UNLOADING = "READY", "UNAVAILABLE", "LOADING", "UNLOADING"
# Models this function keeps track of (loaded or not): bounds every per-model dict a client can grow.
MAX_MODELS = 1024
MAX_LOAD_FILES = 64
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class FaultInjector:
    """One version's faults.yaml (a drill feature), ready for the hot path: plain attributes, no parsing."""

    __slots__ = ("_count", "delay_s", "error_rate", "message")

    def __init__(self, model: str, version: str, faults: Faults) -> None:
        self.delay_s = faults.delay_ms / 1000
        self.error_rate = faults.error_rate
        self.message = (
            f"model '{model}' version {version}: injected fault (faults.yaml error_rate {faults.error_rate:g})"
        )
        # Deterministic, not drawn: request k (by arrival, from `seed`) fails when floor((k+1)*rate) > floor(k*rate),
        # so any n requests in a row fail floor(n*rate) or ceil(n*rate) times; a drill's bound is then exact.
        self._count = faults.seed or 0

    def fails(self) -> bool:
        if self.error_rate <= 0:
            return False
        k = self._count
        self._count = k + 1
        return math.floor((k + 1) * self.error_rate) > math.floor(k * self.error_rate)


@dataclass(eq=False)
class ServedModel:
    model: Servable
    batcher: DynamicBatcher
    metrics: ModelMetrics
    metadata: pb.ModelMetadataResponse
    config: pb.ModelConfig
    stats: VersionStatistics
    executor: ThreadPoolExecutor
    labels: tuple[str, ...] = ()
    datatypes: dict[str, str] = field(default_factory=dict)
    faults: FaultInjector | None = None
    # Requests between resolve() and their reply; an unload waits for 0.
    inflight: int = 0
    idle: asyncio.Future[None] | None = None


class DataPlane:
    """Loads a model repository and answers the Open Inference Protocol's requests.

    Model control as Triton's `--model-control-mode`: `none` loads every model at start and refuses load and
    unload; `explicit` loads `startup_models` (`*`: all) at start and others on request; `poll` loads every
    model and rescans the repository every `poll_seconds`, loading what is new or changed, unloading what left.
    """

    def __init__(
        self,
        model_repo: Path,
        metrics: FunctionMetrics | None = None,
        compute_nice: int = 0,
        *,
        control_mode: ControlMode = "none",
        startup_models: Iterable[str] = (),
        poll_seconds: float = 15.0,
    ) -> None:
        self._repo = model_repo
        # Added to the nice value of the threads that load models and run batches (functions/priority.py).
        self._compute_nice = compute_nice
        self.metrics = metrics or FunctionMetrics()
        self._mode: ControlMode = control_mode
        self._startup_models = tuple(startup_models)
        self._poll_seconds = poll_seconds
        self._models: dict[str, dict[str, ServedModel]] = {}
        self._latest: dict[str, str] = {}
        # (state, reason) of versions that are not READY: loading, unloading, unloaded, failed.
        self._states: dict[str, dict[str, tuple[str, str]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # What poll mode saw of each model's files when it last loaded it.
        self._fingerprints: dict[str, tuple[object, ...]] = {}
        # Directories a load's `file:` parameters were written to, removed when the model is.
        self._load_dirs: dict[str, Path] = {}
        self._poller: asyncio.Task[None] | None = None
        self._ready = False
        self._process_seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def models(self) -> dict[str, dict[str, ServedModel]]:
        return self._models

    @property
    def control_mode(self) -> ControlMode:
        return self._mode

    async def load(self) -> None:
        """Load the models the control mode starts with, warm each up, then report ready."""
        if self._mode == "explicit":
            listing = await asyncio.to_thread(repository.listing, self._repo)
            if not self._repo.is_dir():
                repository.scan(self._repo)  # the error that says how to create it
            names = sorted(listing) if "*" in self._startup_models else list(dict.fromkeys(self._startup_models))
            for name in names:
                if name not in listing:
                    raise RepositoryError(f"--load-model {name}: no model '{name}' in {self._repo}")
            entries = [repository.read_entry(self._repo / name, name) for name in names]
            for name, versions in listing.items():
                if name not in names:
                    self._set_state(name, versions, UNAVAILABLE, "not loaded")
        else:
            entries = await asyncio.to_thread(repository.scan, self._repo, allow_empty=self._mode == "poll")
        for entry in entries:
            async with self._lock(entry.name):
                await self._load_entry(entry, self._repo / entry.name)
            if self._mode == "poll":
                self._fingerprints[entry.name] = await asyncio.to_thread(_fingerprint, self._repo / entry.name)
        self._ready = True
        self.metrics.ready.set(1)
        if self._mode == "poll":
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def close(self) -> None:
        self._ready = False
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        for versions in self._models.values():
            for served in versions.values():
                await served.batcher.stop()
                served.executor.shutdown(wait=False, cancel_futures=True)
        for directory in self._load_dirs.values():
            shutil.rmtree(directory, ignore_errors=True)
        self._load_dirs.clear()

    # -- loading and unloading ---------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            if len(self._locks) >= MAX_MODELS:
                # Locks of models that are gone and idle go first.
                for stale in [n for n, lk in self._locks.items() if not lk.locked() and n not in self._models]:
                    del self._locks[stale]
                if len(self._locks) >= MAX_MODELS:
                    raise ResourceExhausted(f"this function already tracks {MAX_MODELS} models; unload some first")
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _set_state(self, name: str, versions: Iterable[str], state: str, reason: str) -> None:
        if name not in self._states and len(self._states) >= MAX_MODELS:
            # Forget the oldest model that is neither served nor in the repository's last listing.
            for stale in [n for n in self._states if n not in self._models][:1]:
                del self._states[stale]
        self._states.setdefault(name, {}).update(dict.fromkeys(versions, (state, reason)))

    async def _load_entry(self, entry: ModelEntry, source: Path, override: Override | None = None) -> None:
        """Load the versions of `entry` its policy selects, then swap them in for any served before (which
        drain: their in-flight requests finish). Under the model's lock. A failure leaves what was served."""
        name = entry.name
        policy = override.policy if override is not None else VersionPolicy()
        selected = policy.select(list(entry.versions))
        if not selected:
            raise InvalidArgument(
                f"model '{name}': version_policy selects none of its versions ({', '.join(entry.versions)})"
            )
        labels = await asyncio.to_thread(classification.read_labels, source)
        started = time.monotonic()
        self._set_state(name, selected, LOADING, "")
        loaded: dict[str, ServedModel] = {}
        try:
            for version in selected:
                loaded[version] = await self._load_version(entry, version, labels)
            if override is not None:
                check_declared(override, loaded[selected[-1]].config)
        except BaseException as exc:
            for served in loaded.values():
                await self._retire(served)
            self._set_state(name, selected, UNAVAILABLE, f"load failed: {exc}")
            raise
        previous = self._models.get(name, {})
        self._models[name] = loaded
        self._latest[name] = selected[-1]
        self._states.pop(name, None)
        elapsed = time.monotonic() - started
        self.metrics.model_load.labels(name).set(elapsed)
        latest = loaded[selected[-1]]
        phases = latest.model.phases
        for phase, seconds in phases.items():
            self.metrics.start_phase.labels(name, phase).set(seconds)
        log.info(
            "model %s versions %s loaded (%s) on %s in %.3fs (%s; batches run %s)",
            name,
            ",".join(selected),
            latest.model.platform,
            latest.model.provider,
            elapsed,
            " ".join(f"{phase} {seconds:.3f}s" for phase, seconds in phases.items()) or "no phases",
            "inline" if latest.batcher.inline else "on a worker thread",
        )
        gone = [v for v in previous if v not in loaded]
        self._set_state(name, gone, UNLOADING, "")
        for served in previous.values():
            await self._retire(served)
        self._set_state(name, gone, UNAVAILABLE, "unloaded")
        if not self._states.get(name):
            self._states.pop(name, None)

    async def _load_version(self, entry: ModelEntry, version: str, labels: tuple[str, ...]) -> ServedModel:
        config = entry.config
        loop = asyncio.get_running_loop()
        # One thread per instance: a batch never waits for a thread, and an unload frees exactly these.
        executor = ThreadPoolExecutor(
            max_workers=config.instance_count,
            thread_name_prefix=f"ort-{entry.name}",
            initializer=lower_current_thread_priority,
            initargs=(self._compute_nice,),
        )
        try:
            path = entry.versions[version]
            # Before the model: a bad faults.yaml fails the load at once, naming the file.
            faults = await asyncio.to_thread(load_faults, path.parent / repository.FAULTS_FILE)
            model = await loop.run_in_executor(executor, load_model, entry.name, version, path, config)
            await loop.run_in_executor(executor, model.warm_up)
            inline = False
            if config.inline_compute_max_microseconds:
                largest = max(1, config.max_batch_size)
                cost = await loop.run_in_executor(executor, model.compute_microseconds, largest)
                inline = cost < config.inline_compute_max_microseconds
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
        served = self._serve(model, inline, executor, labels)
        if faults is not None:
            served.faults = FaultInjector(entry.name, version, faults)
            # Loud: a version that is slow or fails on purpose must never pass unnoticed in a log.
            log.warning(
                "version %s of %s has injected faults: %s (from %s); a drill feature: remove the file and reload "
                "to serve it normally",
                version,
                entry.name,
                faults.describe(),
                path.parent / repository.FAULTS_FILE,
            )
        return served

    def _serve(
        self, model: Servable, inline: bool, executor: ThreadPoolExecutor, labels: tuple[str, ...]
    ) -> ServedModel:
        config = model.config
        metrics = self.metrics.for_model(model.name)
        stats = VersionStatistics(model.name, model.version)
        joins = config.max_batch_size > 0 and config.dynamic_batching.enabled

        def on_batch(batch: BatchStats) -> None:
            metrics.batch(batch)
            stats.batch(batch)

        batcher = DynamicBatcher(
            model.run,
            executor,
            max_batch_size=config.max_batch_size if joins else 1,
            max_queue_delay_us=config.dynamic_batching.max_queue_delay_microseconds if joins else 0,
            max_queue_size=config.dynamic_batching.max_queue_size,
            instance_count=config.instance_count,
            inline=inline,
            on_batch=on_batch,
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
            platform=model.platform,
        )
        model_config = build_model_config(
            model.name,
            model.inputs.values(),
            model.outputs.values(),
            config,
            provider=model.provider,
            labels=bool(labels),
            versions=[model.version],
            platform=model.platform,
            model_file=model.path.name,
        )
        datatypes = {n: s.datatype for n, s in model.outputs.items()}
        return ServedModel(model, batcher, metrics, metadata, model_config, stats, executor, labels, datatypes)

    async def _retire(self, served: ServedModel) -> None:
        """Finish what `served` has in flight (it is no longer resolvable), then stop it and free its threads
        and, with the last reference, its ONNX Runtime session."""
        await served.batcher.drain()
        if served.inflight:
            served.idle = asyncio.get_running_loop().create_future()
            await served.idle
        served.executor.shutdown(wait=False)

    def _check_control(self, what: str) -> None:
        if self._mode == "none":
            raise FailedPrecondition(
                f"cannot {what} a model: this function runs with --model-control-mode none (every model loaded at "
                "start); restart it with --model-control-mode explicit to load and unload models at run time"
            )
        if self._mode == "poll":
            raise FailedPrecondition(
                f"cannot {what} a model: this function runs with --model-control-mode poll (it follows the model "
                "repository); change the repository, or restart it with --model-control-mode explicit"
            )

    @staticmethod
    def _check_name(name: str) -> None:
        if not _MODEL_NAME.fullmatch(name):
            raise InvalidArgument(
                f"model name {name[:130]!r} is not valid: letters, digits, '_', '.', '-', at most 128, not starting "
                "with '.' or '-'"
            )

    async def load_model(
        self, name: str, config_json: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        """Load (or reload) a model in explicit mode: from the repository, or from `files` (Triton's `file:`
        parameters: relative path -> content) with `config_json` (Triton's ModelConfig as JSON) over config.yaml."""
        self._check_control("load")
        self._check_name(name)
        async with self._lock(name):
            source = self._repo / name
            written: Path | None = None
            if files:
                if config_json is None:
                    raise InvalidArgument(
                        f"load '{name}': 'file:' parameters need a 'config' parameter too (Triton's rule: it serves "
                        "as the model configuration of the files)"
                    )
                written = await asyncio.to_thread(_write_files, name, files)
                source = written
            try:
                try:
                    entry = await asyncio.to_thread(repository.read_entry, source, name)
                except RepositoryError:
                    if written is None and not source.is_dir():
                        raise ModelNotFound(f"failed to load '{name}': no model '{name}' in {self._repo}") from None
                    raise
                platform = entry.platform(entry.latest)
                override = (
                    parse_override(config_json, name, entry.config, platform) if config_json is not None else None
                )
                if override is not None:
                    entry = ModelEntry(name, entry.versions, override.config)
                await self._load_entry(entry, source, override)
            except BaseException as exc:
                if written is not None:
                    shutil.rmtree(written, ignore_errors=True)
                if isinstance(exc, ConfigError | RepositoryError | ModelLoadError):
                    raise InvalidArgument(f"failed to load '{name}': {exc}") from None
                raise
            previous = self._load_dirs.pop(name, None)
            if written is not None:
                self._load_dirs[name] = written
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)

    async def unload_model(self, name: str) -> None:
        """Unload a model in explicit mode: new requests for it are refused, those in flight finish first."""
        self._check_control("unload")
        await self._unload(name)

    async def _unload(self, name: str) -> None:
        async with self._lock(name):
            versions = self._models.pop(name, None)
            if versions is None:
                if name in self._states or (self._repo / name).is_dir():
                    return  # known and not loaded: nothing to do, as Triton answers
                raise ModelNotFound(f"failed to unload '{name}': no model '{name}' is loaded or in {self._repo}")
            self._latest.pop(name, None)
            self._set_state(name, versions, UNLOADING, "")
            started = time.monotonic()
            for served in versions.values():
                await self._retire(served)
            self._set_state(name, versions, UNAVAILABLE, "unloaded")
            directory = self._load_dirs.pop(name, None)
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            log.info("model %s unloaded in %.3fs", name, time.monotonic() - started)

    # -- poll mode -----------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self.poll_once()
            except Exception:
                log.exception("polling %s failed; trying again in %.1fs", self._repo, self._poll_seconds)

    async def poll_once(self) -> None:
        """Load what is new or changed in the repository, unload what left it (poll mode)."""
        seen = await asyncio.to_thread(_fingerprints, self._repo)
        for name in [n for n in self._fingerprints if n not in seen]:
            log.info("model %s left %s: unloading it", name, self._repo)
            self._fingerprints.pop(name, None)
            await self._unload(name)
        for name, fingerprint in seen.items():
            if self._fingerprints.get(name) == fingerprint:
                continue
            self._fingerprints[name] = fingerprint  # a broken model is retried when it changes again
            try:
                async with self._lock(name):
                    entry = await asyncio.to_thread(repository.read_entry, self._repo / name, name)
                    await self._load_entry(entry, self._repo / name)
            except (ConfigError, RepositoryError, ModelLoadError, InferenceError) as exc:
                log.error("model %s: cannot load it from %s: %s", name, self._repo, exc)
                labels = repository.versions_of(self._repo / name)
                self._set_state(name, labels, UNAVAILABLE, f"load failed: {exc}")

    # -- lookups ---------------------------------------------------------------------------

    def resolve(self, name: str, version: str = "") -> ServedModel:
        versions = self._models.get(name)
        if versions is None:
            if not self._ready:
                raise Unavailable(f"model '{name}' is not loaded yet; the function is starting")
            states = self._states.get(name)
            if states is not None and any(state == UNLOADING for state, _ in states.values()):
                raise Unavailable(f"model '{name}' is being unloaded; it takes no new requests")
            if states is not None and any(state == LOADING for state, _ in states.values()):
                raise Unavailable(f"model '{name}' is loading; retry once it is ready")
            if states is not None:
                raise ModelNotFound(
                    f"model '{name}' is not loaded; load it with RepositoryModelLoad (tritonclient's load_model)"
                )
            known = ", ".join(sorted(self._models)) or "(none)"
            raise ModelNotFound(f"unknown model '{name}'; this function serves: {known}")
        served = versions.get(version or self._latest[name])
        if served is None:
            raise ModelNotFound(f"model '{name}' has no version '{version}'; available: {', '.join(versions)}")
        return served

    def record_process_phase(self, seconds: float) -> None:
        """The cold start's first phase: process start (imports included) to the first model's load."""
        self._process_seconds = seconds
        self.metrics.start_phase.labels("", "process").set(seconds)

    def start_phases_text(self) -> str:
        """The cold start's phases as the ready line prints them: process start to the first load, then each
        served model's (latest version's) phases in order."""
        parts = [] if self._process_seconds is None else [f"process {self._process_seconds:.3f}s"]
        for name in sorted(self._models):
            served = self._models[name][self._latest[name]]
            phases = " ".join(f"{phase} {seconds:.3f}s" for phase, seconds in served.model.phases.items())
            parts.append(f"{name} [{phases}]" if phases else name)
        return ", ".join(parts)

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
        reply.versions[:] = list(self._models[name])
        return reply

    def model_config(self, name: str, version: str = "") -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse(config=self.resolve(name, version).config)

    def statistics(self, name: str = "", version: str = "") -> pb.ModelStatisticsResponse:
        """Triton's statistics: every model when `name` is empty, every version when `version` is."""
        reply = pb.ModelStatisticsResponse()
        if not name:
            for model in sorted(self._models):
                for served in self._models[model].values():
                    if not version or served.model.version == version:
                        reply.model_stats.append(served.stats.to_proto())
            return reply
        versions = self._models.get(name)
        if versions is None:
            raise ModelNotFound(f"requested model '{name}' is not available (not loaded on this function)")
        if version:
            one = versions.get(version)
            if one is None:
                raise ModelNotFound(
                    f"requested model '{name}' version {version} is not available; loaded: {', '.join(versions)}"
                )
            reply.model_stats.append(one.stats.to_proto())
        else:
            reply.model_stats.extend(s.stats.to_proto() for s in versions.values())
        return reply

    async def repository_index(self, ready_only: bool = False) -> pb.RepositoryIndexResponse:
        """Every model of the repository directory, loaded or not, and every model loaded from files; one entry
        per version with its state (READY, UNAVAILABLE, LOADING, UNLOADING) and the reason."""
        listing = await asyncio.to_thread(repository.listing, self._repo)
        reply = pb.RepositoryIndexResponse()
        for name in sorted(set(listing) | set(self._models) | set(self._states)):
            served = self._models.get(name, {})
            states = self._states.get(name, {})
            versions = dict.fromkeys([*listing.get(name, ()), *served, *states])
            for version in sorted(versions, key=repository.version_key):
                if version in served:
                    state, reason = READY, ""
                else:
                    state, reason = states.get(version, (UNAVAILABLE, "not loaded"))
                if ready_only and state != READY:
                    continue
                reply.models.add(name=name, version=version, state=state, reason=reason)
        return reply

    # -- inference -------------------------------------------------------------------------

    async def infer(self, request: pb.ModelInferRequest, timeout: float | None = None) -> pb.ModelInferResponse:
        served = self.resolve(request.model_name, request.model_version)
        started = time.monotonic()
        served.inflight += 1
        try:
            response, rows = await self._infer(served, request, timeout)
        except InferenceError as exc:
            elapsed = time.monotonic() - started
            served.metrics.failed(exc.code.name, elapsed)
            served.stats.failed(elapsed)
            raise
        finally:
            served.inflight -= 1
            if not served.inflight and served.idle is not None and not served.idle.done():
                served.idle.set_result(None)
        elapsed = time.monotonic() - started
        served.metrics.succeeded(elapsed)
        served.stats.succeeded(rows, elapsed)
        return response

    async def _infer(
        self, served: ServedModel, request: pb.ModelInferRequest, timeout: float | None
    ) -> tuple[pb.ModelInferResponse, int]:
        model = served.model
        inputs, raw = decode_inputs(request, model.inputs)
        size = batch_size(model.name, inputs, model.config.max_batch_size)
        wanted = requested_outputs(model.name, request, model.output_names)
        classify = classification.requested(model.name, request, served.datatypes) if wanted is not None else None
        if any(spec.datatype == "BYTES" for spec in model.inputs.values()):
            inputs = _strings_for_ort(model.name, inputs)
        budget = timeout if timeout is not None else model.config.timeout_ms / 1000
        if served.faults is not None:
            budget = await self._inject(served.faults, model.name, budget)
        if served.batcher.draining:
            raise Unavailable(f"model '{model.name}' is being unloaded; it takes no new requests")
        if served.batcher.inline:  # runs within this turn of the loop: nothing to time out
            results = await served.batcher.submit(inputs, size)
        else:
            results = await self._submit_within(served, inputs, size, budget)
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        names = model.output_names
        pairs = [(n, _ensure_array(r)) for n, r in zip(names, results, strict=True) if wanted is None or n in wanted]
        if classify:
            batched = model.config.max_batch_size > 0
            pairs = [
                (n, classification.top_k(model.name, n, a, classify[n], batched, served.labels) if n in classify else a)
                for n, a in pairs
            ]
        encode_outputs(response, pairs, raw)
        return response, size

    @staticmethod
    async def _inject(faults: FaultInjector, model: str, budget: float) -> float:
        """Apply a drill's faults.yaml to a valid request; the budget left for the batcher.

        After validation, so client errors stay client errors, and before the request is queued: the sleep holds
        no batcher slot and no instance (batches of other requests run as usual), and it counts against the
        request's deadline as a slow model would. The failure is drawn on arrival, so a seeded run fails the same
        requests however the sleeps interleave; a failing request is delayed too (every request is)."""
        fails = faults.fails()
        if faults.delay_s:
            if faults.delay_s >= budget:
                await asyncio.sleep(budget)
                raise DeadlineExceeded(
                    f"model '{model}': no result within {budget * 1000:.0f} ms (faults.yaml delay_ms "
                    f"{faults.delay_s * 1000:g})"
                )
            await asyncio.sleep(faults.delay_s)
            budget -= faults.delay_s
        if fails:
            raise Internal(faults.message)
        return budget

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


def _fingerprint(model_dir: Path) -> tuple[object, ...]:
    """What changes when a model's files do: each version's model file and faults.yaml, config.yaml, labels.txt."""
    parts: list[object] = []
    for label in repository.versions_of(model_dir):
        found = repository.model_file(model_dir / label)
        if found is None:  # removed since the listing: as gone
            continue
        stat = found.stat()
        parts.append((label, found.name, stat.st_mtime_ns, stat.st_size))
        with contextlib.suppress(OSError):
            stat = (model_dir / label / repository.FAULTS_FILE).stat()
            parts.append((label, repository.FAULTS_FILE, stat.st_mtime_ns, stat.st_size))
    for extra in (repository.CONFIG_FILE, classification.LABELS_FILE):
        with contextlib.suppress(OSError):
            stat = (model_dir / extra).stat()
            parts.append((extra, stat.st_mtime_ns, stat.st_size))
    return tuple(parts)


def _fingerprints(root: Path) -> dict[str, tuple[object, ...]]:
    seen = {}
    for name in repository.listing(root):
        with contextlib.suppress(OSError):  # a model removed mid-scan counts as gone
            seen[name] = _fingerprint(root / name)
    return seen


def _write_files(name: str, files: Mapping[str, bytes]) -> Path:
    """Write a load's `file:<path>` contents to a fresh directory laid out as a model directory."""
    if len(files) > MAX_LOAD_FILES:
        raise InvalidArgument(f"load '{name}': {len(files)} files; at most {MAX_LOAD_FILES}")
    directory = Path(tempfile.mkdtemp(prefix=f"edgeinfer-load-{name}-"))
    try:
        for relative, content in files.items():
            parts = PurePosixPath(relative).parts
            if not parts or relative.startswith("/") or any(p in ("", ".", "..") or "\\" in p for p in parts):
                raise InvalidArgument(f"load '{name}': file path 'file:{relative}' must be relative, like 1/model.onnx")
            target = directory.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory


def _strings_for_ort(model: str, inputs: dict[str, Array]) -> dict[str, Array]:
    """ONNX Runtime takes str elements for tensor(string), which it stores as UTF-8; BYTES arrive as bytes, so an
    element that is not UTF-8 cannot reach the model: InvalidArgument naming the input and the element."""
    converted: dict[str, Array] = {}
    for name, array in inputs.items():
        if array.dtype == np.object_:
            out = np.empty(array.shape, dtype=np.object_)
            flat_in, flat_out = array.reshape(-1), out.reshape(-1)
            for i, item in enumerate(flat_in):
                try:
                    flat_out[i] = item.decode("utf-8") if isinstance(item, bytes) else item
                except UnicodeDecodeError as exc:
                    raise InvalidArgument(
                        f"model '{model}': input '{name}' element {i} is not valid UTF-8 (byte {exc.start}: "
                        f"{exc.reason}); this model's string tensors hold text"
                    ) from None
            converted[name] = out
        else:
            converted[name] = array
    return converted


def _ensure_array(value: Array) -> Array:
    return value if isinstance(value, np.ndarray) else np.asarray(value)
