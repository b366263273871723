"""Checks a Knative Service manifest before anything is sent: the CRD schema, then the webhook's rules.

The CRD's openAPIV3Schema catches wrong types, unknown fields and missing required fields. Knative's admission
webhook enforces more than the schema says (pkg/apis/serving in knative/serving); the rules here are the ones a
model function can trip over: one port named h2c/http1/nothing and not a port the queue-proxy reserves, probes
on the serving port, the autoscaling annotations' ranges (min-scale ≤ max-scale...), traffic that adds up to
100 with each entry naming exactly one of revisionName or latestRevision, and fields behind feature flags.

Every problem names the field (a path into the manifest) and the fix.
"""

from __future__ import annotations

import copy
import functools
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema

from edgeinfer import knative_names as n
from edgeinfer.functions.config import parse_duration
from edgeinfer.knative import flags
from edgeinfer.knative.crd import service_schema

# The queue-proxy and profiling ports of every Knative pod (pkg/apis/serving/k8s_validation.go).
RESERVED_PORTS = {
    8008: "profiling",
    8012: "queue-proxy HTTP",
    8013: "queue-proxy HTTP/2",
    8022: "queue-proxy admin",
    9090: "autoscaling metrics",
    9091: "user metrics",
}
PORT_NAMES = ("h2c", "http1", "")
RESERVED_ENV = ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION")
RESERVED_CONTAINER_NAMES = ("queue-proxy",)
RESERVED_MOUNT_PATHS = ("/", "/dev", "/dev/log")
# Knative's cluster defaults (config-defaults): beyond these the webhook refuses unless the cluster raised them.
MAX_CONTAINER_CONCURRENCY = 1000
MAX_TIMEOUT_SECONDS = 600
WINDOW_MIN_S, WINDOW_MAX_S = 6.0, 3600.0
SCALE_DOWN_DELAY_MAX_S = 3600.0
KNATIVE_CLASSES = ("kpa.autoscaling.knative.dev", "hpa.autoscaling.knative.dev")

Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    fix: str
    level: Level = "error"
    flag: str | None = None  # the Knative feature flag that would allow the field

    def __str__(self) -> str:
        return f"{self.path}: {self.message}; fix: {self.fix}"


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.level == "error"]


# --- the CRD schema ---------------------------------------------------------------------------------------


def _closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever Kubernetes would drop them (kubectl's strict validation)."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@functools.cache
def _schema_validator() -> jsonschema.protocols.Validator:
    # status stays in: a manifest may carry it (kubectl get -o yaml); Kubernetes ignores it on apply.
    schema = _closed(copy.deepcopy(service_schema()))
    validator: jsonschema.protocols.Validator = jsonschema.Draft7Validator(schema)
    return validator


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _schema_fix(error: jsonschema.ValidationError) -> tuple[str, str]:
    kind = error.validator
    if kind == "additionalProperties":
        unknown = re.findall(r"'([^']+)'", error.message.split("(")[-1])
        field = ", ".join(unknown) or "the field"
        return f"unknown field {field}", f"remove {field} or fix its spelling (the CRD has no such field)"
    if kind == "required":
        return error.message, "add it"
    if kind == "type":
        return f"{error.instance!r} is not of type {error.validator_value}", f"write it as a {error.validator_value}"
    if kind == "enum":
        return error.message, f"use one of {error.validator_value}"
    return error.message, "see the Knative Service CRD schema for this field"


def schema_problems(manifest: Mapping[str, Any]) -> list[Problem]:
    """The manifest against the CRD's openAPIV3Schema."""
    problems = []
    for error in sorted(_schema_validator().iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))):
        message, fix = _schema_fix(error)
        problems.append(Problem(_path(error.absolute_path), message, fix))
    if manifest.get("apiVersion") != n.API_VERSION:
        problems.append(Problem("apiVersion", f"is {manifest.get('apiVersion')!r}", f"set it to {n.API_VERSION}"))
    if manifest.get("kind") != "Service":
        problems.append(Problem("kind", f"is {manifest.get('kind')!r}", "set it to Service"))
    return problems


