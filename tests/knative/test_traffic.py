"""A canary's traffic on Knative (knative/traffic.py, knative/rollout_backend.py) against the emulated clusters,
through the real `kubernetes` client over HTTP: a full promotion and a rollback, asserting every PATCH the
cluster received and that each resulting Service passes the validator; refusals that send nothing; the
resourceVersion lock; each version's revision serving only that version."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testkit.knative_clusters import Clusters

from edgeinfer.knative import traffic as t
from edgeinfer.knative.deployer import Cluster, ClusterError, connect, wait_ready
from edgeinfer.knative.entrypoint import EntrypointError, prepare
from edgeinfer.knative.manifest import ENV_MODEL_VERSION, ServiceOptions, build_service
from edgeinfer.knative.rollout_backend import TRAFFIC_FIELD_MANAGER, Applied, KnativeTraffic, TrafficRefused
from edgeinfer.knative.validate import errors, validate

MERGE_PATCH = "application/merge-patch+json"
SETTLE_S = 30.0  # generous: the emulator settles in ~0.3 s; a busy machine only makes it slower

_namespaces = itertools.count()


@pytest.fixture
def namespace() -> str:
    return f"canary{next(_namespaces)}"


@pytest.fixture
def east(clusters: Clusters) -> Iterator[Cluster]:
    cluster = connect("us-east", "kind-us-east", str(clusters.kubeconfig), 5.0)
    yield cluster
    cluster.close()


@pytest.fixture
def west(clusters: Clusters) -> Iterator[Cluster]:
    cluster = connect("eu-west", "kind-eu-west", str(clusters.kubeconfig), 5.0)
    yield cluster
    cluster.close()


def deploy_v1(cluster: Cluster, namespace: str, revision_name: str | None = None) -> dict[str, Any]:
    """fraud at version 1, as `edgeinfer deploy` makes it (pinned to its version), waited for until Ready."""
    options = ServiceOptions(
        namespace=namespace,
        model_version="1",
        pinned_version="1",
        revision_name=revision_name,
        image="registry.example.com/fraud:1",
    )
    applied = cluster.apply(build_service("fraud", cluster.region, options).manifest)
    state = wait_ready(cluster, "fraud", namespace, applied["metadata"]["generation"], SETTLE_S)
    assert state.state == "ready", state.detail
    service = cluster.get("fraud", namespace)
    assert service is not None
    return service


def patches(clusters: Clusters, region: str, namespace: str) -> list[dict[str, Any]]:
    """The merge patches the cluster received for Services of `namespace`."""
    return [r for r in clusters.received(region, namespace) if r["content_type"].startswith(MERGE_PATCH)]


def check_sent(
    clusters: Clusters, region: str, namespace: str, seen: int, before: dict[str, Any], traffic: list[dict[str, Any]]
) -> dict[str, Any]:
    """Exactly one more merge patch reached the cluster: ours, locked to the resourceVersion read, with this
    traffic block whole; answered 200."""
    received = patches(clusters, region, namespace)
    assert len(received) == seen + 1, received[seen:]
    sent = received[-1]
    assert sent["method"] == "PATCH" and sent["name"] == "fraud" and sent["status"] == 200
    assert sent["params"]["fieldManager"] == TRAFFIC_FIELD_MANAGER
    assert sent["body"]["metadata"] == {"resourceVersion": before["metadata"]["resourceVersion"]}
    assert sent["body"]["spec"]["traffic"] == traffic
    return dict(sent["body"])


def check_valid(cluster: Cluster, applied: Applied, before: dict[str, Any], after: dict[str, Any]) -> None:
    """The Service judged before sending passes all three levels as an update of the one the cluster held (with
    its ConfigMaps); the Service the cluster now holds asks for that traffic, and passes them as a create."""
    config = cluster.knative_config()
    assert errors(validate(applied.manifest, config, existing=before)) == []
    assert after["spec"]["traffic"] == applied.traffic
    assert errors(validate({k: v for k, v in after.items() if k != "status"}, config)) == []


def block(*targets: tuple[str, int, str]) -> list[dict[str, Any]]:
    return [{"tag": tag, "revisionName": rev, "latestRevision": False, "percent": pct} for rev, pct, tag in targets]


def settle(traffic: KnativeTraffic) -> dict[str, Any]:
    return traffic.wait_settled(SETTLE_S)


def test_full_promotion(clusters: Clusters, east: Cluster, namespace: str) -> None:
    deploy_v1(east, namespace)  # generated revision name, as a plain `edgeinfer deploy`
    traffic = KnativeTraffic(east, namespace, "fraud")
    assert traffic.weights() == {"1": 100}
    assert traffic.revision_weights() == {"fraud-00001": 100}

    # The candidate's revision is created with the traffic pinned on the current one: it is born with 0 %.
    before = traffic.read()
    applied = traffic.deploy_candidate("2", image="registry.example.com/fraud:2")
    pinned = block(("fraud-00001", 100, "current"), ("fraud-v2", 0, "candidate"))
    assert applied.traffic == pinned and applied.attempts == 1
    body = check_sent(clusters, "us-east", namespace, 0, before, pinned)
    template = body["spec"]["template"]
    assert template["metadata"] == {"name": "fraud-v2", "labels": {"edgeinfer.dev/model-version": "2"}}
    (container,) = template["spec"]["containers"]
    assert container["image"] == "registry.example.com/fraud:2"
    assert {"name": ENV_MODEL_VERSION, "value": "2"} in container["env"]
    assert {"name": ENV_MODEL_VERSION, "value": "1"} not in container["env"]
    assert set(body["spec"]) == {"template", "traffic"}  # nothing else of the spec is sent
    candidate = traffic.wait_revision("fraud-v2", SETTLE_S)
    assert candidate.version == candidate.serves == "2"
    assert traffic.revisions()["fraud-00001"].serves == "1"
    after = settle(traffic)
    check_valid(east, applied, before, after)
    assert after["metadata"]["generation"] == 2
    assert traffic.weights() == {"1": 100, "2": 0}
    routed = {e["tag"]: e for e in after["status"]["traffic"]}
    assert routed["candidate"]["url"] == f"http://candidate-fraud.{namespace}.us-east.example.com"

    sent = 1
    for percent in (10, 50, 100):
        before = traffic.read()
        applied = traffic.step(percent)
        expected = block(("fraud-00001", 100 - percent, "current"), ("fraud-v2", percent, "candidate"))
        assert applied.traffic == expected
        body = check_sent(clusters, "us-east", namespace, sent, before, expected)
        assert set(body["spec"]) == {"traffic"}  # a step sends the traffic only: no new revision
        sent += 1
        after = settle(traffic)
        check_valid(east, applied, before, after)
        assert after["status"]["latestCreatedRevisionName"] == "fraud-v2"  # still the same two revisions
        assert traffic.weights() == {"1": 100 - percent, "2": percent}

    # The same step again sends nothing.
    assert traffic.step(100).patch == {}
    assert len(patches(clusters, "us-east", namespace)) == sent

    before = traffic.read()
    applied = traffic.promote()
    promoted = block(("fraud-v2", 100, "current"))
    check_sent(clusters, "us-east", namespace, sent, before, promoted)
    after = settle(traffic)
    check_valid(east, applied, before, after)
    # The old revision is in no traffic target: Knative scales an unreferenced revision to zero.
    assert traffic.revision_weights() == {"fraud-v2": 100} and traffic.weights() == {"2": 100}
    assert set(traffic.revisions()) == {"fraud-00001", "fraud-v2"}
    assert traffic.split() == t.Canary("fraud-v2")
    # Every request that changed the Service was one of ours, a merge patch answered 200.
    changes = clusters.received("us-east", namespace)
    assert [r["content_type"].split(";")[0] for r in changes] == ["application/apply-patch+yaml"] + [MERGE_PATCH] * 5
    assert all(r["status"] in (200, 201) for r in changes)


def test_rollback_keeps_the_candidate_tagged_at_zero(clusters: Clusters, west: Cluster, namespace: str) -> None:
    deploy_v1(west, namespace, revision_name="fraud-v1")
    traffic = KnativeTraffic(west, namespace, "fraud")
    traffic.deploy_candidate("2")
    traffic.wait_revision("fraud-v2", SETTLE_S)
    settle(traffic)
    before = traffic.read()
    traffic.step(10)
    check_sent(
        clusters, "eu-west", namespace, 1, before, block(("fraud-v1", 90, "current"), ("fraud-v2", 10, "candidate"))
    )
    settle(traffic)
    assert traffic.weights() == {"1": 90, "2": 10}
    with pytest.raises(TrafficRefused, match="candidate revision fraud-v2 has 10% of the traffic: roll it back"):
        traffic.deploy_candidate("3")

    before = traffic.read()
    applied = traffic.rollback()
    rolled_back = block(("fraud-v1", 100, "current"), ("fraud-v2", 0, "candidate"))
    assert applied.traffic == rolled_back
    check_sent(clusters, "eu-west", namespace, 2, before, rolled_back)
    after = settle(traffic)
    check_valid(west, applied, before, after)
    assert traffic.weights() == {"1": 100, "2": 0}
    routed = {e["tag"]: e for e in after["status"]["traffic"]}
    assert routed["candidate"]["percent"] == 0 and routed["candidate"]["revisionName"] == "fraud-v2"
    assert routed["candidate"]["url"] == f"http://candidate-fraud.{namespace}.eu-west.example.com"
    # The template stays the candidate's, so a second try of the same candidate makes no new revision.
    assert traffic.deploy_candidate("2").patch == {}
    assert len(patches(clusters, "eu-west", namespace)) == 3


def test_refusals_send_nothing(clusters: Clusters, east: Cluster, namespace: str) -> None:
    deploy_v1(east, namespace)
    traffic = KnativeTraffic(east, namespace, "fraud")

    def refused(call: Any, *args: Any, **kwargs: Any) -> str:
        with pytest.raises(TrafficRefused) as caught:
            call(*args, **kwargs)
        assert "nothing was sent" in str(caught.value) and caught.value.region == "us-east"
        return "\n".join(caught.value.problems)

    # Our own checks: a revision that does not exist; no canary to step yet.
    text = refused(traffic.pin, "fraud-00001", "fraud-v9")
    assert "spec.traffic[1].revisionName: no revision fraud-v9 of Service fraud (it has: fraud-00001)" in text
    assert "has no revision tagged current in spec.traffic: no canary runs there" in refused(traffic.step, 10)
    assert "whole percent from 0 to 100" in refused(traffic.step, 101)
    # Knative's webhook: the percents must add up to 100; one definition per tag.
    text = refused(
        traffic.set_traffic,
        [{"revisionName": "fraud-00001", "percent": 60, "tag": "current"}, {"latestRevision": True, "percent": 30}],
    )
    assert "spec.traffic: Traffic targets sum to 90, want 100" in text
    text = refused(traffic.set_traffic, block(("fraud-00001", 100, "current"), ("fraud-00001", 0, "current")))
    assert 'Multiple definitions for "current"' in text
    # The CRD's schema: a percent that is no integer (the API server refuses it before the webhook).
    text = refused(traffic.set_traffic, [{"revisionName": "fraud-00001", "percent": "100"}])
    assert "spec.traffic[0].percent: '100' is not of type integer" in text
    # edgeinfer's policy, and our check: another Service's revision.
    text = refused(traffic.set_traffic, [{"revisionName": "ranker-00001", "percent": 100}])
    assert "ranker-00001 is not a revision of Service fraud" in text and "no revision ranker-00001" in text
    # A candidate's revision name Knative refuses (BYO names start with the Service's).
    text = refused(traffic.deploy_candidate, "2", revision="ranker-v2")
    assert 'spec.template.metadata.name: invalid value: "ranker-v2" must have prefix "fraud-"' in text
    assert "no valid revision name" in refused(traffic.deploy_candidate, "2.0")
    assert "is the current one already" in refused(traffic.deploy_candidate, "1", revision="fraud-00001")
    assert patches(clusters, "us-east", namespace) == []  # none of them reached the cluster

    # A candidate that never becomes Ready gets no traffic; a rollback drops it so that the route applies.
    traffic.deploy_candidate("2", image="registry.example.com/fraud:missing")
    with pytest.raises(ClusterError, match="revision fraud-v2 failed: ContainerMissing: Unable to fetch image"):
        traffic.wait_revision("fraud-v2", SETTLE_S)
    text = refused(traffic.step, 10)
    assert "spec.traffic[1].revisionName: revision fraud-v2 is not Ready (ContainerMissing: Unable to fetch" in text
    assert "is not Ready" in refused(traffic.promote)
    assert len(patches(clusters, "us-east", namespace)) == 1
    applied = traffic.rollback()
    assert applied.traffic == block(("fraud-00001", 100, "current"))
    settle(traffic)
    assert traffic.weights() == {"1": 100}


def test_cluster_errors_name_the_fix(clusters: Clusters, east: Cluster) -> None:
    with pytest.raises(ClusterError, match=r"ask for a Role with get and list on revisions\.serving\.knative\.dev"):
        east.revisions("fraud", "locked")
    with pytest.raises(ClusterError, match=r"no Service 'fraud' in namespace 'nowhere'.*deploy the current version"):
        KnativeTraffic(east, "nowhere", "fraud").step(10)
    bare = connect("sa-east", "kind-bare", str(clusters.kubeconfig), 5.0)
    try:
        with pytest.raises(ClusterError, match=r"has no services\.serving\.knative\.dev .*Knative Serving installed"):
            bare.revisions("fraud", "default")
    finally:
        bare.close()


class Meddler(Cluster):
    """A cluster client that, after each read, lets someone else change the Service (a real merge patch from
    another field manager), as a controller or a person might between our read and our patch."""

    times = 0

    def get(self, name: str, namespace: str) -> dict[str, Any] | None:
        found = super().get(name, namespace)
        if self.times > 0 and found is not None:
            self.times -= 1
            stamp = {"metadata": {"annotations": {"example.com/touched": str(self.times)}}}
            super().merge_patch(name, namespace, stamp, field_manager="kubectl-annotate")
        return found


def test_a_service_changed_since_read_is_read_again_once(clusters: Clusters, namespace: str) -> None:
    base = connect("us-east", "kind-us-east", str(clusters.kubeconfig), 5.0)
    meddler = Meddler(base.region, base.context, base.api, base.request_timeout)
    try:
        deploy_v1(meddler, namespace, revision_name="fraud-v1")
        traffic = KnativeTraffic(meddler, namespace, "fraud")
        meddler.times = 1
        applied = traffic.deploy_candidate("2")
        assert applied.attempts == 2
        received = patches(clusters, "us-east", namespace)
        assert [(r["params"]["fieldManager"], r["status"]) for r in received] == [
            ("kubectl-annotate", 200),
            (TRAFFIC_FIELD_MANAGER, 409),  # built on the Service before the other change: refused
            (TRAFFIC_FIELD_MANAGER, 200),  # read again, rebuilt, judged again
        ]
        assert received[1]["body"]["metadata"]["resourceVersion"] != received[2]["body"]["metadata"]["resourceVersion"]
        assert received[1]["body"]["spec"] == received[2]["body"]["spec"]
        traffic.wait_revision("fraud-v2", SETTLE_S)
        settle(traffic)

        meddler.times = 2
        with pytest.raises(ClusterError, match=r"changed since it was read .*twice in a row") as caught:
            traffic.step(10)
        assert "409 Conflict" in str(caught.value)
        meddler.times = 0
        assert traffic.split() == t.Canary("fraud-v1", "fraud-v2", 0)  # nothing of ours went through
    finally:
        meddler.close()


# --- each version's revision serves only that version -------------------------------------------------------


def test_the_candidates_revision_serves_only_its_version(east: Cluster, namespace: str, tmp_path: Path) -> None:
    for version in ("1", "2"):
        (tmp_path / "models" / "fraud" / version).mkdir(parents=True)
        (tmp_path / "models" / "fraud" / version / "model.onnx").touch()
    deploy_v1(east, namespace)
    traffic = KnativeTraffic(east, namespace, "fraud")
    traffic.deploy_candidate("2")
    traffic.wait_revision("fraud-v2", SETTLE_S)
    revisions = {r["metadata"]["name"]: r for r in east.revisions("fraud", namespace)}
    for name, version, other in (("fraud-00001", "1", "2"), ("fraud-v2", "2", "1")):
        (container,) = revisions[name]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        env.update(EDGEINFER_MODEL_REPO=str(tmp_path / "models"), EDGEINFER_TRT_ENGINE_CACHE="")
        view = prepare(env, tmp_path / name)
        assert (view / "fraud" / version / "model.onnx").exists() and not (view / "fraud" / other).exists()
        assert revisions[name]["metadata"]["labels"]["edgeinfer.dev/model-version"] == version
    env[ENV_MODEL_VERSION] = "../ranker/1"
    with pytest.raises(EntrypointError, match="a version is one folder's name"):
        prepare(env, tmp_path / "escape")
    env[ENV_MODEL_VERSION] = "7"
    with pytest.raises(EntrypointError, match=r"EDGEINFER_MODEL_VERSION=7: .* has no version 7 \(it has: 1, 2\)"):
        prepare(env, tmp_path / "seven")


# --- the pure builders --------------------------------------------------------------------------------------


def test_blocks() -> None:
    assert t.pin("fraud-v1", "fraud-v2") == block(("fraud-v1", 100, "current"), ("fraud-v2", 0, "candidate"))
    state = t.Canary("fraud-v1", "fraud-v2", 0)
    assert t.step(state, 25) == block(("fraud-v1", 75, "current"), ("fraud-v2", 25, "candidate"))
    assert t.rollback(t.Canary("fraud-v1", "fraud-v2", 25)) == t.step(state, 0)
    assert t.rollback(state, keep_tag=False) == block(("fraud-v1", 100, "current"))
    assert t.promote(state) == block(("fraud-v2", 100, "current"))
    assert t.promote(state, keep_previous=True) == block(("fraud-v2", 100, "current"), ("fraud-v1", 0, "previous"))
    with pytest.raises(t.TrafficError, match="both current and candidate"):
        t.pin("fraud-v1", "fraud-v1")
    for bad in (-1, 101, 2.5, True):
        with pytest.raises(t.TrafficError, match="whole percent"):
            t.step(state, bad)  # type: ignore[arg-type]
    with pytest.raises(t.TrafficError, match="nothing to promote"):
        t.promote(t.Canary("fraud-v1"))


def test_reading_the_roles_of_a_service() -> None:
    service: dict[str, Any] = {
        "metadata": {"name": "fraud"},
        "spec": {"traffic": t.step(t.Canary("fraud-v1", "fraud-v2"), 10)},
    }
    user_tag = {"tag": "debug", "revisionName": "fraud-00003", "percent": 0}
    service["spec"]["traffic"].append(user_tag)
    assert t.canary(service) == t.Canary("fraud-v1", "fraud-v2", 10, None, (user_tag,))
    assert t.step(t.canary(service), 20)[-1] == user_tag  # someone's own 0 % tag is kept
    split = copy.deepcopy(service)
    split["spec"]["traffic"] = [{"revisionName": "fraud-a", "percent": 50}, {"revisionName": "fraud-b", "percent": 50}]
    with pytest.raises(t.TrafficError, match=r"no revision tagged current in spec.traffic: no canary runs there"):
        t.canary(split)
    tagged = copy.deepcopy(split)
    tagged["spec"]["traffic"][1]["tag"] = "current"
    with pytest.raises(t.TrafficError, match=r"spec.traffic\[0\] sends 50% to fraud-a outside the canary's tags"):
        t.canary(tagged)
    split["status"] = {"traffic": split["spec"]["traffic"]}
    with pytest.raises(t.TrafficError, match=r"splits its traffic \(50% fraud-a, 50% fraud-b\)"):
        t.current_revision(split)
    latest = {"metadata": {"name": "fraud"}, "spec": {}, "status": {"latestReadyRevisionName": "fraud-00002"}}
    assert t.current_revision(latest) == "fraud-00002"  # no traffic block: all to the latest ready revision
    with pytest.raises(t.TrafficError, match="no ready revision"):
        t.current_revision({"metadata": {"name": "fraud"}, "spec": {}})


def test_merge_patch() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2], "gone": True}
    new = {"a": 1, "b": {"c": 2, "d": 4, "e": 5}, "l": [1]}
    assert t.merge_patch(old, new) == {"b": {"d": 4, "e": 5}, "l": [1], "gone": None}
    assert t.merge_patch(new, new) == {}
    existing = {"metadata": {"resourceVersion": "7"}, "spec": {"traffic": [], "template": {}}}
    assert t.spec_patch(existing, {"spec": {"traffic": [], "template": {}}}) == {}
    assert t.spec_patch(existing, {"spec": {"traffic": [1], "template": {}}}) == {
        "metadata": {"resourceVersion": "7"},
        "spec": {"traffic": [1]},
    }
