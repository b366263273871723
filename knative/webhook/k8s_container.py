"""Container validation of pkg/apis/serving/k8s_validation.go, with the container masks of fieldmask.go.

What a Revision's containers may hold: the user (serving) container, sidecars and init containers; their ports,
probes, env/envFrom, resources, securityContext and volumeMounts. Go's quirks are kept on purpose, e.g. a
`ViaField` applied to all the errors gathered so far, not just the last one, because the messages depend on it.

A mask here is the set of JSON names the Go mask copies (for the context and flags given); `*_POINTERS` names the
fields that are Go pointers, slices or maps (set when present, whatever the value), as fieldmask.py needs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from edgeinfer.knative.webhook import config as kc
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    CURRENT_FIELD,
    NIL,
    FieldError,
    err_disallowed_fields,
    err_generic,
    err_invalid_value,
    err_missing_field,
    err_missing_one_of,
    err_multiple_one_of,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.fieldmask import check_disallowed_fields, disallowed_fields
from edgeinfer.knative.webhook.go import quote
from edgeinfer.knative.webhook.image_reference import BadNameError, parse_reference
from edgeinfer.knative.webhook.values import as_int_or_zero as _int
from edgeinfer.knative.webhook.values import as_list as _list
from edgeinfer.knative.webhook.values import as_map as _map
from edgeinfer.knative.webhook.values import as_str as _str
from edgeinfer.knative.webhook.values import is_present as _present

# --- constants ----------------------------------------------------------------------------------------------

MAX_INT32 = 2**31 - 1
MIN_USER_ID, MAX_USER_ID = 0, MAX_INT32
MIN_GROUP_ID, MAX_GROUP_ID = 0, MAX_INT32

# knative.dev/serving/pkg/networking and knative.dev/pkg/observability/runtime
BACKEND_HTTP_PORT = 8012
BACKEND_HTTP2_PORT = 8013
QUEUE_ADMIN_PORT = 8022
AUTOSCALING_QUEUE_METRICS_PORT = 9090
USER_QUEUE_METRICS_PORT = 9091
PROFILING_DEFAULT_PORT = 8008

RESERVED_PATHS = frozenset({"/", "/dev", "/dev/log"})  # /dev/log should be a domain socket
RESERVED_CONTAINER_NAMES = frozenset({"queue-proxy"})
RESERVED_ENV_VARS = frozenset({"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"})
RESERVED_PORTS = frozenset(
    {
        BACKEND_HTTP_PORT,
        BACKEND_HTTP2_PORT,
        QUEUE_ADMIN_PORT,
        AUTOSCALING_QUEUE_METRICS_PORT,
        USER_QUEUE_METRICS_PORT,
        PROFILING_DEFAULT_PORT,
    }
)
RESERVED_SIDECAR_ENV_VARS = RESERVED_ENV_VARS - {"PORT"}
# The port's name is for content negotiation: empty, h2c or http1 (docs/runtime-contract.md).
VALID_PORT_NAMES = frozenset({"h2c", "http1", ""})

DEFAULT_USER_PORT_NAME = "http"
DEFAULT_USER_PORT = 8080
PROTOCOL_TCP = "TCP"
TERMINATION_MESSAGE_POLICIES = frozenset({"File", "FallbackToLogsOnError", ""})
MOUNT_PROPAGATION_NONE = "None"
MOUNT_PROPAGATION_HOST_TO_CONTAINER = "HostToContainer"
NET_BIND_SERVICE = "NET_BIND_SERVICE"

# --- masks (fieldmask.go) -------------------------------------------------------------------------------------

CONTAINER_MASK = frozenset(
    {
        "name",
        "args",
        "command",
        "env",
        "workingDir",
        "envFrom",
        "image",
        "imagePullPolicy",
        "livenessProbe",
        "ports",
        "readinessProbe",
        "resources",
        "securityContext",
        "startupProbe",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "volumeMounts",
    }
)
CONTAINER_POINTERS = frozenset(
    {
        "args",
        "command",
        "env",
        "envFrom",
        "ports",
        "resizePolicy",
        "restartPolicy",
        "restartPolicyRules",
        "volumeMounts",
        "volumeDevices",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "securityContext",
    }
)
VOLUME_MOUNT_POINTERS = frozenset({"recursiveReadOnly", "mountPropagation"})
# ProbeHandler is embedded (json:",inline") in Probe: a difference in it is reported under the name "".
HANDLER_MASK = frozenset({"exec", "httpGet", "tcpSocket", "grpc"})
PROBE_MASK = HANDLER_MASK | {
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
    "terminationGracePeriodSeconds",
}
PROBE_POINTERS = HANDLER_MASK | {"terminationGracePeriodSeconds"}
EXEC_ACTION_MASK = frozenset({"command"})
HTTP_GET_ACTION_MASK = frozenset({"host", "path", "scheme", "httpHeaders", "port"})
TCP_SOCKET_ACTION_MASK = frozenset({"host", "port"})
GRPC_ACTION_MASK = frozenset({"port", "service"})
ACTION_POINTERS = frozenset({"command", "httpHeaders", "service"})
CONTAINER_PORT_MASK = frozenset({"containerPort", "name", "protocol"})
ENV_VAR_MASK = frozenset({"name", "value", "valueFrom"})
ENV_VAR_POINTERS = frozenset({"valueFrom"})
ENV_VAR_SOURCE_POINTERS = frozenset({"configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef", "fileKeyRef"})
LOCAL_OBJECT_REFERENCE_MASK = frozenset({"name"})
CONFIG_MAP_KEY_SELECTOR_MASK = frozenset({"key", "optional"}) | LOCAL_OBJECT_REFERENCE_MASK
SECRET_KEY_SELECTOR_MASK = frozenset({"key", "optional"}) | LOCAL_OBJECT_REFERENCE_MASK
CONFIG_MAP_ENV_SOURCE_MASK = frozenset({"optional"}) | LOCAL_OBJECT_REFERENCE_MASK
SECRET_ENV_SOURCE_MASK = frozenset({"optional"}) | LOCAL_OBJECT_REFERENCE_MASK
ENV_SOURCE_POINTERS = frozenset({"optional"})
ENV_FROM_SOURCE_MASK = frozenset({"prefix", "configMapRef", "secretRef"})
ENV_FROM_SOURCE_POINTERS = frozenset({"configMapRef", "secretRef"})
RESOURCE_REQUIREMENTS_MASK = frozenset({"limits", "requests"})
RESOURCE_REQUIREMENTS_POINTERS = frozenset({"limits", "requests", "claims"})
SECURITY_CONTEXT_POINTERS = frozenset(
    {
        "capabilities",
        "privileged",
        "seLinuxOptions",
        "windowsOptions",
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "readOnlyRootFilesystem",
        "allowPrivilegeEscalation",
        "procMount",
        "seccompProfile",
        "appArmorProfile",
    }
)
CAPABILITIES_POINTERS = frozenset({"add", "drop"})


def volume_mount_mask(ctx: Context) -> frozenset[str]:
    allowed = {"name", "readOnly", "mountPath", "subPath"}
    if ctx.features[kc.POD_SPEC_VOLUMES_MOUNT_PROPAGATION] != kc.DISABLED:
        allowed.add("mountPropagation")
    return frozenset(allowed)


def env_var_source_mask(field_ref: bool) -> frozenset[str]:
    allowed = {"configMapKeyRef", "secretKeyRef"}
    if field_ref:
        allowed |= {"fieldRef", "resourceFieldRef"}
    return frozenset(allowed)


def _secure_pod_defaults(ctx: Context) -> bool:
    return ctx.features[kc.SECURE_POD_DEFAULTS] in (kc.ENABLED, kc.ALLOW_ROOT_BOUNDED)


def security_context_mask(ctx: Context, sc: Mapping[str, Any]) -> frozenset[str]:
    allowed = {
        "capabilities",
        "readOnlyRootFilesystem",
        "runAsUser",
        "runAsGroup",
        # Unset behaves as false; setting it to true is what one wants to allow.
        "runAsNonRoot",
        # Unset can behave as true; setting it to false is what one wants to allow.
        "allowPrivilegeEscalation",
        "seccompProfile",
    }
    if sc.get("privileged") is False:  # only false may be set
        allowed.add("privileged")
    return frozenset(allowed)


def capabilities_mask(ctx: Context, cap: Mapping[str, Any]) -> frozenset[str]:
    allowed = {"drop"}
    if ctx.features[kc.CONTAINER_SPEC_ADD_CAPABILITIES] == kc.ENABLED or (
        # With secure pod defaults, only the one capability a non-root server needs.
        _secure_pod_defaults(ctx) and cap.get("add") == [NET_BIND_SERVICE]
    ):
        allowed.add("add")
    return frozenset(allowed)


# --- helpers ------------------------------------------------------------------------------------------------


def _check_inline(
    obj: Mapping[str, Any], allowed: Collection[str], pointers: Collection[str], inline: Collection[str]
) -> FieldError:
    """CheckDisallowedFields where the fields `inline` belong to an embedded struct, reported as one name ""."""
    found = sorted(
        {CURRENT_FIELD if name in inline else name for name in disallowed_fields(obj, allowed, pointers=pointers)}
    )
    return err_disallowed_fields(*found) if found else NIL


def path_clean(p: str) -> str:
    """Go's path.Clean: one leading '/' kept (never two, unlike posixpath.normpath), '.' and '..' resolved."""
    if p == "":
        return "."
    rooted = p[0] == "/"
    n = len(p)
    out: list[str] = []
    r, dotdot = 0, 0
    if rooted:
        out.append("/")
        r, dotdot = 1, 1
    while r < n:
        if p[r] == "/" or (p[r] == "." and (r + 1 == n or p[r + 1] == "/")):  # empty or "." element
            r += 1
        elif p[r] == "." and p[r + 1] == "." and (r + 2 == n or p[r + 2] == "/"):
            r += 2
            if len(out) > dotdot:
                out.pop()
                while len(out) > dotdot and out[-1] != "/":
                    out.pop()
            elif not rooted:
                if out:
                    out.append("/")
                out.extend("..")
                dotdot = len(out)
        else:
            if (rooted and len(out) != 1) or (not rooted and len(out) != 0):
                out.append("/")
            while r < n and p[r] != "/":
                out.append(p[r])
                r += 1
    return "".join(out) if out else "."