# --- the webhook's rules ------------------------------------------------------------------------------------


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _metadata_problems(manifest: Mapping[str, Any]) -> list[Problem]:
    problems = []
    name = _get(manifest, "metadata", "name")
    if not isinstance(name, str) or not name:
        problems.append(Problem("metadata.name", "missing", "name the Service (a DNS-1035 label, e.g. 'fraud')"))
    elif not n.is_dns1035_label(name):
        problems.append(
            Problem(
                "metadata.name",
                f"'{name}' is not a DNS-1035 label",
                "use lower-case letters, digits and '-', starting with a letter, at most 63 characters",
            )
        )
    namespace = _get(manifest, "metadata", "namespace")
    if isinstance(namespace, str) and namespace and not n.is_dns1123_label(namespace):
        problems.append(Problem("metadata.namespace", f"'{namespace}' is not a namespace name", "use a DNS-1123 label"))
    revision = _get(manifest, "spec", "template", "metadata", "name")
    if isinstance(revision, str) and revision and isinstance(name, str) and not revision.startswith(f"{name}-"):
        problems.append(
            Problem(
                "spec.template.metadata.name",
                f"revision name '{revision}' does not start with the Service's name",
                f"name it '{name}-<suffix>' (e.g. '{name}-v2'), or leave it out for a generated name",
            )
        )
    for where in ("metadata.labels", "spec.template.metadata.labels"):
        labels = _get(manifest, *where.split(".")) or {}
        for key, value in labels.items() if isinstance(labels, dict) else ():
            if isinstance(value, str) and not n.is_label_value(value):
                problems.append(
                    Problem(
                        f"{where}.{key}",
                        f"'{value}' is not a label value",
                        "use at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
                    )
                )
    return problems


def _port_problems(containers: list[Any]) -> tuple[list[Problem], dict[str, Any] | None]:
    """Exactly one port across the containers; returns the problems and the serving port."""
    problems: list[Problem] = []
    ports = [
        (i, j, port)
        for i, c in enumerate(containers)
        if isinstance(c, dict)
        for j, port in enumerate(c.get("ports") or [])
        if isinstance(port, dict)
    ]
    base = "spec.template.spec.containers"
    if not ports:
        problems.append(
            Problem(
                f"{base}[0].ports",
                "no port: Knative would send HTTP/1 to 8080, and gRPC needs HTTP/2",
                "add ports: [{name: h2c, containerPort: 8080}]",
            )
        )
        return problems, None
    if len(ports) > 1:
        where = ", ".join(f"{base}[{i}].ports[{j}]" for i, j, _ in ports)
        problems.append(
            Problem(
                f"{base}[*].ports",
                f"{len(ports)} ports ({where}); Knative routes to exactly one",
                "keep only the serving port (h2c) and remove the others",
            )
        )
    i, j, port = ports[0]
    where = f"{base}[{i}].ports[{j}]"
    name = port.get("name", "")
    if name not in PORT_NAMES:
        problems.append(
            Problem(f"{where}.name", f"port name '{name}' is not allowed", "name it h2c (gRPC), http1, or leave it out")
        )
    elif name != "h2c":
        problems.append(
            Problem(
                f"{where}.name",
                f"port name '{name or '(none)'}' makes Knative speak HTTP/1 to the container",
                "name it h2c: the function serves gRPC, which needs HTTP/2",
                level="warning",
            )
        )
    number = port.get("containerPort")
    if isinstance(number, int) and not isinstance(number, bool):
        if number in RESERVED_PORTS:
            problems.append(
                Problem(
                    f"{where}.containerPort",
                    f"{number} is reserved by Knative ({RESERVED_PORTS[number]})",
                    "use another port, e.g. 8080",
                )
            )
        elif not 1 <= number <= 65535:
            problems.append(Problem(f"{where}.containerPort", f"{number} is not a port", "use 1-65535, e.g. 8080"))
    protocol = port.get("protocol", "TCP")
    if protocol != "TCP":
        problems.append(Problem(f"{where}.protocol", f"'{protocol}' is not allowed", "use TCP or leave it out"))
    return problems, port


_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")


