"""A gateway's traffic policies: per model, how unversioned requests split between its versions, which version gets
a shadow copy of them, and the lease that reverts a split nobody renews.

The policy is parsed (pydantic) on the admin path only (gateway/traffic_admin.py); the data plane reads its
compiled form, a `Split`: the versions with weight and their cumulative shares, consulted with one random draw per
unversioned request (none when one version has all the weight). A request that names a version never looks here.

Persistence: `<state-dir>/traffic.json`, written whole (a temporary file, then os.replace) after every change and
read at start, where a lease that ran out while the gateway was down is applied before the first request. Without a
state dir the table lives in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeinfer.protocol.errors import InferenceError, InvalidArgument

log = logging.getLogger(__name__)

TRAFFIC_FILE = "traffic.json"
FILE_FORMAT = 1
MAX_ROLLOUT_BYTES = 64 * 1024
MAX_LEASE_SECONDS = 7 * 24 * 3600.0
# How often the lease watcher looks at the clock when no lease is near: a lease is applied at most this late.
LEASE_POLL_S = 0.25
# A Knative traffic tag becomes part of a host name: a DNS-1035 label.
_TAG = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

Weight = Annotated[int, Field(ge=0, le=100)]


class Conflict(InferenceError):
    """The policy changed since the caller read it (`expect_generation` differs): read it again and decide anew."""

    code = grpc.StatusCode.ABORTED
    http_status = 409


class ShadowPolicy(BaseModel):
    """A copy of `percent` % of the unversioned requests served by another version goes to `version`; its answer
    is compared with the caller's (|a - b| <= atol + rtol * |b|, and the argmax over the last axis) and dropped."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: str = Field(min_length=1)
    percent: float = Field(ge=0, le=100, allow_inf_nan=False)
    atol: float = Field(default=1e-4, ge=0, allow_inf_nan=False)
    rtol: float = Field(default=1e-3, ge=0, allow_inf_nan=False)


