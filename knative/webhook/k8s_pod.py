"""The PodSpec checks of Knative Serving: pkg/apis/serving/k8s_validation.go and the PodSpec-level masks of
pkg/apis/serving/fieldmask.go (knative/serving 98e5ef90).

Here: ValidatePodSpec, the volumes (sources, projections, emptyDir, PVC, image), the pod securityContext and its
warnings on containers' defaults, ValidateNamespacedObjectReference, AllMountedVolumes. The containers themselves
are k8s_container.py's.

Each Go mask becomes the set of JSON names it copies (given the feature flags), checked with
`check_disallowed_fields`; the `*_POINTERS` sets name the fields that are Go pointers, slices or maps, which
cmp.Equal sees as set whenever present (`false`, `0`, `[]` and `{}` included).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeinfer.knative.webhook import config as kc
from edgeinfer.knative.webhook.config import Features
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    NIL,
    FieldError,
    Level,
    err_generic,
    err_invalid_value,
    err_missing_field,
    err_missing_one_of,
    err_multiple_one_of,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.fieldmask import check_disallowed_fields
from edgeinfer.knative.webhook.go import quote
from edgeinfer.knative.webhook.k8s_container import (
    validate_containers,
    validate_containers_ports,
    validate_init_containers,
    validate_user_container,
)
from edgeinfer.knative.webhook.k8s_names import (
    is_c_identifier,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
)
from edgeinfer.knative.webhook.quantity import QuantityError, int_value, parse_json_quantity
from edgeinfer.knative.webhook.values import as_int as _int
from edgeinfer.knative.webhook.values import as_list as _list
from edgeinfer.knative.webhook.values import as_map as _map
from edgeinfer.knative.webhook.values import as_str as _str
from edgeinfer.knative.webhook.values import is_present as _present

MIN_USER_ID, MAX_USER_ID = 0, 2**31 - 1
MIN_GROUP_ID, MAX_GROUP_ID = 0, 2**31 - 1

# corev1 constants the checks compare with.
SECCOMP_PROFILE_TYPE_RUNTIME_DEFAULT = "RuntimeDefault"
SECCOMP_PROFILE_TYPE_UNCONFINED = "Unconfined"
PULL_POLICIES = ("IfNotPresent", "Always", "Never", "")

# --- the pointer, slice and map fields of the corev1 structs (k8s.io/api v0.35.7) -------------------------

POD_SPEC_POINTERS = frozenset(
    {
        "volumes",
        "initContainers",
        "containers",
        "ephemeralContainers",
        "terminationGracePeriodSeconds",
        "activeDeadlineSeconds",
        "nodeSelector",
        "automountServiceAccountToken",
        "shareProcessNamespace",
        "securityContext",
        "imagePullSecrets",
        "affinity",
        "tolerations",
        "hostAliases",
        "priority",
        "dnsConfig",
        "readinessGates",
        "runtimeClassName",
        "enableServiceLinks",
        "preemptionPolicy",
        "overhead",
        "topologySpreadConstraints",
        "setHostnameAsFQDN",
        "os",
        "hostUsers",
        "schedulingGates",
        "resourceClaims",
        "resources",
        "hostnameOverride",
        "workloadRef",
    }
)
POD_SECURITY_CONTEXT_POINTERS = frozenset(
    {
        "seLinuxOptions",
        "windowsOptions",
        "runAsUser",
        "runAsGroup",
        "runAsNonRoot",
        "supplementalGroups",
        "supplementalGroupsPolicy",
        "fsGroup",
        "sysctls",
        "fsGroupChangePolicy",
        "seccompProfile",
        "appArmorProfile",
        "seLinuxChangePolicy",
    }
)
# Every field of a VolumeSource is a pointer.
VOLUME_SOURCE_POINTERS = frozenset(
    {
        "hostPath",
        "emptyDir",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "persistentVolumeClaim",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "downwardAPI",
        "fc",
        "azureFile",
        "configMap",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "projected",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "csi",
        "ephemeral",
        "image",
    }
)
VOLUME_PROJECTION_POINTERS = frozenset(
    {"secret", "downwardAPI", "configMap", "serviceAccountToken", "clusterTrustBundle", "podCertificate"}
)
KEY_TO_PATH_POINTERS = frozenset({"mode"})
PROJECTION_POINTERS = frozenset({"items", "optional"})  # ConfigMapProjection, SecretProjection
SERVICE_ACCOUNT_TOKEN_PROJECTION_POINTERS = frozenset({"expirationSeconds"})
DOWNWARD_API_PROJECTION_POINTERS = frozenset({"items"})
DOWNWARD_API_VOLUME_FILE_POINTERS = frozenset({"fieldRef", "resourceFieldRef", "mode"})


# --- reading a manifest's values as Go's decoded struct would hold them ----------------------------------


def _enabled_or_bounded(features: Features) -> bool:
    return features[kc.SECURE_POD_DEFAULTS] in (kc.ENABLED, kc.ALLOW_ROOT_BOUNDED)


# --- fieldmask.go ---------------------------------------------------------------------------------------


def volume_source_mask(ctx: Context) -> set[str]:
    """VolumeSourceMask: the sources Knative allows; the feature-gated ones unless their flag is Disabled."""
    features = ctx.features
    out = {"secret", "configMap", "projected"}
    gated = (
        (kc.POD_SPEC_EMPTY_DIR, "emptyDir"),
        (kc.POD_SPEC_PV_CLAIM, "persistentVolumeClaim"),
        (kc.POD_SPEC_HOST_PATH, "hostPath"),
        (kc.POD_SPEC_VOLUMES_CSI, "csi"),
        (kc.POD_SPEC_VOLUMES_EPHEMERAL, "ephemeral"),
        (kc.POD_SPEC_VOLUMES_IMAGE, "image"),
    )
    out.update(name for flag, name in gated if features[flag] != kc.DISABLED)
    return out


# VolumeProjectionMask (DownwardAPI is not behind a flag, unlike the emptyDir volume).
VOLUME_PROJECTION_MASK = frozenset({"secret", "configMap", "serviceAccountToken", "downwardAPI"})
# ConfigMapProjectionMask and SecretProjectionMask copy all their fields, LocalObjectReference's name included.
PROJECTION_MASK = frozenset({"name", "items", "optional"})
SERVICE_ACCOUNT_TOKEN_PROJECTION_MASK = frozenset({"audience", "expirationSeconds", "path"})
DOWNWARD_API_VOLUME_FILE_MASK = frozenset({"fieldRef", "resourceFieldRef", "path", "mode"})
KEY_TO_PATH_MASK = frozenset({"key", "path", "mode"})
IMAGE_VOLUME_SOURCE_MASK = frozenset({"reference", "pullPolicy"})
NAMESPACED_OBJECT_REFERENCE_MASK = frozenset({"apiVersion", "kind", "name"})


def downward_api_projection_mask(dapi: Mapping[str, Any]) -> set[str]:
    """DownwardAPIProjectionMask copies the items with append(nil, items...): an empty list becomes nil, so
    `items: []` differs from its mask and is reported, as in Go."""
    items = dapi.get("items")
    return set() if isinstance(items, list) and not items else {"items"}


# Pod fields whose feature flag, unless Disabled, allows them (PodSpecMask's "Feature fields").
_POD_SPEC_FEATURE_FIELDS = (
    (kc.POD_SPEC_AFFINITY, "affinity"),
    (kc.POD_SPEC_TOPOLOGY_SPREAD_CONSTRAINTS, "topologySpreadConstraints"),
    (kc.POD_SPEC_HOST_ALIASES, "hostAliases"),
    (kc.POD_SPEC_NODE_SELECTOR, "nodeSelector"),
    (kc.POD_SPEC_RUNTIME_CLASS_NAME, "runtimeClassName"),
    (kc.POD_SPEC_TOLERATIONS, "tolerations"),
)
_POD_SPEC_LATER_FEATURE_FIELDS = (
    (kc.POD_SPEC_SHARE_PROCESS_NAMESPACE, "shareProcessNamespace"),
    (kc.POD_SPEC_PRIORITY_CLASS_NAME, "priorityClassName"),
    (kc.POD_SPEC_SCHEDULER_NAME, "schedulerName"),
    (kc.POD_SPEC_INIT_CONTAINERS, "initContainers"),
    (kc.POD_SPEC_DNS_POLICY, "dnsPolicy"),
    (kc.POD_SPEC_DNS_CONFIG, "dnsConfig"),
    (kc.POD_SPEC_HOST_IPC, "hostIPC"),
    (kc.POD_SPEC_HOST_PID, "hostPID"),
    (kc.POD_SPEC_HOST_NETWORK, "hostNetwork"),
)


def pod_spec_mask(ctx: Context, ps: Mapping[str, Any]) -> set[str]:
    """PodSpecMask: the fields always allowed, then those behind a feature flag that is not Disabled."""
    features = ctx.features
    out = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks"}
    # Only allow setting AutomountServiceAccountToken to false.
    if ps.get("automountServiceAccountToken") is False:
        out.add("automountServiceAccountToken")
    out.update(name for flag, name in _POD_SPEC_FEATURE_FIELDS if features[flag] != kc.DISABLED)
    if features[kc.POD_SPEC_SECURITY_CONTEXT] != kc.DISABLED or features[kc.SECURE_POD_DEFAULTS] != kc.DISABLED:
        # With only SecurePodDefaults, ValidatePodSecurityContext narrows it further.
        out.add("securityContext")
    out.update(name for flag, name in _POD_SPEC_LATER_FEATURE_FIELDS if features[flag] != kc.DISABLED)
    # restartPolicy, terminationGracePeriodSeconds, activeDeadlineSeconds, nodeName, hostname, subdomain,
    # priority, readinessGates and all others are never allowed.
    return out


def pod_security_context_mask(ctx: Context, sc: Mapping[str, Any]) -> set[str]:
    """PodSecurityContextMask: with SecurePodDefaults on, a seccompProfile of type RuntimeDefault or Unconfined
    (and nothing else) opts out of the secure default; the rest needs kubernetes.podspec-securitycontext."""
    features = ctx.features
    out: set[str] = set()
    if _enabled_or_bounded(features):
        seccomp = sc.get("seccompProfile")
        # The mask copies only the type: a localhostProfile makes the two differ.
        if (
            isinstance(seccomp, Mapping)
            and seccomp.get("type") in (SECCOMP_PROFILE_TYPE_RUNTIME_DEFAULT, SECCOMP_PROFILE_TYPE_UNCONFINED)
            and seccomp.get("localhostProfile") is None
        ):
            out.add("seccompProfile")
    if features[kc.POD_SPEC_SECURITY_CONTEXT] == kc.DISABLED:
        return out
    out.update({"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups", "seccompProfile"})
    # seLinuxOptions, windowsOptions, sysctls, fsGroupChangePolicy and the others stay disallowed.
    return out


# --- k8s_validation.go ----------------------------------------------------------------------------------


def validate_volumes(
    ctx: Context, vs: Any, mounted_volumes: set[str]
) -> tuple[dict[str, Mapping[str, Any]], FieldError]:
    """ValidateVolumes: each volume valid, named once and mounted somewhere; returns the volumes by name."""
    volumes: dict[str, Mapping[str, Any]] = {}
    errs = NIL
    for i, raw in enumerate(_list(vs)):
        volume = _map(raw)
        name = _str(volume.get("name"))
        if name in volumes:
            errs = errs.also(FieldError(f"duplicate volume name {quote(name)}", ("name",)).via_index(i))
        if name not in mounted_volumes:
            errs = errs.also(FieldError(f"volume with name {quote(name)} not mounted", ("name",)).via_index(i))
        errs = errs.also(validate_volume(ctx, volume).via_index(i))
        volumes[name] = volume
    return volumes, errs


def validate_persistent_volume_claims(volume: Mapping[str, Any], features: Features) -> FieldError:
    errs = NIL
    if not _present(volume, "persistentVolumeClaim"):
        return NIL
    pvc = _map(volume["persistentVolumeClaim"])
    claim_name = _str(pvc.get("claimName"))
    if features[kc.POD_SPEC_PV_CLAIM] != kc.ENABLED:
        errs = errs.also(
            FieldError(f"Persistent volume claim support is disabled, but found persistent volume claim {claim_name}")
        )
    is_write_enabled = features[kc.POD_SPEC_PERSISTENT_VOLUME_WRITE] == kc.ENABLED
    if pvc.get("readOnly") is not True and not is_write_enabled:
        errs = errs.also(
            FieldError(
                "Persistent volume write support is disabled, "
                f"but found persistent volume claim {claim_name} that is not read-only"
            )
        )
    return errs


_DISABLED_SOURCES = (
    ("image", kc.POD_SPEC_VOLUMES_IMAGE, "Image"),
    ("emptyDir", kc.POD_SPEC_EMPTY_DIR, "EmptyDir"),
    ("hostPath", kc.POD_SPEC_HOST_PATH, "HostPath"),
    ("csi", kc.POD_SPEC_VOLUMES_CSI, "CSI"),
    ("ephemeral", kc.POD_SPEC_VOLUMES_EPHEMERAL, "Ephemeral"),
)
# The sources a volume may name, in Go's order, with the flag that must be Enabled to list one as missing.
_SOURCES_ORDER = (
    ("secret", None),
    ("configMap", None),
    ("projected", None),
    ("emptyDir", kc.POD_SPEC_EMPTY_DIR),
    ("persistentVolumeClaim", kc.POD_SPEC_PV_CLAIM),
    ("hostPath", kc.POD_SPEC_HOST_PATH),
    ("csi", kc.POD_SPEC_VOLUMES_CSI),
    ("ephemeral", kc.POD_SPEC_VOLUMES_EPHEMERAL),
    ("image", kc.POD_SPEC_VOLUMES_IMAGE),
)


def validate_volume(ctx: Context, volume: Mapping[str, Any]) -> FieldError:
    features = ctx.features
    volume = _map(volume)
    name = _str(volume.get("name"))
    errs = validate_persistent_volume_claims(volume, features)
    for key, flag, label in _DISABLED_SOURCES:
        if _present(volume, key) and features[flag] != kc.ENABLED:
            errs = errs.also(FieldError(f"{label} volume support is disabled, but found {label} volume {name}"))
    # VolumeMask copies the name and the whole (inline) VolumeSource: that check never reports anything.
    # As in Go, a bad name replaces the errors found so far.
    if name == "":
        errs = err_missing_field("name")
    elif is_dns1123_label(name):
        errs = err_invalid_value(name, "name")
    vs = {k: v for k, v in volume.items() if k != "name"}  # the inline VolumeSource
    errs = errs.also(check_disallowed_fields(vs, volume_source_mask(ctx), pointers=VOLUME_SOURCE_POINTERS))
    specified: list[str] = []
    if _present(vs, "secret"):
        specified.append("secret")
        for i, item in enumerate(_list(_map(vs["secret"]).get("items"))):
            errs = errs.also(validate_key_to_path(item).via_field_index("items", i))
    if _present(vs, "configMap"):
        specified.append("configMap")
        for i, item in enumerate(_list(_map(vs["configMap"]).get("items"))):
            errs = errs.also(validate_key_to_path(item).via_field_index("items", i))
    if _present(vs, "projected"):
        specified.append("projected")
        for i, proj in enumerate(_list(_map(vs["projected"]).get("sources"))):
            errs = errs.also(validate_projected_volume_source(proj).via_field_index("projected", i))
    if _present(vs, "emptyDir"):
        specified.append("emptyDir")
        errs = errs.also(validate_empty_dir_fields(vs["emptyDir"]).via_field("emptyDir"))
    for key in ("persistentVolumeClaim", "hostPath", "csi", "ephemeral"):
        if _present(vs, key):
            specified.append(key)
    if _present(vs, "image"):
        specified.append("image")
        errs = errs.also(validate_image_volume_source(vs["image"]).via_field("image"))

    if not specified:
        field_paths = [key for key, flag in _SOURCES_ORDER if flag is None or features[flag] == kc.ENABLED]
        errs = errs.also(err_missing_one_of(*field_paths))
    elif len(specified) > 1:
        errs = errs.also(err_multiple_one_of(*specified))
    return errs


def validate_projected_volume_source(vp: Any) -> FieldError:
    vp = _map(vp)
    errs = check_disallowed_fields(vp, VOLUME_PROJECTION_MASK, pointers=VOLUME_PROJECTION_POINTERS)
    specified: list[str] = []
    if _present(vp, "secret"):
        specified.append("secret")
        errs = errs.also(validate_secret_projection(vp["secret"]).via_field("secret"))
    if _present(vp, "configMap"):
        specified.append("configMap")
        errs = errs.also(validate_config_map_projection(vp["configMap"]).via_field("configMap"))
    if _present(vp, "serviceAccountToken"):
        specified.append("serviceAccountToken")
        errs = errs.also(
            validate_service_account_token_projection(vp["serviceAccountToken"]).via_field("serviceAccountToken")
        )
    if _present(vp, "downwardAPI"):
        specified.append("downwardAPI")
        errs = errs.also(validate_downward_api_projection(vp["downwardAPI"]).via_field("downwardAPI"))
    if not specified:
        errs = errs.also(err_missing_one_of("secret", "configMap", "serviceAccountToken", "downwardAPI"))
    elif len(specified) > 1:
        errs = errs.also(err_multiple_one_of(*specified))
    return errs


def validate_config_map_projection(cmp: Any) -> FieldError:
    cmp = _map(cmp)
    # One check stands for Go's two (the projection, then its inline LocalObjectReference): both copy all.
    errs = check_disallowed_fields(cmp, PROJECTION_MASK, pointers=PROJECTION_POINTERS)
    if _str(cmp.get("name")) == "":
        errs = errs.also(err_missing_field("name"))
    for i, item in enumerate(_list(cmp.get("items"))):
        errs = errs.also(validate_key_to_path(item).via_field_index("items", i))
    return errs


def validate_secret_projection(sp: Any) -> FieldError:
    sp = _map(sp)
    errs = check_disallowed_fields(sp, PROJECTION_MASK, pointers=PROJECTION_POINTERS)
    if _str(sp.get("name")) == "":
        errs = errs.also(err_missing_field("name"))
    for i, item in enumerate(_list(sp.get("items"))):
        errs = errs.also(validate_key_to_path(item).via_field_index("items", i))
    return errs


def validate_service_account_token_projection(sp: Any) -> FieldError:
    sp = _map(sp)
    errs = check_disallowed_fields(
        sp, SERVICE_ACCOUNT_TOKEN_PROJECTION_MASK, pointers=SERVICE_ACCOUNT_TOKEN_PROJECTION_POINTERS
    )
    # Audience and ExpirationSeconds are optional.
    if _str(sp.get("path")) == "":
        errs = errs.also(err_missing_field("path"))
    return errs


def validate_downward_api_projection(dapi: Any) -> FieldError:
    dapi = _map(dapi)
    errs = check_disallowed_fields(dapi, downward_api_projection_mask(dapi), pointers=DOWNWARD_API_PROJECTION_POINTERS)
    for i, item in enumerate(_list(dapi.get("items"))):
        errs = errs.also(validate_downward_api_volume_file(item).via_field_index("items", i))
    return errs


def validate_downward_api_volume_file(vf: Any) -> FieldError:
    vf = _map(vf)
    errs = check_disallowed_fields(vf, DOWNWARD_API_VOLUME_FILE_MASK, pointers=DOWNWARD_API_VOLUME_FILE_POINTERS)
    if not _present(vf, "fieldRef") and not _present(vf, "resourceFieldRef"):
        errs = errs.also(err_missing_one_of("fieldRef", "resourceFieldRef"))
    if _present(vf, "fieldRef") and _present(vf, "resourceFieldRef"):
        errs = errs.also(err_generic("Within a single item, cannot set both", "resourceFieldRef", "fieldRef"))
    if _str(vf.get("path")) == "":
        errs = errs.also(err_missing_field("path"))
    return errs


def validate_key_to_path(k2p: Any) -> FieldError:
    k2p = _map(k2p)
    errs = check_disallowed_fields(k2p, KEY_TO_PATH_MASK, pointers=KEY_TO_PATH_POINTERS)
    if _str(k2p.get("key")) == "":
        errs = errs.also(err_missing_field("key"))
    if _str(k2p.get("path")) == "":
        errs = errs.also(err_missing_field("path"))
    return errs


def validate_empty_dir_fields(dir_: Any) -> FieldError:
    dir_ = _map(dir_)
    errs = NIL
    medium = _str(dir_.get("medium"))
    if medium not in ("", "Memory"):
        errs = errs.also(err_invalid_value(medium, "medium"))
    if dir_.get("sizeLimit") is not None:
        try:
            size_limit = parse_json_quantity(dir_["sizeLimit"])
        except QuantityError:
            # A sizeLimit that does not parse never reaches Go's validation (decoding refuses it).
            return errs
        if int_value(size_limit) < 0:
            errs = errs.also(err_invalid_value(str(size_limit), "sizeLimit"))
    return errs


def validate_image_volume_source(iv: Any) -> FieldError:
    iv = _map(iv)
    errs = check_disallowed_fields(iv, IMAGE_VOLUME_SOURCE_MASK)
    if _str(iv.get("reference")) == "":
        errs = errs.also(err_missing_field("reference"))
    pull_policy = _str(iv.get("pullPolicy"))
    if pull_policy not in PULL_POLICIES:
        errs = errs.also(err_invalid_value(pull_policy, "pullPolicy"))
    return errs


def validate_pod_spec(ctx: Context, ps: Mapping[str, Any]) -> FieldError:
    """ValidatePodSpec: the pod's fields by the feature flags, its securityContext, volumes and containers."""
    ps = _map(ps)
    errs = check_disallowed_fields(ps, pod_spec_mask(ctx, ps), pointers=POD_SPEC_POINTERS)

    errs = errs.also(validate_pod_security_context(ctx, ps.get("securityContext")).via_field("securityContext"))

    containers = [_map(c) for c in _list(ps.get("containers"))]
    init_containers = [_map(c) for c in _list(ps.get("initContainers"))]
    psc = ps.get("securityContext")
    for i, container in enumerate(containers):
        errs = errs.also(
            warn_default_container_security_context(ctx, psc, container.get("securityContext"))
            .via_field("securityContext")
            .via_field_index("containers", i)
        )
    for i, container in enumerate(init_containers):
        errs = errs.also(
            warn_default_container_security_context(ctx, psc, container.get("securityContext"))
            .via_field("securityContext")
            .via_field_index("initContainers", i)
        )

    volumes, err = validate_volumes(ctx, ps.get("volumes"), all_mounted_volumes(init_containers + containers))
    errs = errs.also(err.via_field("volumes"))

    errs = errs.also(validate_init_containers(ctx, init_containers, containers, volumes))

    port, err = validate_containers_ports(containers)
    errs = errs.also(err.via_field("containers[*]"))

    if len(containers) == 0:
        errs = errs.also(err_missing_field("containers"))
    elif len(containers) == 1:
        errs = errs.also(validate_user_container(ctx, containers[0], volumes, port).via_field_index("containers", 0))
    else:
        errs = errs.also(validate_containers(ctx, containers, volumes, port))
    service_account_name = _str(ps.get("serviceAccountName"))
    if service_account_name != "":
        for message in is_dns1123_subdomain(service_account_name):
            errs = errs.also(err_invalid_value(service_account_name, "serviceAccountName", message))
    return errs


