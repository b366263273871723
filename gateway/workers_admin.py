"""The admin port of a gateway that runs workers (gateway/workers.py): one address for the whole group.

With SO_REUSEPORT a scrape of a worker's own port would reach a random worker, so each worker serves its admin
on a private loopback port the parent holds, and the parent serves `--admin-port`:

- /metrics: every worker's series, each with a `worker` label (its index: a restarted worker keeps it, and its
  counters restart as a restarted pod's do), and the group's own: workers configured, answering, restarts.
  Readers that sum over labels (`edgeinfer status`, the dashboard's `sum by`) see the region as before.
- /healthz: the parent is live. /readyz: ready once every worker has started, while each answers ready and the
  group is not draining.
- /v1/workers: index, pid, private admin address, restarts.
- GET /v1/pools: the workers' pools merged (instance counts summed, instances tagged with their worker).
- GET /v1/traffic[/{model}]: the first worker that answers (each holds the same policies: every change goes to
  all of them, and with a state dir they share `<state-dir>/traffic.json`, which a restarted worker reads).
- Anything else under /v1/ (PATCH /v1/pools/{model}, /v1/fault, PUT and DELETE /v1/traffic/{model}): sent to
  every worker; the first worker's reply when all agree, else the first failure, naming its worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from edgeinfer.gateway.rest import HttpFront, json_errors

GATEWAY_WORKERS = "edgeinfer_gateway_workers"
GATEWAY_WORKER_UP = "edgeinfer_gateway_worker_up"
GATEWAY_WORKER_RESTARTS = "edgeinfer_gateway_worker_restarts_total"
WORKER_LABEL = "worker"
# A worker that takes longer than this to answer its admin port is counted as not answering.
WORKER_TIMEOUT_S = 2.0
# Counts a pool reports that are summed over the workers; the rest (knobs, the model) are the same in each.
_POOL_SUMS = ("ready", "starting", "inflight", "queued", "desired")


@dataclass(frozen=True)
class WorkerView:
    """What the admin port knows of one worker: the group's bookkeeping, read at each request."""

    index: int
    pid: int | None  # None while it is not running (between an exit and its restart)
    admin: str  # HOST:PORT of its private admin port
    restarts: int