def path_is_abs(p: str) -> bool:
    return p.startswith("/")


def _semantic_zero(value: Any) -> bool:
    """equality.Semantic.DeepEqual with the zero value: nil and empty slices/maps are equal there."""
    if value is None or value is False or value == "" or value == [] or value == {}:
        return True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == 0
    if isinstance(value, Mapping):
        return all(_semantic_zero(v) for v in value.values())
    return False


def _is_empty_container(container: Mapping[str, Any]) -> bool:
    pointer_structs = {"livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "securityContext"}
    for key, value in container.items():
        if value is None:
            continue
        if key in pointer_structs or key == "restartPolicy":
            return False
        if not _semantic_zero(value):
            return False
    return True


# --- containers -----------------------------------------------------------------------------------------------


def validate_init_containers(
    ctx: Context,
    containers: Sequence[Any] | None,
    other_containers: Sequence[Any] | None,
    volumes: Mapping[str, Mapping[str, Any]] | None,
) -> FieldError:
    containers = _list(containers)
    errs = NIL
    if not containers:
        return NIL
    if ctx.features[kc.POD_SPEC_INIT_CONTAINERS] != kc.ENABLED:
        return errs.also(
            err_generic(f"pod spec support for init-containers is off, but found {len(containers)} init containers")
        )
    all_names = {_str(_map(c).get("name")) for c in _list(other_containers)}
    for i, raw in enumerate(containers):
        container = _map(raw)
        name = _str(container.get("name"))
        if name in all_names:
            # Go re-prefixes every error so far, and names them "containers", not "initContainers".
            errs = errs.also(FieldError(f"duplicate container name {quote(name)}", ("name",))).via_field_index(
                "containers", i
            )
        errs = errs.also(validate_init_container(ctx, container, volumes).via_field_index("containers", i))
    return errs


def validate_containers(
    ctx: Context,
    containers: Sequence[Any] | None,
    volumes: Mapping[str, Mapping[str, Any]] | None,
    port: Mapping[str, Any],
) -> FieldError:
    containers = _list(containers)
    errs = NIL
    if ctx.features[kc.MULTI_CONTAINER] != kc.ENABLED:
        return errs.also(err_generic(f"multi-container is off, but found {len(containers)} containers"))
    all_names: set[str] = set()
    for i, raw in enumerate(containers):
        container = _map(raw)
        name = _str(container.get("name"))
        if name in all_names:
            # As Go: the prefix lands on every error gathered so far.
            errs = errs.also(FieldError(f"duplicate container name {quote(name)}", ("name",))).via_field_index(
                "containers", i
            )
        else:
            all_names.add(name)
        if not _list(container.get("ports")):
            errs = errs.also(
                validate_sidecar_container(ctx.within_sidecar_container(), container, volumes).via_field_index(
                    "containers", i
                )
            )
        else:
            errs = errs.also(
                validate_user_container(ctx.within_user_container(), container, volumes, port).via_field_index(
                    "containers", i
                )
            )
    return errs


def validate_containers_ports(containers: Sequence[Any] | None) -> tuple[dict[str, Any], FieldError]:
    """The one serving port across the containers (defaulted to http/8080), and an error unless exactly one."""
    count = 0
    port: dict[str, Any] = {}
    for raw in _list(containers):
        ports = _list(_map(raw).get("ports"))
        if ports:
            count += len(ports)
            port = dict(_map(ports[0]))
    if _str(port.get("name")) == "":
        port["name"] = DEFAULT_USER_PORT_NAME
    if _int(port.get("containerPort")) == 0:
        port["containerPort"] = DEFAULT_USER_PORT
    if count == 0 and len(_list(containers)) > 1:
        return port, err_missing_field("ports")
    if count > 1:
        return port, FieldError(
            "more than one container port is set",
            ("ports",),
            details="Only a single port is allowed across all containers",
        )
    return port, NIL


def validate_sidecar_container(
    ctx: Context, container: Mapping[str, Any], volumes: Mapping[str, Mapping[str, Any]] | None
) -> FieldError:
    """A container without ports: probes only with multi-container-probing enabled."""
    container = _map(container)
    errs = NIL
    if ctx.features[kc.MULTI_CONTAINER_PROBING] != kc.ENABLED:
        for key in ("livenessProbe", "readinessProbe", "startupProbe"):
            if _present(container, key):
                probe = _map(container[key])
                errs = errs.also(_check_inline(probe, (), PROBE_POINTERS, HANDLER_MASK).via_field(key))
    else:
        errs = errs.also(validate_probe(container.get("livenessProbe"), None, False).via_field("livenessProbe"))
        errs = errs.also(
            validate_readiness_probe(container.get("readinessProbe"), None, False).via_field("readinessProbe")
        )
        errs = errs.also(validate_probe(container.get("startupProbe"), None, False).via_field("startupProbe"))
    return errs.also(validate(ctx, container, volumes))


def validate_init_container(
    ctx: Context, container: Mapping[str, Any], volumes: Mapping[str, Mapping[str, Any]] | None
) -> FieldError:
    container = _map(container)
    errs = NIL
    # Kubernetes refuses these in an init container; say so early.
    for key in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):
        if _present(container, key):
            errs = errs.also(FieldError("field not allowed in an init container", (key,)))
    return errs.also(validate(ctx.within_init_container(), container, volumes))


