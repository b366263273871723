"""What a bench run is asked to do, checked before anything connects."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeinfer.loadgen.schedule import ARRIVALS, Arrival


class BenchError(Exception):
    """The run could not start or finish: target unreachable, model unknown, bad options."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    target: str
    model: str
    rate: float
    duration: float
    model_version: str = ""
    concurrency_limit: int | None = None
    processes: int = 1
    channels: int = 1
    arrival: Arrival = "constant"
    batch_size: int = 1
    typed: bool = False
    # Make every request's input bytes distinct (a counter in the first input), e.g. to measure cache misses.
    unique: bool = False
    # "NAME:DATATYPE:d1,d2,..." specs; when given, metadata is not fetched.
    inputs: tuple[str, ...] = field(default_factory=tuple)
    warmup: float = 0.0
    timeout_ms: float = 10_000.0
    connect_timeout: float = 5.0
    seed: int = 1
    # Keep each measured request's (intended send offset, latency, status, serving region): for drills.
    record_events: bool = False

    def validate(self) -> None:
        if self.rate <= 0:
            raise BenchError(f"--rate must be positive, got {self.rate}")
        if self.duration <= 0:
            raise BenchError(f"--duration must be positive, got {self.duration}")
        if self.warmup < 0:
            raise BenchError(f"--warmup must not be negative, got {self.warmup}")
        if self.processes < 1 or self.channels < 1:
            raise BenchError("--processes and --channels must be at least 1")
        if self.batch_size < 1:
            raise BenchError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.timeout_ms <= 0:
            raise BenchError(f"--timeout-ms must be positive, got {self.timeout_ms}")
        if self.arrival not in ARRIVALS:
            raise BenchError(f"--arrival must be one of {', '.join(ARRIVALS)}, got {self.arrival!r}")
        if self.concurrency_limit is not None and self.concurrency_limit < self.processes:
            raise BenchError(
                f"--concurrency-limit {self.concurrency_limit} is below --processes {self.processes}; "
                "each process needs at least one slot"
            )

    def process_limits(self) -> list[int | None]:
        """Split the run's concurrency limit over the processes, remainder to the first ones."""
        if self.concurrency_limit is None:
            return [None] * self.processes
        base, extra = divmod(self.concurrency_limit, self.processes)
        return [base + (i < extra) for i in range(self.processes)]
