"""`edgeinfer rollout` on the command line: parsing, usage errors (exit 2), refusals (exit 1, nothing changed),
status/abort/promote, and a short real rollout against fake gateways served over real HTTP and gRPC on loopback."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rollout_fakes import FRAUD_OUT, FakeAdminServer, FakeGateway, FakeMetadataServer, RealClock

from edgeinfer.cli import main
from edgeinfer.rollout.cli import duration, steps
from edgeinfer.rollout.preflight import Signature
from edgeinfer.rollout.record import new_record


def test_durations() -> None:
    assert duration("30s") == 30.0
    assert duration("2m") == 120.0
    assert duration("500ms") == 0.5
    assert duration("1h") == 3600.0
    assert duration("1.5") == 1.5
    for bad in ("", "3x", "-1s", "0s", "s"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)


def test_steps() -> None:
    assert steps("10,25,50,100") == (10, 25, 50, 100)
    assert steps("100") == (100,)
    for bad, why in (
        ("10,5,100", "increase"),
        ("10,50", "last step must be 100"),
        ("0,100", "1-100"),
        ("a", "integer"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            steps(bad)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rollout", "fraud"], "--to VERSION is required"),
        (["rollout", "fraud", "--to", "v2"], "is not a model version"),
        (["rollout", "fraud", "--to", "2", "--steps", "10,50"], "the last step must be 100"),
        (["rollout", "fraud", "--to", "2", "--interval", "soon"], "is not a duration"),
        (["rollout", "fraud", "--to", "2", "--max-error-rate", "2"], "must be in 0-1"),
        (["rollout", "fraud", "--to", "2", "--min-requests", "0"], "must be at least 1"),
        (["rollout", "fraud", "--to", "2", "--region", "us-east", "--all-regions"], "not allowed with argument"),
        (["rollout", "fraud", "--to", "2", "--backend", "k8s"], "invalid choice"),
        (["rollout", "status", "fraud", "--to", "2"], "status takes no --to"),
        (["rollout", "abort", "fraud", "--all-regions"], "drop --all-regions"),
        (["rollout", "abort", "fraud", "extra"], "expected MODEL or status|abort|promote|pin MODEL"),
        (["rollout", "fraud", "--to", "2", "--grpc", "127.0.0.1:1"], "--grpc goes with --admin"),
        (["rollout", "fraud", "--to", "2", "--prometheus", "localhost:9090"], "is not an http:// URL"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def served() -> Iterator[tuple[FakeGateway, FakeAdminServer, FakeMetadataServer]]:
    gateway = FakeGateway(RealClock(), rps=2000.0)
    with FakeAdminServer(gateway) as admin, FakeMetadataServer(gateway) as grpc_server:
        yield gateway, admin, grpc_server


def _direct(admin: FakeAdminServer, grpc_server: FakeMetadataServer) -> list[str]:
    return ["--admin", admin.address, "--grpc", grpc_server.address]


def test_unknown_version_is_refused(
    served: tuple[FakeGateway, FakeAdminServer, FakeMetadataServer], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, admin, grpc_server = served
    assert main(["rollout", "fraud", "--to", "7", *_direct(admin, grpc_server)]) == 1
    err = capsys.readouterr().err
    assert "region us-east: model 'fraud' has no version 7 (its versions: 1, 2)" in err
    assert gateway.writes == []


def test_incompatible_candidate_is_refused_before_any_traffic(
    served: tuple[FakeGateway, FakeAdminServer, FakeMetadataServer], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, admin, grpc_server = served
    gateway.signatures["2"] = Signature(("1", "2"), (("input", "FP32", (-1, 31)),), FRAUD_OUT)
    assert main(["rollout", "fraud", "--to", "2", *_direct(admin, grpc_server)]) == 1
    err = capsys.readouterr().err
    assert "is not a drop-in for version 1, refused before any traffic" in err
    assert "version 1 has FP32 [-1, 30], version 2 has FP32 [-1, 31]" in err
    assert [r for r in admin.requests if r[0] != "GET"] == []


def test_unreachable_gateway_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    from testkit.procs import free_port

    assert main(["rollout", "abort", "fraud", "--admin", f"127.0.0.1:{free_port()}"]) == 1
    assert "the gateway's admin port does not answer" in capsys.readouterr().err


def test_status_abort_promote(
    served: tuple[FakeGateway, FakeAdminServer, FakeMetadataServer], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, admin, grpc_server = served
    direct = ["--admin", admin.address]
    assert main(["rollout", "status", "fraud", *direct]) == 0
    assert "us-east: no rollout recorded; traffic default (latest version)" in capsys.readouterr().out
    assert main(["rollout", "abort", "fraud", *direct]) == 1
    assert "no rollout of 'fraud' is running (regions checked: us-east)" in capsys.readouterr().err
    assert gateway.writes == []

    def running() -> None:
        record = new_record(
            model="fraud",
            region="us-east",
            baseline="1",
            candidate="2",
            steps=[10, 25, 50, 100],
            config={},
            owner={"host": "elsewhere", "pid": 1, "started": 1},
        )
        record.update(step_index=1, weight=25)
        body = {"weights": {"1": 75, "2": 25}, "revert_to": "1", "lease_seconds": 60.0, "rollout": record}
        gateway.set_traffic("fraud", body)

    running()
    assert main(["rollout", "status", "fraud", *direct]) == 0
    out = capsys.readouterr().out
    assert "fraud 1 → 2: running, step 2/4, 25 %" in out and "lock held" in out and "1: 75 %, 2: 25 %" in out
    assert main(["rollout", "abort", "fraud", *direct]) == 0
    assert "us-east: aborted: aborted by `edgeinfer rollout abort`" in capsys.readouterr().out
    assert gateway.policy["weights"] == {"1": 100} and gateway.policy["rollout"]["state"] == "aborted"
    # A second rollout is refused while one runs, and changes nothing.
    running()
    writes = len(gateway.writes)
    assert main(["rollout", "fraud", "--to", "2", *_direct(admin, grpc_server)]) == 1
    assert "refused: a rollout of fraud from version 1 to 2" in capsys.readouterr().err
    assert len(gateway.writes) == writes
    assert main(["rollout", "promote", "fraud", *direct]) == 0
    assert gateway.policy["weights"] == {"2": 100} and gateway.drained == ["1"]


def test_a_short_rollout_end_to_end_writes_the_report_and_plot(
    served: tuple[FakeGateway, FakeAdminServer, FakeMetadataServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, admin, grpc_server = served
    report = tmp_path / "out" / "rollout.json"
    argv = ["rollout", "fraud", "--to", "2", "--steps", "50,100", "--interval", "300ms", "--min-requests", "5"]
    code = main([*argv, "--shadow-percent", "20", "--report", str(report), *_direct(admin, grpc_server)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert gateway.policy["weights"] == {"2": 100} and gateway.drained == ["1"]
    data = json.loads(report.read_text())
    assert data["outcome"] == "promoted"
    assert data["config"]["steps"] == [0, 50, 100] and data["config"]["interval_s"] == 0.3
    assert data["config"]["baselines"] == {"us-east": "1"}
    assert [s["verdict"] for s in data["steps"]] == ["pass", "pass", "pass"]  # the shadow step first
    assert data["timeline"] and {"t", "weight", "p99_ms", "error_rate", "disagreement"} <= set(data["timeline"][0])
    assert data["regions"][0]["state"] == "promoted" and data["failed_check"] is None
    png = report.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot {png}" in out.out


def test_a_bad_rollout_end_to_end_exits_1_naming_the_check(
    served: tuple[FakeGateway, FakeAdminServer, FakeMetadataServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rollout_fakes import ERRORS

    gateway, admin, grpc_server = served
    gateway.behaviour["2"] = ERRORS
    report = tmp_path / "rollout.json"
    argv = ["rollout", "fraud", "--to", "2", "--steps", "50,100", "--interval", "2s", "--min-requests", "5"]
    assert main([*argv, "--report", str(report), *_direct(admin, grpc_server)]) == 1
    err = capsys.readouterr().err
    assert "us-east: rolled back: error rate 0.2000 > 0.0100" in err
    data = json.loads(report.read_text())
    assert data["outcome"] == "rolled_back" and data["failed_check"]["name"] == "error rate"
    assert data["rollback"]["seconds"] is not None and data["rollback"]["seconds"] < 2.0
    assert gateway.policy["weights"] == {"1": 100}


def test_knative_namespace_and_kubeconfig_reach_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeinfer.rollout import runner
    from edgeinfer.rollout.backends import Plan

    asked: list[tuple[str, dict[str, object]]] = []

    def service_traffic(region: object, model: str, **kwargs: object) -> object:
        asked.append((model, kwargs))
        return object()

    monkeypatch.setattr(runner, "knative_service_traffic", service_traffic)
    options = runner.RolloutOptions(
        model="fraud", candidate="2", backend="knative", namespace="ml", kubeconfig="/k/config"
    )
    target = runner.Target("us-east", "127.0.0.1:1", None, None)
    runner._env(target, options).backend(Plan("fraud", "1", "2", 10.0))
    assert asked == [("fraud", {"namespace": "ml", "kubeconfig": "/k/config"})]


def test_pin_sends_every_unversioned_request_to_one_version_unless_a_rollout_runs(
    served: tuple[FakeGateway, FakeAdminServer, FakeMetadataServer], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway, admin, _ = served
    direct = ["--admin", admin.address]
    with pytest.raises(SystemExit) as usage:  # pin needs --to
        main(["rollout", "pin", "fraud", *direct])
    assert usage.value.code == 2
    assert "pin needs --to VERSION" in capsys.readouterr().err
    assert main(["rollout", "pin", "fraud", "--to", "1", *direct]) == 0
    assert "us-east: every unversioned request of fraud goes to version 1" in capsys.readouterr().out
    assert gateway.policy["weights"] == {"1": 100} and gateway.policy["lease_seconds"] is None
    record = new_record(
        model="fraud",
        region="us-east",
        baseline="1",
        candidate="2",
        steps=[10, 100],
        config={},
        owner={"host": "elsewhere", "pid": 1, "started": 1},
    )
    gateway.set_traffic("fraud", {"weights": {"1": 90, "2": 10}, "lease_seconds": 60.0, "rollout": record})
    writes = len(gateway.writes)
    assert main(["rollout", "pin", "fraud", "--to", "2", *direct]) == 1
    assert "refused: a rollout of fraud from version 1 to 2" in capsys.readouterr().out
    assert len(gateway.writes) == writes and gateway.policy["weights"] == {"1": 90, "2": 10}