def validate_user_container(
    ctx: Context,
    container: Mapping[str, Any],
    volumes: Mapping[str, Mapping[str, Any]] | None,
    port: Mapping[str, Any],
) -> FieldError:
    """ValidateUserContainer: the serving container, its probes checked against its port."""
    container = _map(container)
    errs = NIL
    errs = errs.also(validate_probe(container.get("livenessProbe"), port, True).via_field("livenessProbe"))
    errs = errs.also(validate_readiness_probe(container.get("readinessProbe"), port, True).via_field("readinessProbe"))
    errs = errs.also(validate_probe(container.get("startupProbe"), port, True).via_field("startupProbe"))
    return errs.also(validate(ctx, container, volumes))


def validate(ctx: Context, container: Mapping[str, Any], volumes: Mapping[str, Mapping[str, Any]] | None) -> FieldError:
    """validate: what every kind of container is checked for."""
    if _is_empty_container(container):
        return err_missing_field(CURRENT_FIELD)

    errs = check_disallowed_fields(container, CONTAINER_MASK, pointers=CONTAINER_POINTERS)

    name = _str(container.get("name"))
    if name in RESERVED_CONTAINER_NAMES:
        errs = errs.also(FieldError(f"{quote(name)} is a reserved container name", ("name",)))

    errs = errs.also(validate_env(ctx, container.get("env")).via_field("env"))
    errs = errs.also(validate_env_from(container.get("envFrom")).via_field("envFrom"))

    image = _str(container.get("image"))
    if image == "":
        errs = errs.also(err_missing_field("image"))
    else:
        try:
            parse_reference(image)
        except BadNameError as error:
            errs = errs.also(
                FieldError(
                    "Failed to parse image reference", ("image",), details=f"image: {quote(image)}, error: {error}"
                )
            )

    if ctx.in_init_container:
        errs = errs.also(validate_init_container_ports(container.get("ports")).via_field("ports"))
    else:
        errs = errs.also(validate_container_ports(container.get("ports")).via_field("ports"))

    errs = errs.also(validate_resources(_map(container.get("resources"))).via_field("resources"))
    errs = errs.also(validate_security_context(ctx, container.get("securityContext")).via_field("securityContext"))

    policy = _str(container.get("terminationMessagePolicy"))
    if policy not in TERMINATION_MESSAGE_POLICIES:
        errs = errs.also(err_invalid_value(policy, "terminationMessagePolicy"))

    errs = errs.also(validate_volume_mounts(ctx, container.get("volumeMounts"), volumes).via_field("volumeMounts"))
    return errs


