"""`edgeinfer rollout --backend knative` end to end against an emulated cluster: the rollout controller on a fake clock,
with the real KnativeTraffic adapter (edgeinfer/rollout/backends.py) patching the Service of a real kmock process
(tests/testkit/k8s_emulator.py) through the real `kubernetes` client, after a real `edgeinfer deploy` of version 1.

The gateway side is a fake admin (rollout_fakes.FakeGateway) served over real HTTP on 127.0.0.1 and reached with the
real AdminClient: it keeps the traffic policy as gateway/traffic.py does (generation lock, lease) and serves /metrics
of simulated traffic at the split the controller wrote. A real gateway with --backend knative would need a Knative
data plane in front of the emulator, which has none.

Asserted: the traffic blocks the cluster received, in order (pin, each step, promote; or pin, 10 %, rollback), each
Service judged by edgeinfer.knative.validate with no errors, and the gateway policy's tags."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from rollout_fakes import ERRORS, FakeAdminServer, FakeClock, FakeGateway
from testkit.knative_clusters import TOKEN, Clusters, start_emulator

from edgeinfer.cli import main
from edgeinfer.functions.examples import write_canary, write_examples
from edgeinfer.gateway.admin_client import AdminClient
from edgeinfer.knative import rollout_backend
from edgeinfer.knative.deployer import Cluster, connect
from edgeinfer.knative.manifest import ENV_MODEL_VERSION
from edgeinfer.knative.validate import errors, validate
from edgeinfer.rollout.analysis import EmbeddedSource, Thresholds
from edgeinfer.rollout.backends import GatewayPolicy, KnativeTraffic, Plan, TrafficBackend, knative_service_traffic
from edgeinfer.rollout.controller import RegionEnv, Rollout, RolloutConfig
from edgeinfer.rollout.report import Recorder, RegionOutcome, RolloutReport

REGION, CONTEXT = "us-east", "kind-us-east"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
CONFIG = RolloutConfig(
    steps=(10, 25, 50, 100),
    interval_s=10.0,
    thresholds=Thresholds(max_p99_ms=100, max_error_rate=0.01, min_requests=50, max_disagreement=0.01),
    shadow_percent=5.0,
)

_namespaces = itertools.count()
SERVICE_CANARY = rollout_backend.KnativeTraffic  # the class itself, before a test records through a subclass


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    """One emulated cluster (us-east), a kubeconfig with its context and a topology naming it."""
    tmp = tmp_path_factory.mktemp("rollout-knative")
    proc, port = start_emulator(tmp, REGION, "--domain", "us-east.example.com")
    try:
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": REGION, "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "deployer", "user": {"token": TOKEN}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": REGION, "user": "deployer"}}],
            "current-context": CONTEXT,
        }
        (tmp / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        region = {
            "name": REGION,
            "gateway": "127.0.0.1:9101",
            "redis": "redis://127.0.0.1:9102/0",
            "kube_context": CONTEXT,
            "knative_domain": "us-east.example.com",
        }
        (tmp / "topology.yaml").write_text(yaml.safe_dump({"regions": [region]}))
        yield Clusters(tmp / "kubeconfig", tmp / "topology.yaml", tmp / "topology.yaml", [proc])
    finally:
        proc.stop()


@pytest.fixture
def namespace() -> str:
    return f"rollout{next(_namespaces)}"


@pytest.fixture
def cluster(cluster_env: Clusters) -> Iterator[Cluster]:
    client = connect(REGION, CONTEXT, str(cluster_env.kubeconfig), 5.0)
    yield client
    client.close()


class Recording(rollout_backend.KnativeTraffic):
    """The Service canary of knative/rollout_backend.py, keeping each change with the Service it was built on."""

    changes: list[tuple[dict[str, Any], rollout_backend.Applied]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changes = []
        made.append(self)

    def _change(self, build: rollout_backend.Build) -> rollout_backend.Applied:
        before = self.read()
        applied = super()._change(build)
        self.changes.append((before, applied))
        return applied


made: list[Recording] = []


def deploy_v1(
    cluster_env: Clusters, namespace: str, repo: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> str:
    """`edgeinfer deploy fraud` of a repository holding version 1 only, waited for until Ready; its revision."""
    argv = ["deploy", "fraud", "--region", REGION, "-n", namespace, "--model-repo", str(repo), *extra]
    argv += ["--topology", str(cluster_env.topology), "--kubeconfig", str(cluster_env.kubeconfig)]
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    (line,) = [row for row in out.out.splitlines() if row.startswith(REGION)]
    assert "Ready" in line
    return next(word for word in line.split() if word.startswith("fraud-"))


def knative_env(gateway: FakeGateway, address: str, cluster_env: Clusters, namespace: str) -> RegionEnv:
    """The region as runner.env_for builds it for --backend knative (admin over HTTP, embedded metrics), with
    the test's kubeconfig and namespace; the versions' metadata from the fake."""
    admin = AdminClient(address)
    region = SimpleNamespace(name=REGION, kube_context=CONTEXT)

    def make_backend(plan: Plan) -> TrafficBackend:
        service = knative_service_traffic(
            region, plan.model, namespace=namespace, kubeconfig=str(cluster_env.kubeconfig), revision_timeout_s=30.0
        )
        return KnativeTraffic(admin, plan, service)

    return RegionEnv(
        REGION,
        GatewayPolicy(admin, "fraud").get,
        gateway,
        make_backend,
        lambda baseline, candidate: EmbeddedSource(
            admin.metrics, "fraud", baseline, candidate, gateway.clock.monotonic
        ),
    )


def block(*targets: tuple[str, int, str]) -> list[dict[str, Any]]:
    return [{"tag": tag, "revisionName": rev, "latestRevision": False, "percent": pct} for rev, pct, tag in targets]


def received_blocks(cluster_env: Clusters, namespace: str, deploys: int = 1) -> list[list[dict[str, Any]]]:
    """The traffic block of every merge patch the cluster accepted for the namespace (after deploy's applies). A
    patch refused as built on a Service changed since it was read (409, an emulator's status write in between) must
    be followed by the same patch, rebuilt on the Service as it is, and accepted."""
    received = cluster_env.received(REGION, namespace)
    assert all(r["content_type"].startswith(APPLY_PATCH) for r in received[:deploys])  # edgeinfer deploy
    patches = received[deploys:]
    assert all(r["content_type"].startswith(MERGE_PATCH) for r in patches), patches
    assert all(r["params"]["fieldManager"] == rollout_backend.TRAFFIC_FIELD_MANAGER for r in patches)
    for i, r in enumerate(patches):
        assert r["status"] in (200, 409), r
        if r["status"] == 409:
            assert patches[i + 1]["status"] == 200 and patches[i + 1]["body"]["spec"] == r["body"]["spec"]
    return [r["body"]["spec"]["traffic"] for r in patches if r["status"] == 200]


def check_every_manifest(cluster: Cluster, recording: Recording) -> None:
    """Each change's Service passes all three levels of the validator, as an update of the Service it was built
    on, with the cluster's ConfigMaps."""
    config = cluster.knative_config()
    assert recording.changes
    for before, applied in recording.changes:
        assert errors(validate(applied.manifest, config, existing=before)) == [], applied.traffic


def run(
    gateway: FakeGateway, clock: FakeClock, cluster_env: Clusters, namespace: str, config: RolloutConfig = CONFIG
) -> tuple[RegionOutcome, FakeAdminServer]:
    # A real interval (seconds) outlasts Knative's reconcile of a change: each time the fake clock moves, wait for
    # the Service to route as asked, as it would have by then.
    watch = connect(REGION, CONTEXT, str(cluster_env.kubeconfig), 5.0)
    settled = SERVICE_CANARY(watch, namespace, "fraud")

    def settle(_: float) -> None:
        settled.wait_settled(30.0)

    clock.hooks.append(settle)
    try:
        with FakeAdminServer(gateway) as server:
            report = RolloutReport("fraud", "2", "test", config.to_dict(), clock.wall())
            env = knative_env(gateway, server.address, cluster_env, namespace)
            rollout = Rollout("fraud", "2", [env], config, clock=clock, observer=Recorder(report))
            (outcome,) = rollout.run(rollout.prepare())
    finally:
        watch.close()
    return outcome, server


@pytest.fixture
def deployed(
    cluster_env: Clusters, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> Callable[..., None]:
    """Version 1 deployed as `edgeinfer deploy` makes it; then the repository gains the candidate of `kind`, and the
    Service canaries the adapter makes are recorded."""
    repo = tmp_path / "models"
    write_examples(repo)
    made.clear()
    monkeypatch.setattr(rollout_backend, "KnativeTraffic", Recording)

    def deploy(kind: str, *extra: str) -> None:
        assert deploy_v1(cluster_env, namespace, repo, capsys) == "fraud-00001"
        if extra:  # deployed again with other flags: a newer revision of the same version
            assert deploy_v1(cluster_env, namespace, repo, capsys, *extra) == "fraud-00002"
        write_canary(repo, kind)

    return deploy


def test_a_good_canary_is_promoted_on_the_service(
    deployed: Callable[..., None], cluster_env: Clusters, cluster: Cluster, namespace: str, clock: FakeClock
) -> None:
    deployed("good")
    (revision,) = cluster.revisions("fraud", namespace)
    (container,) = revision["spec"]["containers"]
    assert {"name": ENV_MODEL_VERSION, "value": "1"} in container["env"]  # deploy pinned the revision to version 1
    gateway = FakeGateway(clock)

    outcome, _ = run(gateway, clock, cluster_env, namespace)

    assert outcome.state == "promoted", outcome.reason
    assert outcome.drained is None  # Knative scales the unreferenced old revision to zero itself
    # pin (the candidate's revision created at 0 %), the shadow step sends nothing (same block), each step, promote;
    # the polls that renew the gateway's lease do not touch the Service.
    assert received_blocks(cluster_env, namespace) == [
        block(("fraud-00001", 100, "current"), ("fraud-v2", 0, "candidate")),
        block(("fraud-00001", 90, "current"), ("fraud-v2", 10, "candidate")),
        block(("fraud-00001", 75, "current"), ("fraud-v2", 25, "candidate")),
        block(("fraud-00001", 50, "current"), ("fraud-v2", 50, "candidate")),
        block(("fraud-00001", 0, "current"), ("fraud-v2", 100, "candidate")),
        block(("fraud-v2", 100, "current")),
    ]
    (recording,) = made
    check_every_manifest(cluster, recording)
    service = recording.wait_settled(30.0)
    assert errors(validate({k: v for k, v in service.items() if k != "status"}, cluster.knative_config())) == []
    assert recording.revision_weights() == {"fraud-v2": 100}
    assert recording.revisions()["fraud-v2"].serves == "2"
    # The gateway's policy names the revisions' tags for the versions, and the candidate becomes current.
    assert gateway.writes[0]["tags"] == {"1": "current", "2": "candidate"}
    assert all(w["tags"] == {"1": "current", "2": "candidate"} for w in gateway.writes if "1" in w["weights"])
    assert gateway.policy["weights"] == {"2": 100} and gateway.policy["tags"] == {"2": "current"}
    assert gateway.policy["rollout"]["state"] == "promoted"


def test_a_bad_canary_is_rolled_back_on_the_service(
    deployed: Callable[..., None], cluster_env: Clusters, cluster: Cluster, namespace: str, clock: FakeClock
) -> None:
    # Version 1 deployed twice (a scale change): the canary's baseline is the revision serving, fraud-00002, not the
    # older revision of the same version.
    deployed("errors", "--scale-min", "2")
    gateway = FakeGateway(clock)
    gateway.behaviour["2"] = ERRORS  # a fifth of its calls fail with INTERNAL

    # --shadow-percent 0: no shadow step (which would catch it before any caller reached it), so its failures show
    # on the callers' requests at the first step, 10 %.
    outcome, _ = run(gateway, clock, cluster_env, namespace, replace(CONFIG, shadow_percent=0.0))

    assert outcome.state == "rolled_back" and outcome.check is not None
    assert outcome.check["name"] == "error rate" and "at 10 %" in (outcome.reason or "")
    received = cluster_env.received(REGION, namespace)
    assert received[1]["content_type"].startswith(APPLY_PATCH)  # the second deploy
    del received
    assert received_blocks(cluster_env, namespace, deploys=2) == [
        block(("fraud-00002", 100, "current"), ("fraud-v2", 0, "candidate")),
        block(("fraud-00002", 90, "current"), ("fraud-v2", 10, "candidate")),
        block(("fraud-00002", 100, "current"), ("fraud-v2", 0, "candidate")),  # still tagged: inspect it at its URL
    ]
    (recording,) = made
    check_every_manifest(cluster, recording)
    recording.wait_settled(30.0)
    assert recording.weights() == {"1": 100, "2": 0}
    assert gateway.writes[0]["tags"] == {"1": "current", "2": "candidate"}
    assert max(w["weights"].get("2", 0) for w in gateway.writes) == 10
    assert gateway.policy["weights"] == {"1": 100} and gateway.policy["shadow"] is None
    assert gateway.policy["lease_seconds"] is None and gateway.policy["rollout"]["state"] == "rolled_back"


class NoService:
    """A Service traffic that must not be touched."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the Service was asked to {name}")


def test_a_region_held_for_its_turn_names_no_tags(clock: FakeClock) -> None:
    # A region a multi-region rollout has not reached keeps its Service as deployed: no current/candidate routes
    # exist there yet, so the gateway must take the main route (the deployed revision), not a tag's.
    gateway = FakeGateway(clock)
    backend = KnativeTraffic(gateway, Plan("fraud", "1", "2", 10.0), NoService())  # type: ignore[arg-type]
    held = backend.hold(None, 0)
    assert held["weights"] == {"1": 100} and held["tags"] == {}