@dataclass(frozen=True)
class _Reply:
    worker: WorkerView
    status: int | None  # None: it did not answer
    body: bytes
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class GroupAdminFront(HttpFront):
    what = "admin port"

    def __init__(
        self,
        workers: Callable[[], Sequence[WorkerView]],
        region: str,
        *,
        token: str | None = None,
        middlewares: Sequence[Any] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._workers = workers
        self._region = region
        # The workers' admin ports want the same token the parent's does.
        self._forward_headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self._session: aiohttp.ClientSession | None = None
        self.started = False  # set by the group once every worker has served
        # One change at a time reaches the workers: two writers' PUTs then arrive at every worker in the same
        # order, so each worker's generation check gives the same answer and they never hold different policies.
        self._changes = asyncio.Lock()
        self.draining = False
        super().__init__(web.Application(middlewares=[json_errors(), *middlewares]), host, port, tls)
        router = self.app.router
        router.add_get("/metrics", self.metrics)
        router.add_get("/healthz", self.healthz)
        router.add_get("/readyz", self.readyz)
        router.add_get("/v1/workers", self.list_workers)
        router.add_get("/v1/pools", self.pools)
        # Traffic policies: each worker applies the same changes (fan_out); reads come from the first that answers.
        router.add_get("/v1/traffic", self.first_answer)
        router.add_get("/v1/traffic/{model}", self.first_answer)
        router.add_route("*", "/v1/{tail:.*}", self.fan_out)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WORKER_TIMEOUT_S))
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- asking the workers ------------------------------------------------------------------

    async def _ask(self, worker: WorkerView, method: str, path: str, body: bytes | None) -> _Reply:
        if worker.pid is None:
            return _Reply(worker, None, b"", "not running (being restarted)")
        assert self._session is not None
        headers = dict(self._forward_headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._session.request(
                method, f"http://{worker.admin}{path}", data=body, headers=headers
            ) as reply:
                return _Reply(worker, reply.status, await reply.read())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return _Reply(worker, None, b"", type(exc).__name__ if not str(exc) else str(exc))

    async def _ask_all(self, method: str, path: str, body: bytes | None = None) -> list[_Reply]:
        return list(await asyncio.gather(*(self._ask(w, method, path, body) for w in self._workers())))

    # -- routes ------------------------------------------------------------------------------

    async def metrics(self, request: web.Request) -> web.Response:
        replies = await self._ask_all("GET", "/metrics")
        texts = {r.worker.index: r.body.decode(errors="replace") for r in replies if r.ok}
        body = merge_metrics(texts, self._group_series(replies))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _group_series(self, replies: Sequence[_Reply]) -> list[Metric]:
        configured = GaugeMetricFamily(GATEWAY_WORKERS, "Worker processes the gateway runs", labels=["region"])
        configured.add_metric([self._region], len(replies))
        up = GaugeMetricFamily(
            GATEWAY_WORKER_UP, "1 when the worker answered this scrape", labels=["region", WORKER_LABEL]
        )
        restarts = CounterMetricFamily(
            GATEWAY_WORKER_RESTARTS,
            "Times the worker was started again after it exited",
            labels=["region", WORKER_LABEL],
        )
        for reply in replies:
            up.add_metric([self._region, str(reply.worker.index)], 1 if reply.ok else 0)
            restarts.add_metric([self._region, str(reply.worker.index)], reply.worker.restarts)
        return [configured, up, restarts]

    async def healthz(self, request: web.Request) -> web.Response:
        workers = self._workers()
        running = sum(1 for w in workers if w.pid is not None)
        return web.json_response(
            {"live": True, "region": self._region, "pid": os.getpid(), "workers": len(workers), "running": running}
        )

    async def readyz(self, request: web.Request) -> web.Response:
        replies = await self._ask_all("GET", "/readyz")
        ready = self.started and not self.draining and bool(replies) and all(r.ok for r in replies)
        detail = [{"worker": r.worker.index, "pid": r.worker.pid, "ready": r.ok} for r in replies]
        return web.json_response(
            {"ready": ready, "region": self._region, "workers": detail}, status=200 if ready else 503
        )

    async def list_workers(self, request: web.Request) -> web.Response:
        workers = [{"worker": w.index, "pid": w.pid, "admin": w.admin, "restarts": w.restarts} for w in self._workers()]
        return web.json_response({"region": self._region, "pid": os.getpid(), "workers": workers})

    async def pools(self, request: web.Request) -> web.Response:
        replies = await self._ask_all("GET", "/v1/pools")
        failed = next((r for r in replies if r.status is not None and not r.ok), None)
        if failed is not None:  # e.g. 404: this backend has no pools
            return _passed_on(failed)
        answered = {r.worker.index: _json(r.body).get("pools", {}) for r in replies if r.ok}
        if not answered:
            return _unanswered(replies)
        return web.json_response({"region": self._region, "pools": merge_pools(answered)})

    async def first_answer(self, request: web.Request) -> web.Response:
        """The reply of the first worker (by index) that answers: what every worker holds alike."""
        tried = []
        for worker in self._workers():
            reply = await self._ask(worker, request.method, request.path_qs, None)
            if reply.status is not None:
                return _passed_on(reply)
            tried.append(reply)
        return _unanswered(tried)

    async def fan_out(self, request: web.Request) -> web.Response:
        body = await request.read() if request.can_read_body else None
        async with self._changes:
            replies = await self._ask_all(request.method, request.path_qs, body)
        problem = next((r for r in replies if not r.ok), None)
        if problem is None:
            return _passed_on(replies[0])
        if problem.status is None:
            return _unanswered([problem])
        return _passed_on(problem)


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _passed_on(reply: _Reply) -> web.Response:
    headers = {"X-Edgeinfer-Worker": str(reply.worker.index)}
    return web.Response(body=reply.body, status=reply.status or 502, content_type="application/json", headers=headers)


def _unanswered(replies: Iterable[_Reply]) -> web.Response:
    problems = "; ".join(f"worker {r.worker.index} (pid {r.worker.pid}): {r.error}" for r in replies)
    return web.json_response({"error": f"no answer from {problems}; try again"}, status=503)


# -- merging -----------------------------------------------------------------------------------


def merge_pools(pools: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """worker -> its /v1/pools `pools` object, as one: per model, counts summed over the workers, each instance
    tagged with its worker, the knobs of the first worker that has the pool (a PATCH sets them in each); a model's
    `versions` (version -> that version's pool) merged the same way."""
    merged: dict[str, dict[str, Any]] = {}
    versions: dict[str, dict[int, Any]] = {}  # model -> worker -> its `versions` object
    for worker, models in sorted(pools.items()):
        for model, pool in models.items():
            if not isinstance(pool, dict):
                continue
            if isinstance(pool.get("versions"), dict):
                versions.setdefault(model, {})[worker] = pool["versions"]
            entry = merged.get(model)
            if entry is None:
                entry = merged[model] = {**pool, "instances": [], "reasons": {}}
                for key in _POOL_SUMS:
                    entry[key] = None
                entry["panic"] = False
            entry["instances"] += [{**i, "worker": worker} for i in pool.get("instances") or ()]
            for key in _POOL_SUMS:
                value = pool.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    entry[key] = (entry[key] or 0) + value
            entry["panic"] = entry["panic"] or bool(pool.get("panic"))
            if pool.get("reason"):
                entry["reasons"][str(worker)] = pool["reason"]
    for model, entry in merged.items():
        entry["reason"] = "; ".join(f"worker {w}: {r}" for w, r in entry.pop("reasons").items())
        if model in versions:
            entry["versions"] = merge_pools(versions[model])
    return dict(sorted(merged.items()))


def merge_metrics(texts: Mapping[int, str], own: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text of each worker (by index) as one exposition: each family once, each sample with its
    worker's `worker` label; then `own` (the group's series)."""
    families: dict[str, Metric] = {}
    for worker, text in sorted(texts.items()):
        label = str(worker)
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                merged.samples.append(sample._replace(labels={**sample.labels, WORKER_LABEL: label}))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([*families.values(), *own]))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)
