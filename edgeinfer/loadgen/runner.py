"""Run a bench: build the payload, start the worker processes together, merge their results."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import grpc

from edgeinfer.loadgen.options import BenchError, BenchOptions
from edgeinfer.loadgen.payload import build_payload, parse_input, unique_offset
from edgeinfer.loadgen.progress import BenchProgress
from edgeinfer.loadgen.report import BenchReport, merge
from edgeinfer.loadgen.target import check_reachable, fetch_inputs
from edgeinfer.loadgen.worker import CHANNEL_OPTIONS, COUNTERS, WorkerConfig, WorkerResult, worker_main

# Spawning a worker imports grpc afresh: allow for a slow, busy box.
_SPAWN_SLACK_S = 60.0
# Lead time from "all ready" to the common start, so every worker sees it before it passes.
_START_LEAD_S = 0.1
_POLL_S = 0.2


def prepare_payload(options: BenchOptions) -> bytes:
    """Check the target and build the serialized request (from metadata unless --input is given)."""
    specs = [parse_input(text) for text in options.inputs]
    with grpc.insecure_channel(options.target, options=CHANNEL_OPTIONS) as channel:
        check_reachable(channel, options.target, options.connect_timeout)
        if not specs:
            specs = fetch_inputs(channel, options.model, options.model_version, options.timeout_ms / 1000)
    return build_payload(
        options.model,
        specs,
        batch_size=options.batch_size,
        typed=options.typed,
        version=options.model_version,
        seed=options.seed,
    )


def _configs(options: BenchOptions, payload: bytes) -> list[WorkerConfig]:
    per_process = options.rate / options.processes
    return [
        WorkerConfig(
            index=i,
            target=options.target,
            payload=payload,
            rate=per_process,
            duration=options.duration,
            warmup=options.warmup,
            arrival=options.arrival,
            seed=options.seed + i,
            # Constant schedules interleave: process i sends i/rate after process 0.
            phase=i / options.rate,
            concurrency=limit,
            timeout=options.timeout_ms / 1000,
            channels=options.channels,
            connect_timeout=options.connect_timeout,
            unique_offset=unique_offset(payload) if options.unique else None,
            record_events=options.record_events,
        )
        for i, limit in enumerate(options.process_limits())
    ]


def _gather(
    conns: list[Connection], procs: list[BaseProcess], what: str, timeout: float, tick: Callable[[], None]
) -> list[Any]:
    """Wait for one message from every worker; a reported error or a dead worker raises BenchError."""
    values: list[Any] = [None] * len(conns)
    pending = dict(enumerate(conns))
    deadline = time.monotonic() + timeout
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"bench workers did not report {what} within {timeout:g} s")
        ready = wait(list(pending.values()), timeout=min(_POLL_S, remaining))
        for index, conn in list(pending.items()):
            if conn not in ready:
                continue
            try:
                tag, value = conn.recv()
            except EOFError:
                procs[index].join(1)
                raise BenchError(
                    f"bench worker {index} exited unexpectedly (exit code {procs[index].exitcode})"
                ) from None
            if tag == "error":
                raise BenchError(value)
            values[index] = value
            del pending[index]
        tick()
    return values


class BackgroundBench:
    """`run_bench` in a thread, for a caller that acts on the system under load from its own thread (a fault
    injector must: a child process's parent-death signal follows the thread that started it)."""

    def __init__(self, options: BenchOptions, *, progress: bool = False) -> None:
        self._options = options
        self._progress = progress
        self._started = threading.Event()
        self._outcome: list[BenchReport | BaseException] = []
        self.start_wall: float | None = None
        self._thread = threading.Thread(target=self._run, name="bench", daemon=True)

    def start(self) -> float | None:
        """Start the load and wait until its common start (Unix time, warm-up included) is fixed; return it, or
        None if the bench failed before starting (result() then raises why)."""
        self._thread.start()
        self._started.wait()
        return self.start_wall

    def result(self) -> BenchReport:
        self._thread.join()
        outcome = self._outcome[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _on_start(self, start_wall: float) -> None:
        self.start_wall = start_wall
        self._started.set()

    def _run(self) -> None:
        try:
            self._outcome.append(run_bench(self._options, progress=self._progress, on_start=self._on_start))
        except BaseException as exc:
            self._outcome.append(exc)
        finally:
            self._started.set()


def run_bench(
    options: BenchOptions, *, progress: bool = False, on_start: Callable[[float], None] | None = None
) -> BenchReport:
    """Run one open-loop bench and return its merged report; BenchError if it cannot run.

    `on_start` is called with the common start (Unix time, warm-up included) once it is fixed."""
    options.validate()
    payload = prepare_payload(options)
    ctx = mp.get_context("spawn")
    counters: Any = ctx.RawArray("q", options.processes * COUNTERS)
    procs: list[BaseProcess] = []
    conns: list[Connection] = []
    try:
        for config in _configs(options, payload):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(config, child_end, counters),
                name=f"bench-{config.index}",
                daemon=True,
            )
            proc.start()
            child_end.close()
            procs.append(proc)
            conns.append(parent_end)
        with BenchProgress(counters, options.processes, options.warmup, options.duration, progress) as bar:
            _gather(conns, procs, "ready", options.connect_timeout + _SPAWN_SLACK_S, bar.update)
            start_wall = time.time() + _START_LEAD_S
            for conn in conns:
                conn.send(start_wall)
            bar.started(start_wall)
            if on_start is not None:
                on_start(start_wall)
            run_time = _START_LEAD_S + options.warmup + options.duration + options.timeout_ms / 1000
            results: list[WorkerResult] = _gather(conns, procs, "results", run_time + _SPAWN_SLACK_S, bar.update)
        for worker in procs:
            worker.join(5)
        return merge(options, results)
    finally:
        for worker in procs:
            if worker.is_alive():
                worker.terminate()
                worker.join(5)
        for conn in conns:
            conn.close()
