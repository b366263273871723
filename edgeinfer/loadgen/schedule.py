"""Intended send times of one open-loop client: constant spacing or a Poisson process."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Literal

Arrival = Literal["constant", "poisson"]
ARRIVALS: tuple[Arrival, ...] = ("constant", "poisson")


def arrival_offsets(
    rate: float, duration: float, arrival: Arrival, *, seed: int = 0, phase: float = 0.0
) -> Iterator[float]:
    """Yield send times in seconds from the start, below `duration`, `rate` per second on average.

    Lazy, so a long run at a high rate holds no schedule in memory. `phase`
    shifts a constant schedule so several processes interleave evenly.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    if arrival == "constant":
        interval = 1.0 / rate
        k = 0
        # Multiply rather than accumulate so rounding error does not drift.
        while (t := phase + k * interval) < duration:
            yield t
            k += 1
    elif arrival == "poisson":
        rng = random.Random(seed)
        t = 0.0
        while (t := t + rng.expovariate(rate)) < duration:
            yield t
    else:
        raise ValueError(f"unknown arrival process {arrival!r}; choose from {', '.join(ARRIVALS)}")
