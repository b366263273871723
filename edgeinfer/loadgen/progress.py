"""Live progress on stderr while the workers run, read from their shared counters."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from edgeinfer.loadgen.worker import COUNTERS


class BenchProgress:
    """A time bar over warmup + duration, with sent/ok/error counts; a no-op when disabled."""

    def __init__(self, counters: Any, processes: int, warmup: float, duration: float, enabled: bool) -> None:
        self.counters = counters
        self.processes = processes
        self.warmup = warmup
        self.duration = duration
        self.start: float | None = None
        self.progress = (
            Progress(
                TextColumn("[bold]{task.description:<8}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("sent {task.fields[sent]:,}  ok {task.fields[ok]:,}  errors {task.fields[errors]:,}"),
                console=Console(stderr=True),
                transient=True,
            )
            if enabled
            else None
        )
        self.task = (
            self.progress.add_task("connect", total=warmup + duration, sent=0, ok=0, errors=0)
            if self.progress
            else None
        )

    def __enter__(self) -> BenchProgress:
        if self.progress:
            self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.progress:
            self.progress.stop()

    def started(self, start_wall: float) -> None:
        self.start = start_wall

    def update(self) -> None:
        if self.progress is None or self.task is None or self.start is None:
            return
        elapsed = max(0.0, time.time() - self.start)
        totals = [sum(self.counters[i * COUNTERS + k] for i in range(self.processes)) for k in range(COUNTERS)]
        phase = "warmup" if elapsed < self.warmup else "measure" if elapsed < self.warmup + self.duration else "drain"
        self.progress.update(
            self.task, completed=elapsed, description=phase, sent=totals[0], ok=totals[1], errors=totals[2]
        )
