"""`edgeinfer deploy` and `edgeinfer services` against two emulated clusters (one kube context per region),
through the real `kubernetes` client over HTTP: deploy, update, status, delete, and every error path."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit.knative_clusters import TOKEN, Clusters

from edgeinfer.cli import main
from edgeinfer.knative.deployer import connect

_namespaces = itertools.count()


@pytest.fixture
def namespace() -> str:
    """A namespace per test: the clusters are shared, the tests do not see each other's Services."""
    return f"t{next(_namespaces)}"


@pytest.fixture
def model_repo(tmp_path: Path) -> Path:
    """fraud at version 3 with its own autoscaling block: the source of the manifest's defaults."""
    (tmp_path / "fraud" / "3").mkdir(parents=True)
    (tmp_path / "fraud" / "3" / "model.onnx").touch()
    config = {"autoscaling": {"min-scale": 0, "max-scale": 6, "target": 40, "window": "30s", "scale-down-delay": "5s"}}
    (tmp_path / "fraud" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], clusters: Clusters, *argv: str, broken: bool = False) -> tuple[int, str]:
    topology = clusters.broken_topology if broken else clusters.topology
    command, rest = argv[0], list(argv[1:])
    extra = ["--topology", str(topology), "--kubeconfig", str(clusters.kubeconfig)]
    rest = [rest[0], *extra, *rest[1:]] if command == "services" else [*rest, *extra]
    code = main([command, *rest])
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert TOKEN not in output  # the kubeconfig's bearer token never reaches the terminal
    return code, output


def fetch(clusters: Clusters, context: str, namespace: str, name: str = "fraud") -> dict[str, Any] | None:
    cluster = connect(context, f"kind-{context}", str(clusters.kubeconfig), 5.0)
    try:
        return cluster.get(name, namespace)
    finally:
        cluster.close()


def rows(output: str) -> dict[str, str]:
    """The summary table's line per region."""
    return {line.split()[0]: line for line in output.splitlines() if line.split() and line.split()[0] in REGIONS}


REGIONS = ("us-east", "eu-west", "ap-south", "sa-east", "me-central", "af-south")