# --- env ------------------------------------------------------------------------------------------------------


def validate_env_value_from(ctx: Context, source: Any) -> FieldError:
    if source is None:
        return NIL
    field_ref = ctx.features[kc.POD_SPEC_FIELD_REF] != kc.DISABLED
    return check_disallowed_fields(_map(source), env_var_source_mask(field_ref), pointers=ENV_VAR_SOURCE_POINTERS)


def get_reserved_env_vars_per_container_type(ctx: Context) -> frozenset[str]:
    if ctx.in_sidecar_container or ctx.in_init_container:
        return RESERVED_SIDECAR_ENV_VARS
    return RESERVED_ENV_VARS


def validate_env_var(ctx: Context, env: Mapping[str, Any]) -> FieldError:
    env = _map(env)
    errs = check_disallowed_fields(env, ENV_VAR_MASK, pointers=ENV_VAR_POINTERS)
    name = _str(env.get("name"))
    if name == "":
        errs = errs.also(err_missing_field("name"))
    elif name in get_reserved_env_vars_per_container_type(ctx):
        errs = errs.also(FieldError(f"{quote(name)} is a reserved environment variable", ("name",)))
    return errs.also(validate_env_value_from(ctx, env.get("valueFrom")).via_field("valueFrom"))


def validate_env(ctx: Context, env_vars: Any) -> FieldError:
    errs = NIL
    for i, env in enumerate(_list(env_vars)):
        errs = errs.also(validate_env_var(ctx, _map(env)).via_index(i))
    return errs


