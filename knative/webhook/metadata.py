"""The metadata checks shared by Knative's resources: pkg/apis/serving/metadata_validation.go of knative/serving
98e5ef90, with the knative.dev/pkg/apis/metadata_validation.go pieces it calls (ValidateObjectMetadata,
ValidateCreatorAndModifier).

`meta` is a manifest's `metadata` map; `resource` (SetUserInfo) is the whole object, whose `metadata` is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeinfer.knative.webhook import keys
from edgeinfer.knative.webhook.autoscaling import round_duration
from edgeinfer.knative.webhook.autoscaling import validate_annotations as validate_autoscaling_annotations
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    CURRENT_FIELD,
    NIL,
    FieldError,
    err_invalid_key_name,
    err_invalid_value,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.go import SECOND, DurationError, parse_duration, sprint
from edgeinfer.knative.webhook.k8s_names import name_is_dns1035_label
from edgeinfer.knative.webhook.quantity import QuantityError, parse_json_quantity

CREATOR_ANNOTATION_SUFFIX = "/creator"
UPDATER_ANNOTATION_SUFFIX = "/lastModifier"


def _string(meta: Mapping[str, Any] | None, key: str) -> str:
    value = meta.get(key) if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) else ""


def _annotations(meta: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    value = meta.get("annotations") if isinstance(meta, Mapping) else None
    return value if isinstance(value, Mapping) else None


# --- knative.dev/pkg/apis/metadata_validation.go ---------------------------------------------------------


def apis_validate_object_metadata(meta: Mapping[str, Any] | None) -> FieldError:
    """apis.ValidateObjectMetadata: generateName, then name, as DNS-1035 labels; one of them is required."""
    name = _string(meta, "name")
    generate_name = _string(meta, "generateName")
    if generate_name:
        msgs = name_is_dns1035_label(generate_name, True)
        if msgs:
            return FieldError(f"not a DNS 1035 label prefix: {sprint(msgs)}", ("generateName",))
    if name:
        msgs = name_is_dns1035_label(name, False)
        if msgs:
            return FieldError(f"not a DNS 1035 label: {sprint(msgs)}", ("name",))
    if not generate_name and not name:
        return FieldError("name or generateName is required", ("name",))
    return NIL


def semantic_equal(a: Any, b: Any) -> bool:
    """equality.Semantic.DeepEqual over manifests: a missing field, null, "" and an empty list or map are alike.

    Go compares structs, where an absent field is its zero value and a nil slice or map equals an empty one.
    Numbers and booleans stay distinct from absence (most such fields are pointers, where 0 is not nil), and
    resource quantities compare by value, as equality.Semantic's Quantity rule does ("1000m" equals "1").
    """
    if _is_empty(a) and _is_empty(b):
        return True
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return all(_field_equal(k, a.get(k), b.get(k)) for k in set(a) | set(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(semantic_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


# The fields that hold resource.Quantity values: ResourceRequirements' maps and emptyDir's sizeLimit.
_QUANTITY_MAPS = ("limits", "requests")
_QUANTITIES = ("sizeLimit",)


def _field_equal(key: str, a: Any, b: Any) -> bool:
    if key in _QUANTITY_MAPS and isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_quantity_equal(a[k], b[k]) for k in a)
    if key in _QUANTITIES and a is not None and b is not None:
        return _quantity_equal(a, b)
    return semantic_equal(a, b)


def _quantity_equal(a: Any, b: Any) -> bool:
    try:
        return parse_json_quantity(a) == parse_json_quantity(b)
    except QuantityError:
        return semantic_equal(a, b)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (list, dict)) and not value)


def validate_creator_and_modifier(
    old_spec: Any,
    new_spec: Any,
    old_annotation: Mapping[str, Any] | None,
    new_annotation: Mapping[str, Any] | None,
    group_name: str,
) -> FieldError:
    """apis.ValidateCreatorAndModifier: the creator never changes; the modifier only with the spec."""
    old_annotation = old_annotation if isinstance(old_annotation, Mapping) else {}
    new_annotation = new_annotation if isinstance(new_annotation, Mapping) else {}
    creator, updater = group_name + CREATOR_ANNOTATION_SUFFIX, group_name + UPDATER_ANNOTATION_SUFFIX
    errs = NIL
    if old_annotation.get(creator, "") != new_annotation.get(creator, ""):
        errs = errs.also(FieldError("annotation value is immutable", (creator,)))
    if semantic_equal(old_spec, new_spec) and old_annotation.get(updater, "") != new_annotation.get(updater, ""):
        errs = errs.also(err_invalid_value(new_annotation.get(updater, ""), updater))
    return errs


# --- pkg/apis/serving/metadata_validation.go -------------------------------------------------------------


def validate_object_metadata(
    ctx: Context, meta: Mapping[str, Any] | None, allow_autoscaling_annotations: bool
) -> FieldError:
    """ValidateObjectMetadata: names, then the autoscaling annotations (checked where allowed, else refused)."""
    errs = apis_validate_object_metadata(meta)
    annotations = _annotations(meta)
    if allow_autoscaling_annotations:
        errs = errs.also(validate_autoscaling_annotations(ctx, ctx.autoscaler, annotations).via_field("annotations"))
    else:
        errs = errs.also(validate_has_no_autoscaling_annotation(annotations).via_field("annotations"))
    return errs


def validate_rollout_duration_annotation(annotations: Mapping[str, Any] | None) -> FieldError:
    """ValidateRolloutDurationAnnotation: a positive duration at second precision (Service or Route)."""
    errs = NIL
    k, v, _ = keys.get_key(annotations, keys.ROLLOUT_DURATION_ANNOTATION)
    if v:
        try:
            d = parse_duration(v)
        except DurationError:
            return errs.also(err_invalid_value(v, k))
        if round_duration(d, SECOND) != d:
            # The value as written: %v of the duration could spell it differently.
            return errs.also(FieldError(f"rollout-duration={v} is not at second precision", (k,)))
        if d < 0:
            return errs.also(FieldError(f"rollout-duration={v} must be positive", (k,)))
    return errs


def validate_has_no_autoscaling_annotation(annotations: Mapping[str, Any] | None) -> FieldError:
    """ValidateHasNoAutoscalingAnnotation: a Service or Configuration carries none (they go on the template)."""
    errs = NIL
    for key in annotations or {}:
        if isinstance(key, str) and key.startswith(keys.AUTOSCALING_GROUP_NAME):
            errs = errs.also(
                err_invalid_key_name(
                    key,
                    CURRENT_FIELD,
                    'autoscaling annotations must be put under "spec.template.metadata.annotations" to work',
                )
            )
    return errs


def validate_container_concurrency(ctx: Context, container_concurrency: int | None) -> FieldError:
    """ValidateContainerConcurrency: within [0 or 1, container-concurrency-max-limit] of config-defaults."""
    if container_concurrency is not None:
        cfg = ctx.defaults
        min_container_concurrency = 0 if cfg.allow_container_concurrency_zero else 1
        if (
            container_concurrency < min_container_concurrency
            or container_concurrency > cfg.container_concurrency_max_limit
        ):
            return err_out_of_bounds_value(
                container_concurrency, min_container_concurrency, cfg.container_concurrency_max_limit, CURRENT_FIELD
            )
    return NIL


def set_user_info(ctx: Context, old_spec: Any, new_spec: Any, resource: Any) -> None:
    """SetUserInfo: on create the creator and the modifier; on update the modifier, if the spec changed."""
    ui = ctx.user_info
    if ui is None:
        return
    if not isinstance(resource, dict):
        return
    meta = resource.get("metadata")
    if not isinstance(meta, dict):
        meta = resource["metadata"] = {}
    ans = meta.get("annotations")
    if not isinstance(ans, dict):
        ans = meta["annotations"] = {}
    username = ui.get("username", "")
    username = username if isinstance(username, str) else ""
    if ctx.in_update:
        if semantic_equal(old_spec, new_spec):
            return
        ans[keys.UPDATER_ANNOTATION] = username
    else:
        ans[keys.CREATOR_ANNOTATION] = username
        ans[keys.UPDATER_ANNOTATION] = username