class TrafficPolicy(BaseModel):
    """One model's policy as stored and answered. `generation`, `updated_at` and `lease_until` are set by the
    gateway; the rest by the caller of PUT /v1/traffic/{model}."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # version -> integer percent, summing to 100; {} = the default: every unversioned request to the latest.
    weights: dict[str, Weight] = Field(default_factory=dict)
    shadow: ShadowPolicy | None = None
    # What the lease falls back to: weights {revert_to: 100} (None: the default).
    revert_to: str | None = None
    # Renewed by every PUT; when it runs out the weights revert and the shadow stops.
    lease_seconds: float | None = Field(default=None, gt=0, le=MAX_LEASE_SECONDS, allow_inf_nan=False)
    # With the knative backend: version -> the Knative traffic tag of its revision.
    tags: dict[str, str] = Field(default_factory=dict)
    # The rollout controller's own record (edgeinfer rollout), kept as it is.
    rollout: dict[str, Any] | None = None
    generation: int = Field(default=0, ge=0)
    updated_at: float = 0.0  # wall clock
    lease_until: float | None = None  # wall clock

    @field_validator("weights")
    @classmethod
    def _weights_sum(cls, weights: dict[str, int]) -> dict[str, int]:
        total = sum(weights.values())
        if weights and total != 100:
            raise ValueError(
                f"weights sum to {total}, not 100: give integer percents per version that add up to 100, "
                'e.g. {"1": 90, "2": 10}, or {} for the default (every request to the latest version)'
            )
        return weights

    @field_validator("tags")
    @classmethod
    def _tag_names(cls, tags: dict[str, str]) -> dict[str, str]:
        for version, tag in tags.items():
            if not _TAG.match(tag):
                raise ValueError(
                    f"tag {tag!r} of version {version!r} is not a Knative traffic tag: lower-case letters, digits "
                    "and '-', starting with a letter, at most 63 characters"
                )
        return tags

    @field_validator("rollout")
    @classmethod
    def _rollout_size(cls, rollout: dict[str, Any] | None) -> dict[str, Any] | None:
        if rollout is not None:
            size = len(json.dumps(rollout, separators=(",", ":")))
            if size > MAX_ROLLOUT_BYTES:
                raise ValueError(f"rollout record is {size} bytes as JSON; at most {MAX_ROLLOUT_BYTES}")
        return rollout

    def versions_named(self) -> Iterator[tuple[str, str]]:
        """(where, version) for every version the policy names."""
        for version in self.weights:
            yield "weights", version
        if self.shadow is not None:
            yield "shadow.version", self.shadow.version
        if self.revert_to is not None:
            yield "revert_to", self.revert_to
        for version in self.tags:
            yield "tags", version


class TrafficUpdate(TrafficPolicy):
    """The body of PUT /v1/traffic/{model}: a whole policy (what it leaves out takes its default), and optionally
    `expect_generation`, the generation the caller read: a different one is a 409 (the rollout's lock). The
    server-set fields may come back as a GET gave them; they are ignored."""

    expect_generation: int | None = Field(default=None, ge=0)


def describe_validation(error: ValidationError, model: str) -> str:
    """A pydantic error as one line a person can act on: each field with its problem."""
    problems = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "body"
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = f"unknown field (known: {', '.join(TrafficUpdate.model_fields)})"
        problems.append(f"{where}: {message}")
    return f"traffic policy of model '{model}': " + "; ".join(problems)


@dataclass(frozen=True, slots=True)
class Shadow:
    version: str
    probability: float  # percent / 100
    atol: float
    rtol: float


@dataclass(slots=True)
class Split:
    """A policy compiled for the hot path: `pick()` is the version of an unversioned request ("" for the view's
    default), `shadow_for(version)` the shadow a request served by `version` is copied to, if it is its turn.

    Counted, not drawn: the pick is smooth weighted round-robin (nginx's), so of any 100 unversioned requests in a
    row each version gets its weight exactly, spread evenly; the shadow copies every 1/share-th request it may.
    A canary at 10 % then gets 10 % of the requests, not 10 % give or take chance, and the exposure a rollout
    accepts is what it says."""

    versions: tuple[str, ...]  # versions with weight above 0
    weights: tuple[int, ...]  # their percents
    fixed: str | None  # the one version when only one has weight ("" for none: the default)
    shadow: Shadow | None
    current: list[int] = field(default_factory=list)  # round-robin state, one per version
    shadow_credit: float = 0.0

    def pick(self) -> str:
        if self.fixed is not None:
            return self.fixed
        current = self.current
        best = 0
        for index, weight in enumerate(self.weights):
            current[index] += weight
            if current[index] > current[best]:
                best = index
        current[best] -= 100
        return self.versions[best]

    def undo(self, version: str) -> None:
        """Take back a pick that served no request (the wire lookup gave up on it; the request is picked again)."""
        if self.fixed is not None or version not in self.versions:
            return
        current = self.current
        for index, weight in enumerate(self.weights):
            current[index] -= weight
        current[self.versions.index(version)] += 100

    def shadow_for(self, version: str) -> Shadow | None:
        shadow = self.shadow
        if shadow is None or shadow.version == version:
            return None
        self.shadow_credit += shadow.probability
        if self.shadow_credit < 1.0:
            return None
        self.shadow_credit -= 1.0
        return shadow


def compile_split(policy: TrafficPolicy) -> Split | None:
    """None when the policy is the default (no weights, no shadow): nothing to consult per request."""
    weighted = [(v, w) for v, w in policy.weights.items() if w > 0]
    shadow = policy.shadow
    compiled_shadow = None
    if shadow is not None and shadow.percent > 0:
        compiled_shadow = Shadow(shadow.version, shadow.percent / 100, shadow.atol, shadow.rtol)
    if not weighted and compiled_shadow is None:
        return None
    versions = tuple(v for v, _ in weighted)
    fixed = versions[0] if len(versions) == 1 else "" if not versions else None
    return Split(versions, tuple(w for _, w in weighted), fixed, compiled_shadow, [0] * len(versions))


class TrafficTable:
    """Every model's policy, its compiled Split (`splits`, read by the data plane per request) and the file they
    persist in. Changes are synchronous, so a check of `expect_generation` and the change it guards cannot
    interleave with another; `save()` then writes the file off the event loop."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._clock = clock
        self.policies: dict[str, TrafficPolicy] = {}
        # Mutated in place: the data plane keeps a reference to this very dict.
        self.splits: dict[str, Split] = {}
        self._save_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        # Told of every installed policy's tags (the data plane's Knative routing); None: nobody listens.
        self.on_change: Callable[[str, Mapping[str, str]], None] | None = None

    # -- reading ---------------------------------------------------------------------------

    def get(self, model: str) -> TrafficPolicy:
        """The model's policy; the default (generation 0) when none was ever set."""
        return self.policies.get(model) or TrafficPolicy()

    # -- changing --------------------------------------------------------------------------

    def put(self, model: str, update: TrafficUpdate, versions: Sequence[str]) -> TrafficPolicy:
        """Replace the model's policy with `update`, checked against the model's `versions`; InvalidArgument for a
        version it does not have, Conflict when `expect_generation` is not the current generation."""
        known = [v for v in versions if v]
        for where, version in update.versions_named():
            if version not in known:
                raise InvalidArgument(
                    f"traffic policy of model '{model}': {where} names version '{version}', which the model does "
                    f"not have; its versions: {', '.join(known) or '(none reported)'}"
                )
        current = self.get(model)
        self._check_generation(model, current, update.expect_generation)
        now = self._clock()
        policy = TrafficPolicy(
            weights=dict(update.weights),
            shadow=update.shadow,
            revert_to=update.revert_to,
            lease_seconds=update.lease_seconds,
            tags=dict(update.tags),
            rollout=update.rollout,
            generation=current.generation + 1,
            updated_at=now,
            lease_until=now + update.lease_seconds if update.lease_seconds is not None else None,
        )
        self._install(model, policy)
        return policy

    def clear(self, model: str, expect_generation: int | None = None) -> TrafficPolicy:
        """Back to the default policy. The generation still counts up, so a lock taken before never matches again."""
        current = self.get(model)
        self._check_generation(model, current, expect_generation)
        policy = TrafficPolicy(generation=current.generation + 1, updated_at=self._clock())
        self._install(model, policy)
        return policy

    def expire(self, now: float | None = None) -> list[str]:
        """Apply every lease that ran out by `now`: weights {revert_to: 100} (or the default), shadow off. Returns
        the models it changed."""
        now = self._clock() if now is None else now
        expired = []
        for model, policy in list(self.policies.items()):
            if policy.lease_until is None or policy.lease_until > now:
                continue
            reverted = policy.model_copy(
                update={
                    "weights": {policy.revert_to: 100} if policy.revert_to is not None else {},
                    "shadow": None,
                    "lease_seconds": None,
                    "lease_until": None,
                    "generation": policy.generation + 1,
                    "updated_at": now,
                }
            )
            self._install(model, reverted)
            log.warning(
                "traffic lease of model %s ran out %.1fs ago (generation %d, not renewed): every unversioned request "
                "now goes to %s, shadow off",
                model,
                now - policy.lease_until,
                policy.generation,
                f"version {policy.revert_to}" if policy.revert_to is not None else "the latest version",
            )
            expired.append(model)
        return expired

    def next_expiry(self) -> float | None:
        leases = [p.lease_until for p in self.policies.values() if p.lease_until is not None]
        return min(leases) if leases else None

    def _check_generation(self, model: str, current: TrafficPolicy, expected: int | None) -> None:
        if expected is not None and expected != current.generation:
            raise Conflict(
                f"traffic policy of model '{model}' is at generation {current.generation}, not {expected}: it "
                "changed since it was read (another rollout, or its lease ran out); read it again"
            )

    def _install(self, model: str, policy: TrafficPolicy) -> None:
        previous = self.policies.get(model)
        if self.on_change is not None and (previous.tags if previous is not None else {}) != policy.tags:
            self.on_change(model, policy.tags)  # ValueError for a tag that makes no host: nothing changed
        self.policies[model] = policy
        split = compile_split(policy)
        kept = self.splits.get(model)
        if split is not None and kept is not None and (kept.versions, kept.weights) == (split.versions, split.weights):
            # A renewal (the rollout writes the same policy at every poll): the round-robin goes on where it was.
            split.current = kept.current
            split.shadow_credit = kept.shadow_credit
        if split is None:
            self.splits.pop(model, None)
        else:
            self.splits[model] = split

    # -- persistence -----------------------------------------------------------------------

    def load(self) -> None:
        """Read the file, if there is one, and apply the leases that ran out meanwhile (written back when any
        did). ValueError naming the file when it cannot be read."""
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_bytes())
            if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
                raise ValueError(f'not a traffic file (expected {{"format": {FILE_FORMAT}, "models": ...}})')
            models = data.get("models")
            if not isinstance(models, dict):
                raise ValueError('"models" is not an object')
            policies = {str(m): TrafficPolicy.model_validate(p, strict=False) for m, p in models.items()}
        except (OSError, ValueError) as exc:  # ValidationError is a ValueError
            raise ValueError(
                f"cannot read the traffic policies in {self.path}: {exc}; fix the file, or move it away to start with "
                "the default (every unversioned request to the latest version)"
            ) from None
        for model, policy in policies.items():
            self._install(model, policy)
        if policies:
            log.info("traffic policies loaded from %s: %s", self.path, ", ".join(sorted(policies)))
        if self.expire():
            self._write(self._snapshot())

    def _snapshot(self) -> bytes:
        models = {m: p.model_dump(mode="json") for m, p in sorted(self.policies.items())}
        return json.dumps({"format": FILE_FORMAT, "models": models}, indent=1, sort_keys=True).encode()

    def _write(self, data: bytes) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per process: a gateway's workers share the file and may write it at the same moment.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    async def save(self) -> None:
        """Write the table as it is now (serialized here, written on a thread); writes happen one at a time, so
        the file ends with the latest state. OSError when the file cannot be written."""
        if self.path is None:
            return
        async with self._save_lock:
            await asyncio.to_thread(self._write, self._snapshot())

    # -- the lease watcher -----------------------------------------------------------------

    def start(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_leases())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def _watch_leases(self) -> None:
        while True:
            now = self._clock()
            if self.expire(now):
                try:
                    await self.save()
                except OSError as exc:
                    log.error("traffic policies: cannot write %s: %s", self.path, exc)
            deadline = self.next_expiry()
            delay = LEASE_POLL_S if deadline is None else min(LEASE_POLL_S, max(0.0, deadline - self._clock()))
            await asyncio.sleep(delay)


def policies_json(table: TrafficTable, models: Sequence[str]) -> dict[str, Any]:
    return {model: table.get(model).model_dump(mode="json") for model in models}


def effective_weights(
    table: TrafficTable, models: Sequence[str], defaults: Mapping[str, str]
) -> Iterator[tuple[str, str, int]]:
    """(model, version, percent) as the data plane applies them: a policy's weights, else 100 % to the model's
    default version when it is known (`defaults`: model -> latest version)."""
    for model in models:
        policy = table.policies.get(model)
        if policy is not None and policy.weights:
            for version, weight in policy.weights.items():
                yield model, version, weight
        elif defaults.get(model):
            yield model, defaults[model], 100