def validate_env_from(env_from_list: Any) -> FieldError:
    errs = NIL
    for i, raw in enumerate(_list(env_from_list)):
        env_from = _map(raw)
        errs = errs.also(
            check_disallowed_fields(env_from, ENV_FROM_SOURCE_MASK, pointers=ENV_FROM_SOURCE_POINTERS).via_index(i)
        )
        cm = env_from.get("configMapRef")
        sm = env_from.get("secretRef")
        if sm is not None:
            secret = _map(sm)
            errs = errs.also(
                check_disallowed_fields(secret, SECRET_ENV_SOURCE_MASK, pointers=ENV_SOURCE_POINTERS).via_index(i)
            )
            # As Go: the index and field prefix apply to all errors so far.
            errs = errs.also(_check_local_object_reference(secret)).via_index(i).via_field("secretRef")
        if cm is not None:
            config_map = _map(cm)
            errs = errs.also(
                check_disallowed_fields(config_map, CONFIG_MAP_ENV_SOURCE_MASK, pointers=ENV_SOURCE_POINTERS).via_index(
                    i
                )
            )
            errs = errs.also(_check_local_object_reference(config_map)).via_index(i).via_field("configMapRef")
        if cm is not None and sm is not None:
            errs = errs.also(err_multiple_one_of("configMapRef", "secretRef"))
        elif cm is None and sm is None:
            errs = errs.also(err_missing_one_of("configMapRef", "secretRef"))
    return errs