def all_mounted_volumes(containers: Any) -> set[str]:
    """AllMountedVolumes: the volume names mounted in any of the containers."""
    names: set[str] = set()
    for container in _list(containers):
        for mount in _list(_map(container).get("volumeMounts")):
            names.add(_str(_map(mount).get("name")))
    return names


def validate_namespaced_object_reference(ref: Mapping[str, Any] | None) -> FieldError:
    """ValidateNamespacedObjectReference: an ObjectReference that may not carry a namespace."""
    if ref is None:
        return NIL
    ref = _map(ref)
    errs = check_disallowed_fields(ref, NAMESPACED_OBJECT_REFERENCE_MASK)

    api_version = _str(ref.get("apiVersion"))
    if api_version == "":
        errs = errs.also(err_missing_field("apiVersion"))
    elif messages := is_qualified_name(api_version):
        errs = errs.also(err_invalid_value(", ".join(messages), "apiVersion"))
    kind = _str(ref.get("kind"))
    if kind == "":
        errs = errs.also(err_missing_field("kind"))
    elif messages := is_c_identifier(kind):
        errs = errs.also(err_invalid_value(", ".join(messages), "kind"))
    name = _str(ref.get("name"))
    if name == "":
        errs = errs.also(err_missing_field("name"))
    elif messages := is_dns1123_label(name):
        errs = errs.also(err_invalid_value(", ".join(messages), "name"))
    return errs


