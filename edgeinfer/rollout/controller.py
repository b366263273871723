"""The rollout's state machine: preflight, pin, steps judged at each poll, rollback or promotion; one region at a
time; and the `abort` and `promote` commands that act on a running rollout from outside.

Per region (`RegionRollout`):

1. pin: weights {baseline: 100, candidate: 0}, the lease reverting to the baseline, the record written with
   `expect_generation` (the lock; docs/rollout.md "State, lock, lease and resume").
2. with shadow on, a first step at 0 %: only the shadow copies reach the candidate, and only agreement is judged;
   then each step w: weights {baseline: 100-w, candidate: w} and the shadow; then every `poll_s` (min(interval/5, 2 s))
   the window since the step began is judged and the policy written again (renewing the lease):
   - a failing check (enough data, over its threshold) rolls back at once: candidate 0 %, shadow off;
   - at the interval's end: pass → the next step; inconclusive → the same step again, on a fresh window;
     `max_inconclusive` in a row → abort (rolled back, the reason recorded).
3. after the last step: promote (every request to the candidate, no lease), then drain the old version.

Time comes from a `Clock` (monotonic, wall, sleep), so tests drive it without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from edgeinfer.rollout.analysis import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    PENDING,
    MetricsSource,
    SourceError,
    Thresholds,
    Verdict,
    Window,
    judge,
)
from edgeinfer.rollout.backends import BackendError, Conflict, Plan, TrafficBackend
from edgeinfer.rollout.errors import RolloutError
from edgeinfer.rollout.preflight import MetadataReader, check
from edgeinfer.rollout.record import (
    ABORTED,
    ACTIVE,
    PROMOTED,
    PROMOTING,
    ROLLED_BACK,
    RUNNING,
    Lock,
    describe,
    is_record,
    lock_of,
    new_record,
    owner_alive,
    owner_text,
    same_owner,
    this_owner,
)
from edgeinfer.rollout.report import RegionOutcome, Rollback, Sample, StepResult

MAX_POLL_S = 2.0
WRITE_RETRIES = 3


@dataclass(frozen=True)
class RolloutConfig:
    steps: tuple[int, ...] = (10, 25, 50, 100)
    interval_s: float = 30.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    shadow_percent: float = 5.0
    atol: float = 1e-4
    rtol: float = 1e-3
    max_inconclusive: int = 3
    lease_s: float | None = None  # None: max(10 s, 5 polls)

    @property
    def phases(self) -> tuple[int, ...]:
        """The steps as run: with shadow on, a 0 % step comes first (shadow only), so a candidate that answers
        wrongly is caught by disagreement before any caller gets one of its replies."""
        if self.shadow_percent > 0 and self.steps and self.steps[0] > 0:
            return (0, *self.steps)
        return self.steps

    @property
    def poll_s(self) -> float:
        return min(self.interval_s / 5, MAX_POLL_S)

    @property
    def lease(self) -> float:
        return self.lease_s if self.lease_s is not None else max(10.0, 5 * self.poll_s)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        thresholds = data.pop("thresholds")
        data.update(thresholds)
        data["min_comparisons"] = self.thresholds.comparisons_needed
        data["steps"] = list(self.phases)
        data["poll_s"] = self.poll_s
        data["lease_s"] = self.lease
        return data


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Observer(Protocol):
    def sample(self, sample: Sample) -> None: ...

    def step(self, result: StepResult) -> None: ...

    def note(self, t: float, region: str, text: str) -> None: ...

    def outcome(self, outcome: RegionOutcome) -> None: ...


class Observers:
    """Several observers as one (the report's recorder and the live view)."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def sample(self, sample: Sample) -> None:
        for o in self.observers:
            o.sample(sample)

    def step(self, result: StepResult) -> None:
        for o in self.observers:
            o.step(result)

    def note(self, t: float, region: str, text: str) -> None:
        for o in self.observers:
            o.note(t, region, text)

    def outcome(self, outcome: RegionOutcome) -> None:
        for o in self.observers:
            o.outcome(outcome)


@dataclass
class RegionEnv:
    """How to reach one region: its gateway's policy, metadata, traffic backend and metrics."""

    name: str
    policy: Callable[[], dict[str, Any]]  # GET /v1/traffic/{model}; BackendError
    metadata: MetadataReader
    backend: Callable[[Plan], TrafficBackend]
    source: Callable[[str, str], MetricsSource]  # (baseline, candidate)
    check_source: Callable[[str, str], None] | None = None  # preflight of the source (Prometheus scrapes it)


@dataclass
class Prepared:
    env: RegionEnv
    baseline: str
    takeover: Lock | None  # an active record this rollout takes over
    backend: TrafficBackend


class _Finished(Exception):
    def __init__(self, outcome: RegionOutcome) -> None:
        super().__init__(outcome.state)
        self.outcome = outcome


class RegionRollout:
    """One region's rollout, from the pin to its outcome."""

    def __init__(
        self,
        prepared: Prepared,
        model: str,
        candidate: str,
        config: RolloutConfig,
        clock: Clock,
        observer: Observer,
        t0: float,
        owner: dict[str, Any],
    ) -> None:
        self.env = prepared.env
        self.region = prepared.env.name
        self.model = model
        self.candidate = candidate
        self.baseline = prepared.baseline
        self.config = config
        self.clock = clock
        self.observer = observer
        self.t0 = t0
        self.owner = owner
        self.backend = prepared.backend
        self.source = self.env.source(self.baseline, candidate)
        self.steps = list(config.phases)
        self.record: dict[str, Any] = {}
        self.generation = 0
        self._unreachable_since: float | None = None
        self._resumed_from: int | None = None

    # -- helpers ---------------------------------------------------------------------------

    def _t(self) -> float:
        return round(self.clock.monotonic() - self.t0, 3)

    def _note(self, text: str) -> None:
        self.observer.note(self._t(), self.region, text)

    def _outcome(self, state: str, reason: str | None = None, **extra: Any) -> RegionOutcome:
        return RegionOutcome(
            self.region, state, self.baseline, self.candidate, reason, resumed_from=self._resumed_from, **extra
        )

    def _touch(self, **changes: Any) -> None:
        self.record.update(changes)
        self.record["updated_at"] = self.clock.wall()

    # -- writes and the lock ---------------------------------------------------------------

    def _write(self, action: str, weight: int = 0) -> dict[str, Any]:
        """One write of the split and the record, expecting our generation. A Conflict is looked into: the gateway's
        own change (its lease ran out, it restarted) is written over; anyone else's ends this region's rollout."""
        for _ in range(WRITE_RETRIES):
            try:
                if action == "step":
                    policy = self.backend.step(weight, self.record, self.generation)
                else:
                    policy = getattr(self.backend, action)(self.record, self.generation)
            except Conflict:
                self._after_conflict()
                continue
            self.generation = int(policy.get("generation", self.generation))
            if self._unreachable_since is not None:
                self._note(f"the gateway answers again after {self.clock.monotonic() - self._unreachable_since:.1f} s")
                self._unreachable_since = None
            return policy
        raise _Finished(self._outcome(ABORTED, f"the traffic policy kept changing under the rollout ({action})"))

    def _after_conflict(self) -> None:
        policy = self.backend.read()
        theirs = policy.get("rollout")
        if not is_record(theirs) or theirs.get("id") != self.record.get("id"):
            raise _Finished(
                self._outcome(
                    "preempted",
                    "the traffic policy was replaced by someone else (DELETE or PUT /v1/traffic); left as is",
                )
            )
        state = theirs.get("state")
        if state == RUNNING and same_owner(theirs.get("owner"), self.owner):
            self._note(
                "the gateway changed the policy itself (its lease ran out, or it restarted): the step is written again"
            )
            self.generation = int(policy.get("generation", 0))
            return
        if state == RUNNING:
            raise _Finished(self._outcome("preempted", f"taken over by {owner_text(theirs.get('owner'))}"))
        if state in (PROMOTING, PROMOTED):
            raise _Finished(self._outcome(PROMOTED, theirs.get("reason") or "promoted from outside"))
        raise _Finished(self._outcome(ABORTED, theirs.get("reason") or f"{state} from outside"))

    def _renew(self, weight: int) -> None:
        """Write the step again at a poll (the lease's renewal). A gateway that does not answer is tolerated for the
        lease's length; past it, its lease has reverted the split to the baseline and the rollout ends."""
        self._touch()
        try:
            self._write("step", weight)
        except BackendError as exc:
            if not exc.unreachable:
                self._abort(f"the gateway refused the step: {exc}")
            now = self.clock.monotonic()
            if self._unreachable_since is None:
                self._unreachable_since = now
                self._note(f"the gateway does not answer: {exc}")
            elif now - self._unreachable_since > self.config.lease:
                raise _Finished(
                    self._outcome(
                        ABORTED,
                        f"the gateway did not answer for {now - self._unreachable_since:.0f} s; its lease "
                        f"({self.config.lease:g} s) has put every request back on version {self.baseline}",
                    )
                ) from None

    def _final_write(self, action: str) -> dict[str, Any] | None:
        """A write that must land (rollback, promote): retried at each poll while the gateway does not answer, for
        up to the lease's length (after which the gateway's lease has reverted the split itself)."""
        deadline = self.clock.monotonic() + self.config.lease + self.config.poll_s
        while True:
            try:
                return self._write(action)
            except BackendError as exc:
                if not exc.unreachable or self.clock.monotonic() >= deadline:
                    self._note(f"{action} could not be written: {exc}")
                    return None
                self.clock.sleep(self.config.poll_s)

    def _mark(self, weight: int, verdict: str) -> None:
        """A timeline point for a split the gateway confirmed (rolled back, promoted): no window behind it."""
        index = self.record.get("step_index", -1)
        attempt = self.record.get("attempt", 0)
        self.observer.sample(
            Sample(
                self._t(),
                self.region,
                index if isinstance(index, int) else -1,
                weight,
                attempt if isinstance(attempt, int) else 0,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                verdict,
            )
        )

    def _abort(self, reason: str, state: str = ABORTED) -> None:
        self._touch(state=state, reason=reason)
        if self._final_write("rollback") is not None:
            self._mark(0, state)
        raise _Finished(self._outcome(state, reason))

    # -- the phases ------------------------------------------------------------------------

    def _acquire(self) -> int:
        """Pin the baseline and take the lock (or take over a stale record); the step index to go on from."""
        try:
            policy = self.backend.read()
        except BackendError as exc:
            raise _Finished(self._outcome(ABORTED, f"refused: cannot read the traffic policy: {exc}")) from None
        lock = lock_of(policy, self.clock.wall(), owner_alive)
        self.generation = int(policy.get("generation", 0))
        if lock.held:
            raise _Finished(self._outcome(ABORTED, f"refused: {lock.why}"))
        start = 0
        if lock.record is not None:
            if lock.record.get("candidate") != self.candidate or lock.record.get("baseline") != self.baseline:
                raise _Finished(
                    self._outcome(ABORTED, f"refused: {lock.why}, from another baseline or to another version")
                )
            self.record = dict(lock.record)
            self.steps = [int(s) for s in self.record.get("steps") or self.steps]
            index = self.record.get("step_index", -1)
            start = max(0, index if isinstance(index, int) else 0)
            self._resumed_from = start
            self._note(f"takes over {lock.why}; goes on from step {start + 1}/{len(self.steps)}")
            previous = self.record.get("owner")
            self._touch(owner=self.owner, previous_owner=previous)
        else:
            self.record = new_record(
                model=self.model,
                region=self.region,
                baseline=self.baseline,
                candidate=self.candidate,
                steps=self.steps,
                config=self.config.to_dict(),
                owner=self.owner,
                wall=self.clock.wall(),
            )
        try:
            self._write("pin")
        except BackendError as exc:
            raise _Finished(self._outcome(ABORTED, f"refused: cannot pin version {self.baseline}: {exc}")) from None
        return start

    def _measure(self) -> tuple[Window | None, str]:
        try:
            return self.source.window(), ""
        except SourceError as exc:
            return None, str(exc)

    def _sample(self, index: int, weight: int, attempt: int, window: Window | None, verdict: Verdict) -> None:
        c = window.candidate if window else None
        b = window.baseline if window else None
        shadow = window is not None and any(check.name == "disagreement" for check in verdict.checks)
        self.observer.sample(
            Sample(
                t=self._t(),
                region=self.region,
                step=index,
                weight=weight,
                attempt=attempt,
                candidate_requests=c.requests if c else None,
                baseline_requests=b.requests if b else None,
                error_rate=c.error_rate if c else None,
                baseline_error_rate=b.error_rate if b else None,
                p99_ms=c.p99_ms if c else None,
                baseline_p99_ms=b.p99_ms if b else None,
                disagreement=window.disagreement if window and shadow else None,
                comparisons=window.comparisons if window and shadow else None,
                verdict=verdict.verdict if window else "no-data",
                shadow_p99_ms=window.shadow_p99_ms if window and shadow else None,
            )
        )

    def _interval(self, index: int, attempt: int) -> Verdict:
        """One interval of a step: set the split, then poll until it fails or the interval ends."""
        weight = self.steps[index]
        self._touch(step_index=index, weight=weight, attempt=attempt)
        self._renew(weight)
        try:
            self.source.begin()
        except SourceError as exc:
            self._note(f"metrics unreadable at the step's start: {exc}")
        started = self.clock.monotonic()
        deadline = started + self.config.interval_s
        shadow = self.config.shadow_percent > 0 and weight < 100
        while True:
            self.clock.sleep(max(0.0, min(self.config.poll_s, deadline - self.clock.monotonic())))
            now = self.clock.monotonic()
            final = now >= deadline - 1e-6
            window, error = self._measure()
            if window is None:
                verdict = Verdict(INCONCLUSIVE if final else PENDING, [], f"metrics unreadable: {error}")
            else:
                verdict = judge(window, self.config.thresholds, shadow=shadow, final=final, shadow_only=weight == 0)
            self._sample(index, weight, attempt, window, verdict)
            if verdict.verdict == FAIL:
                self._step_result(index, weight, attempt, started, verdict)
                self._rollback(verdict, self.clock.monotonic())
            self._renew(weight)
            if final:
                self._step_result(index, weight, attempt, started, verdict)
                return verdict

    def _step_result(self, index: int, weight: int, attempt: int, started: float, verdict: Verdict) -> None:
        self.observer.step(
            StepResult(
                region=self.region,
                step=index,
                weight=weight,
                attempt=attempt,
                started_t=round(started - self.t0, 3),
                ended_t=self._t(),
                verdict=verdict.verdict,
                reason=verdict.reason,
                checks=[c.to_dict() for c in verdict.checks],
            )
        )

    def _rollback(self, verdict: Verdict, detected: float) -> None:
        failing = verdict.failing
        assert failing is not None
        reason = f"{failing.describe()} at {self.record.get('weight')} %"
        self._touch(state=ROLLED_BACK, reason=reason, check=failing.to_dict())
        policy = self._final_write("rollback")
        zero: float | None = None
        if policy is not None and int((policy.get("weights") or {}).get(self.candidate, 0)) == 0:
            zero = self.clock.monotonic()
            self._mark(0, ROLLED_BACK)
        rollback = Rollback(
            detected_t=round(detected - self.t0, 3),
            zero_t=None if zero is None else round(zero - self.t0, 3),
            seconds=None if zero is None else round(zero - detected, 3),
        )
        raise _Finished(self._outcome(ROLLED_BACK, reason, check=failing.to_dict(), rollback=rollback))

    def _promote(self) -> RegionOutcome:
        self._touch(state=PROMOTING, step_index=len(self.steps) - 1, weight=100, reason=None)
        if self._final_write("promote") is not None:
            self._mark(100, PROMOTED)
        else:
            raise _Finished(
                self._outcome(ABORTED, "the promotion could not be written; the lease reverts to the baseline")
            )
        drained: int | None = None
        try:
            drained = self.backend.drain(self.baseline)
        except BackendError as exc:
            self._note(f"version {self.baseline} could not be drained: {exc}")
        reason = f"every request to version {self.candidate}; version {self.baseline} drained"
        if drained is not None:
            reason += f" ({drained} instances)"
        self._touch(state=PROMOTED, reason=reason)
        self._final_write("promote")
        return self._outcome(PROMOTED, reason, drained=drained)

    def run(self) -> RegionOutcome:
        try:
            index = self._acquire()
            if self.record.get("state") == PROMOTING:
                return self._promote()
            inconclusive = 0
            attempt = 0
            while index < len(self.steps):
                attempt += 1
                verdict = self._interval(index, attempt)
                if verdict.verdict == PASS:
                    index += 1
                    inconclusive = 0
                    attempt = 0
                    continue
                inconclusive += 1
                self._touch(inconclusive=inconclusive)
                if inconclusive >= self.config.max_inconclusive:
                    self._abort(
                        f"{inconclusive} inconclusive intervals in a row at step {index + 1} "
                        f"({self.steps[index]} %): {verdict.reason}; never promoted"
                    )
                self._note(f"step {index + 1} ({self.steps[index]} %) inconclusive: extended ({verdict.reason})")
            return self._promote()
        except _Finished as finished:
            return finished.outcome
        except KeyboardInterrupt:
            if not self.record:
                return self._outcome(ABORTED, "interrupted before the rollout started; nothing changed")
            try:
                self._abort("interrupted (Ctrl-C or SIGTERM): rolled back")
            except _Finished as finished:
                return finished.outcome
            raise


class Rollout:
    """A rollout of one model to one version over regions, one at a time in the given order, stopping at the first
    region that does not promote (that region is rolled back; those before it stay promoted; those after it are
    not started and keep the baseline)."""

    def __init__(
        self,
        model: str,
        candidate: str,
        envs: Sequence[RegionEnv],
        config: RolloutConfig,
        *,
        baseline: str | None = None,
        clock: Clock | None = None,
        observer: Observer | None = None,
        owner: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.candidate = candidate
        self.envs = list(envs)
        self.config = config
        self.baseline = baseline
        self.clock = clock or SystemClock()
        self.observer = observer or Observers()
        self.owner = owner or this_owner()
        self.t0 = self.clock.monotonic()

    def prepare(self) -> list[Prepared]:
        """Every region's preflight, before any traffic moves. RolloutError for the first refusal."""
        prepared = []
        for env in self.envs:
            where = f"region {env.name}"
            try:
                policy = env.policy()
            except BackendError as exc:
                raise RolloutError(f"{where}: cannot read the traffic policy of '{self.model}': {exc}") from None
            lock = lock_of(policy, self.clock.wall(), owner_alive)
            if lock.held:
                raise RolloutError(
                    f"{where}: refused: {lock.why}. See `edgeinfer rollout status {self.model}`; stop it with "
                    f"`edgeinfer rollout abort {self.model}`"
                )
            takeover = None
            baseline = self.baseline
            if lock.record is not None:
                theirs = lock.record
                if theirs.get("candidate") != self.candidate:
                    raise RolloutError(
                        f"{where}: {lock.why}, and it is not to version {self.candidate}: roll it back first with "
                        f"`edgeinfer rollout abort {self.model} --region {env.name}`"
                    )
                takeover = lock
                baseline = str(theirs.get("baseline"))
            try:
                baseline = check(env.metadata, self.model, baseline, self.candidate, policy)
            except RolloutError as exc:
                raise RolloutError(f"{where}: {exc}") from None
            if env.check_source is not None:
                try:
                    env.check_source(baseline, self.candidate)
                except SourceError as exc:
                    raise RolloutError(f"{where}: {exc}") from None
            plan = Plan(
                self.model,
                baseline,
                self.candidate,
                self.config.lease,
                self.config.shadow_percent,
                self.config.atol,
                self.config.rtol,
            )
            try:
                backend = env.backend(plan)
            except BackendError as exc:
                raise RolloutError(f"{where}: {exc}") from None
            prepared.append(Prepared(env, baseline, takeover, backend))
        return prepared

    def _hold(self, later: Sequence[Prepared]) -> None:
        """Regions not reached yet whose policy is the default (every request to the latest version, which may
        well be the candidate) are held on their baseline until their turn."""
        for item in later:
            if item.takeover is not None:
                continue
            try:
                policy = item.env.policy()
                if policy.get("weights"):
                    continue
                existing = policy.get("rollout")
                item.backend.hold(existing if is_record(existing) else None, int(policy.get("generation", 0)))
                self.observer.note(
                    round(self.clock.monotonic() - self.t0, 3),
                    item.env.name,
                    f"held on version {item.baseline} until its turn (its policy sent every request to the latest)",
                )
            except (BackendError, Conflict) as exc:
                self.observer.note(
                    round(self.clock.monotonic() - self.t0, 3), item.env.name, f"could not hold the baseline: {exc}"
                )

    def run(self, prepared: Sequence[Prepared]) -> list[RegionOutcome]:
        outcomes: list[RegionOutcome] = []
        self._hold(prepared[1:])
        for i, item in enumerate(prepared):
            region = RegionRollout(
                item, self.model, self.candidate, self.config, self.clock, self.observer, self.t0, self.owner
            )
            outcome = region.run()
            outcomes.append(outcome)
            self.observer.outcome(outcome)
            if outcome.state != PROMOTED:
                for rest in prepared[i + 1 :]:
                    skipped = RegionOutcome(
                        rest.env.name,
                        "not_started",
                        rest.baseline,
                        self.candidate,
                        f"region {item.env.name} did not promote",
                    )
                    outcomes.append(skipped)
                    self.observer.outcome(skipped)
                break
        return outcomes


# -- acting from outside: status, abort, promote ---------------------------------------------------------------


@dataclass
class RegionStatus:
    region: str
    policy: dict[str, Any] | None
    error: str | None = None

    @property
    def record(self) -> dict[str, Any] | None:
        record = (self.policy or {}).get("rollout")
        return record if is_record(record) else None

    @property
    def active(self) -> bool:
        record = self.record
        return record is not None and record.get("state") in ACTIVE

    def line(self, wall: float) -> str:
        if self.error is not None:
            return f"{self.region}: unreachable: {self.error}"
        assert self.policy is not None
        record = self.record
        weights = self.policy.get("weights") or {}
        split = ", ".join(f"{v}: {w} %" for v, w in weights.items()) or "default (latest version)"
        shadow = self.policy.get("shadow")
        shadow_text = f", shadow {shadow['percent']:g} % to {shadow['version']}" if shadow else ""
        if record is None:
            return f"{self.region}: no rollout recorded; traffic {split}{shadow_text}"
        text = f"{self.region}: {describe(record)}; traffic {split}{shadow_text}"
        if self.active:
            lock = lock_of(self.policy, wall, owner_alive)
            text += "; " + ("stale, can be taken over or aborted" if lock.takeable else "lock held")
            lease = self.policy.get("lease_until")
            if isinstance(lease, (int, float)):
                text += f"; lease {max(0.0, lease - wall):.0f} s left"
        return text


def status(envs: Sequence[RegionEnv]) -> list[RegionStatus]:
    result = []
    for env in envs:
        try:
            result.append(RegionStatus(env.name, env.policy()))
        except BackendError as exc:
            result.append(RegionStatus(env.name, None, str(exc)))
    return result


def _act(
    envs: Sequence[RegionEnv],
    model: str,
    action: str,
    config: RolloutConfig,
    clock: Clock,
    owner: dict[str, Any],
) -> list[RegionOutcome]:
    """abort or promote every active rollout of `model` in `envs`; RolloutError when none runs anywhere."""
    outcomes = []
    unreachable: list[tuple[str, str]] = []
    command = f"`edgeinfer rollout {action}` ({owner_text(owner)})"
    for env in envs:
        for _ in range(WRITE_RETRIES):
            try:
                policy = env.policy()
            except BackendError as exc:
                unreachable.append((env.name, str(exc)))
                break
            record = policy.get("rollout")
            if not is_record(record) or record.get("state") not in ACTIVE:
                break
            plan = Plan(model, str(record["baseline"]), str(record["candidate"]), config.lease)
            generation = int(policy.get("generation", 0))
            mine = dict(record, updated_at=clock.wall(), by=owner)
            try:
                backend = env.backend(plan)
                if action == "abort":
                    mine.update(state=ABORTED, reason=f"aborted by {command}")
                    backend.rollback(mine, generation)
                    outcomes.append(RegionOutcome(env.name, ABORTED, plan.baseline, plan.candidate, mine["reason"]))
                else:
                    last = len(record.get("steps") or [100]) - 1
                    mine.update(state=PROMOTING, reason=f"promoted by {command}", step_index=last, weight=100)
                    stored = backend.promote(mine, generation)
                    drained = backend.drain(plan.baseline)
                    mine.update(state=PROMOTED, updated_at=clock.wall())
                    backend.promote(mine, int(stored.get("generation", generation + 1)))
                    outcomes.append(
                        RegionOutcome(
                            env.name, PROMOTED, plan.baseline, plan.candidate, mine["reason"], drained=drained
                        )
                    )
            except Conflict:
                continue  # it moved meanwhile (its owner wrote): read it again
            except BackendError as exc:
                unreachable.append((env.name, str(exc)))
            break
    if not outcomes:
        checked = ", ".join(env.name for env in envs)
        detail = f" ({'; '.join(f'{name}: {why}' for name, why in unreachable)})" if unreachable else ""
        raise RolloutError(f"no rollout of '{model}' is running (regions checked: {checked}){detail}")
    for name, why in unreachable:
        outcomes.append(RegionOutcome(name, "unreachable", reason=why))
    return outcomes


def abort(
    envs: Sequence[RegionEnv],
    model: str,
    config: RolloutConfig,
    clock: Clock | None = None,
    owner: dict[str, Any] | None = None,
) -> list[RegionOutcome]:
    """Roll back every running rollout of `model`: candidate 0 %, shadow off, state aborted. Its controller, if
    alive, finds the record changed at its next write and stops."""
    return _act(envs, model, "abort", config, clock or SystemClock(), owner or this_owner("edgeinfer rollout abort"))


def promote(
    envs: Sequence[RegionEnv],
    model: str,
    config: RolloutConfig,
    clock: Clock | None = None,
    owner: dict[str, Any] | None = None,
) -> list[RegionOutcome]:
    """Promote every running rollout of `model` now: every request to the candidate, the old version drained."""
    return _act(
        envs, model, "promote", config, clock or SystemClock(), owner or this_owner("edgeinfer rollout promote")
    )
