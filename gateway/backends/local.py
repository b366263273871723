"""The `local` backend: a scale-to-zero pool of `edgeinfer function` processes per model version, with Knative's
knobs.

It is the single-machine twin of Knative Serving: the KPA rule decides how
many instances each pool wants (gateway/autoscaler.py); a request that finds
none ready waits, as with Knative's activator, in a bounded queue until one is
(never failing because an instance is starting); a crashed instance is
replaced and its in-flight requests are retried on another.

Each version of a model is a pool of its own, as each Knative revision scales on its own: its instances see a
repository view with only that version, so a request for version 2 can only be answered by version 2. A drained
version (`drain`) is held at zero until a request names it again.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import signal
import socket
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from edgeinfer.children import die_with_parent
from edgeinfer.functions import repository
from edgeinfer.functions.config import Autoscaling
from edgeinfer.functions.metadata import build_metadata, graph_specs, metadata_from_files
from edgeinfer.functions.model_config import build_model_config, has_labels, model_config_from_files
from edgeinfer.functions.repository import ModelEntry
from edgeinfer.gateway.autoscaler import KPA, Decision
from edgeinfer.gateway.backends.base import (
    DEFAULT_CONNECTIONS,
    FunctionEndpoint,
    Metadata,
    error_from_rpc,
    request_arrival,
)
from edgeinfer.gateway.backends.retry import call_with_retry, time_left
from edgeinfer.gateway.metrics import GatewayMetrics
from edgeinfer.probes import grpc_serving_aio
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import DeadlineExceeded, ModelNotFound, ResourceExhausted

log = logging.getLogger(__name__)

READY_SERVICE = "inference.GRPCInferenceService"  # SERVING on grpc.health.v1 once every model is warm
PROBE_SECONDS = 0.02  # how often a starting instance is asked; readiness itself is its health answer
# Reconnect soon after a refused connect (gRPC's default backoff starts at 1 s): the instance listens early.
PROBE_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 20),
    ("grpc.min_reconnect_backoff_ms", 20),
    ("grpc.max_reconnect_backoff_ms", 100),
]
SAMPLE_SECONDS = 0.1
DEFAULT_TICK_SECONDS = 2.0  # Knative's autoscaler tick
MAX_RETRIES = 3
COLD_START_HISTORY = 20  # recent cold starts kept for admission decisions
# A drained instance gets this long to finish its calls in flight (a function waits up to 5 s for them on SIGTERM).
DRAIN_GRACE_SECONDS = 30.0


def _refused(error: grpc.aio.AioRpcError) -> bool:
    """gRPC's words for a peer that no longer listens (refused, reset while connecting)."""
    details = error.details() or ""
    return "failed to connect" in details or "Connection refused" in details