def validate_pod_security_context(ctx: Context, sc: Mapping[str, Any] | None) -> FieldError:
    """ValidatePodSecurityContext: the fields PodSecurityContextMask allows, and uid/gid bounds."""
    if sc is None:
        return NIL
    sc = _map(sc)
    errs = check_disallowed_fields(sc, pod_security_context_mask(ctx, sc), pointers=POD_SECURITY_CONTEXT_POINTERS)

    uid = _int(sc.get("runAsUser"))
    if uid is not None and not MIN_USER_ID <= uid <= MAX_USER_ID:
        errs = errs.also(err_out_of_bounds_value(uid, MIN_USER_ID, MAX_USER_ID, "runAsUser"))
    gid = _int(sc.get("runAsGroup"))
    if gid is not None and not MIN_GROUP_ID <= gid <= MAX_GROUP_ID:
        errs = errs.also(err_out_of_bounds_value(gid, MIN_GROUP_ID, MAX_GROUP_ID, "runAsGroup"))
    fs_group = _int(sc.get("fsGroup"))
    if fs_group is not None and not MIN_GROUP_ID <= fs_group <= MAX_GROUP_ID:
        errs = errs.also(err_out_of_bounds_value(fs_group, MIN_GROUP_ID, MAX_GROUP_ID, "fsGroup"))
    for i, raw in enumerate(_list(sc.get("supplementalGroups"))):
        group = _int(raw)
        if group is not None and not MIN_GROUP_ID <= group <= MAX_GROUP_ID:
            errs = errs.also(
                err_out_of_bounds_value(group, MIN_GROUP_ID, MAX_GROUP_ID, "").via_field_index("supplementalGroups", i)
            )
    return errs


