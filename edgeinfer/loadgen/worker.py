"""One client process: send the payload on schedule, time each request from its intended send time."""

from __future__ import annotations

import asyncio
import gc
import signal
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import grpc
from hdrh.histogram import HdrHistogram

from edgeinfer.loadgen.options import BenchError
from edgeinfer.loadgen.schedule import Arrival, arrival_offsets

METHOD = "/inference.GRPCInferenceService/ModelInfer"
# Microseconds, 1 µs .. 60 s, 3 significant digits.
LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 60_000_000, 3
# Counters each worker publishes for the parent's progress display: sent, ok, errors.
COUNTERS = 3
_TICK_S = 0.2
# When behind schedule, yield to the loop this often so replies still get processed.
_BURST = 32
# Event loop timers have millisecond resolution: wake up to this much early and send then,
# timing such a request from its actual send, so timer rounding never counts as latency.
_EARLY_S = 0.001
GIL_SWITCH_INTERVAL_S = 0.0005

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    # Otherwise channels to one target share a subchannel, hence one TCP connection.
    ("grpc.use_local_subchannel_pool", 1),
]


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    index: int
    target: str
    payload: bytes
    rate: float
    duration: float
    warmup: float
    arrival: Arrival
    seed: int
    phase: float
    concurrency: int | None
    timeout: float
    channels: int
    connect_timeout: float
    unique_offset: int | None = None
    record_events: bool = False


@dataclass(frozen=True, slots=True)
class WorkerResult:
    index: int
    sent: int
    ok: int
    errors: dict[str, int]
    histogram: bytes  # HdrHistogram.encode() of OK latencies in µs
    elapsed: float  # measurement start to the last measured completion, at least the duration
    max_lag: float  # worst lag of an actual send behind its intended time, seconds
    # With record_events: (intended offset from the start incl. warm-up, latency s, status, region) each.
    events: tuple[tuple[float, float, str, str], ...] = ()


class _Client:
    def __init__(
        self, config: WorkerConfig, calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]], counters: Any
    ) -> None:
        self.config = config
        self.calls = calls
        self.counters = counters
        self.slots = asyncio.Semaphore(config.concurrency) if config.concurrency else None
        self.histogram = new_histogram()
        self.sent = 0
        self.ok = 0
        self.errors: Counter[str] = Counter()
        self.last_done = 0.0
        self.max_lag = 0.0
        self.counter = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.events: list[tuple[float, float, str, str]] = []
        self.start = 0.0

    async def run(self, start: float) -> WorkerResult:
        cfg = self.config
        self.start = start
        ticker = asyncio.create_task(self._tick())
        try:
            await self._send_all(start)
            if self.tasks:
                await asyncio.wait(self.tasks)
        finally:
            ticker.cancel()
            self._publish()
        elapsed = max(cfg.duration, self.last_done - (start + cfg.warmup))
        return WorkerResult(
            cfg.index,
            self.sent,
            self.ok,
            dict(self.errors),
            self.histogram.encode(),
            elapsed,
            self.max_lag,
            tuple(self.events),
        )

    async def _send_all(self, start: float) -> None:
        cfg = self.config
        calls, n_calls = self.calls, len(self.calls)
        offsets = arrival_offsets(cfg.rate, cfg.warmup + cfg.duration, cfg.arrival, seed=cfg.seed, phase=cfg.phase)
        behind = 0
        for i, offset in enumerate(offsets):
            intended = start + offset
            delay = intended - time.monotonic()
            if delay > _EARLY_S:
                await asyncio.sleep(delay - _EARLY_S)
            else:
                behind += 1
                if behind % _BURST == 0:
                    await asyncio.sleep(0)
            measured = offset >= cfg.warmup
            if self.slots is not None and not await self._acquire(intended):
                # Expired waiting for a slot: its deadline, counted from the intended time, passed.
                if measured:
                    self.sent += 1
                    self.errors["DEADLINE_EXCEEDED"] += 1
                    self.last_done = time.monotonic()
                continue
            now = time.monotonic()
            if measured:
                self.sent += 1
                self.max_lag = max(self.max_lag, now - intended)
            # A late send is timed from its intended time, an early one from the actual send.
            origin = min(intended, now)
            task = asyncio.create_task(self._call(calls[i % n_calls], origin, measured))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _acquire(self, intended: float) -> bool:
        assert self.slots is not None
        if not self.slots.locked():
            await self.slots.acquire()  # returns at once
            return True
        try:
            async with asyncio.timeout(intended + self.config.timeout - time.monotonic()):
                await self.slots.acquire()
        except TimeoutError:
            return False
        return True

    def _next_payload(self) -> bytes:
        offset = self.config.unique_offset
        if offset is None:
            return self.config.payload
        self.counter += 1
        data = bytearray(self.config.payload)
        # Worker index in the high bits: processes never repeat each other's inputs.
        struct.pack_into("<Q", data, offset, (self.config.index << 48) | self.counter)
        return bytes(data)

    async def _call(self, call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], origin: float, measured: bool) -> None:
        code: str | None = None
        region = ""
        # The deadline counts from the intended time; grpc reads a zero timeout as none at all.
        remaining = self.config.timeout - (time.monotonic() - origin)
        try:
            if remaining <= 0:
                code = "DEADLINE_EXCEEDED"
            elif self.config.record_events:
                pending = call(self._next_payload(), timeout=remaining)
                await pending
                region = _region(await pending.trailing_metadata())
            else:
                await call(self._next_payload(), timeout=remaining)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            region = _region(exc.trailing_metadata())
        except Exception as exc:  # a client-side failure still belongs in the report
            code = type(exc).__name__
        finally:
            if self.slots is not None:
                self.slots.release()
        if not measured:
            return
        done = time.monotonic()
        self.last_done = max(self.last_done, done)
        if self.config.record_events:
            self.events.append((origin - self.start, done - origin, code or "OK", region))
        if code is None:
            self.ok += 1
            micros = int((done - origin) * 1e6)
            self.histogram.record_value(min(max(micros, LOWEST_US), HIGHEST_US))
        else:
            self.errors[code] += 1

    def _publish(self) -> None:
        base = self.config.index * COUNTERS
        self.counters[base : base + COUNTERS] = [self.sent, self.ok, sum(self.errors.values())]

    async def _tick(self) -> None:
        while True:
            self._publish()
            await asyncio.sleep(_TICK_S)


