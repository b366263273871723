"""A Revision's validation and defaults: pkg/apis/serving/v1/revision_validation.go and revision_defaults.go at
knative/serving 98e5ef90.

Also here, having no other home: knative.dev/networking's ValidateAnnotations (pkg/apis/networking/
metadata_validation.go), which RevisionTemplateSpec validation calls, and kmeta.ChildName (knative.dev/pkg/kmeta/
names.go), which names the default containers.

A RevisionSpec inlines its PodSpec (`corev1.PodSpec json:",inline"`), so the spec's map holds the pod's fields
next to the four of its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from edgeinfer.knative.webhook.autoscaling import validate_annotations as validate_autoscaling_annotations
from edgeinfer.knative.webhook.config import ALLOW_ROOT_BOUNDED, ENABLED, SECURE_POD_DEFAULTS, Config
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    CURRENT_FIELD,
    NIL,
    FieldError,
    Level,
    err_disallowed_fields,
    err_generic,
    err_invalid_key_name,
    err_invalid_value,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.go import SECOND, DurationError, parse_duration, quote, sprint
from edgeinfer.knative.webhook.k8s_names import name_is_dns1035_label
from edgeinfer.knative.webhook.k8s_pod import validate_pod_spec
from edgeinfer.knative.webhook.keys import (
    CONFIGURATION_LABEL_KEY,
    PROGRESS_DEADLINE_ANNOTATION,
    QUEUE_SIDECAR_CPU_RESOURCE_LIMIT_ANNOTATION,
    QUEUE_SIDECAR_CPU_RESOURCE_REQUEST_ANNOTATION,
    QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_LIMIT_ANNOTATION,
    QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_REQUEST_ANNOTATION,
    QUEUE_SIDECAR_MEMORY_RESOURCE_LIMIT_ANNOTATION,
    QUEUE_SIDECAR_MEMORY_RESOURCE_REQUEST_ANNOTATION,
    QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION,
    get_key,
)
from edgeinfer.knative.webhook.kmp import short_diff
from edgeinfer.knative.webhook.metadata import validate_container_concurrency, validate_object_metadata
from edgeinfer.knative.webhook.quantity import QuantityError, parse_quantity
from edgeinfer.knative.webhook.strconv import NumError, parse_float
from edgeinfer.knative.webhook.values import as_int as _int
from edgeinfer.knative.webhook.values import as_map as _map
from edgeinfer.knative.webhook.values import as_str as _str

# The RevisionSpec's own fields; the rest of its map is the inlined PodSpec.
REVISION_SPEC_FIELDS = ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds")


def pod_spec_of(rs: Mapping[str, Any]) -> dict[str, Any]:
    """RevisionSpec.PodSpec: the inlined pod's fields, without the RevisionSpec's own."""
    return {k: v for k, v in _map(rs).items() if k not in REVISION_SPEC_FIELDS}


# --- revision_validation.go --------------------------------------------------------------------------------


def validate_revision(ctx: Context, r: Mapping[str, Any]) -> FieldError:
    """(*Revision).Validate: metadata and labels; on create the spec, on update that the spec did not change."""
    r = _map(r)
    meta = _map(r.get("metadata"))
    errs = validate_object_metadata(ctx, meta, True).also(validate_labels(r).via_field("labels")).via_field("metadata")
    # RevisionStatus.Validate accepts every status.

    if ctx.in_update:
        original = _map(ctx.baseline)
        diff = short_diff(_map(original.get("spec")), _map(r.get("spec")), "v1.RevisionSpec")
        if diff:
            return FieldError("Immutable fields changed (-old +new)", ("spec",), details=diff)
    else:
        errs = errs.also(validate_revision_spec(ctx.within_spec(), _map(r.get("spec"))).via_field("spec"))
    return errs


def validate_revision_template_spec(ctx: Context, rts: Mapping[str, Any]) -> FieldError:
    """(*RevisionTemplateSpec).Validate."""
    rts = _map(rts)
    meta = _map(rts.get("metadata"))
    annotations = _map(meta.get("annotations"))
    errs = validate_revision_spec(ctx.within_spec(), _map(rts.get("spec"))).via_field("spec")
    errs = errs.also(
        validate_autoscaling_annotations(ctx, ctx.autoscaler, annotations).via_field("metadata.annotations")
    )
    errs = errs.also(validate_networking_annotations(annotations).via_field("metadata.annotations"))

    # A name given to the template must meet the rules for revision names.
    errs = errs.also(validate_revision_name(ctx, _str(meta.get("name")), _str(meta.get("generateName"))))
    errs = errs.also(validate_queue_sidecar_resource_annotations(annotations).via_field("metadata.annotations"))
    errs = errs.also(validate_progress_deadline_annotation(annotations).via_field("metadata.annotations"))
    return errs


def verify_name_change(ctx: Context, rts: Mapping[str, Any], og: Mapping[str, Any]) -> FieldError:
    """(*RevisionTemplateSpec).VerifyNameChange: a template keeping its own name must not change otherwise."""
    rts, og = _map(rts), _map(og)
    name = _str(_map(rts.get("metadata")).get("name"))
    if name == "":
        # Only a brought-your-own name has to change with the template.
        return NIL
    if name != _str(_map(og.get("metadata")).get("name")):
        return NIL
    diff = short_diff(og, rts, "v1.RevisionTemplateSpec", pointer=True)
    if diff:
        return FieldError(
            "Saw the following changes without a name change (-old +new)", ("metadata.name",), details=diff
        )
    return NIL


def validate_revision_spec(ctx: Context, rs: Mapping[str, Any]) -> FieldError:
    """(*RevisionSpec).Validate."""
    rs = _map(rs)
    errs = validate_pod_spec(ctx, pod_spec_of(rs))

    timeout = _int(rs.get("timeoutSeconds"))
    if timeout is not None:
        errs = errs.also(validate_timeout_seconds(ctx, timeout))

    cc = _int(rs.get("containerConcurrency"))
    if cc is not None:
        errs = errs.also(validate_container_concurrency(ctx, cc).via_field("containerConcurrency"))
    return errs


def validate_labels(r: Mapping[str, Any]) -> FieldError:
    """(*Revision).ValidateLabels: a configuration label names a Configuration owning the revision."""
    # configuration.py imports this module, so its helper is imported when first used.
    from edgeinfer.knative.webhook.configuration import verify_label_owner_ref

    meta = _map(_map(r).get("metadata"))
    labels = _map(meta.get("labels"))
    errs = NIL
    if CONFIGURATION_LABEL_KEY in labels:
        owner_refs = meta.get("ownerReferences")
        errs = errs.also(
            verify_label_owner_ref(
                labels[CONFIGURATION_LABEL_KEY],
                CONFIGURATION_LABEL_KEY,
                "Configuration",
                owner_refs if isinstance(owner_refs, list) else [],
            )
        )
    return errs


def validate_revision_name(ctx: Context, name: str, generate_name: str) -> FieldError:
    """validateRevisionName: DNS-1035 names, prefixed by the parent's name."""
    if generate_name != "":
        msgs = name_is_dns1035_label(generate_name, True)
        if msgs:
            return err_invalid_value("not a DNS 1035 label prefix: " + sprint(msgs), "metadata.generateName")
    if name != "":
        msgs = name_is_dns1035_label(name, False)
        if msgs:
            return err_invalid_value("not a DNS 1035 label: " + sprint(msgs), "metadata.name")
        om = ctx.parent_meta
        parent_name = _str(om.get("name"))
        prefix = parent_name + "-"
        if parent_name != "":
            pass  # even with a generateName, a name is fine once the parent has its own
        elif _str(om.get("generateName")) != "":
            # A parent named by generateName (at creation) cannot have its revisions named by the user.
            return err_disallowed_fields("metadata.name")
        if not name.startswith(prefix):
            return err_invalid_value(f"{quote(name)} must have prefix {quote(prefix)}", "metadata.name")
    return NIL


