"""A Service's validation and defaults: pkg/apis/serving/v1/service_validation.go and service_defaults.go at
knative/serving 98e5ef90.

A ServiceSpec inlines a ConfigurationSpec (`template`) and a RouteSpec (`traffic`), so the spec dict itself is
handed to the Configuration and Route functions; its traffic is checked with a default configuration name (the
Service's own Configuration).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeinfer.knative.webhook.configuration import (
    set_configuration_spec_defaults,
    validate_configuration_spec,
    with_previous_configuration_spec,
)
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import NIL, FieldError
from edgeinfer.knative.webhook.keys import GROUP_NAME
from edgeinfer.knative.webhook.metadata import (
    set_user_info,
    validate_creator_and_modifier,
    validate_object_metadata,
    validate_rollout_duration_annotation,
)
from edgeinfer.knative.webhook.revision import verify_name_change
from edgeinfer.knative.webhook.route import set_route_spec_defaults, validate_route_spec
from edgeinfer.knative.webhook.values import as_map as _mapping


def validate_service(ctx: Context, s: Mapping[str, Any]) -> FieldError:
    """(*Service).Validate."""
    errs = NIL
    meta = _mapping(s.get("metadata"))
    spec = _mapping(s.get("spec"))
    # A status update cannot change metadata or spec: they are not checked again, so that a controller's status
    # update is not refused for a rule (config-defaults, say) that changed since.
    if not ctx.in_status_update:
        errs = errs.also(validate_object_metadata(ctx, meta, False))
        errs = errs.also(
            validate_rollout_duration_annotation(_mapping(meta.get("annotations"))).via_field("annotations")
        )
        errs = errs.via_field("metadata")

        ctx = ctx.within_parent(meta)
        errs = errs.also(validate_service_spec(ctx.within_spec(), spec).via_field("spec"))

    if ctx.in_update:
        original = _mapping(ctx.baseline)
        original_spec = _mapping(original.get("spec"))
        errs = errs.also(
            validate_creator_and_modifier(
                original_spec,
                spec,
                _mapping(_mapping(original.get("metadata")).get("annotations")),
                _mapping(meta.get("annotations")),
                GROUP_NAME,
            ).via_field("metadata.annotations")
        )
        errs = errs.also(
            verify_name_change(ctx, _mapping(spec.get("template")), _mapping(original_spec.get("template"))).via_field(
                "spec.template"
            )
        )
    return errs


def validate_service_spec(ctx: Context, ss: Mapping[str, Any]) -> FieldError:
    """(*ServiceSpec).Validate."""
    return validate_configuration_spec(ctx, ss).also(
        # Within a Service, the traffic's configuration is the Service's own.
        validate_route_spec(ctx.with_default_configuration_name(), ss)
    )


def set_service_defaults(ctx: Context, s: dict[str, Any]) -> None:
    """(*Service).SetDefaults."""
    ctx = ctx.within_parent(_mapping(s.get("metadata")))

    # Go's Spec is a value field: make it first, so that a baseline which is this very object (as when a test
    # defaults its own baseline) hands over the spec being defaulted, as Go's &prev.Spec does.
    if not isinstance(s.get("spec"), dict):
        s["spec"] = {}

    prev_spec: Mapping[str, Any] | None = None
    prev = ctx.baseline
    if isinstance(prev, Mapping):
        prev_spec = _mapping(prev.get("spec"))
        # The ServiceSpec inlines the ConfigurationSpec: its `template` is the previous Configuration's.
        ctx = with_previous_configuration_spec(ctx, prev_spec)

    set_service_spec_defaults(ctx.within_spec(), s["spec"])
    set_user_info(ctx, prev_spec, s["spec"], s)


def set_service_spec_defaults(ctx: Context, ss: dict[str, Any]) -> None:
    """(*ServiceSpec).SetDefaults."""
    set_configuration_spec_defaults(ctx, ss)
    set_route_spec_defaults(ctx.with_default_configuration_name(), ss)
