"""`edgeinfer bench`: an open-loop load generator with HDR latency histograms.

Arrivals follow a fixed schedule whatever the server does, and latency runs
from each request's intended send time, so a stalled server cannot hide its
stall by slowing the client down (no coordinated omission).

Python API: `run_bench(BenchOptions(...)) -> BenchReport`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeinfer.loadgen.options import BenchError, BenchOptions
    from edgeinfer.loadgen.report import BenchReport
    from edgeinfer.loadgen.runner import run_bench

__all__ = ["BenchError", "BenchOptions", "BenchReport", "run_bench"]

# Imported on first use: each spawned worker imports this package, and should not pay
# for numpy and rich, which only the parent needs.
_HOMES = {"BenchError": "options", "BenchOptions": "options", "BenchReport": "report", "run_bench": "runner"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
