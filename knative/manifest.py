"""Builds the Knative Service (`serving.knative.dev/v1`) of one model in one region.

The manifest carries one h2c port with a gRPC readiness probe on it, resources (with `nvidia.com/gpu` when
asked), the environment the function image reads (knative/entrypoint.py), every autoscaling annotation on the
revision template (defaults from the model's config.yaml `autoscaling` block, functions/config.py), the
hard concurrency limit and request timeout, a traffic split with tags, labels for model, region and version,
and a TensorRT engine-cache volume (emptyDir; a PersistentVolumeClaim needs Knative feature flags).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeinfer import knative_names as n
from edgeinfer.functions.config import Autoscaling
from edgeinfer.knative import flags
from edgeinfer.knative.webhook import config as kc
from edgeinfer.version import __version__

# What `docker build -f deploy/function.Dockerfile` is tagged in the docs.
DEFAULT_IMAGE = f"edgeinfer/function:{__version__}"
DEFAULT_NAMESPACE = "default"
CONTAINER_NAME = "function"
CONTAINER_PORT = 8080
PORT_NAME = "h2c"  # Knative then speaks HTTP/2 cleartext to the container: gRPC end to end
GPU = "nvidia.com/gpu"
ENGINE_CACHE_VOLUME = "trt-engine-cache"
ENGINE_CACHE_PATH = "/var/cache/edgeinfer/trt"
DEFAULT_MODEL_REPO_URI = "file:///models"
KPA_CLASS = "kpa.autoscaling.knative.dev"
METRICS = ("concurrency", "rps")
PROGRESS_DEADLINE_ANNOTATION = "serving.knative.dev/progress-deadline"
# Knative's own defaults; written out so a manifest reads the same on every cluster.
DEFAULT_TIMEOUT_SECONDS = 300
# A cold start that builds TensorRT engines can take minutes: give it Knative's full default, explicitly.
DEFAULT_PROGRESS_DEADLINE_S = 600.0
KNATIVE_SCALE_TO_ZERO_GRACE_S = 30.0

# The environment of the function image (knative/entrypoint.py reads it).
ENV_MODEL_REPO = "EDGEINFER_MODEL_REPO"
ENV_MODELS = "EDGEINFER_MODELS"
ENV_PROVIDERS = "EDGEINFER_EXECUTION_PROVIDERS"
ENV_ENGINE_CACHE = "EDGEINFER_TRT_ENGINE_CACHE"
ENV_REGION = "EDGEINFER_REGION"
# The one version of the model this revision serves (knative/entrypoint.py links only it): a canary's revisions
# each serve their own version, whatever else the repository holds.
ENV_MODEL_VERSION = "EDGEINFER_MODEL_VERSION"


@dataclass(frozen=True)
class TrafficTarget:
    """A share of the traffic: `revision` None means the latest ready revision."""

    revision: str | None
    percent: int
    tag: str | None = None


@dataclass(frozen=True)
class EngineCache:
    """Where TensorRT keeps built engines: an emptyDir per pod, or a PersistentVolumeClaim shared by pods."""

    claim: str | None = None
    size_limit: str = "10Gi"  # emptyDir only


@dataclass(frozen=True)
class Toleration:
    key: str
    effect: str = "NoSchedule"
    value: str | None = None  # None: operator Exists

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"key": self.key}
        if self.value is None:
            entry["operator"] = "Exists"
        else:
            entry.update(operator="Equal", value=self.value)
        if self.effect:
            entry["effect"] = self.effect
        return entry


def _default_requests() -> dict[str, str]:
    return {"cpu": "1", "memory": "1Gi"}


def _default_limits() -> dict[str, str]:
    return {"memory": "2Gi"}


@dataclass(frozen=True)
class ServiceOptions:
    image: str = DEFAULT_IMAGE
    namespace: str = DEFAULT_NAMESPACE
    service_name: str | None = None  # default: from the model's name
    model_version: str | None = None  # the repository's version label, for the version label
    # Serve only this version (EDGEINFER_MODEL_VERSION); None: every version of the repository, the latest by default.
    pinned_version: str | None = None
    model_repo_uri: str = DEFAULT_MODEL_REPO_URI
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    scale_metric: str = "concurrency"
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    requests: Mapping[str, str] = field(default_factory=_default_requests)
    limits: Mapping[str, str] = field(default_factory=_default_limits)
    execution_providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
    traffic: tuple[TrafficTarget, ...] = ()  # empty: all traffic to the latest revision
    revision_name: str | None = None
    engine_cache: EngineCache = field(default_factory=EngineCache)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    runtime_class: str | None = None
    cluster_local: bool = False
    progress_deadline_s: float = DEFAULT_PROGRESS_DEADLINE_S


@dataclass(frozen=True)
class BuiltService:
    model: str
    region: str
    manifest: dict[str, Any]
    # What the user should know before applying it (feature flags, cluster-wide settings).
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.manifest["metadata"]["namespace"])


def number_text(value: float) -> str:
    """An annotation value: 70.0 → "70", 0.5 → "0.5"."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def duration_text(seconds: float) -> str:
    """A Go duration as Knative parses it: 60 → "60s", 0.5 → "500ms"."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def autoscaling_annotations(knobs: Autoscaling, metric: str = "concurrency") -> dict[str, str]:
    """Every per-revision autoscaling annotation, with the model's values (Knative's names)."""
    p = n.AUTOSCALING_PREFIX
    # activation-scale only above 1: 1 is Knative's behaviour without it, and its webhook refuses an explicit 1.
    activation = {f"{p}activation-scale": str(knobs.activation_scale)} if knobs.activation_scale > 1 else {}
    return {
        f"{p}class": KPA_CLASS,
        f"{p}metric": metric,
        f"{p}min-scale": str(knobs.min_scale),
        f"{p}max-scale": str(knobs.max_scale),
        f"{p}initial-scale": str(knobs.initial_scale),
        **activation,
        f"{p}target": number_text(knobs.target),
        f"{p}target-utilization-percentage": number_text(knobs.target_utilization_percentage),
        f"{p}window": duration_text(knobs.window),
        f"{p}panic-window-percentage": number_text(knobs.panic_window_percentage),
        f"{p}panic-threshold-percentage": number_text(knobs.panic_threshold_percentage),
        f"{p}scale-down-delay": duration_text(knobs.scale_down_delay),
        f"{p}scale-to-zero-pod-retention-period": duration_text(knobs.scale_to_zero_pod_retention_period),
    }


def _traffic(targets: tuple[TrafficTarget, ...]) -> list[dict[str, Any]]:
    if not targets:
        targets = (TrafficTarget(None, 100),)
    entries = []
    for target in targets:
        entry: dict[str, Any] = {}
        if target.tag:
            entry["tag"] = target.tag
        if target.revision is None:
            entry["latestRevision"] = True
        else:
            entry["revisionName"] = target.revision
        entry["percent"] = target.percent
        entries.append(entry)
    return entries


def build_service(model: str, region: str, options: ServiceOptions | None = None) -> BuiltService:
    """The Knative Service of `model` in `region`; ValueError when the model's name makes no Service name."""
    options = options or ServiceOptions()
    name = options.service_name or n.service_name(model)
    notes: list[str] = []
    labels = {
        n.LABEL_MANAGED_BY: n.MANAGED_BY,
        n.LABEL_PART_OF: "edgeinfer",
        n.LABEL_COMPONENT: "function",
        n.LABEL_VERSION: __version__,
        n.LABEL_MODEL: model,
        n.LABEL_REGION: region,
        n.LABEL_MODEL_VERSION: options.pinned_version or options.model_version or "latest",
    }
    service_labels = dict(labels)
    if options.cluster_local:
        service_labels[n.LABEL_VISIBILITY] = "cluster-local"

    limits = dict(options.limits)
    has_gpu = GPU in limits
    # Without a GPU the GPU providers would only fail and fall through at each cold start.
    providers = options.execution_providers if has_gpu else ("cpu",)
    if not has_gpu and any(p in ("tensorrt", "cuda") for p in options.execution_providers):
        notes.append(
            f"no {GPU} limit: the function runs on CPU ({ENV_PROVIDERS}=cpu); add --limit {GPU}=1 for TensorRT and CUDA"
        )
    resources: dict[str, Any] = {}
    if options.requests:
        resources["requests"] = dict(options.requests)
    if limits:
        resources["limits"] = limits

    env = [
        {"name": ENV_MODEL_REPO, "value": options.model_repo_uri},
        {"name": ENV_MODELS, "value": model},
        {"name": ENV_PROVIDERS, "value": ",".join(providers)},
        {"name": ENV_ENGINE_CACHE, "value": ENGINE_CACHE_PATH},
        {"name": ENV_REGION, "value": region},
    ]
    if options.pinned_version:
        env.append({"name": ENV_MODEL_VERSION, "value": options.pinned_version})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": options.image,
        "ports": [{"name": PORT_NAME, "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": env,
        # The function answers NOT_SERVING until its models are loaded and warmed up.
        "readinessProbe": {
            "grpc": {"port": CONTAINER_PORT},
            "periodSeconds": 1,
            "timeoutSeconds": 1,
            "failureThreshold": 3,
            "successThreshold": 1,
        },
        "resources": resources,
        "volumeMounts": [{"name": ENGINE_CACHE_VOLUME, "mountPath": ENGINE_CACHE_PATH}],
        # What Knative's secure-pod-defaults would set (its webhook warns without them); the image runs as 65532.
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    cache = options.engine_cache
    volume: dict[str, Any] = {"name": ENGINE_CACHE_VOLUME}
    if cache.claim is None:
        volume["emptyDir"] = {"sizeLimit": cache.size_limit}
    else:
        volume["persistentVolumeClaim"] = {"claimName": cache.claim}
        notes.append(
            f"the engine cache is PersistentVolumeClaim '{cache.claim}': Knative accepts it only with the feature "
            f"flags {kc.POD_SPEC_PV_CLAIM} and {kc.POD_SPEC_PERSISTENT_VOLUME_WRITE} on (the cache is written); "
            f"turn them on with: {flags.enable_command(kc.POD_SPEC_PV_CLAIM)} and "
            f"{flags.enable_command(kc.POD_SPEC_PERSISTENT_VOLUME_WRITE)}"
        )

    pod: dict[str, Any] = {
        "containerConcurrency": options.autoscaling.container_concurrency,
        "timeoutSeconds": options.timeout_seconds,
        "containers": [container],
        "volumes": [volume],
    }
    if options.node_selector:
        pod["nodeSelector"] = dict(options.node_selector)
    if options.tolerations:
        pod["tolerations"] = [t.to_dict() for t in options.tolerations]
    if options.runtime_class:
        pod["runtimeClassName"] = options.runtime_class
    if has_gpu and not (options.node_selector or options.tolerations or options.runtime_class):
        notes.append(
            "GPU nodes are often tainted or labelled: --toleration, --node-selector and --runtime-class need the "
            "Knative flags kubernetes.podspec-tolerations, -nodeselector and -runtimeclassname"
        )

    knobs = options.autoscaling
    annotations = autoscaling_annotations(knobs, options.scale_metric)
    annotations[PROGRESS_DEADLINE_ANNOTATION] = duration_text(options.progress_deadline_s)
    if knobs.scale_to_zero_grace_period != KNATIVE_SCALE_TO_ZERO_GRACE_S:
        notes.append(
            f"scale-to-zero-grace-period {duration_text(knobs.scale_to_zero_grace_period)} is cluster-wide in "
            "Knative (configmap config-autoscaler in knative-serving), not per Service: set it there"
        )
    if knobs.initial_scale == 0:
        notes.append(
            'initial-scale 0 needs allow-zero-initial-scale: "true" in configmap config-autoscaler of knative-serving'
        )

    template_metadata: dict[str, Any] = {"labels": labels, "annotations": annotations}
    if options.revision_name:
        template_metadata = {"name": options.revision_name, **template_metadata}
    manifest: dict[str, Any] = {
        "apiVersion": n.API_VERSION,
        "kind": "Service",
        "metadata": {"name": name, "namespace": options.namespace, "labels": service_labels},
        "spec": {
            "template": {"metadata": template_metadata, "spec": pod},
            "traffic": _traffic(options.traffic),
        },
    }
    return BuiltService(model, region, manifest, tuple(notes))