_INSECURE_DEFAULT = "Kubernetes default value is insecure, Knative may default this to secure in a future release"


def warn_default_container_security_context(ctx: Context, psc: Any, sc: Any) -> FieldError:
    """Warnings (never errors) on securityContext values left to Kubernetes' insecure defaults, the pod's and the
    container's read together. Deliberately dangerous values are not warned about."""
    sc = _map(sc)
    psc = _map(psc)
    # Knative sets secure defaults itself when the feature is on.
    if _enabled_or_bounded(ctx.features):
        return NIL

    def insecure_default(field_path: str) -> FieldError:
        return err_generic(_INSECURE_DEFAULT, field_path).at(Level.WARNING)

    errs = NIL
    if not _present(psc, "runAsNonRoot") and not _present(sc, "runAsNonRoot"):
        errs = errs.also(insecure_default("runAsNonRoot"))
    if not _present(sc, "allowPrivilegeEscalation"):
        errs = errs.also(insecure_default("allowPrivilegeEscalation"))

    if not _present(sc, "seccompProfile") and not _present(psc, "seccompProfile"):
        errs = errs.also(insecure_default("seccompProfile"))
    else:
        psc_is_default = _str(_map(psc.get("seccompProfile")).get("type")) == ""
        sc_is_default = _str(_map(sc.get("seccompProfile")).get("type")) == ""
        if psc_is_default and sc_is_default:
            errs = errs.also(insecure_default("seccompProfile.type"))

    if not _present(sc, "capabilities"):
        errs = errs.also(insecure_default("capabilities"))
    else:
        drop = _map(sc["capabilities"]).get("drop")
        if drop is None:
            errs = errs.also(insecure_default("capabilities.drop"))
        elif isinstance(drop, list) and drop and drop[0] == "all":
            # "all" in lower case, a common misspelling, drops nothing.
            errs = errs.also(
                err_invalid_value("all", "capabilities.drop", "Must be spelled as 'ALL'").at(Level.WARNING)
            )
    return errs