def _probe_problems(probe: Any, where: str, port: Mapping[str, Any] | None, readiness: bool) -> list[Problem]:
    if not isinstance(probe, dict):
        return []
    problems = []
    handlers = [h for h in _HANDLERS if probe.get(h) is not None]
    if not handlers:
        problems.append(Problem(where, "no probe handler", "give exactly one of grpc, httpGet, tcpSocket or exec"))
    elif len(handlers) > 1:
        problems.append(Problem(where, f"several handlers ({', '.join(handlers)})", "keep exactly one"))
    container_port = port.get("containerPort", 8080) if port else 8080
    port_name = port.get("name", "") if port else ""
    for handler in ("grpc", "httpGet", "tcpSocket"):
        target = _get(probe, handler, "port")
        if target is None:
            continue
        if target != container_port and not (isinstance(target, str) and target and target == port_name):
            problems.append(
                Problem(
                    f"{where}.{handler}.port",
                    f"probe port {target} is not the container port {container_port}",
                    f"probe the serving port: set it to {container_port}",
                )
            )
    if readiness:
        period = probe.get("periodSeconds", 0)
        if period == 0:
            for key in ("failureThreshold", "timeoutSeconds"):
                if probe.get(key):
                    problems.append(
                        Problem(
                            f"{where}.{key}",
                            "not allowed when periodSeconds is 0 (Knative's aggressive probing)",
                            f"remove {key}, or set periodSeconds ≥ 1",
                        )
                    )
        elif isinstance(period, int) and period < 0:
            problems.append(Problem(f"{where}.periodSeconds", f"{period} is negative", "use 0 or more"))
        success = probe.get("successThreshold")
        if isinstance(success, int) and success < 1:
            problems.append(Problem(f"{where}.successThreshold", f"{success} is below 1", "use 1"))
    return problems


def _container_problems(containers: list[Any], volumes: Mapping[str, Any], port: Any) -> list[Problem]:
    problems = []
    base = "spec.template.spec.containers"
    for i, container in enumerate(containers):
        if not isinstance(container, dict):
            continue
        where = f"{base}[{i}]"
        if container.get("name") in RESERVED_CONTAINER_NAMES:
            problems.append(Problem(f"{where}.name", f"'{container['name']}' is reserved", "rename the container"))
        if not container.get("image"):
            problems.append(Problem(f"{where}.image", "missing", "set the image (--image)"))
        for j, env in enumerate(container.get("env") or []):
            if isinstance(env, dict) and env.get("name") in RESERVED_ENV:
                problems.append(
                    Problem(
                        f"{where}.env[{j}].name",
                        f"'{env['name']}' is set by Knative",
                        "remove it (the function reads $PORT that Knative sets)",
                    )
                )
        serving = bool(container.get("ports")) or len(containers) == 1
        for kind, readiness in (("readinessProbe", True), ("livenessProbe", False)):
            probe = container.get(kind)
            if probe is not None and not serving:
                problems.append(
                    Problem(f"{where}.{kind}", "probes are only allowed on the serving container", "remove it")
                )
            elif serving:
                problems.extend(_probe_problems(probe, f"{where}.{kind}", port, readiness))
        problems.extend(_gpu_problems(container.get("resources"), f"{where}.resources"))
        seen_paths: set[str] = set()
        for j, mount in enumerate(container.get("volumeMounts") or []):
            if not isinstance(mount, dict):
                continue
            at = f"{where}.volumeMounts[{j}]"
            if mount.get("name") not in volumes:
                problems.append(
                    Problem(
                        f"{at}.name", f"no volume named '{mount.get('name')}'", "add it to spec.template.spec.volumes"
                    )
                )
            path = mount.get("mountPath", "")
            clean = posixpath.normpath(path) if path else ""
            if not path.startswith("/"):
                problems.append(Problem(f"{at}.mountPath", f"'{path}' is not an absolute path", "start it with /"))
            elif clean in RESERVED_MOUNT_PATHS:
                problems.append(Problem(f"{at}.mountPath", f"'{clean}' is reserved", "mount it elsewhere"))
            elif clean in seen_paths:
                problems.append(Problem(f"{at}.mountPath", f"'{clean}' is mounted twice", "use one mount per path"))
            seen_paths.add(clean)
            volume = volumes.get(str(mount.get("name")), {})
            writable_kind = isinstance(volume, dict) and ("emptyDir" in volume or "persistentVolumeClaim" in volume)
            if isinstance(volume, dict) and volume and not writable_kind and not mount.get("readOnly"):
                problems.append(
                    Problem(f"{at}.readOnly", "this kind of volume can only be mounted read-only", "set readOnly: true")
                )
    return problems


