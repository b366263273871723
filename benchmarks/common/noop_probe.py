"""The latency floor of a gRPC round trip to a server under load: an open-loop stream of ServerLive calls.

ServerLive does no work on the server, so its latency from the intended send time is what any answer costs
at that moment on this machine: client and server event loops, gRPC's threads, the kernel's scheduling of
them among everything else. A figure for a real request (a rejection, say) reads against this floor, taken
in the same seconds, from its own process so neither client delays the other.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import grpc
from hdrh.histogram import HdrHistogram

from edgeinfer.loadgen.worker import GIL_SWITCH_INTERVAL_S, HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS

METHOD = "/inference.GRPCInferenceService/ServerLive"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    sent: int
    ok: int
    errors: int
    histogram: bytes  # HdrHistogram.encode() of OK latencies in µs


async def _probe(target: str, rate: float, warmup: float, duration: float, conn: Connection) -> ProbeResult:
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    sent = ok = errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        call = channel.unary_unary(METHOD, None, None)
        conn.send("ready")
        start_wall: float = conn.recv()  # blocking is fine: nothing runs on this loop until the start
        start = time.monotonic() + (start_wall - time.time())
        tasks: set[asyncio.Task[None]] = set()

        async def one(origin: float, measured: bool) -> None:
            nonlocal ok, errors
            try:
                await call(b"", timeout=5.0)
            except grpc.aio.AioRpcError:
                errors += measured
                return
            if measured:
                ok += 1
                micros = int((time.monotonic() - origin) * 1e6)
                histogram.record_value(min(max(micros, LOWEST_US), HIGHEST_US))

        total = int((warmup + duration) * rate)
        for i in range(total):
            intended = start + i / rate
            delay = intended - time.monotonic()
            if delay > 0.001:  # timers have millisecond resolution: wake early, time from the actual send
                await asyncio.sleep(delay - 0.001)
            measured = i >= warmup * rate
            sent += measured
            task = asyncio.create_task(one(min(intended, time.monotonic()), measured))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
    return ProbeResult(sent, ok, errors, histogram.encode())


def _main(target: str, rate: float, warmup: float, duration: float, conn: Connection) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as the load generator's workers: the same kind of client
    try:
        conn.send(asyncio.run(_probe(target, rate, warmup, duration, conn)))
    finally:
        conn.close()


class NoopProbe:
    """Runs alongside a bench: `probe = NoopProbe(...)`, `run_bench(..., on_start=probe.start)`, `probe.result()`.

    Its warm-up and measured seconds are the bench's when given the bench's common start and the same warm-up
    and duration."""

    def __init__(self, target: str, rate: float, warmup: float, duration: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_main, args=(target, rate, warmup, duration, child), daemon=True)
        self._process.start()
        child.close()
        self._run_time = warmup + duration + 30
        try:
            ready = self._conn.poll(30) and self._conn.recv() == "ready"
        except EOFError:  # the process died before it connected
            ready = False
        if not ready:
            self.close()
            raise RuntimeError(f"the no-op probe could not reach {target}")

    def start(self, start_wall: float) -> None:
        self._conn.send(start_wall)

    def result(self) -> ProbeResult:
        if not self._conn.poll(self._run_time):
            raise RuntimeError("the no-op probe sent no result")
        result: ProbeResult = self._conn.recv()
        self._process.join(5)
        return result

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(5)
        self._conn.close()