def _free_port() -> int:
    """A port for an instance, given to it rather than read back from its output. Another process may take
    it first; the instance then exits while starting and is replaced like any crash."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Instance:
    id: int
    process: asyncio.subprocess.Process
    spawned_at: float
    log_path: Path
    address: str
    state: str = "starting"  # starting → ready → draining → gone; "lost": refuses connections, exit not seen yet
    endpoint: FunctionEndpoint | None = None
    ready_at: float | None = None
    inflight: int = 0
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)


class ModelPool:
    """Instances of one version of a model in one region, scaled by the KPA rule.

    `publish` sets the pool gauges (instances by state, desired); the backend passes one that sums the model's
    pools, since the gauges are per model. Without it the pool sets them from its own counts."""

    def __init__(
        self,
        model: str,
        version: str,
        repo_view: Path,
        knobs: Autoscaling,
        *,
        region: str,
        log_dir: Path,
        metrics: GatewayMetrics,
        max_instances: int,
        max_queue: int,
        tick_seconds: float,
        max_message_bytes: int,
        connections_per_endpoint: int = DEFAULT_CONNECTIONS,
        publish: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.what = f"model '{model}' version '{version}'"  # how messages name the pool
        self.repo_view = repo_view
        self.region = region
        self.knobs = knobs
        self.kpa = KPA(knobs, max_instances, started=time.monotonic())
        self.max_instances = max_instances
        self.max_queue = max_queue
        self.tick_seconds = tick_seconds
        self.instances: list[Instance] = []
        self.inflight = 0  # requests in the pool: queued for capacity or running
        # Time-weighted concurrency: request-seconds since the last sample (short requests count too).
        self._area = 0.0
        self._changed_at = time.monotonic()
        self.queued = 0
        self.last_decision: Decision | None = None
        # Drained: held at zero (no autoscaling) until a request comes for this version.
        self.drained = False
        self._publish_hook = publish
        self._log_dir = log_dir
        self._metrics = metrics
        self._max_message_bytes = max_message_bytes
        self._connections = connections_per_endpoint
        self._ids = itertools.count(1)
        self._capacity = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[None]] = set()  # referenced until done
        self._closing = False
        self._spawning = 0  # instances whose process is being created (not in self.instances yet)
        # As a Knative revision, the pool is Ready once it has reached its initial scale one time.
        self.initial_target = min(max(knobs.initial_scale, knobs.min_scale), max_instances)
        self.reached_initial = self.initial_target == 0
        self.cold_starts: deque[float] = deque(maxlen=COLD_START_HISTORY)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        for _ in range(max(self.knobs.initial_scale, self.knobs.min_scale)):
            await self._spawn()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._sample()), loop.create_task(self._autoscale())]

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self._terminate(i, grace=5.0) for i in list(self.instances)))

    def update(self, knobs: Autoscaling) -> None:
        """Apply new knobs at run time (the tuner's lever); the next tick acts on them."""
        self.knobs = knobs
        self.kpa.knobs = knobs

    def drain(self) -> int:
        """Retire this version: min-scale 0, every instance stopped gracefully, and no autoscaling until a request
        for the version wakes the pool again. An instance takes no new request from now on; once the calls it has
        in flight are answered it gets SIGTERM (so no call is cut short or retried elsewhere). Returns how many
        instances are stopping; that happens in the background."""
        knobs = self.knobs.model_copy(update={"min_scale": 0})
        self.update(knobs)
        # A fresh history: the concurrency seen before the drain must not scale the pool back up once woken.
        self.kpa = KPA(knobs, self.max_instances, started=None)
        self.drained = True
        self.last_decision = Decision(0, False, 0.0, 0.0, "drained: at zero until a request names this version")
        victims = [i for i in self.instances if i.state in ("starting", "ready", "lost")]
        for instance in victims:
            instance.state = "draining"  # at once: no new request picks it from now on
            self._background(self._retire(instance))
        self._publish()
        log.info("%s/%s/%s: drained (%d instances stopping)", self.region, self.model, self.version, len(victims))
        return len(victims)

    # -- instances ---------------------------------------------------------------------------

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def count(self, state: str) -> int:
        return sum(1 for i in self.instances if i.state == state)

    async def _spawn(self) -> Instance:
        number = next(self._ids)
        log_path = self._log_dir / f"{self.model}-{self.version}-{number}.log"
        log_file = log_path.open("ab")
        port = _free_port()
        self._spawning += 1  # counted as starting from now: a concurrent request must not start another
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "edgeinfer.cli",
                "function",
                "--model-repo",
                str(self.repo_view),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                # Spawned from the event loop's thread, the main one: the instance dies with the gateway.
                preexec_fn=die_with_parent(),
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        finally:
            log_file.close()
            self._spawning -= 1
        instance = Instance(number, process, time.monotonic(), log_path, f"127.0.0.1:{port}")
        self.instances.append(instance)
        instance.watcher = asyncio.get_running_loop().create_task(self._watch(instance))
        self._publish()
        log.info("%s/%s/%s: instance %d starting (pid %d)", self.region, self.model, self.version, number, process.pid)
        return instance

    async def _watch(self, instance: Instance) -> None:
        """Ask the instance's gRPC health until it answers SERVING; then notice when it exits."""
        exited = asyncio.ensure_future(instance.process.wait())
        async with grpc.aio.insecure_channel(instance.address, options=PROBE_CHANNEL_OPTIONS) as channel:
            while instance.state == "starting" and not exited.done():
                if await grpc_serving_aio(channel, READY_SERVICE, timeout=1.0):
                    self._ready(instance)
                    async with self._capacity:
                        self._capacity.notify_all()
                    break
                await asyncio.wait({exited}, timeout=PROBE_SECONDS)
        code = await instance.process.wait()
        expected = instance.state == "draining" or self._closing
        instance.state = "gone"
        if instance in self.instances:
            self.instances.remove(instance)
        self._publish()
        if instance.endpoint is not None:
            # Closing a channel cancels its calls; let the in-flight ones fail over (UNAVAILABLE) first.
            self._background(self._close_when_idle(instance, instance.endpoint))
        if not expected:
            self._metrics.instance_crash(self.model)
            log.warning(
                "%s/%s/%s: instance %d exited with %s; replacing it (log: %s)",
                self.region,
                self.model,
                self.version,
                instance.id,
                code,
                instance.log_path,
            )
            if not self._closing:
                await self._reconcile(self.kpa.decide(time.monotonic(), self.count("ready"), self.count("starting")))
        async with self._capacity:
            self._capacity.notify_all()

    def _ready(self, instance: Instance) -> None:
        address = instance.address
        instance.endpoint = FunctionEndpoint(address, self._max_message_bytes, connections=self._connections)
        instance.ready_at = time.monotonic()
        instance.state = "ready"
        if self.count("ready") >= self.initial_target:
            self.reached_initial = True
        cold = instance.ready_at - instance.spawned_at
        self.cold_starts.append(cold)
        self._metrics.cold_start(self.model, cold)
        log.info(
            "%s/%s/%s: instance %d ready at %s after %.2fs",
            *(self.region, self.model, self.version, instance.id, address, cold),
        )
        self._publish()

    @staticmethod
    async def _close_when_idle(instance: Instance, endpoint: FunctionEndpoint, limit: float = 10.0) -> None:
        deadline = time.monotonic() + limit
        while instance.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await endpoint.close()

    async def _terminate(self, instance: Instance, grace: float) -> None:
        if instance.state == "gone":
            return
        instance.state = "draining"
        self._publish()
        try:
            os.killpg(instance.process.pid, signal.SIGTERM)
            await asyncio.wait_for(instance.process.wait(), grace)
        except ProcessLookupError:
            pass
        except TimeoutError:
            os.killpg(instance.process.pid, signal.SIGKILL)
            await instance.process.wait()
        if instance.watcher is not None:
            await asyncio.gather(instance.watcher, return_exceptions=True)

    async def _retire(self, instance: Instance) -> None:
        """A drained instance: its calls in flight answered first (at most DRAIN_GRACE_SECONDS), then SIGTERM."""
        deadline = time.monotonic() + DRAIN_GRACE_SECONDS
        while instance.inflight and instance.process.returncode is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await self._terminate(instance, grace=DRAIN_GRACE_SECONDS)

    def _publish(self) -> None:
        if self._publish_hook is not None:
            self._publish_hook()
            return
        publish_pools(self._metrics, self.model, [self])

    # -- autoscaling -------------------------------------------------------------------------

    def _track(self, delta: int) -> None:
        now = time.monotonic()
        self._area += self.inflight * (now - self._changed_at)
        self._changed_at = now
        self.inflight += delta
        if delta > 0:
            self._area += 1e-9  # an arrival marks the interval active, however short the request

    async def _sample(self) -> None:
        sampled_at = time.monotonic()
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            self._track(0)
            now = time.monotonic()
            self.kpa.record(now, self._area / max(now - sampled_at, 1e-6))
            self._area = 0.0
            sampled_at = now

    async def _autoscale(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            if self.drained:
                continue  # held at zero: the instances in flight drain, nothing starts until a request comes
            try:
                decision = self.kpa.decide(time.monotonic(), self.count("ready"), self.count("starting"))
                await self._reconcile(decision)
            except Exception:  # the loop must survive anything one tick does
                log.exception("%s/%s/%s: autoscaler tick failed", self.region, self.model, self.version)

    async def _reconcile(self, decision: Decision) -> None:
        self.last_decision = decision
        self._publish()
        current = self.count("ready") + self.count("starting")
        for _ in range(decision.desired - current):
            await self._spawn()
        if decision.desired < current:
            # Idle ready instances go first; never one that is still starting.
            idle = sorted((i for i in self.instances if i.state == "ready"), key=lambda i: i.inflight)
            for instance in idle[: current - decision.desired]:
                log.info(
                    "%s/%s/%s: scaling down instance %d (%s)",
                    *(self.region, self.model, self.version, instance.id, decision.reason),
                )
                self._background(self._terminate(instance, grace=self.knobs.scale_to_zero_grace_period or 5.0))

    # -- requests ----------------------------------------------------------------------------

    def _pick(self) -> Instance | None:
        limit = self.knobs.container_concurrency
        best: Instance | None = None
        for instance in self.instances:
            if instance.state != "ready" or (limit and instance.inflight >= limit):
                continue
            if best is None or instance.inflight < best.inflight:
                best = instance
        return best

    def _admit_cold(self, deadline: float) -> None:
        """With nothing ready, a request whose deadline ends before the cold start it waits on (by the median of
        the measured ones) is rejected now, not after holding a queue slot until it times out. The start it
        triggered goes on, for the requests after it."""
        if self.count("ready") or not self.cold_starts:
            return
        now = time.monotonic()
        oldest = max((now - i.spawned_at for i in self.instances if i.state == "starting"), default=0.0)
        expected = max(0.0, statistics.median(self.cold_starts) - oldest)
        if expected > deadline - now:
            raise ResourceExhausted(
                f"{self.what} in {self.region}: scaled to zero and starting (about {expected:.2f} s to "
                f"go), longer than the {max(0.0, deadline - now):.2f} s left of the deadline; retry later or "
                "in another region"
            )

    async def _wait_for_capacity(self, deadline: float) -> None:
        """Knative's activator: start an instance if none is coming, then wait for one to be free."""
        if self.queued >= self.max_queue:
            raise ResourceExhausted(
                f"{self.what} in {self.region}: {self.queued} requests already wait for an instance; retry later"
            )
        # The slot is taken before any await, so concurrent arrivals cannot all pass the bound at once.
        self.queued += 1
        try:
            if self.count("starting") + self._spawning == 0 and self.count("ready") < self.max_instances:
                wanted = max(self.knobs.activation_scale, 1) if self.count("ready") == 0 else 1
                for _ in range(min(wanted, self.max_instances - self.count("ready"))):
                    await self._spawn()
            self._admit_cold(deadline)
            async with self._capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeadlineExceeded(f"{self.what}: deadline passed while waiting for an instance")
                try:
                    # Checked before sleeping too, so a readiness that landed meanwhile is not missed;
                    # with nothing ready or starting (a start crashed) the caller loops and starts one.
                    await asyncio.wait_for(
                        self._capacity.wait_for(
                            lambda: (
                                self._pick() is not None
                                or self.count("starting") + self.count("ready") + self._spawning == 0
                            )
                        ),
                        remaining,
                    )
                except TimeoutError:
                    raise DeadlineExceeded(
                        f"{self.what} in {self.region}: no instance became free within the deadline "
                        f"({self.count('starting')} starting)"
                    ) from None
        finally:
            self.queued -= 1

    async def infer(self, request: bytes, timeout: float, metadata: Metadata) -> tuple[bytes, bool]:
        """Serve one request; return the reply and whether it waited on a cold start."""
        if self.drained:  # a request for a drained version wakes it, as one for a revision at zero would
            self.drained = False
            log.info("%s/%s/%s: woken by a request after a drain", self.region, self.model, self.version)
        deadline = time.monotonic() + timeout
        arrived = request_arrival.get() or time.monotonic()
        waited_cold = False
        used: list[Instance] = []  # the instance of each attempt

        async def attempt(_: int) -> bytes:
            nonlocal waited_cold
            while (instance := self._pick()) is None:
                waited_cold = waited_cold or self.count("starting") > 0 or self.count("ready") == 0
                await self._wait_for_capacity(deadline)
            assert instance.endpoint is not None
            used.append(instance)
            instance.inflight += 1
            try:
                # What is left after waiting for an instance, so computed here rather than by the retry helper.
                return await instance.endpoint.infer(request, time_left(deadline), metadata)
            finally:
                instance.inflight -= 1
                if self.knobs.container_concurrency:
                    async with self._capacity:
                        self._capacity.notify()

        def lost(error: grpc.aio.AioRpcError, _: int) -> None:
            # The instance died or is draining: another one takes the request.
            instance = used[-1]
            if instance.state == "ready" and (instance.process.returncode is not None or _refused(error)):
                # Refused connections mean it is gone, even before its exit is noticed (then: a crash).
                instance.state = "lost"

        def fail(error: grpc.aio.AioRpcError, _: int) -> Exception:
            endpoint = used[-1].endpoint
            where = f"{endpoint.address if endpoint else '?'} (version {self.version})"
            return error_from_rpc(error, where, self.model)

        self._track(+1)
        try:
            reply = await call_with_retry(attempt, fail, deadline=deadline, retries=MAX_RETRIES, on_retry=lost)
            # Served by an instance that became ready after the request arrived: it waited on a cold start.
            return reply, waited_cold or (used[-1].ready_at or 0.0) > arrived
        finally:
            self._track(-1)

    def status(self) -> dict[str, Any]:
        decision = self.last_decision
        return {
            "model": self.model,
            "version": self.version,
            "region": self.region,
            "knobs": self.knobs.model_dump(by_alias=True),
            "drained": self.drained,
            "instances": [
                {
                    "id": i.id,
                    "version": self.version,
                    "state": i.state,
                    "pid": i.process.pid,
                    "inflight": i.inflight,
                    "address": i.endpoint.address if i.endpoint else None,
                    "cold_start_s": round(i.ready_at - i.spawned_at, 3) if i.ready_at else None,
                }
                for i in self.instances
            ],
            "ready": self.count("ready"),
            "starting": self.count("starting"),
            "inflight": self.inflight,
            "queued": self.queued,
            "desired": decision.desired if decision else None,
            "panic": decision.panic if decision else False,
            "reason": decision.reason if decision else "",
        }


def publish_pools(metrics: GatewayMetrics, model: str, pools: Sequence[ModelPool]) -> None:
    """The pool gauges of a model, from all its versions' pools: instances by state and desired summed, panic
    when any pool panics (the gauges are per model; /v1/pools has them per version)."""
    for state in ("starting", "ready", "draining"):
        metrics.instances(model, state, sum(p.count(state) for p in pools))
    decisions = [p.last_decision for p in pools if p.last_decision is not None]
    if decisions:
        metrics.desired(model, sum(d.desired for d in decisions), any(d.panic for d in decisions))


# Counts of a model's /v1/pools entry that are the sums of its versions' pools.
_SUMMED = ("ready", "starting", "inflight", "queued")


class LocalBackend:
    """A ModelPool per version of each model of a repository, for one region.

    The version "" is the model's default: its latest version, as Triton resolves an unversioned request."""

    def __init__(
        self,
        model_repo: Path,
        *,
        region: str,
        state_dir: Path,
        metrics: GatewayMetrics,
        max_instances: int = 4,
        max_queue: int = 256,
        tick_seconds: float = DEFAULT_TICK_SECONDS,
        max_message_bytes: int = 64 * 1024 * 1024,
        overrides: Mapping[str, Autoscaling] | None = None,
        connections_per_endpoint: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self._repo = model_repo
        self._region = region
        self._state_dir = state_dir
        self._metrics = metrics
        self._options = {
            "max_instances": max_instances,
            "max_queue": max_queue,
            "tick_seconds": tick_seconds,
            "max_message_bytes": max_message_bytes,
            "connections_per_endpoint": connections_per_endpoint,
        }
        self._overrides = dict(overrides or {})
        # model -> version -> its pool, lowest version first (the last is the default).
        self.pools: dict[str, dict[str, ModelPool]] = {}
        self._latest: dict[str, str] = {}
        # (model, version) -> answers read from the files; version "" is the unversioned answer.
        self._metadata: dict[tuple[str, str], pb.ModelMetadataResponse] = {}
        self._configs: dict[tuple[str, str], pb.ModelConfigResponse] = {}

    async def start(self) -> None:
        log_dir = self._state_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        for entry in repository.scan(self._repo):
            self._read_files(entry)
            versions: dict[str, ModelPool] = {}
            self.pools[entry.name] = versions
            self._latest[entry.name] = entry.latest
            model = entry.name
            for version in entry.versions:
                versions[version] = ModelPool(
                    model,
                    version,
                    self._view(entry, version),
                    self._overrides.get(model, entry.config.autoscaling),
                    region=self._region,
                    log_dir=log_dir,
                    metrics=self._metrics,
                    publish=functools.partial(self._publish, model),
                    **self._options,  # type: ignore[arg-type]
                )
            for pool in versions.values():
                await pool.start()

    def _read_files(self, entry: ModelEntry) -> None:
        """Metadata and config of the model and of each version, from the ONNX graphs and config.yaml: validating
        a request or answering for the config never wakes a pool at zero."""
        model = entry.name
        self._metadata[(model, "")] = metadata_from_files(entry)
        self._configs[(model, "")] = pb.ModelConfigResponse(config=model_config_from_files(entry))
        labels = has_labels(self._repo / model)
        for version, path in entry.versions.items():
            inputs, outputs = graph_specs(path, entry.config)
            platform = entry.platform(version)
            # As a function answers for one version: that version only, with its own inputs, outputs and runtime.
            self._metadata[(model, version)] = build_metadata(
                model, [version], inputs, outputs, entry.config, platform=platform
            )
            config = build_model_config(
                model,
                inputs,
                outputs,
                entry.config,
                labels=labels,
                versions=[version],
                platform=platform,
                model_file=path.name,
            )
            self._configs[(model, version)] = pb.ModelConfigResponse(config=config)

    def _view(self, entry: ModelEntry, version: str) -> Path:
        """STATE/repos/<model>@<version>: a repository with the model's files (config.yaml, labels.txt, ...) and
        only this version's directory, all links into the real repository. An instance of the pool loads that
        one version, as a Knative revision serves one."""
        view = self._state_dir / "repos" / f"{entry.name}@{version}"
        model_dir = view / entry.name
        model_dir.mkdir(parents=True, exist_ok=True)
        for old in model_dir.iterdir():  # a view left by an earlier run: linked again from what is there now
            if old.is_symlink():
                old.unlink()
        source = (self._repo / entry.name).resolve()
        for child in source.iterdir():
            # The model's files, and of its directories only this version's (never another version).
            if child.name == version or (not child.is_dir() and not child.name.startswith(".")):
                (model_dir / child.name).symlink_to(child, target_is_directory=child.is_dir())
        return view

    def _publish(self, model: str) -> None:
        publish_pools(self._metrics, model, list(self.pools.get(model, {}).values()))

    def _versions(self, model: str) -> dict[str, ModelPool]:
        versions = self.pools.get(model)
        if versions is None:
            known = ", ".join(sorted(self.pools)) or "(none)"
            raise ModelNotFound(f"unknown model '{model}'; region {self._region} serves: {known}")
        return versions

    def _pool(self, model: str, version: str = "") -> ModelPool:
        versions = self._versions(model)
        pool = versions.get(version or self._latest[model])
        if pool is None:
            raise ModelNotFound(f"model '{model}' has no version '{version}'; available: {', '.join(versions)}")
        return pool

    def models(self) -> list[str]:
        return sorted(self.pools)

    def versions(self, model: str) -> list[str]:
        """The model's versions, lowest first (the last is the default); ModelNotFound for an unknown model."""
        return list(self._versions(model))

    async def infer(self, model: str, version: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        pool = self._pool(model, version)
        reply, waited_cold = await pool.infer(request, timeout, metadata)
        if waited_cold:
            self._metrics.cold_start_wait(model)
        return reply

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse:
        pool = self._pool(model, version)  # the checks of model and version
        # Read from the model's files: validating a request never wakes a model scaled to zero.
        return self._metadata[(model, version and pool.version)]

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        pool = self._pool(model, version)
        # From the files too (read at start): a client asking for the config never wakes an instance.
        return self._configs[(model, version and pool.version)]

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        # Ready once the initial scale was reached (as a Knative revision; unversioned: every version's pool);
        # later, even at zero, a model is still ready: the first request wakes it, as Knative's activator does.
        try:
            if version:
                return self._pool(model, version).reached_initial
            return all(pool.reached_initial for pool in self._versions(model).values())
        except ModelNotFound:
            return False

    async def update(
        self, model: str, changes: Mapping[str, Any], version: str | None = None
    ) -> dict[str, Autoscaling]:
        """Change Knative knobs at run time: of one version, or (version None) of every version of the model.
        Returns version -> the knobs now in force (lowest version first). Every version's knobs are checked before
        any changes (ValueError from pydantic names the knob). A drained version keeps min-scale 0 under a
        model-wide change (the tuner's min-scale must not revive a retired version); a change naming the version
        ends its drain."""
        if version is None:
            pools = list(self._versions(model).values())
        elif version:
            pools = [self._pool(model, version)]
        else:
            raise ModelNotFound(f"model '{model}': name a version, e.g. {', '.join(self.versions(model))}")
        planned: list[tuple[ModelPool, Autoscaling]] = []
        for pool in pools:
            merged = {**pool.knobs.model_dump(by_alias=True), **changes}
            if pool.drained and version is None:
                merged["min-scale"] = 0
            planned.append((pool, Autoscaling.model_validate(merged)))
        for pool, knobs in planned:
            pool.update(knobs)
            if version is not None:
                pool.drained = False
            if not pool.drained:
                now = time.monotonic()
                await pool._reconcile(pool.kpa.decide(now, pool.count("ready"), pool.count("starting")))
        return {pool.version: knobs for pool, knobs in planned}

    async def drain(self, model: str, version: str) -> int:
        """Stop every instance of one version gracefully (calls in flight finish) and hold it at zero until a
        request names it; returns how many instances were told to stop."""
        if not version:
            raise ModelNotFound(f"model '{model}': name the version to drain, e.g. {', '.join(self.versions(model))}")
        return self._pool(model, version).drain()

    def status(self) -> dict[str, Any]:
        """Per model: its default version's pool status with counts summed over the versions, every instance
        (each with its `version`), and `versions`: version -> that pool's own status."""
        models: dict[str, Any] = {}
        for model, versions in sorted(self.pools.items()):
            each = {version: pool.status() for version, pool in versions.items()}
            entry = {**each[self._latest[model]]}
            entry.pop("version", None)
            entry.pop("drained", None)
            entry["instances"] = [i for status in each.values() for i in status["instances"]]
            for key in _SUMMED:
                entry[key] = sum(status[key] for status in each.values())
            desired = [status["desired"] for status in each.values() if status["desired"] is not None]
            entry["desired"] = sum(desired) if desired else None
            entry["panic"] = any(status["panic"] for status in each.values())
            if len(each) > 1:
                entry["reason"] = "; ".join(f"version {v}: {s['reason']}" for v, s in each.items() if s["reason"])
            entry["versions"] = each
            models[model] = entry
        return models

    async def close(self) -> None:
        await asyncio.gather(*(pool.close() for versions in self.pools.values() for pool in versions.values()))
