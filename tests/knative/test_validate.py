"""Validation before anything is sent: the CRD schema and the webhook's rules, bad manifests rejected for the
right reason, each problem naming the field and the fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from edgeinfer.knative import flags
from edgeinfer.knative.manifest import EngineCache, ServiceOptions, Toleration, TrafficTarget, build_service
from edgeinfer.knative.validate import errors, schema_problems, validate

Manifest = dict[str, Any]


def good() -> Manifest:
    return build_service("fraud", "us-east").manifest


def container(m: Manifest) -> dict[str, Any]:
    return m["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def annotations(m: Manifest) -> dict[str, str]:
    return m["spec"]["template"]["metadata"]["annotations"]  # type: ignore[no-any-return]


def test_built_manifests_pass_schema_and_webhook_rules() -> None:
    assert validate(good()) == []
    gpu = build_service(
        "ranker",
        "eu-west",
        ServiceOptions(
            limits={"nvidia.com/gpu": "1", "memory": "8Gi"},
            traffic=(TrafficTarget("ranker-00001", 90, "stable"), TrafficTarget(None, 10, "canary")),
            revision_name="ranker-v2",
        ),
    ).manifest
    assert validate(gpu) == []


def set_in(path: str, value: Any) -> Callable[[Manifest], None]:
    def mutate(m: Manifest) -> None:
        *parents, last = path.split(".")
        node: Any = m
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def annotate(knob: str, value: Any) -> Callable[[Manifest], None]:
    def mutate(m: Manifest) -> None:
        annotations(m)[f"autoscaling.knative.dev/{knob}"] = value

    return mutate


def gpu_request_above_limit(m: Manifest) -> None:
    container(m)["resources"] = {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "2"}}


def add_port(m: Manifest) -> None:
    container(m)["ports"].append({"name": "http1", "containerPort": 9000})


def min_above_max(m: Manifest) -> None:
    annotations(m).update({"autoscaling.knative.dev/min-scale": "5", "autoscaling.knative.dev/max-scale": "2"})


CASES: list[tuple[str, Callable[[Manifest], None], str, str]] = [
    # (case, mutation, path of the problem, words of the message)
    ("GPU request differs from limit", gpu_request_above_limit, "requests.nvidia.com/gpu", "differs"),
    ("two ports", add_port, "spec.template.spec.containers[*].ports", "2 ports"),
    ("no port", set_in("spec.template.spec.containers.0.ports", []), "containers[0].ports", "no port"),
    ("port named grpc", set_in("spec.template.spec.containers.0.ports.0.name", "grpc"), "ports[0].name", "not allowed"),
    (
        "reserved port",
        set_in("spec.template.spec.containers.0.ports.0.containerPort", 8012),
        "containerPort",
        "8012 is reserved",
    ),
    (
        "probe on another port",
        set_in("spec.template.spec.containers.0.readinessProbe.grpc.port", 9000),
        "readinessProbe.grpc.port",
        "not the container port 8080",
    ),
    (
        "two probe handlers",
        set_in("spec.template.spec.containers.0.readinessProbe.tcpSocket", {"port": 8080}),
        "readinessProbe",
        "several handlers",
    ),
    (
        "min-scale above max-scale",
        min_above_max,
        "autoscaling.knative.dev/min-scale",
        "min-scale 5 is above max-scale 2",
    ),
    (
        "window too short",
        annotate("window", "2s"),
        "autoscaling.knative.dev/window",
        "out of range",
    ),
    (
        "panic threshold too low",
        annotate("panic-threshold-percentage", "50"),
        "panic-threshold-percentage",
        "out of range",
    ),
    (
        "utilization over 100",
        annotate("target-utilization-percentage", "120"),
        "target-utilization-percentage",
        "out of range",
    ),
    (
        "metric of another class",
        annotate("metric", "cpu"),
        "autoscaling.knative.dev/metric",
        "not a metric",
    ),
    ("traffic adds up to 90", set_in("spec.traffic.0.percent", 90), "spec.traffic", "add up to 90"),
    (
        "both revisionName and latestRevision",
        set_in("spec.traffic.0.revisionName", "fraud-00001"),
        "spec.traffic[0]",
        "both revisionName and latestRevision",
    ),
    (
        "neither revisionName nor latestRevision",
        set_in("spec.traffic.0.latestRevision", False),
        "spec.traffic[0]",
        "neither revisionName nor latestRevision",
    ),
    (
        "revision of another Service",
        set_in("spec.traffic", [{"revisionName": "other-00001", "percent": 100}]),
        "spec.traffic[0].revisionName",
        "not a revision of Service 'fraud'",
    ),
    (
        "duplicate tags",
        set_in(
            "spec.traffic",
            [
                {"latestRevision": True, "percent": 50, "tag": "a"},
                {"revisionName": "fraud-00001", "percent": 50, "tag": "a"},
            ],
        ),
        "spec.traffic[1].tag",
        "already spec.traffic[0]",
    ),
    ("reserved env var", set_in("spec.template.spec.containers.0.env.0.name", "PORT"), "env[0].name", "set by Knative"),
    (
        "timeout beyond the cluster's maximum",
        set_in("spec.template.spec.timeoutSeconds", 900),
        "timeoutSeconds",
        "out of range",
    ),
    (
        "concurrency over 1000",
        set_in("spec.template.spec.containerConcurrency", 5000),
        "containerConcurrency",
        "out of range",
    ),
    (
        "volume not mounted",
        set_in("spec.template.spec.containers.0.volumeMounts", []),
        "volumes[0].name",
        "not mounted",
    ),
    (
        "revision name without the Service's",
        set_in("spec.template.metadata.name", "v2"),
        "spec.template.metadata.name",
        "does not start with",
    ),
    ("bad Service name", set_in("metadata.name", "Fraud_Model"), "metadata.name", "not a DNS-1035 label"),
    # The CRD schema itself:
    (
        "port as a string",
        set_in("spec.template.spec.containers.0.ports.0.containerPort", "8080"),
        "spec.template.spec.containers[0].ports[0].containerPort",
        "is not of type integer",
    ),
    (
        "unknown field",
        set_in("spec.template.spec.containers.0.portz", []),
        "spec.template.spec.containers[0]",
        "unknown field portz",
    ),
    (
        "annotation not a string",
        annotate("min-scale", 1),
        "autoscaling.knative.dev/min-scale",
        "is not of type string",
    ),
    ("percent as a string", set_in("spec.traffic.0.percent", "100"), "spec.traffic[0].percent", "not of type"),
]


@pytest.mark.parametrize(("mutate", "path", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_manifest_is_rejected_for_the_right_reason(
    mutate: Callable[[Manifest], None], path: str, words: str
) -> None:
    manifest = good()
    mutate(manifest)
    found = errors(validate(manifest))
    matching = [p for p in found if path in p.path and words in p.message]
    assert matching, f"expected an error at {path} saying {words!r}; got: {[str(p) for p in found]}"
    for problem in matching:
        assert problem.fix and str(problem).startswith(problem.path) and "; fix: " in str(problem)


def test_flag_gated_fields_are_named_with_their_flag() -> None:
    built = build_service(
        "ranker",
        "us-east",
        ServiceOptions(
            limits={"nvidia.com/gpu": "1"},
            engine_cache=EngineCache(claim="trt-engines"),
            node_selector={"nvidia.com/gpu.present": "true"},
            tolerations=(Toleration("nvidia.com/gpu"),),
            runtime_class="nvidia",
        ),
    )
    assert any("PersistentVolumeClaim 'trt-engines'" in note and flags.PVC in note for note in built.notes)
    # Not knowing the cluster: warnings with the flag and the command that turns it on; nothing blocks.
    unknown = validate(built.manifest)
    assert errors(unknown) == []
    by_path = {(p.path, p.flag) for p in unknown}
    assert by_path == {
        ("spec.template.spec.volumes[0].persistentVolumeClaim", flags.PVC),
        ("spec.template.spec.volumes[0].persistentVolumeClaim", flags.PVC_WRITE),
        ("spec.template.spec.nodeSelector", "kubernetes.podspec-nodeselector"),
        ("spec.template.spec.tolerations", "kubernetes.podspec-tolerations"),
        ("spec.template.spec.runtimeClassName", "kubernetes.podspec-runtimeclassname"),
    }
    assert all(flags.enable_command(p.flag or "") in p.fix for p in unknown)
    # A cluster whose config-features has them off: errors. With them on: nothing to say.
    off = flags.Features.from_configmap_data({"kubernetes.podspec-nodeselector": "disabled"})
    assert {p.flag for p in errors(validate(built.manifest, off))} == {f for _, f in by_path}
    on = flags.Features.from_configmap_data({f: "enabled" for _, f in by_path})
    assert validate(built.manifest, on) == []


def test_emptydir_cache_needs_no_flag_by_default_but_does_when_turned_off() -> None:
    manifest = good()
    assert "emptyDir" in manifest["spec"]["template"]["spec"]["volumes"][0]
    assert validate(manifest, flags.Features()) == []
    off = flags.Features.from_configmap_data({"kubernetes.podspec-volumes-emptydir": "disabled"})
    assert [p.flag for p in errors(validate(manifest, off))] == ["kubernetes.podspec-volumes-emptydir"]


def test_schema_accepts_a_status_it_never_applies() -> None:
    manifest = copy.deepcopy(good())
    manifest["status"] = {"observedGeneration": 1, "url": "http://fraud.default.example.com"}
    assert schema_problems(manifest) == []
