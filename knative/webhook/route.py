"""A Route's and a traffic target's checks and defaults: pkg/apis/serving/v1/route_validation.go and
route_defaults.go at knative/serving 98e5ef90.

A Service's `spec.traffic` is a RouteSpec inlined in the ServiceSpec, so the Service webhook runs these on it
(with a default configuration name: the Service's own Configuration).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeinfer.knative.webhook.configuration import verify_label_owner_ref
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    CURRENT_FIELD,
    NIL,
    FieldError,
    err_disallowed_fields,
    err_generic,
    err_invalid_array_value,
    err_invalid_key_name,
    err_missing_field,
    err_missing_one_of,
    err_multiple_one_of,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.go import quote, sprint
from edgeinfer.knative.webhook.k8s_names import is_dns1035_label, is_qualified_name
from edgeinfer.knative.webhook.keys import GROUP_NAME, SERVICE_LABEL_KEY
from edgeinfer.knative.webhook.metadata import (
    set_user_info,
    validate_creator_and_modifier,
    validate_object_metadata,
    validate_rollout_duration_annotation,
)
from edgeinfer.knative.webhook.values import as_list as _list
from edgeinfer.knative.webhook.values import as_map as _mapping


def _string(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def _int(obj: Mapping[str, Any], key: str) -> int | None:
    """A *int64: None when unset."""
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(obj: Mapping[str, Any], key: str) -> bool | None:
    """A *bool: None when unset."""
    value = obj.get(key)
    return value if isinstance(value, bool) else None


# --- validation -----------------------------------------------------------------------------------------


def validate_route(ctx: Context, r: Mapping[str, Any]) -> FieldError:
    """(*Route).Validate."""
    meta = _mapping(r.get("metadata"))
    errs = validate_object_metadata(ctx, meta, False).also(validate_route_labels(r).via_field("labels"))
    errs = errs.also(validate_rollout_duration_annotation(_annotations(meta)).via_field("annotations"))
    errs = errs.via_field("metadata")
    errs = errs.also(validate_route_spec(ctx.within_spec(), _mapping(r.get("spec"))).via_field("spec"))

    if ctx.in_update:
        original = _mapping(ctx.baseline)
        # The creator and lastModifier annotations of a Route a Service owns are the Service's business.
        if meta.get("ownerReferences") is None:
            errs = errs.also(
                validate_creator_and_modifier(
                    _mapping(original.get("spec")),
                    _mapping(r.get("spec")),
                    _annotations(_mapping(original.get("metadata"))),
                    _annotations(meta),
                    GROUP_NAME,
                ).via_field("metadata.annotations")
            )
    return errs


def _validate_traffic_list(ctx: Context, traffic: list[Any]) -> FieldError:
    errs = NIL
    # The index of each tag seen, to report duplicates.
    traffic_map: dict[str, int] = {}
    total = 0
    for i, item in enumerate(traffic):
        tt = _mapping(item)
        errs = errs.also(validate_traffic_target(ctx, tt).via_index(i))

        percent = _int(tt, "percent")
        if percent is not None:
            total += percent

        tag = _string(tt, "tag")
        if tag == "":
            continue
        msgs = is_dns1035_label(tag)
        if msgs:
            errs = errs.also(err_invalid_array_value("not a DNS 1035 label: " + sprint(msgs), "tag", i))
        if tag in traffic_map:
            # One definition per tag, even when both point at the same configuration or revision.
            errs = errs.also(
                FieldError(f"Multiple definitions for {quote(tag)}", (f"[{i}].tag", f"[{traffic_map[tag]}].tag"))
            )
        else:
            traffic_map[tag] = i

    if total != 100:
        errs = errs.also(FieldError(f"Traffic targets sum to {total}, want 100", (CURRENT_FIELD,)))
    return errs


def validate_route_spec(ctx: Context, rs: Mapping[str, Any]) -> FieldError:
    """(*RouteSpec).Validate."""
    return _validate_traffic_list(ctx, _list(rs.get("traffic"))).via_field("traffic")


def validate_traffic_target(ctx: Context, tt: Mapping[str, Any]) -> FieldError:
    """(*TrafficTarget).Validate."""
    errs = _validate_latest_revision(ctx, tt)
    errs = _validate_revision_and_configuration(ctx, tt, errs)
    errs = _validate_traffic_percentage(tt, errs)
    return _validate_url(ctx, tt, errs)


def _validate_revision_and_configuration(ctx: Context, tt: Mapping[str, Any], errs: FieldError) -> FieldError:
    revision_name = _string(tt, "revisionName")
    configuration_name = _string(tt, "configurationName")
    if ctx.default_configuration_name and configuration_name != "":
        # The Service names its own Configuration; a traffic target may not name another.
        errs = errs.also(err_disallowed_fields("configurationName"))
    elif revision_name != "" and configuration_name != "":
        errs = errs.also(err_multiple_one_of("revisionName", "configurationName"))
    elif revision_name != "":
        msgs = is_qualified_name(revision_name)
        if msgs:
            errs = errs.also(err_invalid_key_name(revision_name, "revisionName", *msgs))
    elif ctx.in_status:
        errs = errs.also(err_missing_field("revisionName"))
    elif configuration_name != "":
        msgs = is_qualified_name(configuration_name)
        if msgs:
            errs = errs.also(err_invalid_key_name(configuration_name, "configurationName", *msgs))
    elif ctx.default_configuration_name:
        pass  # the default configuration name is valid already
    else:
        errs = errs.also(err_missing_one_of("revisionName", "configurationName"))
    return errs


def _validate_traffic_percentage(tt: Mapping[str, Any], errs: FieldError) -> FieldError:
    percent = _int(tt, "percent")
    if percent is not None and (percent < 0 or percent > 100):
        errs = errs.also(err_out_of_bounds_value(percent, 0, 100, "percent"))
    return errs


def _validate_latest_revision(ctx: Context, tt: Mapping[str, Any]) -> FieldError:
    latest = _bool(tt, "latestRevision")
    if ctx.in_spec and latest is not None:
        revision_name = _string(tt, "revisionName")
        pinned = revision_name != ""
        if pinned == latest:
            # Pinning to a revision and floating to the latest one are exclusive.
            return err_generic(
                f"may not set revisionName {quote(revision_name)} when latestRevision is {sprint(latest)}",
                "latestRevision",
            )
    return NIL


def _validate_url(ctx: Context, tt: Mapping[str, Any], errs: FieldError) -> FieldError:
    # apis.URL: an empty string decodes to the empty URL, whose String() is "".
    if _string(tt, "url") != "":
        if ctx.in_spec:
            errs = errs.also(err_disallowed_fields("url"))
        if _string(tt, "tag") == "":
            errs = errs.also(err_disallowed_fields("url"))
    elif _string(tt, "tag") != "" and ctx.in_status:
        errs = errs.also(err_missing_field("url"))
    return errs


def validate_route_labels(r: Mapping[str, Any]) -> FieldError:
    """(*Route).validateLabels: a serving.knative.dev/service label names the Service that owns the Route."""
    meta = _mapping(r.get("metadata"))
    labels = _mapping(meta.get("labels"))
    errs = NIL
    if SERVICE_LABEL_KEY in labels:
        value = labels[SERVICE_LABEL_KEY]
        errs = errs.also(
            verify_label_owner_ref(
                value if isinstance(value, str) else "",
                SERVICE_LABEL_KEY,
                "Service",
                _list(meta.get("ownerReferences")),
            )
        )
    return errs


def _annotations(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(meta.get("annotations"))


# --- defaults -------------------------------------------------------------------------------------------


def set_route_defaults(ctx: Context, r: dict[str, Any]) -> None:
    """(*Route).SetDefaults."""
    spec = _child(r, "spec")
    set_route_spec_defaults(ctx.within_spec(), spec)
    _attach(r, "spec", spec)
    meta = _mapping(r.get("metadata"))
    if meta.get("ownerReferences") is None:
        if ctx.in_update:
            set_user_info(ctx, _mapping(_mapping(ctx.baseline).get("spec")), spec, r)
        else:
            set_user_info(ctx, None, spec, r)


def set_route_spec_defaults(ctx: Context, rs: dict[str, Any]) -> None:
    """(*RouteSpec).SetDefaults: within a Service, no traffic block means all traffic to the latest revision."""
    traffic = _list(rs.get("traffic"))
    if not traffic and ctx.default_configuration_name:
        traffic = [{"percent": 100, "latestRevision": True}]
        rs["traffic"] = traffic
    for tt in traffic:
        if isinstance(tt, dict):
            set_traffic_target_defaults(ctx, tt)


def set_traffic_target_defaults(ctx: Context, tt: dict[str, Any]) -> None:
    """(*TrafficTarget).SetDefaults."""
    if tt.get("latestRevision") is None:
        tt["latestRevision"] = _string(tt, "revisionName") == ""
    # An explicit 0 spares the controllers a nil check; the field was never enforced as required.
    if tt.get("percent") is None:
        tt["percent"] = 0


def _child(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The struct at `key` to default in place: the object's own dict, or a new one `_attach` adds if filled."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _attach(obj: dict[str, Any], key: str, child: dict[str, Any]) -> None:
    if child and obj.get(key) is not child:
        obj[key] = child