def _check_local_object_reference(obj: Mapping[str, Any]) -> FieldError:
    # The embedded LocalObjectReference holds only `name`, which its mask copies.
    return check_disallowed_fields({"name": obj.get("name")}, LOCAL_OBJECT_REFERENCE_MASK)


# --- resources, securityContext -----------------------------------------------------------------------------------


def validate_resources(resources: Mapping[str, Any] | None) -> FieldError:
    if resources is None:
        return NIL
    return check_disallowed_fields(_map(resources), RESOURCE_REQUIREMENTS_MASK, pointers=RESOURCE_REQUIREMENTS_POINTERS)


def validate_capabilities(ctx: Context, cap: Any) -> FieldError:
    if cap is None:
        return NIL
    cap = _map(cap)
    return check_disallowed_fields(cap, capabilities_mask(ctx, cap), pointers=CAPABILITIES_POINTERS)


def validate_security_context(ctx: Context, sc: Any) -> FieldError:
    if sc is None:
        return NIL
    sc = _map(sc)
    errs = check_disallowed_fields(sc, security_context_mask(ctx, sc), pointers=SECURITY_CONTEXT_POINTERS)
    errs = errs.also(validate_capabilities(ctx, sc.get("capabilities")).via_field("capabilities"))
    uid = sc.get("runAsUser")
    if uid is not None and not MIN_USER_ID <= _int(uid) <= MAX_USER_ID:
        errs = errs.also(err_out_of_bounds_value(_int(uid), MIN_USER_ID, MAX_USER_ID, "runAsUser"))
    gid = sc.get("runAsGroup")
    if gid is not None and not MIN_GROUP_ID <= _int(gid) <= MAX_GROUP_ID:
        errs = errs.also(err_out_of_bounds_value(_int(gid), MIN_GROUP_ID, MAX_GROUP_ID, "runAsGroup"))
    return errs


# --- volumeMounts ---------------------------------------------------------------------------------------------


