"""Progressive delivery: `edgeinfer rollout` moves a model's traffic to a new version in steps, judges each step
on the candidate's errors, p99 and answers (shadow copies), and rolls back or promotes (docs/rollout.md).

The package sits above edgeinfer.stack and below the CLI. Python callers (the drills) use `run_rollout`.
"""

from __future__ import annotations

from edgeinfer.rollout.analysis import CLIENT_ERROR_CODES, Thresholds
from edgeinfer.rollout.controller import RolloutConfig
from edgeinfer.rollout.errors import RolloutError
from edgeinfer.rollout.runner import RolloutOptions, RolloutResult, run_rollout

__all__ = [
    "CLIENT_ERROR_CODES",
    "RolloutConfig",
    "RolloutError",
    "RolloutOptions",
    "RolloutResult",
    "Thresholds",
    "run_rollout",
]
