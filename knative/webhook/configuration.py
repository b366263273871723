"""A Configuration's validation and defaults: pkg/apis/serving/v1/configuration_validation.go and
configuration_defaults.go at knative/serving 98e5ef90.

WithPreviousConfigurationSpec's context value lives here (Service defaulting sets it too), carried by a Context
subclass until Context holds it itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import NIL, FieldError, err_missing_field
from edgeinfer.knative.webhook.keys import GROUP_NAME, SERVICE_LABEL_KEY
from edgeinfer.knative.webhook.metadata import set_user_info, validate_creator_and_modifier, validate_object_metadata
from edgeinfer.knative.webhook.revision import (
    set_revision_template_spec_defaults,
    validate_revision_template_spec,
    verify_name_change,
)
from edgeinfer.knative.webhook.values import as_map as _dict


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _dict(obj.get("metadata"))


def _str_map(value: Any) -> Mapping[str, str]:
    return value if isinstance(value, Mapping) else {}


# --- configuration_validation.go ---------------------------------------------------------------------------


def validate_configuration(ctx: Context, c: Mapping[str, Any]) -> FieldError:
    """(*Configuration).Validate."""
    errs = NIL
    meta = _meta(c)
    # A status update cannot change metadata or spec, so they are not checked again (config-defaults may have
    # changed since, and a controller's status update must not be refused for it).
    if not ctx.in_status_update:
        errs = errs.also(validate_object_metadata(ctx, meta, False))
        errs = errs.also(validate_labels(c).via_field("labels"))
        errs = errs.via_field("metadata")

        ctx = ctx.within_parent(meta)
        errs = errs.also(validate_configuration_spec(ctx.within_spec(), _dict(c.get("spec"))).via_field("spec"))

    if ctx.in_update:
        original = _dict(ctx.baseline)
        # Creator and lastModifier are checked only on a Configuration made on its own, not one a Service owns.
        if meta.get("ownerReferences") is None:
            errs = errs.also(
                validate_creator_and_modifier(
                    original.get("spec"),
                    c.get("spec"),
                    _str_map(_meta(original).get("annotations")),
                    _str_map(meta.get("annotations")),
                    GROUP_NAME,
                ).via_field("metadata.annotations")
            )
        err = verify_name_change(
            ctx, _dict(_dict(c.get("spec")).get("template")), _dict(_dict(original.get("spec")).get("template"))
        )
        errs = errs.also(err.via_field("spec.template"))

    return errs


def validate_configuration_spec(ctx: Context, cs: Mapping[str, Any]) -> FieldError:
    """(*ConfigurationSpec).Validate."""
    return validate_revision_template_spec(ctx, _dict(cs.get("template"))).via_field("template")


def validate_labels(c: Mapping[str, Any]) -> FieldError:
    """(*Configuration).validateLabels: a service label must name an owning Service."""
    errs = NIL
    meta = _meta(c)
    labels = _str_map(meta.get("labels"))
    if SERVICE_LABEL_KEY in labels:
        owner_refs = meta.get("ownerReferences")
        errs = errs.also(
            verify_label_owner_ref(
                labels[SERVICE_LABEL_KEY],
                SERVICE_LABEL_KEY,
                "Service",
                owner_refs if isinstance(owner_refs, list) else [],
            )
        )
    return errs


def verify_label_owner_ref(val: Any, label: str, resource: str, owner_refs: list[Any]) -> FieldError:
    """verifyLabelOwnerRef: one owner reference is of kind `resource` and named `val`."""
    for ref in owner_refs:
        ref = _dict(ref)
        if ref.get("kind", "") == resource and ref.get("name", "") == val:
            return NIL
    return err_missing_field(label)


# --- configuration_defaults.go -----------------------------------------------------------------------------


def with_previous_configuration_spec(ctx: Context, spec: Mapping[str, Any] | None) -> Context:
    """WithPreviousConfigurationSpec: the pre-update spec, so defaulting can tell whether a new Revision comes."""
    return ctx.with_previous_configuration_spec(spec)


def previous_config_spec(ctx: Context) -> Mapping[str, Any] | None:
    """previousConfigSpec."""
    spec = ctx.previous_configuration_spec
    return spec if isinstance(spec, Mapping) else None


def set_configuration_defaults(ctx: Context, c: dict[str, Any]) -> None:
    """(*Configuration).SetDefaults."""
    ctx = ctx.within_parent(_meta(c))

    prev_spec: Mapping[str, Any] | None = None
    prev = ctx.baseline
    if isinstance(prev, Mapping):
        prev_spec = _dict(prev.get("spec"))
        ctx = with_previous_configuration_spec(ctx, prev_spec)

    if not isinstance(c.get("spec"), dict):
        c["spec"] = {}
    set_configuration_spec_defaults(ctx.within_spec(), c["spec"])

    if _meta(c).get("ownerReferences") is None:
        set_user_info(ctx, prev_spec, c["spec"], c)


def set_configuration_spec_defaults(ctx: Context, cs: dict[str, Any]) -> None:
    """(*ConfigurationSpec).SetDefaults."""
    prev = previous_config_spec(ctx)
    if prev is not None:
        new_name = _meta(_dict(cs.get("template"))).get("name") or ""
        old_name = _meta(_dict(prev.get("template"))).get("name") or ""
        if new_name != "" and new_name == old_name:
            # Defaulting now could change a template whose name the user chose ("BYO RevisionName") and so
            # make the update conflict with it.
            return
    if not isinstance(cs.get("template"), dict):
        cs["template"] = {}
    set_revision_template_spec_defaults(ctx, cs["template"])