def validate_volume_mounts(ctx: Context, mounts: Any, volumes: Mapping[str, Mapping[str, Any]] | None) -> FieldError:
    """Each mount names a known volume, at an absolute, unique, unreserved path, read-only unless writable."""
    errs = NIL
    volumes = volumes or {}
    features = ctx.features
    seen_mount_path: set[str] = set()
    for i, raw in enumerate(_list(mounts)):
        vm = _map(raw)
        errs = errs.also(
            check_disallowed_fields(vm, volume_mount_mask(ctx), pointers=VOLUME_MOUNT_POINTERS).via_index(i)
        )
        name = _str(vm.get("name"))
        # This also checks the name is set: a volume's name never is empty.
        if name not in volumes:
            errs = errs.also(FieldError("volumeMount has no matching volume", ("name",)).via_index(i))

        mount_path = _str(vm.get("mountPath"))
        if mount_path == "":
            errs = errs.also(err_missing_field("mountPath").via_index(i))
        elif path_clean(mount_path) in RESERVED_PATHS:
            errs = errs.also(
                FieldError(f"mountPath {quote(path_clean(mount_path))} is a reserved path", ("mountPath",)).via_index(i)
            )
        elif not path_is_abs(mount_path):
            errs = errs.also(err_invalid_value(mount_path, "mountPath").via_index(i))
        elif path_clean(mount_path) in seen_mount_path:
            errs = errs.also(err_invalid_value(f"{quote(mount_path)} must be unique", "mountPath").via_index(i))
        seen_mount_path.add(path_clean(mount_path))

        volume = _map(volumes.get(name))
        read_only = vm.get("readOnly") is True
        should_check_read_only = not any(
            _present(volume, key) for key in ("emptyDir", "persistentVolumeClaim", "ephemeral")
        )
        if should_check_read_only and not read_only:
            errs = errs.also(
                FieldError("volume mount should be readOnly for this type of volume", ("readOnly",)).via_index(i)
            )
        if _present(vm, "mountPropagation"):
            if features[kc.POD_SPEC_VOLUMES_MOUNT_PROPAGATION] != kc.ENABLED:
                errs = errs.also(
                    FieldError(
                        f"Volume Mount Propagation support is disabled, but found volume mount {name} with "
                        "mount propagation"
                    ).via_index(i)
                )
            if vm["mountPropagation"] not in (MOUNT_PROPAGATION_NONE, MOUNT_PROPAGATION_HOST_TO_CONTAINER):
                errs = errs.also(
                    FieldError(
                        "mount propagation should be set to None or HostToContainer", ("mountPropagation",)
                    ).via_index(i)
                )

        claim = volume.get("persistentVolumeClaim")
        if claim is not None and _map(claim).get("readOnly") is True and not read_only:
            errs = errs.also(FieldError("volume is readOnly but volume mount is not", ("readOnly",)).via_index(i))
    return errs


# --- ports ----------------------------------------------------------------------------------------------------


def validate_container_ports(ports: Any) -> FieldError:
    """The serving container's ports: the first is the user port (TCP, named empty, h2c or http1)."""
    ports = _list(ports)
    if not ports:
        return NIL
    errs = NIL
    user_port = _map(ports[0])
    errs = errs.also(validate_container_port_basic(user_port))
    protocol = _str(user_port.get("protocol"))
    if protocol not in ("", PROTOCOL_TCP):
        errs = errs.also(err_invalid_value(protocol, "protocol"))
    name = _str(user_port.get("name"))
    if name not in VALID_PORT_NAMES:
        errs = errs.also(
            FieldError(
                f"Port name {name} is not allowed",
                (CURRENT_FIELD,),
                details="Name must be empty, or one of: 'h2c', 'http1'",
            )
        )
    return errs


def validate_init_container_ports(ports: Any) -> FieldError:
    errs = NIL
    ports = _list(ports)
    if not ports:
        return NIL
    for port in ports:
        errs = errs.also(validate_container_port_basic(_map(port)))
    return errs


def validate_container_port_basic(port: Mapping[str, Any]) -> FieldError:
    errs = NIL
    errs = errs.also(check_disallowed_fields(port, CONTAINER_PORT_MASK))
    number = _int(port.get("containerPort"))
    if number in RESERVED_PORTS:
        errs = errs.also(
            err_invalid_value(
                f"{number} is a reserved port",
                "containerPort",
                f"{number} is a reserved port, please use a different value",
            )
        )
    if number < 0 or number > 65535:
        errs = errs.also(err_out_of_bounds_value(number, 0, 65535, "containerPort"))
    return errs


# --- probes ---------------------------------------------------------------------------------------------------