def validate_timeout_seconds(ctx: Context, timeout_seconds: int) -> FieldError:
    """validateTimeoutSeconds: within [0, max-revision-timeout-seconds]; 0 means the default."""
    if timeout_seconds != 0:
        maximum = ctx.defaults.max_revision_timeout_seconds
        if timeout_seconds > maximum or timeout_seconds < 0:
            return err_out_of_bounds_value(timeout_seconds, 0, maximum, "timeoutSeconds")
    return NIL


_QUEUE_SIDECAR_RESOURCE_ANNOTATIONS = (
    QUEUE_SIDECAR_CPU_RESOURCE_REQUEST_ANNOTATION,
    QUEUE_SIDECAR_CPU_RESOURCE_LIMIT_ANNOTATION,
    QUEUE_SIDECAR_MEMORY_RESOURCE_REQUEST_ANNOTATION,
    QUEUE_SIDECAR_MEMORY_RESOURCE_LIMIT_ANNOTATION,
    QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_REQUEST_ANNOTATION,
    QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_LIMIT_ANNOTATION,
)


def validate_queue_sidecar_resource_annotations(m: Mapping[str, Any] | None) -> FieldError:
    """validateQueueSidecarResourceAnnotations: the deprecated percentage (a warning) and the quantities."""
    if not isinstance(m, Mapping) or len(m) == 0:
        return NIL
    errs = NIL
    k, v, ok = get_key(m, QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION)
    if ok:
        errs = (
            err_generic(
                "Queue proxy resource percentage annotation is deprecated. Please use the available annotations "
                "to explicitly set resource values per service"
            )
            .via_key(k)
            .at(Level.WARNING)
        )
        try:
            value = parse_float(v)
        except NumError:
            errs = errs.also(err_invalid_value(v, CURRENT_FIELD).via_key(k))
        else:
            if value < 0.1 or value > 100:
                errs = errs.also(err_out_of_bounds_value(value, 0.1, 100.0, CURRENT_FIELD).via_key(k))
    for resource_annotation in _QUEUE_SIDECAR_RESOURCE_ANNOTATIONS:
        k, v, ok = get_key(m, resource_annotation)
        if not ok:
            continue
        try:
            parse_quantity(v)
        except QuantityError:
            errs = errs.also(err_invalid_value(v, CURRENT_FIELD).via_key(k))
    return errs