def _region(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "x-edgeinfer-region":
            return str(value)
    return ""


async def _main(config: WorkerConfig, conn: Connection, counters: Any) -> WorkerResult:
    channels = [grpc.aio.insecure_channel(config.target, options=CHANNEL_OPTIONS) for _ in range(config.channels)]
    try:
        try:
            async with asyncio.timeout(config.connect_timeout):
                await asyncio.gather(*(channel.channel_ready() for channel in channels))
        except TimeoutError:
            raise BenchError(
                f"cannot reach {config.target}: no connection within {config.connect_timeout:g} s"
            ) from None
        # Imports, channels and payload live for the whole run: keep them out of the collector's full passes,
        # which would otherwise stall this loop for milliseconds and count as the server's latency.
        gc.collect()
        gc.freeze()
        conn.send(("ready", None))
        # Blocking is fine: nothing runs on this loop until the common start.
        start_wall: float = conn.recv()
        # Wall clock carries the common start across processes; monotonic time runs the schedule.
        start = time.monotonic() + (start_wall - time.time())
        # No serializers: the pre-serialized request goes out as is and replies stay bytes.
        calls: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            channel.unary_unary(METHOD, None, None) for channel in channels
        ]
        return await _Client(config, calls, counters).run(start)
    finally:
        for channel in channels:
            await channel.close(None)


def _event_loop_runner() -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def worker_main(config: WorkerConfig, conn: Connection, counters: Any) -> None:
    """Process entry point. Replies on `conn` with ("ready"|"error"|"result", payload)."""
    # Ctrl-C goes to the whole process group: the parent handles it and terminates the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # gRPC hands each reply to this loop from its own threads, which need the GIL: at the default 5 ms switch
    # interval a busy loop would hold a reply back that long, and the wait would be measured as latency.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    run: Any = _event_loop_runner()
    try:
        result: WorkerResult = run(_main(config, conn, counters))
    except BenchError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:
        conn.send(("error", f"worker {config.index} failed: {type(exc).__name__}: {exc}"))
    else:
        conn.send(("result", result))
    finally:
        conn.close()