def _gpu_problems(resources: Any, where: str) -> list[Problem]:
    if not isinstance(resources, dict):
        return []
    limit = _get(resources, "limits", "nvidia.com/gpu")
    request = _get(resources, "requests", "nvidia.com/gpu")
    problems = []
    for value, at in ((limit, f"{where}.limits"), (request, f"{where}.requests")):
        if value is not None and not re.fullmatch(r"[0-9]+", str(value)):
            problems.append(
                Problem(f"{at}.nvidia.com/gpu", f"'{value}' is not a whole number of GPUs", "use 1, 2, ...")
            )
    if request is not None and limit is None:
        problems.append(
            Problem(f"{where}.requests.nvidia.com/gpu", "a GPU request without a limit", "set limits: nvidia.com/gpu")
        )
    elif request is not None and str(request) != str(limit):
        problems.append(
            Problem(
                f"{where}.requests.nvidia.com/gpu",
                f"request {request} differs from limit {limit}: GPUs cannot be overcommitted",
                "drop the request (it defaults to the limit) or make them equal",
            )
        )
    return problems


def _volume_problems(volumes: list[Any], containers: list[Any], features: flags.Features) -> list[Problem]:
    problems = []
    mounted = {
        m.get("name")
        for c in containers
        if isinstance(c, dict)
        for m in c.get("volumeMounts") or []
        if isinstance(m, dict)
    }
    seen: set[str] = set()
    for i, volume in enumerate(volumes):
        if not isinstance(volume, dict):
            continue
        where = f"spec.template.spec.volumes[{i}]"
        name = volume.get("name", "")
        if name in seen:
            problems.append(Problem(f"{where}.name", f"volume '{name}' is listed twice", "give each volume one entry"))
        seen.add(name)
        if name not in mounted:
            problems.append(Problem(f"{where}.name", f"volume '{name}' is not mounted", "mount it or remove it"))
        medium = _get(volume, "emptyDir", "medium")
        if medium not in (None, "", "Memory"):
            problems.append(Problem(f"{where}.emptyDir.medium", f"'{medium}' is not allowed", "use Memory or nothing"))
        claim = volume.get("persistentVolumeClaim")
        if isinstance(claim, dict) and not claim.get("readOnly") and not features.enabled(flags.PVC_WRITE):
            problems.append(_flag_problem(f"{where}.persistentVolumeClaim", flags.PVC_WRITE, features, "write to it"))
    return problems


def _flag_problem(path: str, flag: str, features: flags.Features, what: str = "use it") -> Problem:
    if features.from_cluster:
        return Problem(
            path,
            f"needs the Knative feature flag {flag}, which is '{features.value(flag)}' in {features.source}",
            f"turn it on to {what}: {flags.enable_command(flag)}",
            flag=flag,
        )
    # Not read from the cluster: the flag may be on there; say what it needs and go on.
    return Problem(
        path,
        f"needs the Knative feature flag {flag} (off by default)",
        f"make sure it is on in the target cluster: {flags.enable_command(flag)}",
        level="warning",
        flag=flag,
    )


def _feature_problems(manifest: Mapping[str, Any], features: flags.Features) -> list[Problem]:
    problems = []
    for gated in flags.gated_fields(manifest):
        if not features.enabled(gated.flag):
            problems.append(_flag_problem(gated.path, gated.flag, features))
    containers = _get(manifest, "spec", "template", "spec", "containers") or []
    if isinstance(containers, list) and len(containers) > 1 and not features.enabled(flags.MULTI_CONTAINER):
        problems.append(_flag_problem("spec.template.spec.containers", flags.MULTI_CONTAINER, features))
    return problems


def _int_annotation(value: str, key: str, where: str, minimum: int) -> tuple[int | None, list[Problem]]:
    try:
        number = int(value)
    except ValueError:
        return None, [Problem(where, f"'{value}' is not a whole number", f"write {key} as a whole number ≥ {minimum}")]
    if number < minimum:
        return None, [Problem(where, f"{number} is below {minimum}", f"use {minimum} or more")]
    return number, []


def _float_annotation(value: str, where: str, low: float, high: float | None, what: str) -> list[Problem]:
    try:
        number = float(value)
    except ValueError:
        return [Problem(where, f"'{value}' is not a number", f"write {what} as a number")]
    if number < low or (high is not None and number > high):
        bound = f"{low:g}-{high:g}" if high is not None else f"at least {low:g}"
        return [Problem(where, f"{value} is out of range", f"use {bound}")]
    return []