def validate_progress_deadline_annotation(annos: Mapping[str, Any] | None) -> FieldError:
    """validateProgressDeadlineAnnotation: a positive duration in whole seconds."""
    k, v, _ = get_key(annos, PROGRESS_DEADLINE_ANNOTATION)
    if v != "":
        try:
            d = parse_duration(v)
        except DurationError:
            return err_invalid_value(v, k)
        if d % SECOND != 0:
            # The value as written: %v of the duration could spell it differently.
            return FieldError(f"progress-deadline={v} is not at second precision", (k,))
        if d < 0:
            return FieldError(f"progress-deadline={v} must be positive", (k,))
    return NIL


# --- knative.dev/networking/pkg/apis/networking ---------------------------------------------------------------

NETWORKING_PUBLIC_GROUP_NAME = "networking.knative.dev"
# allowedAnnotations of metadata_validation.go (register.go's keys).
NETWORKING_ALLOWED_ANNOTATIONS = frozenset(
    NETWORKING_PUBLIC_GROUP_NAME + suffix
    for suffix in (
        "/ingress.class",
        "/certificate.class",
        "/disableAutoTLS",
        "/disable-external-domain-tls",
        "/httpOption",
        "/ingress-class",
        "/certificate-class",
        "/disable-auto-tls",
        "/http-protocol",
    )
)


def validate_networking_annotations(annotations: Mapping[str, Any] | None) -> FieldError:
    """networking.ValidateAnnotations: no unknown networking.knative.dev annotation."""
    errs = NIL
    for key in _map(annotations):
        if key not in NETWORKING_ALLOWED_ANNOTATIONS and key.startswith(NETWORKING_PUBLIC_GROUP_NAME):
            errs = errs.also(err_invalid_key_name(key, CURRENT_FIELD))
    return errs


# --- revision_defaults.go ----------------------------------------------------------------------------------


def set_revision_defaults(ctx: Context, r: dict[str, Any]) -> None:
    """(*Revision).SetDefaults: not on update, as the defaults could change the immutable spec (serving#8128)."""
    if ctx.in_update:
        return
    set_revision_spec_defaults(ctx.within_spec(), _child(r, "spec"))


def set_revision_template_spec_defaults(ctx: Context, rts: dict[str, Any]) -> None:
    """(*RevisionTemplateSpec).SetDefaults."""
    set_revision_spec_defaults(ctx.within_spec(), _child(rts, "spec"))


def _child(obj: dict[str, Any], key: str) -> dict[str, Any]:
    """A struct-valued field to mutate: Go's zero struct is there to set, so a missing one is created."""
    if not isinstance(obj.get(key), dict):
        obj[key] = {}
    child: dict[str, Any] = obj[key]
    return child


