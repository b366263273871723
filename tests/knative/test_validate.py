"""Validation before anything is sent, through `validate()` on whole Services: the CRD schema, Knative's webhook
(ported in knative/webhook/, its own tables in tests/knative/webhook/) and edgeinfer's policies, each at its level;
bad manifests rejected for the right reason, each problem naming the field and the fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from edgeinfer.knative import flags
from edgeinfer.knative.manifest import EngineCache, ServiceOptions, Toleration, TrafficTarget, build_service
from edgeinfer.knative.validate import (
    NO_FIELD,
    POLICIES,
    UnknownPolicy,
    errors,
    knative_problems,
    schema_problems,
    validate,
    webhook_errors,
)
from edgeinfer.knative.webhook import config as kc

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
    # (case, mutation, path of the problem, words of the message): Knative's webhook's own texts.
    ("two ports", add_port, "spec.template.spec.containers[*].ports", "more than one container port is set"),
    ("port named grpc", set_in("spec.template.spec.containers.0.ports.0.name", "grpc"), "ports", "Port name grpc"),
    (
        "reserved port",
        set_in("spec.template.spec.containers.0.ports.0.containerPort", 8012),
        "containers[0].ports.containerPort",
        "8012 is a reserved port",
    ),
    (
        "two probe handlers",
        set_in("spec.template.spec.containers.0.readinessProbe.tcpSocket", {"port": 8080}),
        "readinessProbe",
        "expected exactly one, got both",
    ),
    ("min-scale above max-scale", min_above_max, "autoscaling.knative.dev/max-scale", "max-scale=2 is less than"),
    ("window too short", annotate("window", "2s"), "autoscaling.knative.dev/window", "expected 6s <= 2s <= 1h0m0s"),
    (
        "panic threshold too low",
        annotate("panic-threshold-percentage", "50"),
        "panic-threshold-percentage",
        "expected 110 <= 50 <= 1000",
    ),
    (
        "utilization over 100",
        annotate("target-utilization-percentage", "120"),
        "target-utilization-percentage",
        "expected 1 <= 120 <= 100",
    ),
    ("metric of another class", annotate("metric", "cpu"), "autoscaling.knative.dev/metric", "invalid value: cpu"),
    ("traffic adds up to 90", set_in("spec.traffic.0.percent", 90), "spec.traffic", "Traffic targets sum to 90"),
    (
        "both revisionName and latestRevision",
        set_in("spec.traffic.0.revisionName", "fraud-00001"),
        "spec.traffic[0].latestRevision",
        'may not set revisionName "fraud-00001" when latestRevision is true',
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
        "spec.traffic[0].tag, spec.traffic[1].tag",
        'Multiple definitions for "a"',
    ),
    (
        "reserved env var",
        set_in("spec.template.spec.containers.0.env.0.name", "PORT"),
        "env[0].name",
        '"PORT" is a reserved environment variable',
    ),
    (
        "timeout beyond the cluster's maximum",
        set_in("spec.template.spec.timeoutSeconds", 900),
        "timeoutSeconds",
        "expected 0 <= 900 <= 600",
    ),
    (
        "concurrency over 1000",
        set_in("spec.template.spec.containerConcurrency", 5000),
        "containerConcurrency",
        "expected 0 <= 5000 <= 1000",
    ),
    (
        "volume not mounted",
        set_in("spec.template.spec.containers.0.volumeMounts", []),
        "volumes[0].name",
        'volume with name "trt-engine-cache" not mounted',
    ),
    (
        "revision name without the Service's",
        set_in("spec.template.metadata.name", "v2"),
        "spec.template.metadata.name",
        'must have prefix "fraud-"',
    ),
    ("bad Service name", set_in("metadata.name", "Fraud_Model"), "metadata.name", "not a DNS 1035 label"),
    # The differences the issue lists, where Knative refuses and the old restatement accepted:
    (
        "mountPath //dev// (Go's path.Clean gives /dev)",
        set_in("spec.template.spec.containers.0.volumeMounts.0.mountPath", "//dev//"),
        "volumeMounts[0].mountPath",
        'mountPath "/dev" is a reserved path',
    ),
    (
        "readiness probe initialDelaySeconds -1",
        set_in("spec.template.spec.containers.0.readinessProbe.initialDelaySeconds", -1),
        "readinessProbe.initialDelaySeconds",
        "expected 0 <= -1 <= ",
    ),
    (
        "image foo:bar:baz",
        set_in("spec.template.spec.containers.0.image", "foo:bar:baz"),
        "containers[0].image",
        "Failed to parse image reference",
    ),
    (
        "privileged",
        set_in("spec.template.spec.containers.0.securityContext", {"privileged": True}),
        "securityContext.privileged",
        "must not set the field(s)",
    ),
    (
        "runAsUser -10",
        set_in("spec.template.spec.containers.0.securityContext", {"runAsUser": -10}),
        "securityContext.runAsUser",
        "expected 0 <= -10 <= 2147483647",
    ),
    ("volume with no source", set_in("spec.template.spec.volumes.0", {"name": "trt-engine-cache"}), "volumes[0]", ""),
    (
        "automountServiceAccountToken",
        set_in("spec.template.spec.automountServiceAccountToken", True),
        "spec.template.spec.automountServiceAccountToken",
        "must not set the field(s)",
    ),
    (
        "unknown knative.dev autoscaling class",
        annotate("class", "foo.autoscaling.knative.dev"),
        "autoscaling.knative.dev/class",
        "invalid value: foo.autoscaling.knative.dev",
    ),
    (
        "min-scale above activation-scale",
        lambda m: annotations(m).update(
            {"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/activation-scale": "2"}
        ),
        "autoscaling.knative.dev/activation-scale",
        "min-scale=3 is greater than activation-scale=2",
    ),
    (
        "window not whole seconds",
        annotate("window", "1m9s82ms"),
        "autoscaling.knative.dev/window",
        "must be specified with at most second precision",
    ),
    (
        "initial-scale 0 while the cluster disallows it",
        annotate("initial-scale", "0"),
        "autoscaling.knative.dev/initial-scale",
        "invalid value: 0",
    ),
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

# Valid to Knative (the list), though the old restatement refused them. Policy may still object.
ACCEPTED: list[tuple[str, Callable[[Manifest], None]]] = [
    ("no ports", lambda m: container(m).pop("ports")),
    ("generateName without name", lambda m: m["metadata"].update(name=None, generateName="fraud-")),
    ("traffic percent 100 only (defaults to latestRevision)", set_in("spec.traffic", [{"percent": 100}])),
    ("probe on another port number", set_in("spec.template.spec.containers.0.readinessProbe.grpc.port", 9000)),
    ("revisionName naming any revision", set_in("spec.traffic", [{"revisionName": "other-00001", "percent": 100}])),
]


KNATIVE_DEFAULTS = flags.ClusterConfig.knative_defaults()


@pytest.mark.parametrize(("mutate", "path", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_manifest_is_rejected_for_the_right_reason(
    mutate: Callable[[Manifest], None], path: str, words: str
) -> None:
    manifest = good()
    mutate(manifest)
    found = errors(validate(manifest, KNATIVE_DEFAULTS))
    matching = [p for p in found if path in p.path and words in p.message and p.level == "error"]
    assert matching, f"expected an error at {path} saying {words!r}; got: {[str(p) for p in found]}"
    for problem in matching:
        assert problem.fix and str(problem).startswith(problem.path) and "; fix: " in str(problem)


@pytest.mark.parametrize("mutate", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_what_knative_accepts_is_no_knative_error(mutate: Callable[[Manifest], None]) -> None:
    manifest = good()
    mutate(manifest)
    manifest["metadata"] = {k: v for k, v in manifest["metadata"].items() if v is not None}
    assert knative_problems(manifest, KNATIVE_DEFAULTS) == []


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (ACCEPTED[0][1], "h2c-port"),
        (set_in("spec.template.spec.containers.0.ports.0.name", "http1"), "h2c-port"),
        (ACCEPTED[3][1], "probe-on-serving-port"),
        (ACCEPTED[4][1], "traffic-of-this-service"),
        (gpu_request_above_limit, "gpu-whole-and-equal"),
    ],
    ids=["no port", "http1 port", "probe elsewhere", "another Service's revision", "GPU request above limit"],
)
def test_each_policy_is_its_own_level_and_can_be_waived(mutate: Callable[[Manifest], None], rule: str) -> None:
    manifest = good()
    mutate(manifest)
    found = validate(manifest, KNATIVE_DEFAULTS)
    assert found and {p.level for p in found} == {"policy"}, [str(p) for p in found]
    assert {p.rule for p in found} == {rule}
    assert all(f"--allow {rule}" in p.fix for p in found)
    assert errors(found) == found  # a policy not waived stops a deploy
    assert validate(manifest, KNATIVE_DEFAULTS, allow=[rule]) == []
    assert POLICIES[rule].reason


def test_an_unknown_policy_name_is_refused() -> None:
    with pytest.raises(UnknownPolicy, match="h2c-port"):
        validate(good(), allow=["h2c"])


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
    assert any("PersistentVolumeClaim 'trt-engines'" in note and kc.POD_SPEC_PV_CLAIM in note for note in built.notes)
    # Not knowing the cluster: warnings with the flag and the command that turns it on; nothing blocks.
    unknown = validate(built.manifest)
    assert errors(unknown) == [], [str(p) for p in unknown]
    by_path = {(p.path, p.flag) for p in unknown}
    assert by_path == {
        # Knative's volume messages name the claim, not a field.
        (NO_FIELD, kc.POD_SPEC_PV_CLAIM),
        (NO_FIELD, kc.POD_SPEC_PERSISTENT_VOLUME_WRITE),
        ("spec.template.spec.volumes[0].persistentVolumeClaim", kc.POD_SPEC_PV_CLAIM),
        ("spec.template.spec.nodeSelector", kc.POD_SPEC_NODE_SELECTOR),
        ("spec.template.spec.tolerations", kc.POD_SPEC_TOLERATIONS),
        ("spec.template.spec.runtimeClassName", kc.POD_SPEC_RUNTIME_CLASS_NAME),
    }, [str(p) for p in unknown]
    assert all(flags.enable_command(p.flag or "") in p.fix for p in unknown)
    # A cluster whose config-features has them off: errors. With them on: nothing to say.
    off = flags.ClusterConfig.from_configmaps({"config-features": {kc.POD_SPEC_NODE_SELECTOR: "disabled"}}, "{name}")
    assert {p.flag for p in errors(validate(built.manifest, off))} == {f for _, f in by_path}
    on = flags.ClusterConfig.from_configmaps({"config-features": {f: "enabled" for _, f in by_path}}, "{name}")
    assert validate(built.manifest, on) == []


def test_emptydir_cache_needs_no_flag_by_default_but_does_when_turned_off() -> None:
    manifest = good()
    assert "emptyDir" in manifest["spec"]["template"]["spec"]["volumes"][0]
    assert validate(manifest, KNATIVE_DEFAULTS) == []
    off = flags.ClusterConfig.from_configmaps({"config-features": {kc.POD_SPEC_EMPTY_DIR: "disabled"}}, "{name}")
    refused = errors(validate(manifest, off))
    assert refused and {p.flag for p in refused} == {kc.POD_SPEC_EMPTY_DIR}, [str(p) for p in refused]


def test_schema_accepts_a_status_it_never_applies() -> None:
    manifest = copy.deepcopy(good())
    manifest["status"] = {"observedGeneration": 1, "url": "http://fraud.default.example.com"}
    assert schema_problems(manifest) == []


def test_webhook_defaults_before_it_validates() -> None:
    """SetDefaults runs first, as in the webhook: a port-less, probe-less container is defaulted, then valid."""
    manifest = good()
    del container(manifest)["readinessProbe"]
    container(manifest).pop("ports")
    manifest["spec"].pop("traffic")
    assert not webhook_errors(manifest)
