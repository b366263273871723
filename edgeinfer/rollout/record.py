"""The rollout's record, kept in the region gateway's traffic policy (its `rollout` field, contract C3), and who
holds the lock it stands for.

The gateway stores the record as it is given and bumps the policy's generation on every change; each write of the
controller carries `expect_generation`, so two writers never both win. The policy's lease (renewed by every write)
reverts the split to the baseline when the owner stops writing. A record is *active* while its state is running
or promoting; another CLI may take it over when the lease has run out or when its owner, on this host, is gone.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, TypeGuard

from edgeinfer.stack.procfs import is_running, start_time

KIND = "edgeinfer-rollout"
RUNNING, PROMOTING = "running", "promoting"
PROMOTED, ROLLED_BACK, ABORTED = "promoted", "rolled_back", "aborted"
ACTIVE = (RUNNING, PROMOTING)
FINISHED = (PROMOTED, ROLLED_BACK, ABORTED)


def this_owner(command: str = "edgeinfer rollout") -> dict[str, Any]:
    """This process as a record's owner: host, pid and the pid's start time (a reused pid is another process)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": start_time(pid), "command": command}


def same_owner(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if not a or not b:
        return False
    return bool(
        a.get("host") == b.get("host") and a.get("pid") == b.get("pid") and a.get("started") == b.get("started")
    )


def owner_text(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "an unknown owner"
    return f"pid {owner.get('pid')} on {owner.get('host')}"


def owner_alive(owner: dict[str, Any] | None) -> bool | None:
    """True/False for an owner on this host; None when it runs elsewhere (only its lease can tell)."""
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        return None
    pid = owner.get("pid")
    started = owner.get("started")
    if not isinstance(pid, int):
        return False
    return is_running(pid, started if isinstance(started, int) else None)


def new_record(
    *,
    model: str,
    region: str,
    baseline: str,
    candidate: str,
    steps: list[int],
    config: dict[str, Any],
    owner: dict[str, Any],
    wall: float | None = None,
) -> dict[str, Any]:
    now = time.time() if wall is None else wall
    return {
        "kind": KIND,
        "id": uuid.uuid4().hex[:16],
        "model": model,
        "region": region,
        "baseline": baseline,
        "candidate": candidate,
        "state": RUNNING,
        "steps": list(steps),
        "step_index": -1,  # -1: pinned to the baseline, no step yet
        "weight": 0,
        "attempt": 0,
        "config": config,
        "owner": owner,
        "started_at": now,
        "updated_at": now,
        "reason": None,
        "check": None,
    }


def is_record(value: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and value.get("kind") == KIND


@dataclass(frozen=True)
class Lock:
    """What a policy says about who may run a rollout of its model now."""

    record: dict[str, Any] | None  # the active record, if any
    takeable: bool  # active, but its lease ran out or its owner is gone
    why: str  # a sentence for a person

    @property
    def held(self) -> bool:
        return self.record is not None and not self.takeable


def lock_of(policy: dict[str, Any], wall: float, alive: Any = owner_alive) -> Lock:
    """The lock a policy (GET /v1/traffic/{model}) holds. `alive(owner)` → True, False or None (unknown)."""
    record = policy.get("rollout")
    if not is_record(record) or record.get("state") not in ACTIVE:
        return Lock(None, False, "no rollout is running")
    owner = record.get("owner")
    described = (
        f"a rollout of {record.get('model')} from version {record.get('baseline')} to {record.get('candidate')} "
        f"({record.get('state')}, step {_step_text(record)}, by {owner_text(owner)})"
    )
    lease_until = policy.get("lease_until")
    state = alive(owner)
    if state is False:
        return Lock(record, True, f"{described}: its owner is gone")
    if record.get("state") == PROMOTING and state is True:
        # The promotion's writes carry no lease (the split is final): its owner, alive here, holds it.
        return Lock(record, False, f"{described} holds the lock (promoting)")
    # No lease at all while active: the gateway applied it (it ran out) and cleared it.
    if not isinstance(lease_until, (int, float)) or lease_until <= wall:
        return Lock(record, True, f"{described}: its lease ran out")
    left = float(lease_until) - wall
    return Lock(record, False, f"{described} holds the lock (lease {left:.0f} s left)")


def _step_text(record: dict[str, Any]) -> str:
    steps = record.get("steps") or []
    index = record.get("step_index", -1)
    if not isinstance(index, int) or index < 0:
        return "pinned, 0 %"
    return f"{index + 1}/{len(steps)}, {record.get('weight')} %"


def describe(record: dict[str, Any]) -> str:
    """One line: what the record says."""
    text = (
        f"{record.get('model')} {record.get('baseline')} → {record.get('candidate')}: {record.get('state')}, "
        f"step {_step_text(record)}, owner {owner_text(record.get('owner'))}"
    )
    if record.get("reason"):
        text += f"; {record['reason']}"
    return text
