"""The controller against fake gateways (tests/rollout/conftest.py) on a fake clock: no real time passes, and the
traffic each step sees follows the split the controller wrote."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from rollout_fakes import FRAUD_OUT, FakeClock, FakeGateway

from edgeinfer.rollout.analysis import Thresholds
from edgeinfer.rollout.controller import Rollout, RolloutConfig, abort, promote, status
from edgeinfer.rollout.errors import RolloutError
from edgeinfer.rollout.preflight import Signature
from edgeinfer.rollout.record import new_record, this_owner
from edgeinfer.rollout.report import Recorder, RolloutReport

CONFIG = RolloutConfig(
    steps=(10, 25, 50, 100),
    interval_s=10.0,
    thresholds=Thresholds(max_p99_ms=100, max_error_rate=0.01, min_requests=50, max_disagreement=0.01),
    shadow_percent=5.0,
)


def _run(
    gateways: list[FakeGateway], clock: FakeClock, config: RolloutConfig = CONFIG, **kwargs: Any
) -> tuple[list[Any], RolloutReport]:
    report = RolloutReport("fraud", "2", "test", config.to_dict(), clock.wall())
    rollout = Rollout(
        "fraud", "2", [g.env() for g in gateways], config, clock=clock, observer=Recorder(report), **kwargs
    )
    outcomes = rollout.run(rollout.prepare())
    report.regions = outcomes
    return outcomes, report


def test_good_canary_is_promoted_and_the_old_version_drained(gateway: FakeGateway, clock: FakeClock) -> None:
    outcomes, report = _run([gateway], clock)
    assert [o.state for o in outcomes] == ["promoted"]
    weights = gateway.weights_written()
    assert weights[0] == {"1": 100, "2": 0}  # the pin
    # Every step in order, each written again at every poll (the lease's renewal); then the promotion.
    steps_seen = [w["2"] for w in weights[1:] if "1" in w]
    assert sorted(set(steps_seen)) == [0, 10, 25, 50, 100]  # the shadow step (0 %) first
    assert steps_seen == sorted(steps_seen)
    assert weights[-1] == {"2": 100}
    final = gateway.policy
    assert final["lease_seconds"] is None and final["shadow"] is None
    assert final["rollout"]["state"] == "promoted"
    assert gateway.drained == ["1"]
    assert outcomes[0].drained == 2
    assert [s.verdict for s in report.steps] == ["pass"] * 5
    # The shadow ran while the baseline still had traffic, and not at 100 %.
    shadows = {w["weights"].get("2"): w["shadow"] for w in gateway.writes}
    assert shadows[10] is not None and shadows[10]["version"] == "2" and shadows[10]["percent"] == 5.0
    assert shadows[100] is None
    # Polls every min(interval / 5, 2 s) = 2 s; the lease outlives several of them.
    assert CONFIG.poll_s == 2.0 and CONFIG.lease >= 10.0
    assert all(w["lease_seconds"] == CONFIG.lease for w in gateway.writes[:-2])
    assert clock.slept == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("kind", "check", "low"),
    [("slow", "p99", 100.0), ("errors", "error rate", 0.01), ("wrong", "disagreement", 0.01)],
)
def test_bad_canary_is_rolled_back_naming_the_check(
    kind: str, check: str, low: float, gateway: FakeGateway, clock: FakeClock, behaviours: dict[str, Any]
) -> None:
    gateway.behaviour["2"] = behaviours[kind]
    outcomes, report = _run([gateway], clock)
    outcome = outcomes[0]
    assert outcome.state == "rolled_back"
    assert outcome.check is not None and outcome.check["name"] == check
    assert outcome.check["value"] > low and outcome.check["threshold"] == low
    # Caught in the shadow step, on its shadow copies alone, before any caller gets one of its answers.
    caught_at = 0
    assert check in (outcome.reason or "") and f"at {caught_at} %" in (outcome.reason or "")
    # Back at 0 % with the shadow off, for good (no lease), and the record says why.
    assert gateway.policy["weights"] == {"1": 100}
    assert gateway.policy["shadow"] is None and gateway.policy["lease_seconds"] is None
    assert gateway.policy["rollout"]["state"] == "rolled_back"
    assert gateway.policy["rollout"]["check"]["name"] == check
    assert gateway.drained == []
    # Caught in the interval of the step it was exposed in, and 0 % confirmed by the gateway within it.
    assert outcome.rollback is not None and outcome.rollback.seconds is not None
    assert outcome.rollback.seconds <= CONFIG.interval_s
    assert outcome.rollback.detected_t <= CONFIG.interval_s
    assert max(w.get("2", 0) for w in gateway.weights_written()) == caught_at
    assert report.steps[-1].verdict == "fail"
    if kind == "wrong":  # fast and without errors: only the answers give it away
        failed = [c["name"] for c in report.steps[-1].checks if c["failed"]]
        assert failed == ["disagreement"]


@pytest.mark.parametrize(("kind", "check"), [("slow", "p99"), ("errors", "error rate")])
def test_without_shadow_a_bad_canary_is_caught_at_its_first_weighted_step(
    kind: str, check: str, gateway: FakeGateway, clock: FakeClock, behaviours: dict[str, Any]
) -> None:
    gateway.behaviour["2"] = behaviours[kind]
    config = RolloutConfig(interval_s=10.0, shadow_percent=0)
    outcomes, _ = _run([gateway], clock, config)
    outcome = outcomes[0]
    assert outcome.state == "rolled_back" and outcome.check is not None and outcome.check["name"] == check
    assert "at 10 %" in (outcome.reason or "")
    assert outcome.rollback is not None and outcome.rollback.seconds is not None
    assert outcome.rollback.seconds <= config.interval_s and outcome.rollback.detected_t <= config.interval_s
    assert max(w.get("2", 0) for w in gateway.weights_written()) == 10
    assert gateway.policy["weights"] == {"1": 100}


def test_client_errors_do_not_count_against_the_candidate(
    gateway: FakeGateway, clock: FakeClock, behaviours: dict[str, Any]
) -> None:
    gateway.behaviour["2"] = behaviours["client"]  # half of its requests INVALID_ARGUMENT
    outcomes, _ = _run([gateway], clock)
    assert outcomes[0].state == "promoted"


def test_a_canary_without_traffic_is_never_promoted(gateway: FakeGateway, clock: FakeClock) -> None:
    gateway.rps = 2.0  # too few to copy: 5 % of 2 req/s gives ~1 shadow comparison per 10 s interval
    outcomes, report = _run([gateway], clock)
    outcome = outcomes[0]
    assert outcome.state == "aborted"
    # The shadow step (0 %) comes first and never gets enough comparisons: the candidate never gets a caller.
    assert "3 inconclusive intervals in a row at step 1" in (outcome.reason or "")
    assert "never promoted" in (outcome.reason or "")
    assert [s.verdict for s in report.steps] == ["inconclusive"] * 3
    assert [s.attempt for s in report.steps] == [1, 2, 3]  # the same step, extended
    assert max(w.get("2", 0) for w in gateway.weights_written()) == 0
    assert gateway.policy["weights"] == {"1": 100} and gateway.policy["rollout"]["state"] == "aborted"


def test_a_weighted_step_without_traffic_is_never_promoted(gateway: FakeGateway, clock: FakeClock) -> None:
    gateway.rps = 2.0  # 10 % of 2 req/s: 2 requests per 10 s interval, far below --min-requests 50
    config = RolloutConfig(interval_s=10.0, shadow_percent=0)  # no shadow step: the 10 % step is judged first
    outcomes, report = _run([gateway], clock, config)
    outcome = outcomes[0]
    assert outcome.state == "aborted"
    assert "3 inconclusive intervals in a row at step 1" in (outcome.reason or "")
    assert [s.verdict for s in report.steps] == ["inconclusive"] * 3
    assert max(w.get("2", 0) for w in gateway.weights_written()) == 10
    assert gateway.policy["weights"] == {"1": 100} and gateway.policy["rollout"]["state"] == "aborted"


def test_an_inconclusive_step_is_extended_then_judged(gateway: FakeGateway, clock: FakeClock) -> None:
    start = clock.now
    gateway.rate = lambda now: 2.0 if now - start < 10 else 200.0  # traffic arrives during the second interval
    outcomes, report = _run([gateway], clock)
    assert outcomes[0].state == "promoted"
    assert [(s.step, s.verdict) for s in report.steps[:2]] == [(0, "inconclusive"), (0, "pass")]


def test_no_shadow_comparisons_is_inconclusive(gateway: FakeGateway, clock: FakeClock) -> None:
    config = RolloutConfig(steps=(50, 100), interval_s=10.0, shadow_percent=0.01)  # ~0.1 copies per interval
    outcomes, _ = _run([gateway], clock, config)
    assert outcomes[0].state == "aborted"
    assert "shadow comparisons" in (outcomes[0].reason or "")
    # --shadow-percent 0 turns the agreement check off: latency and errors alone decide.
    gateway2 = FakeGateway(clock, region="eu-west")
    outcomes, _ = _run([gateway2], clock, RolloutConfig(steps=(50, 100), interval_s=10.0, shadow_percent=0))
    assert outcomes[0].state == "promoted"


def _running(gateway: FakeGateway, clock: FakeClock, owner: dict[str, Any], step_index: int = 1) -> None:
    record = new_record(
        model="fraud",
        region=gateway.region,
        baseline="1",
        candidate="2",
        steps=[10, 25, 50, 100],
        config={},
        owner=owner,
        wall=clock.wall(),
    )
    record.update(step_index=step_index, weight=[10, 25, 50, 100][step_index])
    gateway.set_traffic(
        "fraud",
        {
            "weights": {"1": 75, "2": 25},
            "shadow": {"version": "2", "percent": 5.0},
            "revert_to": "1",
            "lease_seconds": 30.0,
            "rollout": record,
        },
    )
    gateway.writes.clear()


def test_a_second_rollout_is_refused_and_changes_nothing(gateway: FakeGateway, clock: FakeClock) -> None:
    _running(gateway, clock, this_owner())  # this very process: alive, lease valid
    before = dict(gateway.policy)
    with pytest.raises(RolloutError, match=r"refused: a rollout of fraud from version 1 to 2 .* holds the lock"):
        _run([gateway], clock)
    assert gateway.writes == [] and gateway.policy == before


def test_a_dead_owners_rollout_is_taken_over_from_its_step(gateway: FakeGateway, clock: FakeClock) -> None:
    dead = {**this_owner(), "started": -1}  # this pid, but another process's start time: gone
    _running(gateway, clock, dead, step_index=2)
    outcomes, report = _run([gateway], clock)
    assert outcomes[0].state == "promoted"
    assert outcomes[0].resumed_from == 2
    weights = gateway.weights_written()
    assert weights[0] == {"1": 100, "2": 0}  # the pin, with the new owner
    assert weights[1] == {"1": 50, "2": 50}  # then on from the recorded step: 50 %
    assert all(w.get("2", 0) >= 50 for w in weights[1:])
    record = gateway.policy["rollout"]
    assert record["owner"]["pid"] == os.getpid() and record["previous_owner"]["started"] == -1
    assert any("takes over" in n["text"] for n in report.notes)


def test_an_expired_lease_is_taken_over(gateway: FakeGateway, clock: FakeClock) -> None:
    elsewhere = {"host": "another-host", "pid": 1, "started": 1}
    _running(gateway, clock, elsewhere, step_index=0)
    clock.sleep(31.0)  # the lease (30 s) runs out: the gateway reverts the split to the baseline
    assert gateway.traffic("fraud")["weights"] == {"1": 100}
    outcomes, _ = _run([gateway], clock)
    assert outcomes[0].state == "promoted" and outcomes[0].resumed_from == 0


def test_a_live_owner_elsewhere_with_a_valid_lease_holds_the_lock(gateway: FakeGateway, clock: FakeClock) -> None:
    _running(gateway, clock, {"host": "another-host", "pid": 1, "started": 1})
    with pytest.raises(RolloutError, match="holds the lock"):
        _run([gateway], clock)


def test_a_stale_rollout_to_another_version_is_refused(gateway: FakeGateway, clock: FakeClock) -> None:
    gateway.versions = ("1", "2", "3")
    _running(gateway, clock, {**this_owner(), "started": -1})
    report = RolloutReport("fraud", "3", "test", CONFIG.to_dict(), clock.wall())
    rollout = Rollout("fraud", "3", [gateway.env()], CONFIG, clock=clock, observer=Recorder(report))
    with pytest.raises(RolloutError, match="not to version 3: roll it back first"):
        rollout.prepare()


def test_unknown_version_and_incompatible_candidate_are_refused_before_any_traffic(
    gateway: FakeGateway, clock: FakeClock
) -> None:
    env = gateway.env()
    with pytest.raises(RolloutError, match=r"has no version 7 \(its versions: 1, 2\)"):
        Rollout("fraud", "7", [env], CONFIG, clock=clock).prepare()
    gateway.signatures["2"] = Signature(("1", "2"), (("input", "FP32", (-1, 31)),), FRAUD_OUT)
    with pytest.raises(
        RolloutError, match=r"input 'input': version 1 has FP32 \[-1, 30\], version 2 has FP32 \[-1, 31\]"
    ):
        Rollout("fraud", "2", [env], CONFIG, clock=clock).prepare()
    assert gateway.writes == []


def test_abort_and_promote_with_none_running_fail_clearly(gateway: FakeGateway, clock: FakeClock) -> None:
    with pytest.raises(RolloutError, match=r"no rollout of 'fraud' is running \(regions checked: us-east\)"):
        abort([gateway.env()], "fraud", CONFIG, clock)
    with pytest.raises(RolloutError, match="no rollout of 'fraud' is running"):
        promote([gateway.env()], "fraud", CONFIG, clock)
    assert gateway.writes == []


def test_abort_from_outside_stops_the_controller(gateway: FakeGateway, clock: FakeClock) -> None:
    start = clock.now

    def abort_at_15s(now: float) -> None:
        if now - start >= 15 and gateway.policy["rollout"]["state"] == "running":
            outcomes = abort([gateway.env()], "fraud", CONFIG, clock, owner={"host": "h", "pid": 2, "started": 3})
            assert [o.state for o in outcomes] == ["aborted"]

    clock.hooks.append(abort_at_15s)
    outcomes, _ = _run([gateway], clock)
    assert outcomes[0].state == "aborted"
    assert "aborted by `edgeinfer rollout abort`" in (outcomes[0].reason or "")
    assert gateway.policy["weights"] == {"1": 100} and gateway.policy["shadow"] is None
    # The controller wrote nothing after the abort: its next write met the new generation and stopped.
    assert gateway.writes[-1]["rollout"]["state"] == "aborted"


def test_promote_from_outside_jumps_to_the_promotion(gateway: FakeGateway, clock: FakeClock) -> None:
    _running(gateway, clock, {"host": "another-host", "pid": 1, "started": 1})
    outcomes = promote([gateway.env()], "fraud", CONFIG, clock)
    assert [o.state for o in outcomes] == ["promoted"]
    assert gateway.policy["weights"] == {"2": 100} and gateway.policy["rollout"]["state"] == "promoted"
    assert gateway.drained == ["1"]
    [state] = status([gateway.env()])
    assert not state.active and "promoted" in state.line(clock.wall())


def test_the_gateway_reverting_its_own_lease_is_written_over(gateway: FakeGateway, clock: FakeClock) -> None:
    start = clock.now
    fired = []

    def expire_once(now: float) -> None:
        # As a gateway restarted from its state dir after its lease ran out: the split back on the baseline, a
        # new generation, the record kept.
        if now - start >= 25 and not fired:
            fired.append(now)
            gateway.policy.update(
                weights={"1": 100}, shadow=None, lease_until=None, generation=gateway.policy["generation"] + 1
            )

    clock.hooks.append(expire_once)
    outcomes, report = _run([gateway], clock)
    assert fired and outcomes[0].state == "promoted"
    assert any("the gateway changed the policy itself" in n["text"] for n in report.notes)


def test_an_unreachable_gateway_past_the_lease_ends_the_rollout(gateway: FakeGateway, clock: FakeClock) -> None:
    start = clock.now

    def down_at_12s(now: float) -> None:
        if now - start >= 12:
            gateway.down = True

    clock.hooks.append(down_at_12s)
    outcomes, _ = _run([gateway], clock)
    assert outcomes[0].state == "aborted"
    assert "did not answer" in (outcomes[0].reason or "") and "back on version 1" in (outcomes[0].reason or "")
    gateway.down = False
    assert gateway.traffic("fraud")["weights"] == {"1": 100}  # its lease ran out meanwhile


def test_regions_one_at_a_time_stopping_at_the_first_failure(
    make_gateway: Callable[..., FakeGateway], clock: FakeClock, behaviours: dict[str, Any]
) -> None:
    us, eu, ap = (make_gateway(region=r) for r in ("us-east", "eu-west", "ap-south"))
    eu.behaviour["2"] = behaviours["errors"]
    outcomes, report = _run([us, eu, ap], clock)
    assert [(o.region, o.state) for o in outcomes] == [
        ("us-east", "promoted"),
        ("eu-west", "rolled_back"),
        ("ap-south", "not_started"),
    ]
    assert us.policy["weights"] == {"2": 100}
    assert eu.policy["weights"] == {"1": 100}
    # Not reached: held on the baseline from the start (its default would send everything to the latest, 2).
    assert ap.weights_written() == [{"1": 100}]
    assert eu.writes[0]["t"] < us.writes[-1]["t"]  # held before us-east finished...
    assert eu.weights_written()[1] == {"1": 100, "2": 0}  # ...then pinned at its turn
    assert report.outcome == "rolled_back"


def test_interrupt_rolls_back(gateway: FakeGateway, clock: FakeClock) -> None:
    start = clock.now

    def interrupt(now: float) -> None:
        if now - start >= 13:
            clock.hooks.remove(interrupt)
            raise KeyboardInterrupt

    clock.hooks.append(interrupt)
    outcomes, _ = _run([gateway], clock)
    assert outcomes[0].state == "aborted" and "interrupted" in (outcomes[0].reason or "")
    assert gateway.policy["weights"] == {"1": 100}