def _duration_annotation(value: str, where: str, low: float, high: float) -> list[Problem]:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return [Problem(where, f"'{value}' is not a duration", "write it like 60s, 1m30s or 500ms")]
    if not low <= seconds <= high:
        return [Problem(where, f"{value} is out of range", f"use {low:g}s to {high:g}s")]
    return []


def _autoscaling_problems(annotations: Mapping[str, Any], base: str) -> list[Problem]:
    p = n.AUTOSCALING_PREFIX
    problems: list[Problem] = []

    def at(key: str) -> str:
        return f"{base}.{p}{key}"

    scales: dict[str, int | None] = {}
    for key, minimum in (("min-scale", 0), ("max-scale", 0), ("initial-scale", 0), ("activation-scale", 1)):
        if f"{p}{key}" in annotations:
            scales[key], found = _int_annotation(str(annotations[f"{p}{key}"]), key, at(key), minimum)
            problems += found
    low, high = scales.get("min-scale"), scales.get("max-scale")
    if low is not None and high and low > high:
        problems.append(
            Problem(
                at("min-scale"),
                f"min-scale {low} is above max-scale {high}",
                "lower min-scale or raise max-scale (0 means no limit)",
            )
        )
    activation = scales.get("activation-scale")
    if activation is not None and high and activation > high:
        problems.append(
            Problem(at("activation-scale"), f"{activation} is above max-scale {high}", "use at most max-scale")
        )
    if scales.get("initial-scale") == 0:
        problems.append(
            Problem(
                at("initial-scale"),
                "0 is refused unless the cluster allows it",
                'set allow-zero-initial-scale: "true" in configmap config-autoscaler of knative-serving, or use 1',
                level="warning",
            )
        )
    klass = annotations.get(f"{p}class", KNATIVE_CLASSES[0])
    if isinstance(klass, str) and klass.endswith("autoscaling.knative.dev") and klass not in KNATIVE_CLASSES:
        problems.append(Problem(at("class"), f"'{klass}' is not a Knative autoscaler", f"use {KNATIVE_CLASSES[0]}"))
    metric = annotations.get(f"{p}metric")
    if metric is not None:
        allowed = {
            "kpa.autoscaling.knative.dev": ("concurrency", "rps"),
            "hpa.autoscaling.knative.dev": ("cpu", "memory"),
        }
        choices = allowed.get(str(klass))
        if choices is not None and metric not in choices:
            problems.append(
                Problem(at("metric"), f"'{metric}' is not a metric of {klass}", f"use {' or '.join(choices)}")
            )
    checks: tuple[tuple[str, float, float | None], ...] = (
        ("target", 0.01, None),
        ("target-utilization-percentage", 1.0, 100.0),
        ("panic-window-percentage", 1.0, 100.0),
        ("panic-threshold-percentage", 110.0, 1000.0),
    )
    for key, low_bound, high_bound in checks:
        if f"{p}{key}" in annotations:
            problems += _float_annotation(str(annotations[f"{p}{key}"]), at(key), low_bound, high_bound, key)
    durations: tuple[tuple[str, float, float], ...] = (
        ("window", WINDOW_MIN_S, WINDOW_MAX_S),
        ("scale-down-delay", 0.0, SCALE_DOWN_DELAY_MAX_S),
        ("scale-to-zero-pod-retention-period", 0.0, WINDOW_MAX_S),
    )
    for key, shortest, longest in durations:
        if f"{p}{key}" in annotations:
            problems += _duration_annotation(str(annotations[f"{p}{key}"]), at(key), shortest, longest)
    return problems