def test_deploy_update_status_and_delete_in_two_regions(
    capsys: pytest.CaptureFixture[str], clusters: Clusters, namespace: str, model_repo: Path
) -> None:
    code, out = run(
        capsys, clusters, "deploy", "fraud", "--all-regions", "-n", namespace, "--model-repo", str(model_repo)
    )
    assert code == 0, out
    table = rows(out)
    # Each region's own cluster answered: the URLs carry each emulator's domain.
    assert "Ready" in table["us-east"] and f"http://fraud.{namespace}.us-east.example.com" in table["us-east"]
    assert "Ready" in table["eu-west"] and f"http://fraud.{namespace}.eu-west.example.com" in table["eu-west"]
    assert "fraud-00001" in table["us-east"] and "fraud-00001" in table["eu-west"]
    for region in ("us-east", "eu-west"):
        service = fetch(clusters, region, namespace)
        assert service is not None
        # Applied server-side by our field manager, with the region's labels and the model's config as defaults.
        assert service["metadata"]["managedFields"][0] == {
            **service["metadata"]["managedFields"][0],
            "manager": "edgeinfer",
            "operation": "Apply",
        }
        assert service["metadata"]["labels"]["edgeinfer.dev/region"] == region
        assert service["metadata"]["labels"]["edgeinfer.dev/model-version"] == "3"
        annotations = service["spec"]["template"]["metadata"]["annotations"]
        assert annotations["autoscaling.knative.dev/max-scale"] == "6"
        assert annotations["autoscaling.knative.dev/target"] == "40"
        assert annotations["autoscaling.knative.dev/window"] == "30s"
        assert annotations["autoscaling.knative.dev/scale-down-delay"] == "5s"

    # Update: a flag overrides the config; a new generation, a new revision, waited for until Ready.
    code, out = run(
        capsys,
        clusters,
        "deploy",
        "fraud",
        "--region",
        "eu-west",
        "-n",
        namespace,
        "--model-repo",
        str(model_repo),
        "--scale-min",
        "2",
        "--image",
        "registry.example.com/fraud:v2",
    )
    assert code == 0, out
    assert "fraud-00002" in rows(out)["eu-west"] and "us-east" not in rows(out)
    assert "applied generation 2" in out
    west = fetch(clusters, "eu-west", namespace)
    assert west is not None and west["metadata"]["generation"] == 2
    assert west["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "2"
    assert west["status"]["latestReadyRevisionName"] == west["status"]["latestCreatedRevisionName"] == "fraud-00002"
    east = fetch(clusters, "us-east", namespace)
    assert east is not None and east["metadata"]["generation"] == 1  # the other region untouched

    # Applying the same manifest again changes nothing: same generation, still Ready.
    code, out = run(
        capsys,
        clusters,
        "deploy",
        "fraud",
        "--region",
        "eu-west",
        "-n",
        namespace,
        "--model-repo",
        str(model_repo),
        "--scale-min",
        "2",
        "--image",
        "registry.example.com/fraud:v2",
    )
    assert code == 0 and "applied generation 2" in out and "fraud-00002" in rows(out)["eu-west"], out

    code, out = run(capsys, clusters, "services", "list", "-n", namespace)
    assert code == 0, out
    listed = rows(out)
    assert "fraud" in listed["us-east"] and "True" in listed["us-east"] and "fraud-00001" in listed["us-east"]
    assert "True" in listed["eu-west"] and "fraud-00002" in listed["eu-west"]

    code, out = run(capsys, clusters, "services", "describe", "fraud", "-n", namespace, "--region", "eu-west")
    assert code == 0, out
    assert "revision fraud-00002 is Ready" in out
    assert "100% fraud-00002" in out  # the traffic Knative reports
    assert "Ready: True" in out and "min-scale: 2" in out

    code, out = run(capsys, clusters, "services", "delete", "fraud", "-n", namespace, "--all-regions")
    assert code == 0, out
    assert "us-east: Service 'fraud' deleted" in out and "eu-west: Service 'fraud' deleted" in out
    assert fetch(clusters, "us-east", namespace) is None and fetch(clusters, "eu-west", namespace) is None
    code, out = run(capsys, clusters, "services", "describe", "fraud", "-n", namespace)
    assert code == 1 and "no Service 'fraud'" in out
    code, out = run(capsys, clusters, "services", "delete", "fraud", "-n", namespace, "--region", "us-east")
    assert code == 1 and "not found" in out


def test_a_failed_revision_reports_its_reason(
    capsys: pytest.CaptureFixture[str], clusters: Clusters, namespace: str
) -> None:
    code, out = run(
        capsys,
        clusters,
        "deploy",
        "fraud",
        "--all-regions",
        "-n",
        namespace,
        "--image",
        "registry.example.com/fraud:missing",
    )
    assert code == 1
    for region in ("us-east", "eu-west"):
        line = rows(out)[region]
        assert "FAILED" in line and "revision fraud-00001 failed: RevisionFailed" in line, out
        assert "Unable to fetch image" in line


def test_one_regions_failure_never_hides_another_regions_result(
    capsys: pytest.CaptureFixture[str], clusters: Clusters, namespace: str
) -> None:
    code, out = run(
        capsys,
        clusters,
        "deploy",
        "fraud",
        "-n",
        namespace,
        "--request-timeout",
        "2",
        *("--region", "us-east", "--region", "ap-south", "--region", "sa-east", "--region", "me-central"),
        *("--region", "af-south"),
        broken=True,
    )
    assert code == 1
    table = rows(out)
    assert "Ready" in table["us-east"] and "fraud-00001" in table["us-east"], out
    # A cluster that does not answer, one without Knative, a region without a context, an unknown context.
    assert "FAILED" in table["ap-south"] and "cannot reach context 'kind-ap-south'" not in table["ap-south"]
    assert "cannot reach context 'kind-dead'" in table["ap-south"] and "is the cluster up" in table["ap-south"]
    assert "has no services.serving.knative.dev" in table["sa-east"] and "Knative Serving installed" in table["sa-east"]
    assert "no kube_context for region 'me-central'" in table["me-central"]
    assert "kubeconfig has no context 'kind-nowhere'" in table["af-south"] and "kind-us-east" in table["af-south"]
    assert fetch(clusters, "us-east", namespace) is not None


def test_forbidden_namespace_is_explained(capsys: pytest.CaptureFixture[str], clusters: Clusters) -> None:
    code, out = run(capsys, clusters, "deploy", "fraud", "--region", "us-east", "-n", "locked")
    assert code == 1
    line = rows(out)["us-east"]
    assert "403 Forbidden" in line and "cannot patch resource" in line and "ask for a Role" in line
    code, out = run(capsys, clusters, "services", "list", "-n", "locked", "--region", "us-east")
    assert code == 1 and "does not allow us to list Services in namespace 'locked'" in out


def test_slow_api_server_times_out_with_a_clear_message(capsys: pytest.CaptureFixture[str], clusters: Clusters) -> None:
    code, out = run(capsys, clusters, "deploy", "fraud", "--region", "us-east", "-n", "slow", "--request-timeout", "1")
    assert code == 1
    assert "no answer from context 'kind-us-east'" in rows(out)["us-east"] and "within 1s" in out


def test_wait_for_ready_gives_up_after_the_wait_timeout(
    capsys: pytest.CaptureFixture[str], clusters: Clusters, namespace: str
) -> None:
    code, out = run(
        capsys,
        clusters,
        "deploy",
        "fraud",
        "--region",
        "eu-west",
        "-n",
        namespace,
        "--image",
        "registry.example.com/fraud:never-ready",
        "--wait-timeout",
        "1",
    )
    assert code == 1
    line = rows(out)["eu-west"]
    assert "not Ready after 1s: revision fraud-00001 is starting (RevisionMissing)" in line, out


def test_conflict_with_another_field_manager_and_force(
    capsys: pytest.CaptureFixture[str], clusters: Clusters, namespace: str
) -> None:
    code, out = run(capsys, clusters, "deploy", "fraud", "--region", "us-east", "-n", namespace, "--no-wait")
    assert code == 0 and "Applied" in rows(out)["us-east"], out
    # Someone else takes the Service over (as `kubectl apply --server-side --force-conflicts` would).
    cluster = connect("us-east", "kind-us-east", str(clusters.kubeconfig), 5.0)
    try:
        service = cluster.get("fraud", namespace)
        assert service is not None
        manifest = {k: service[k] for k in ("apiVersion", "kind", "spec")}
        manifest["metadata"] = {"name": "fraud", "namespace": namespace, "labels": service["metadata"]["labels"]}
        manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:1"
        cluster._custom().patch_namespaced_custom_object(
            "serving.knative.dev",
            "v1",
            namespace,
            "services",
            "fraud",
            manifest,
            field_manager="kubectl",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    finally:
        cluster.close()
    code, out = run(capsys, clusters, "deploy", "fraud", "--region", "us-east", "-n", namespace)
    assert code == 1
    line = rows(out)["us-east"]
    assert "409 Conflict" in line and 'conflict with "kubectl"' in line and "--force-conflicts" in line
    code, out = run(capsys, clusters, "deploy", "fraud", "--region", "us-east", "-n", namespace, "--force-conflicts")
    assert code == 0 and "Ready" in rows(out)["us-east"], out
    service = fetch(clusters, "us-east", namespace)
    assert service is not None and service["spec"]["template"]["spec"]["containers"][0]["image"] != "someone/else:1"


def test_feature_flags_are_read_from_each_cluster(
    capsys: pytest.CaptureFixture[str], clusters: Clusters, namespace: str
) -> None:
    code, out = run(
        capsys, clusters, "deploy", "fraud", "--all-regions", "-n", namespace, "--node-selector", "gpu=a100"
    )
    assert code == 1
    table = rows(out)
    assert "Ready" in table["us-east"], out  # its config-features has nodeSelector on
    line = table["eu-west"]
    assert "FAILED" in line and "spec.template.spec.nodeSelector" in line
    assert "kubernetes.podspec-nodeselector is Disabled in configmap knative-serving/config-features" in line
    assert "kubectl patch configmap/config-features" in line
    assert fetch(clusters, "eu-west", namespace) is None  # refused before anything was sent


def test_an_update_is_judged_against_the_service_the_cluster_holds(
    capsys: pytest.CaptureFixture[str], clusters: Clusters, namespace: str
) -> None:
    """Knative refuses a changed template under the same revision name; deploy says so before sending."""
    base = ["deploy", "fraud", "--region", "us-east", "-n", namespace, "--revision-name", "fraud-v1"]
    code, out = run(capsys, clusters, *base, "--image", "registry.example.com/fraud:v1")
    assert code == 0 and "Ready" in rows(out)["us-east"], out
    code, out = run(capsys, clusters, *base, "--image", "registry.example.com/fraud:v2")
    assert code == 1
    line = rows(out)["us-east"]
    assert "spec.template.metadata.name: Saw the following changes without a name change (-old +new)" in line, line
    assert '"registry.example.com/fraud:v1"' in line and '"registry.example.com/fraud:v2"' in line
    held = fetch(clusters, "us-east", namespace)
    assert held is not None and held["metadata"]["generation"] == 1  # nothing was sent
    assert held["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/fraud:v1"
    # The same template under a new name is an update Knative takes.
    code, out = run(capsys, clusters, *base[:-1], "fraud-v2", "--image", "registry.example.com/fraud:v2")
    assert code == 0 and "Ready" in rows(out)["us-east"], out
