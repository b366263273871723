from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from edgeinfer.functions.batching import ADMISSION_SHARE, BatchStats, DynamicBatcher
from edgeinfer.protocol.errors import ResourceExhausted


class Recorder:
    """A fake model: doubles its input and records every batch shape it ran."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[tuple[int, ...]] = []
        self.delay = delay
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.delay:
            time.sleep(self.delay)
        self.batches.append(inputs["x"].shape)
        return [inputs["x"] * 2]


def make(model: Recorder, **kw: object) -> DynamicBatcher:
    opts: dict[str, object] = {"max_batch_size": 8, "max_queue_delay_us": 20_000, "max_queue_size": 100}
    opts.update(kw)
    return DynamicBatcher(model, ThreadPoolExecutor(2), **opts)  # type: ignore[arg-type]


def rows(value: float, n: int = 1, width: int = 3) -> np.ndarray:
    return np.full((n, width), value, dtype=np.float32)


def first_step(coroutine: Coroutine[Any, Any, Any]) -> BaseException | None:
    """Run a submit() up to its first suspension: what it raises before one was answered at once, never queued.

    This is "at once" as a mechanism, not as a wall-clock bound a loaded machine could miss.
    """
    try:
        coroutine.send(None)
    except StopIteration:
        return None
    except BaseException as exc:
        return exc
    coroutine.close()  # it suspended: it had been queued
    return None


def test_concurrent_requests_are_joined_and_split_back() -> None:
    async def scenario() -> None:
        model = Recorder()
        stats: list[BatchStats] = []
        batcher = make(model, on_batch=stats.append)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit({"x": rows(i, n=1 + i % 2)}, 1 + i % 2) for i in range(5)))
        for i, (out,) in enumerate(results):
            assert out.shape == (1 + i % 2, 3)
            assert np.all(out == 2 * i)
        assert model.batches == [(7, 3)]
        assert stats[0].size == 7 and len(stats[0].queue_seconds) == 5
        await batcher.stop()

    asyncio.run(scenario())


def test_a_full_batch_does_not_wait_for_the_delay() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = make(model, max_queue_delay_us=5_000_000)
        batcher.start()
        started = time.monotonic()
        await asyncio.gather(*(batcher.submit({"x": rows(i)}, 1) for i in range(8)))
        assert time.monotonic() - started < 2.5  # half the 5 s delay: it did not wait for it
        assert model.batches == [(8, 3)]
        await batcher.stop()

    asyncio.run(scenario())


def test_a_lone_request_waits_at_most_the_queue_delay() -> None:
    async def scenario() -> None:
        model = Recorder()
        stats: list[BatchStats] = []
        batcher = make(model, max_queue_delay_us=50_000, on_batch=stats.append)
        batcher.start()
        # It waits for company (at least the delay; a loaded machine can only add), then runs alone; a batcher
        # that waited for a full batch instead would never answer (bounded here, generously for load).
        await asyncio.wait_for(batcher.submit({"x": rows(1)}, 1), 10)
        assert model.batches == [(1, 3)]
        assert stats[0].queue_seconds[0] >= 0.045
        await batcher.stop()

    asyncio.run(scenario())


def test_different_non_batch_dimensions_are_never_joined() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = make(model)
        batcher.start()
        outs = await asyncio.gather(
            batcher.submit({"x": rows(1, width=3)}, 1),
            batcher.submit({"x": rows(2, width=4)}, 1),
            batcher.submit({"x": rows(3, width=3)}, 1),
            batcher.submit({"x": rows(4, width=4)}, 1),
        )
        assert sorted(model.batches) == [(2, 3), (2, 4)]
        assert [float(o[0][0, 0]) for o in outs] == [2, 4, 6, 8]
        await batcher.stop()

    asyncio.run(scenario())


def test_batching_off_runs_every_request_alone() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = make(model, max_batch_size=1, max_queue_delay_us=0)
        batcher.start()
        await asyncio.gather(*(batcher.submit({"x": rows(i, n=2)}, 2) for i in range(4)))
        assert model.batches == [(2, 3)] * 4
        await batcher.stop()

    asyncio.run(scenario())


def test_a_full_queue_rejects_at_once() -> None:
    async def scenario() -> None:
        model = Recorder()
        model.gate = threading.Event()  # the first batch blocks until released
        batcher = make(model, max_batch_size=1, max_queue_delay_us=0, max_queue_size=3)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": rows(0)}, 1))
        # The first request holds the only instance, blocked in the model.
        assert await asyncio.to_thread(model.entered.wait, 5)
        waiting = [asyncio.ensure_future(batcher.submit({"x": rows(i)}, 1)) for i in range(1, 4)]
        await asyncio.sleep(0)
        refused = first_step(batcher.submit({"x": rows(9)}, 1))
        assert isinstance(refused, ResourceExhausted) and "queue is full" in refused.message
        assert batcher.queued == 3  # the refused one never joined the queue
        model.gate.set()
        await asyncio.gather(first, *waiting)
        assert len(model.batches) == 4
        await batcher.stop()

    asyncio.run(scenario())


def test_abandoned_requests_are_not_executed() -> None:
    async def scenario() -> None:
        model = Recorder()
        model.gate = threading.Event()
        batcher = make(model, max_batch_size=1, max_queue_delay_us=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit({"x": rows(0)}, 1))
        assert await asyncio.to_thread(model.entered.wait, 5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await batcher.submit({"x": rows(1)}, 1)
        model.gate.set()
        await first
        await batcher.submit({"x": rows(2)}, 1)
        assert [b for b in model.batches] == [(1, 3), (1, 3)]
        await batcher.stop()

    asyncio.run(scenario())


def test_inline_batches_and_model_errors_reach_every_caller() -> None:
    async def scenario() -> None:
        def broken(inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
            raise RuntimeError("kernel failed")

        batcher = DynamicBatcher(
            broken, ThreadPoolExecutor(1), max_batch_size=8, max_queue_delay_us=1000, max_queue_size=10, inline=True
        )
        batcher.start()
        results = await asyncio.gather(*(batcher.submit({"x": rows(i)}, 1) for i in range(3)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        await batcher.stop()

    asyncio.run(scenario())


def test_inline_joins_the_requests_of_one_event_loop_turn() -> None:
    async def scenario() -> None:
        model = Recorder()
        batcher = make(model, inline=True, max_queue_delay_us=100)
        batcher.start()
        outs = await asyncio.gather(*(batcher.submit({"x": rows(i)}, 1) for i in range(5)))
        assert model.batches == [(5, 3)]
        assert [float(o[0][0, 0]) for o in outs] == [0, 2, 4, 6, 8]
        many = await asyncio.gather(*(batcher.submit({"x": rows(i)}, 1) for i in range(20)))
        assert model.batches[1:] == [(8, 3), (8, 3), (4, 3)]  # split at max_batch_size
        assert len(many) == 20
        await batcher.stop()

    asyncio.run(scenario())


def test_admission_control_rejects_at_once_what_cannot_meet_its_deadline() -> None:
    async def scenario() -> None:
        model = Recorder(delay=0.05)  # 50 ms per batch
        batcher = make(model, max_batch_size=1, max_queue_delay_us=0)
        batcher.start()
        await batcher.submit({"x": rows(1)}, 1)  # measures the time per batch
        assert batcher.batch_seconds is not None and batcher.batch_seconds >= 0.05
        loop = asyncio.get_running_loop()
        ahead = [loop.create_task(batcher.submit({"x": rows(2)}, 1)) for _ in range(4)]
        await asyncio.sleep(0)  # they are queued: ≥ 250 ms of work ahead of the next request (more under load)
        # Refused before its first suspension: answered at once, not after queueing.
        refused = first_step(batcher.submit({"x": rows(3)}, 1, deadline=time.monotonic() + 0.1))
        assert isinstance(refused, ResourceExhausted), refused
        assert "cannot finish within the deadline" in refused.message and "ms left" in refused.message
        # A deadline the queue can meet is admitted and served (5 s: room for the queue even on a loaded machine).
        (out,) = await batcher.submit({"x": rows(4)}, 1, deadline=time.monotonic() + 5.0)
        assert out.tolist() == [[8.0, 8.0, 8.0]]
        await asyncio.gather(*ahead)
        assert len(model.batches) == 6  # the rejected request never ran
        await batcher.stop()

    asyncio.run(scenario())


def test_admission_without_joining_counts_requests_not_rows() -> None:
    """Batching off: a request of 8 rows is one run, so 8 rows queued ahead are one batch, not eight."""

    async def scenario() -> None:
        model = Recorder(delay=0.02)  # 20 ms per batch, whatever its rows
        batcher = make(model, max_batch_size=1, max_queue_delay_us=0)
        batcher.start()
        await batcher.submit({"x": rows(1, n=8)}, 8)  # measures the time per batch
        loop = asyncio.get_running_loop()
        ahead = loop.create_task(batcher.submit({"x": rows(2, n=8)}, 8))
        await asyncio.sleep(0)
        expected, per_batch = batcher.expected_seconds(8), batcher.batch_seconds
        assert expected is not None and per_batch is not None
        assert round(expected / per_batch) == 2  # the one ahead + this one, whatever a batch takes on this machine
        # Room for 4 batches (measured, so load scales it): admitted and served, not refused for 16 "batches".
        room = 4 * per_batch / ADMISSION_SHARE
        (out,) = await batcher.submit({"x": rows(3, n=8)}, 8, deadline=time.monotonic() + room)
        assert out.shape == (8, 3)
        await ahead
        await batcher.stop()

    asyncio.run(scenario())