def _traffic_problems(traffic: Any, service: str) -> list[Problem]:
    if traffic is None:
        return []
    if not isinstance(traffic, list) or not traffic:
        return [
            Problem("spec.traffic", "empty", "send 100 percent somewhere, e.g. [{latestRevision: true, percent: 100}]")
        ]
    problems = []
    total = 0
    tags: dict[str, int] = {}
    for i, entry in enumerate(traffic):
        if not isinstance(entry, dict):
            continue
        where = f"spec.traffic[{i}]"
        revision = entry.get("revisionName")
        latest = entry.get("latestRevision")
        if revision and latest is True:
            problems.append(
                Problem(where, "names both revisionName and latestRevision: true", "keep exactly one of the two")
            )
        elif not revision and latest is not True:
            problems.append(
                Problem(
                    where,
                    "names neither revisionName nor latestRevision: true",
                    "add revisionName: <revision> or latestRevision: true",
                )
            )
        if revision and not str(revision).startswith(f"{service}-"):
            problems.append(
                Problem(
                    f"{where}.revisionName",
                    f"'{revision}' is not a revision of Service '{service}'",
                    f"use one of its revisions ('{service}-...'; see `edgeinfer services describe`)",
                )
            )
        if entry.get("configurationName"):
            problems.append(
                Problem(f"{where}.configurationName", "not allowed in a Service", "use latestRevision: true instead")
            )
        if entry.get("url"):
            problems.append(Problem(f"{where}.url", "is set by Knative, not by you", "remove it"))
        percent = entry.get("percent", 0)
        if isinstance(percent, int) and not isinstance(percent, bool):
            if not 0 <= percent <= 100:
                problems.append(Problem(f"{where}.percent", f"{percent} is not 0-100", "use a percent from 0 to 100"))
            total += percent
        tag = entry.get("tag")
        if tag:
            if not n.is_dns1123_label(str(tag)) or len(f"{tag}-{service}") > 63:
                problems.append(
                    Problem(
                        f"{where}.tag",
                        f"'{tag}' is not a valid tag",
                        "use lower-case letters, digits and '-' (it becomes part of a hostname)",
                    )
                )
            if tag in tags:
                problems.append(
                    Problem(f"{where}.tag", f"tag '{tag}' is already spec.traffic[{tags[tag]}]", "give each tag once")
                )
            tags[str(tag)] = i
    if total != 100:
        problems.append(Problem("spec.traffic", f"the percents add up to {total}", "make them add up to exactly 100"))
    return problems


def webhook_problems(manifest: Mapping[str, Any], features: flags.Features | None = None) -> list[Problem]:
    """The rules Knative's admission webhook enforces beyond the schema."""
    features = features or flags.Features()
    problems = _metadata_problems(manifest)
    pod = _get(manifest, "spec", "template", "spec")
    if not isinstance(pod, dict):
        problems.append(Problem("spec.template.spec", "missing", "give the revision template a pod spec"))
        return problems
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        problems.append(Problem("spec.template.spec.containers", "missing", "add the function container"))
        return problems
    port_problems, port = _port_problems(containers)
    problems += port_problems
    volume_list = pod.get("volumes") or []
    volumes = {str(v.get("name")): v for v in volume_list if isinstance(v, dict)}
    problems += _container_problems(containers, volumes, port)
    problems += _volume_problems(volume_list if isinstance(volume_list, list) else [], containers, features)
    concurrency = pod.get("containerConcurrency")
    if isinstance(concurrency, int) and not 0 <= concurrency <= MAX_CONTAINER_CONCURRENCY:
        problems.append(
            Problem(
                "spec.template.spec.containerConcurrency",
                f"{concurrency} is out of range",
                f"use 0 (no limit) to {MAX_CONTAINER_CONCURRENCY}",
            )
        )
    timeout = pod.get("timeoutSeconds")
    if isinstance(timeout, int) and not 0 <= timeout <= MAX_TIMEOUT_SECONDS:
        problems.append(
            Problem(
                "spec.template.spec.timeoutSeconds",
                f"{timeout} is out of range",
                f"use 0 to {MAX_TIMEOUT_SECONDS}, or raise max-revision-timeout-seconds in configmap config-defaults",
            )
        )
    template_annotations = _get(manifest, "spec", "template", "metadata", "annotations") or {}
    if isinstance(template_annotations, dict):
        problems += _autoscaling_problems(template_annotations, "spec.template.metadata.annotations")
    service_annotations = _get(manifest, "metadata", "annotations") or {}
    for key in service_annotations if isinstance(service_annotations, dict) else ():
        if key.startswith(n.AUTOSCALING_PREFIX):
            problems.append(
                Problem(
                    f"metadata.annotations.{key}",
                    "an autoscaling annotation on the Service does not reach its revisions",
                    "move it to spec.template.metadata.annotations",
                    level="warning",
                )
            )
    name = _get(manifest, "metadata", "name")
    problems += _traffic_problems(_get(manifest, "spec", "traffic"), str(name))
    problems += _feature_problems(manifest, features)
    return problems


def validate(manifest: Mapping[str, Any], features: flags.Features | None = None) -> list[Problem]:
    """Every problem of a Service manifest: the CRD schema first, then the webhook's rules."""
    return schema_problems(manifest) + webhook_problems(manifest, features)