def _containers(rs: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    items = rs.get(key)
    return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []


def set_revision_spec_defaults(ctx: Context, rs: dict[str, Any]) -> None:
    """(*RevisionSpec).SetDefaults."""
    cfg = ctx.config
    defaults = cfg.defaults

    # The timeout from config-defaults.
    if _int(rs.get("timeoutSeconds")) in (None, 0):
        rs["timeoutSeconds"] = defaults.revision_timeout_seconds
    timeout = _int(rs.get("timeoutSeconds")) or 0

    # The idle and response-start timeouts only when their default is non-zero and below the revision timeout;
    # nil (or 0) leaves the queue-proxy timer off.
    if rs.get("idleTimeoutSeconds") is None:
        idle = defaults.revision_idle_timeout_seconds
        if idle < timeout and idle != 0:
            rs["idleTimeoutSeconds"] = idle
    if rs.get("responseStartTimeoutSeconds") is None:
        start = defaults.revision_response_start_timeout_seconds
        if start < timeout and start != 0:
            rs["responseStartTimeoutSeconds"] = start

    if rs.get("containerConcurrency") is None:
        rs["containerConcurrency"] = defaults.container_concurrency

    # Default names must not clash with the names the user gave.
    containers = _containers(rs, "containers")
    init_containers = _containers(rs, "initContainers")
    container_names = {_str(c.get("name")) for c in containers} | {_str(c.get("name")) for c in init_containers}
    apply_default_container_names(containers, container_names, defaults.user_container_name(ctx.parent_meta))
    apply_default_container_names(init_containers, container_names, defaults.init_container_name(ctx.parent_meta))
    pod_security_context = rs.get("securityContext")
    for container in containers:
        _apply_default(ctx, rs, container, cfg)
        _default_security_context(pod_security_context, container, cfg)
    for container in init_containers:
        _default_security_context(pod_security_context, container, cfg)


# (corev1.ResourceName, the config-defaults request, the limit)
def _resource_defaults(cfg: Config) -> tuple[tuple[str, str | None, str | None], ...]:
    d = cfg.defaults
    return (
        ("cpu", d.revision_cpu_request, d.revision_cpu_limit),
        ("memory", d.revision_memory_request, d.revision_memory_limit),
        ("ephemeral-storage", d.revision_ephemeral_storage_request, d.revision_ephemeral_storage_limit),
    )


def _quantity_text(raw: str | None) -> str | None:
    """A config-defaults quantity as the webhook writes it (Quantity.String()); None when unset or unparsable."""
    if raw is None:
        return None
    try:
        return str(parse_quantity(raw))
    except QuantityError:
        return None  # config-defaults refuses it when loading (cm.AsQuantity)


def _apply_default(ctx: Context, rs: dict[str, Any], container: dict[str, Any], cfg: Config) -> None:
    """applyDefault: resources from config-defaults, probes, enableServiceLinks, read-only mounts."""
    resources = _child(container, "resources")
    requests = _child(resources, "requests")
    limits = _child(resources, "limits")
    for name, request, limit in _resource_defaults(cfg):
        request_text, limit_text = _quantity_text(request), _quantity_text(limit)
        if name not in requests and request_text is not None:
            requests[name] = request_text
        if name not in limits and limit_text is not None:
            limits[name] = limit_text

    # With several containers, only the one declaring a port (the serving one) gets the default probe.
    ports = container.get("ports")
    if len(_containers(rs, "containers")) == 1 or (isinstance(ports, list) and len(ports) != 0):
        _apply_user_container_default_readiness_probe(container)
    _apply_readiness_probe_defaults(container)
    _apply_grpc_probe_defaults(container)

    # A nil default leaves it nil.
    if rs.get("enableServiceLinks") is None and ctx.in_create and cfg.defaults.enable_service_links is not None:
        rs["enableServiceLinks"] = cfg.defaults.enable_service_links

    # Mounts of volumes other than emptyDir, PVC and ephemeral ones are read-only.
    writable = set()
    volumes = rs.get("volumes")
    for volume in volumes if isinstance(volumes, list) else []:
        volume = _map(volume)
        if any(volume.get(k) is not None for k in ("emptyDir", "persistentVolumeClaim", "ephemeral")):
            writable.add(_str(volume.get("name")))
    mounts = container.get("volumeMounts")
    for mount in mounts if isinstance(mounts, list) else []:
        if isinstance(mount, dict) and _str(mount.get("name")) not in writable:
            mount["readOnly"] = True


def _apply_user_container_default_readiness_probe(container: dict[str, Any]) -> None:
    """applyUserContainerDefaultReadinessProbe: a TCP probe unless the user chose a handler."""
    probe = _child(container, "readinessProbe")
    if all(probe.get(k) is None for k in ("tcpSocket", "httpGet", "exec", "grpc")):
        probe["tcpSocket"] = {}


def _apply_readiness_probe_defaults(container: dict[str, Any]) -> None:
    """applyReadinessProbeDefaults: Kubernetes' own defaults, which Knative's probing needs explicit."""
    probe = container.get("readinessProbe")
    if not isinstance(probe, dict):
        # Sidecars may have no readiness probe; they get no defaults then.
        return
    if not probe.get("successThreshold"):
        probe["successThreshold"] = 1
    # Kubernetes' defaults once periodSeconds is set.
    if probe.get("periodSeconds"):
        if not probe.get("failureThreshold"):
            probe["failureThreshold"] = 3
        if not probe.get("timeoutSeconds"):
            probe["timeoutSeconds"] = 1


def _apply_grpc_probe_defaults(container: dict[str, Any]) -> None:
    """applyGRPCProbeDefaults: a gRPC probe's service is "" rather than nil."""
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(key)
        if isinstance(probe, dict) and isinstance(probe.get("grpc"), dict) and probe["grpc"].get("service") is None:
            probe["grpc"]["service"] = ""


def _default_security_context(psc: Any, container: dict[str, Any], cfg: Config) -> None:
    """defaultSecurityContext: the `restricted` profile's settings under secure-pod-defaults.

    Enabled or AllowRootBounded: no privilege escalation, RuntimeDefault seccomp unless the pod sets one, all
    capabilities dropped (NET_BIND_SERVICE added for a port below 1024); Enabled also sets runAsNonRoot unless the
    pod or the container decides it.
    """
    flag = cfg.features[SECURE_POD_DEFAULTS]
    if flag not in (ENABLED, ALLOW_ROOT_BOUNDED):
        return
    psc = _map(psc)
    existing = container.get("securityContext")
    updated: dict[str, Any] = existing if isinstance(existing, dict) else {}

    if updated.get("allowPrivilegeEscalation") is None:
        updated["allowPrivilegeEscalation"] = False
    pod_seccomp = psc.get("seccompProfile")
    if not isinstance(pod_seccomp, Mapping) or _str(pod_seccomp.get("type")) == "":
        if not isinstance(updated.get("seccompProfile"), dict):
            updated["seccompProfile"] = {}
        if _str(updated["seccompProfile"].get("type")) == "":
            updated["seccompProfile"]["type"] = "RuntimeDefault"
    if updated.get("capabilities") is None:
        capabilities: dict[str, Any] = {"drop": ["ALL"]}
        updated["capabilities"] = capabilities
        # NET_BIND_SERVICE, to bind the low-numbered ports.
        ports = container.get("ports")
        needs_low_port = any(
            (_int(_map(p).get("containerPort")) or 0) < 1024 for p in (ports if isinstance(ports, list) else [])
        )
        if capabilities.get("add") is None and needs_low_port:
            capabilities["add"] = ["NET_BIND_SERVICE"]

    if flag == ENABLED and psc.get("runAsNonRoot") is None and updated.get("runAsNonRoot") is None:
        updated["runAsNonRoot"] = True

    if any(v is not None for v in updated.values()):
        container["securityContext"] = updated


def apply_default_container_names(containers: list[dict[str, Any]], names: set[str], default_name: str) -> None:
    """applyDefaultContainerNames: the template's name; with several containers (or a clash) a numeric suffix."""
    next_suffix = 0
    for container in containers:
        if _str(container.get("name")) == "":
            name = default_name
            if len(containers) > 1 or name in names:
                while True:
                    name = child_name(default_name, f"-{next_suffix}")
                    next_suffix += 1
                    # Until the name clashes with none the user gave.
                    if name not in names:
                        break
            container["name"] = name


# --- knative.dev/pkg/kmeta/names.go ------------------------------------------------------------------------

_LONGEST = 63
_MD5_LEN = 32
_HEAD = _LONGEST - _MD5_LEN
_ALPHANUMERIC = re.compile(r"[a-zA-Z0-9]*")


def child_name(parent: str, suffix: str) -> str:
    """kmeta.ChildName: parent + suffix, hashed and cut to fit Kubernetes' 63 characters."""
    # Go measures bytes; the names here are ASCII.
    n = parent
    if len(parent) > _LONGEST - len(suffix):
        if _HEAD - len(suffix) <= 0:
            digest = hashlib.md5((parent + suffix).encode(), usedforsecurity=False).hexdigest()
            if len(parent) > _HEAD:
                parent = parent[:_HEAD]
            ret = parent + digest
            d = _LONGEST - len(ret)
            if d > 0:
                ret += suffix[:d]
            return _make_valid_name(ret)
        digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
        n = parent[: _HEAD - len(suffix)] + digest
    return n + suffix


def _make_valid_name(n: str) -> str:
    """makeValidName: drop a trailing non-alphanumeric left by the cut."""
    while n and not _ALPHANUMERIC.fullmatch(n[-1]):
        n = n[:-1]
    return n