def validate_readiness_probe(p: Any, port: Mapping[str, Any] | None, is_user_container: bool) -> FieldError:
    if p is None:
        return NIL
    p = _map(p)
    errs = validate_probe(p, port, is_user_container)
    period = _int(p.get("periodSeconds"))
    initial_delay = _int(p.get("initialDelaySeconds"))
    success = _int(p.get("successThreshold"))
    failure = _int(p.get("failureThreshold"))
    timeout = _int(p.get("timeoutSeconds"))
    if period < 0:
        errs = errs.also(err_out_of_bounds_value(period, 0, MAX_INT32, "periodSeconds"))
    if initial_delay < 0:
        errs = errs.also(err_out_of_bounds_value(initial_delay, 0, MAX_INT32, "initialDelaySeconds"))
    if success < 1:
        errs = errs.also(err_out_of_bounds_value(success, 1, MAX_INT32, "successThreshold"))
    # periodSeconds 0 is Knative's own probe, retried aggressively.
    if period == 0:
        if failure != 0:
            errs = errs.also(
                FieldError("failureThreshold is disallowed when periodSeconds is zero", ("failureThreshold",))
            )
        if timeout != 0:
            errs = errs.also(FieldError("timeoutSeconds is disallowed when periodSeconds is zero", ("timeoutSeconds",)))
    else:
        if timeout < 1:
            errs = errs.also(err_out_of_bounds_value(timeout, 1, MAX_INT32, "timeoutSeconds"))
        if failure < 1:
            errs = errs.also(err_out_of_bounds_value(failure, 1, MAX_INT32, "failureThreshold"))
    return errs


def _int_or_string(value: Any) -> tuple[int, str]:
    """intstr.IntOrString as JSON gives it: (IntVal, StrVal)."""
    if isinstance(value, str):
        return 0, value
    return _int(value), ""


def _int_or_string_text(value: Any) -> str:
    int_val, str_val = _int_or_string(value)
    return str_val if isinstance(value, str) else str(int_val)


def validate_probe(p: Any, port: Mapping[str, Any] | None, is_user_container: bool) -> FieldError:
    if p is None:
        return NIL
    p = _map(p)
    errs = _check_inline(p, PROBE_MASK, PROBE_POINTERS, HANDLER_MASK)
    handler = {key: p[key] for key in HANDLER_MASK if key in p}
    errs = errs.also(check_disallowed_fields(handler, HANDLER_MASK, pointers=HANDLER_MASK))

    handlers: list[str] = []
    port_name = _str(_map(port).get("name"))
    for key, mask, label in (
        ("httpGet", HTTP_GET_ACTION_MASK, "httpGet"),
        ("tcpSocket", TCP_SOCKET_ACTION_MASK, "tcpSocket"),
    ):
        if not _present(p, key):
            continue
        handlers.append(label)
        action = _map(p[key])
        # As Go: the prefix applies to the probe's errors so far too.
        errs = errs.also(check_disallowed_fields(action, mask, pointers=ACTION_POINTERS)).via_field(key)
        int_val, str_val = _int_or_string(action.get("port"))
        text = _int_or_string_text(action.get("port"))
        if is_user_container:
            if str_val != "" and str_val != port_name:
                errs = errs.also(err_invalid_value(text, f"{key}.port", "Probe port must match container port"))
        elif str_val == "" and int_val == 0:
            errs = errs.also(err_invalid_value(text, f"{key}.port", "Probe port must be specified"))
    if _present(p, "exec"):
        handlers.append("exec")
        errs = errs.also(
            check_disallowed_fields(_map(p["exec"]), EXEC_ACTION_MASK, pointers=ACTION_POINTERS)
        ).via_field("exec")
    if _present(p, "grpc"):
        handlers.append("gRPC")
        errs = errs.also(
            check_disallowed_fields(_map(p["grpc"]), GRPC_ACTION_MASK, pointers=ACTION_POINTERS)
        ).via_field("grpc")

    if not handlers:
        errs = errs.also(err_missing_one_of("httpGet", "tcpSocket", "exec", "grpc"))
    elif len(handlers) > 1:
        errs = errs.also(err_multiple_one_of(*handlers))
    return errs


__all__ = [
    "MAX_GROUP_ID",
    "MAX_USER_ID",
    "MIN_GROUP_ID",
    "MIN_USER_ID",
    "RESERVED_CONTAINER_NAMES",
    "RESERVED_ENV_VARS",
    "RESERVED_PATHS",
    "RESERVED_PORTS",
    "RESERVED_SIDECAR_ENV_VARS",
    "VALID_PORT_NAMES",
    "path_clean",
    "path_is_abs",
    "validate",
    "validate_containers",
    "validate_containers_ports",
    "validate_init_container",
    "validate_init_containers",
    "validate_security_context",
    "validate_sidecar_container",
    "validate_user_container",
    "validate_volume_mounts",
]
