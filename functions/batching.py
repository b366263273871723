"""Dynamic batching with Triton's semantics.

Concurrent requests are joined along dimension 0 up to `max_batch_size`,
waiting at most `max_queue_delay_microseconds` after the oldest request for
more to arrive. Requests whose other dimensions or datatypes differ are never
joined. The waiting queue is bounded: a full queue rejects at once.

Admission control: a request that brings its deadline is rejected at once (RESOURCE_EXHAUSTED) when the
work queued ahead of it, at the measured time per batch, cannot finish before that deadline; queueing it
would only make it time out later, after using a slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from edgeinfer.protocol.errors import ResourceExhausted
from edgeinfer.protocol.tensors import Array

RunBatch = Callable[[Mapping[str, Array]], list[Array]]
EWMA_WEIGHT = 0.2  # of the newest batch in the running estimate of the time per batch
# Admit only work expected to finish within this share of the time left: the estimate is an average, and the
# reply still has to be encoded and travel back inside the same deadline.
ADMISSION_SHARE = 0.8
Signature = tuple[tuple[str, str, tuple[int, ...]], ...]


def signature_of(inputs: Mapping[str, Array]) -> Signature:
    """What must match for two requests to share a batch: names, dtypes, non-batch dims."""
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in inputs.items())


@dataclass(slots=True)
class _Pending:
    inputs: Mapping[str, Array]
    size: int
    signature: Signature
    future: asyncio.Future[list[Array]]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class BatchStats:
    size: int
    # ONNX Runtime's run of the batch.
    compute_seconds: float
    # Each request's wait from arrival to the start of its batch.
    queue_seconds: tuple[float, ...]
    # Triton's compute_input / compute_infer / compute_output of the batch (ns): from its start to the run
    # (joining inputs, the hand-off to a worker thread), the run, from the run's end to its requests' rows split.
    input_ns: int = 0
    infer_ns: int = 0
    output_ns: int = 0


class Draining(Exception):
    """submit() on a batcher that is draining (its model is being unloaded)."""


class DynamicBatcher:
    """Forms batches for one model version and runs them.

    `max_batch_size <= 1` never joins requests (batching off). A delay of 0
    still joins whatever is already queued when an instance frees up.
    With `inline=True` a batch runs on the event loop itself: only for models
    whose largest batch computes faster than a thread hand-off costs. Such a
    batch joins every request that arrived in the same turn of the event loop
    and runs at the end of it, well inside the queue delay, with no task or
    timer per batch.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        executor: Executor,
        *,
        max_batch_size: int,
        max_queue_delay_us: int,
        max_queue_size: int,
        instance_count: int = 1,
        inline: bool = False,
        on_batch: Callable[[BatchStats], None] | None = None,
        name: str = "model",
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self._max_batch = max(1, max_batch_size)
        self._delay = max_queue_delay_us / 1e6
        self._max_queue = max_queue_size
        self._instances = asyncio.Semaphore(instance_count)
        self._inline = inline
        self._on_batch = on_batch
        self._name = name
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        # Resolved by submit() when the scheduler should look again.
        self._wake: asyncio.Future[None] | None = None
        self._wake_at_rows = 1
        self._scheduler: asyncio.Task[None] | None = None
        self._flush_pending = False
        # Running batch tasks, referenced so they are not garbage-collected mid-flight.
        self._running: set[asyncio.Task[None]] = set()
        self._instance_count = max(1, instance_count)
        # Seconds between batch completions while there is work (EWMA): compute plus every hand-off, so the
        # queue's drain rate as it really is. None until a batch has run: no admission decision before.
        self.batch_seconds: float | None = None
        self._last_finish = 0.0
        self._draining = False
        # Resolved when a draining batcher has nothing queued or running.
        self._drained: asyncio.Future[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def inline(self) -> bool:
        return self._inline

    def start(self) -> None:
        if self._scheduler is None and not self._inline:
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
            self._scheduler = None

    def expected_seconds(self, size: int) -> float | None:
        """How long a request of `size` rows arriving now would take to complete, from the queue ahead of it."""
        if self.batch_seconds is None:
            return None
        busy = len(self._running) >= self._instance_count
        if self._max_batch > 1:
            queued = math.ceil((self._queued_rows + size) / self._max_batch)
        else:  # never joins: one batch per request, however many rows each carries
            queued = len(self._queue) + 1
        return (queued + (1 if busy else 0)) * self.batch_seconds

    @property
    def draining(self) -> bool:
        return self._draining

    async def drain(self) -> None:
        """Refuse new requests (Draining), finish every queued and running one, then stop."""
        self._draining = True
        if self._running or any(not p.future.done() for p in self._queue):
            self._drained = asyncio.get_running_loop().create_future()
            if not self._inline:
                # The scheduler may be waiting out the queue delay for company that will not come now.
                self._delay = 0.0
                wake = self._wake
                if wake is not None and not wake.done():
                    wake.set_result(None)
            await self._drained
        await self.stop()

    def _check_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done() and not self._queue and not self._running:
            drained.set_result(None)

    async def submit(self, inputs: Mapping[str, Array], size: int, deadline: float | None = None) -> list[Array]:
        """Queue one request of `size` rows; return its rows of every output. `deadline` (monotonic) turns on
        admission control for it."""
        if self._draining:
            raise Draining(self._name)
        if len(self._queue) >= self._max_queue:
            raise ResourceExhausted(
                f"model '{self._name}': queue is full ({self._max_queue} requests waiting); retry later"
            )
        if deadline is not None:
            expected = self.expected_seconds(size)
            left = deadline - time.monotonic()
            if expected is not None and expected > ADMISSION_SHARE * left:
                raise ResourceExhausted(
                    f"model '{self._name}': cannot finish within the deadline ({expected * 1000:.0f} ms of work "
                    f"queued ahead, {max(0.0, left) * 1000:.0f} ms left); retry later or on another instance"
                )
        future: asyncio.Future[list[Array]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(inputs, size, signature_of(inputs), future))
        self._queued_rows += size
        if self._inline:
            if not self._flush_pending:
                self._flush_pending = True
                # After the callbacks already ready in this turn: their requests join the batch.
                asyncio.get_running_loop().call_soon(self._flush)
            return await future
        wake = self._wake
        if wake is not None and self._queued_rows >= self._wake_at_rows and not wake.done():
            wake.set_result(None)
        return await future

    async def _sleep_until_woken(self, loop: asyncio.AbstractEventLoop, rows: int, timeout: float | None) -> None:
        self._wake = wake = loop.create_future()
        self._wake_at_rows = rows
        timer = loop.call_later(timeout, _resolve, wake) if timeout is not None else None
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._instances.acquire()
            try:
                batch = await self._next_batch(loop)
            except BaseException:
                self._instances.release()
                raise
            task = loop.create_task(self._execute(loop, batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._draining:
            self._check_drained()

    async def _next_batch(self, loop: asyncio.AbstractEventLoop) -> list[_Pending]:
        while True:
            self._drop_done()
            if not self._queue:
                if self._draining:
                    self._check_drained()
                await self._sleep_until_woken(loop, 1, None)
                continue
            if self._delay > 0 and self._queued_rows < self._max_batch:
                remaining = self._queue[0].enqueued + self._delay - time.monotonic()
                if remaining > 0:
                    await self._sleep_until_woken(loop, self._max_batch, remaining)
                    self._drop_done()
                    if not self._queue:
                        continue
            return self._take()

    def _drop_done(self) -> None:
        # Requests whose caller gave up (deadline, cancel) leave the queue unexecuted.
        while self._queue and self._queue[0].future.done():
            self._queued_rows -= self._queue.popleft().size

    def _take(self) -> list[_Pending]:
        """Pop the oldest request and every compatible one that fits, keeping the others' order."""
        first = self._queue.popleft()
        batch = [first]
        rows = first.size
        kept: deque[_Pending] = deque()
        while self._queue and rows < self._max_batch:
            item = self._queue.popleft()
            if item.future.done():
                self._queued_rows -= item.size
            elif item.signature == first.signature and rows + item.size <= self._max_batch:
                batch.append(item)
                rows += item.size
            else:
                kept.append(item)
        if kept:
            kept.extend(self._queue)
            self._queue = kept
        self._queued_rows -= rows
        return batch

    @staticmethod
    def _joined(batch: list[_Pending]) -> Mapping[str, Array]:
        if len(batch) == 1:
            return batch[0].inputs
        return {n: np.concatenate([p.inputs[n] for p in batch]) for n in batch[0].inputs}

    def _flush(self) -> None:
        self._flush_pending = False
        while True:
            self._drop_done()
            if not self._queue:
                if self._draining:
                    self._check_drained()
                return
            self._execute_inline(self._take())

    def _timed_run(self, inputs: Mapping[str, Array]) -> tuple[list[Array], int, int]:
        """Run a batch, with the monotonic ns it started and ended at (on the worker thread)."""
        began = time.monotonic_ns()
        outputs = self._run_batch(inputs)
        return outputs, began, time.monotonic_ns()

    def _execute_inline(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        started_ns = time.monotonic_ns()
        try:
            outputs, began, ended = self._timed_run(self._joined(batch))
        except Exception as exc:
            self._fail(batch, exc)
        else:
            self._deliver(batch, outputs, started, started_ns, began, ended)

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        started = time.monotonic()
        started_ns = time.monotonic_ns()
        try:
            outputs, began, ended = await loop.run_in_executor(self._executor, self._timed_run, self._joined(batch))
        except Exception as exc:
            self._fail(batch, exc)
        else:
            self._deliver(batch, outputs, started, started_ns, began, ended)
        finally:
            self._instances.release()

    @staticmethod
    def _fail(batch: list[_Pending], exc: Exception) -> None:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(exc)

    def _deliver(
        self, batch: list[_Pending], outputs: list[Array], started: float, started_ns: int, began: int, ended: int
    ) -> None:
        finished = time.monotonic()
        # Backlogged: the gap since the previous completion; idle before: since its first request arrived.
        took = finished - max(self._last_finish, min(p.enqueued for p in batch))
        self._last_finish = finished
        previous = self.batch_seconds
        self.batch_seconds = took if previous is None else previous + EWMA_WEIGHT * (took - previous)
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result(outputs)
        else:
            offset = 0
            for p in batch:
                if not p.future.done():
                    p.future.set_result([o[offset : offset + p.size] for o in outputs])
                offset += p.size
        if self._on_batch is not None:
            self._on_batch(
                BatchStats(
                    sum(p.size for p in batch),
                    (ended - began) / 1e9,
                    tuple(started - p.enqueued for p in batch),
                    max(0, began - started_ns),
                    ended - began,
                    max(0, time.monotonic_ns() - ended),
                )
            )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
