"""`edgeinfer tune --backend knative` sets knobs through the knative package's client: a merge patch of the
Service's autoscaling annotations on a real emulated cluster (tests/knative/k8s_emulator.py) over HTTP, which
keeps every other field `edgeinfer deploy` applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from testkit.knative_clusters import TOKEN, start_emulator

from edgeinfer.knative.deployer import connect
from edgeinfer.tuner.live import KnativeApplier, LiveError

NAMESPACE = "tuned"
IMAGE = "registry.example.com/fraud:v1"


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("tuner-knative")
    proc, port = start_emulator(tmp, "us-east", "--domain", "us-east.example.com")
    try:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "east", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "tuner", "user": {"token": TOKEN}}],
            "contexts": [{"name": "kind-us-east", "context": {"cluster": "east", "user": "tuner"}}],
            "current-context": "kind-us-east",
        }
        path = tmp / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        yield path
    finally:
        proc.stop()


def _deploy(kubeconfig: Path) -> None:
    """What `edgeinfer deploy` leaves: a Service applied server-side by edgeinfer's field manager."""
    cluster = connect("us-east", "kind-us-east", str(kubeconfig), 10.0)
    try:
        cluster.apply({
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "fraud", "namespace": NAMESPACE},
            "spec": {"template": {
                "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "0",
                                             "autoscaling.knative.dev/target": "8"}},
                "spec": {"containers": [{"name": "function", "image": IMAGE}]},
            }},
        })  # fmt: skip
    finally:
        cluster.close()


def test_the_plan_patches_the_annotations_and_keeps_the_rest(kubeconfig: Path) -> None:
    _deploy(kubeconfig)
    applier = KnativeApplier({"us-east": "kind-us-east"}, NAMESPACE, kubeconfig=str(kubeconfig))
    assert applier.current("us-east", "fraud") == {"min-scale": "0", "target": "8"}
    applier.apply("us-east", "fraud", {"min-scale": 3, "scale-down-delay": 30.0})
    assert applier.current("us-east", "fraud") == {"min-scale": "3", "target": "8", "scale-down-delay": "30s"}
    cluster = connect("us-east", "kind-us-east", str(kubeconfig), 10.0)
    try:
        service = cluster.get("fraud", NAMESPACE)
    finally:
        cluster.close()
    assert service is not None
    assert service["spec"]["template"]["spec"]["containers"] == [{"name": "function", "image": IMAGE}]


def test_errors_name_the_region_and_the_fix(kubeconfig: Path) -> None:
    missing = KnativeApplier({"us-east": "kind-us-east"}, NAMESPACE, kubeconfig=str(kubeconfig))
    with pytest.raises(LiveError, match=r"no Knative Service for model 'ranker'.*edgeinfer deploy ranker"):
        missing.current("us-east", "ranker")
    with pytest.raises(LiveError, match=r"us-east: .*ranker.*not found"):
        missing.apply("us-east", "ranker", {"min-scale": 1})
    unset = KnativeApplier({"eu-west": None}, NAMESPACE, kubeconfig=str(kubeconfig))
    with pytest.raises(LiveError, match="region eu-west: no kube_context in the topology"):
        unset.apply("eu-west", "fraud", {"min-scale": 1})
    unknown = KnativeApplier({"eu-west": "kind-eu-west"}, NAMESPACE, kubeconfig=str(kubeconfig))
    with pytest.raises(LiveError, match="kubeconfig has no context 'kind-eu-west'"):
        unknown.apply("eu-west", "fraud", {"min-scale": 1})
    dry = KnativeApplier({"eu-west": None}, NAMESPACE, dry_run=True)
    dry.apply("eu-west", "fraud", {"min-scale": 2})  # nothing is sent, so no context is needed
    assert dry.patches == [("eu-west", "fraud", {"spec": {"template": {"metadata": {
        "annotations": {"autoscaling.knative.dev/min-scale": "2"}}}}})]  # fmt: skip
