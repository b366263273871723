"""Knative's pkg/apis/serving/v1/configuration_validation_test.go at knative/serving 98e5ef90, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from edgeinfer.knative.webhook.config import (
    DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY,
    DEFAULT_MAX_REVISION_TIMEOUT_SECONDS,
)
from edgeinfer.knative.webhook.configuration import validate_configuration
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    NIL,
    FieldError,
    Level,
    err_disallowed_fields,
    err_invalid_key_name,
    err_invalid_value,
    err_missing_field,
    err_out_of_bounds_value,
)

GROUP_NAME = "serving.knative.dev"
SERVICE_LABEL_KEY = GROUP_NAME + "/service"
ROUTE_LABEL_KEY = GROUP_NAME + "/route"
CREATOR_ANNOTATION = GROUP_NAME + "/creator"
UPDATER_ANNOTATION = GROUP_NAME + "/lastModifier"

DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def template(
    image: str,
    name: str | None = None,
    generate_name: str | None = None,
    container_concurrency: int | None = None,
    timeout_seconds: int | None = None,
) -> dict[str, Any]:
    """A ConfigurationSpec of one container."""
    meta: dict[str, Any] = {}
    if name is not None:
        meta["name"] = name
    if generate_name is not None:
        meta["generateName"] = generate_name
    rev_spec: dict[str, Any] = {"containers": [{"image": image}]}
    if container_concurrency is not None:
        rev_spec["containerConcurrency"] = container_concurrency
    if timeout_seconds is not None:
        rev_spec["timeoutSeconds"] = timeout_seconds
    tmpl: dict[str, Any] = {"spec": rev_spec}
    if meta:
        tmpl["metadata"] = meta
    return {"template": tmpl}


def configuration(
    spec: dict[str, Any],
    name: str | None = None,
    generate_name: str | None = None,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    owner_references: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if name is not None:
        meta["name"] = name
    if generate_name is not None:
        meta["generateName"] = generate_name
    if annotations is not None:
        meta["annotations"] = annotations
    if labels is not None:
        meta["labels"] = labels
    if owner_references is not None:
        meta["ownerReferences"] = owner_references
    return {"metadata": meta, "spec": spec}


# --- TestConfigurationValidation ---------------------------------------------------------------------------

CONFIGURATION_VALIDATION = [
    pytest.param(
        configuration(template("busybox"), name="valid"),
        NIL,
        id="TestConfigurationValidation/valid",
    ),
    pytest.param(
        configuration(template("busybox", container_concurrency=-10), name="valid"),
        err_out_of_bounds_value(
            -10, 0, DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY, "spec.template.spec.containerConcurrency"
        ),
        id="TestConfigurationValidation/invalid container concurrency",
    ),
    pytest.param(
        configuration(template("hellworld", name="byo-name-foo"), name="byo-name"),
        NIL,
        id="TestConfigurationValidation/valid BYO name",
    ),
    pytest.param(
        configuration(template("hellworld"), name=""),
        FieldError("name or generateName is required", ("metadata.name",)),
        id="TestConfigurationValidation/invalid name",
    ),
    pytest.param(
        configuration(template("hellworld", name="byo-name-foo"), generate_name="byo-name-"),
        err_disallowed_fields("spec.template.metadata.name"),
        id="TestConfigurationValidation/valid BYO name (with generateName)",
    ),
    pytest.param(
        configuration(template("hellworld", name="foo"), name="byo-name"),
        err_invalid_value('"foo" must have prefix "byo-name-"', "spec.template.metadata.name"),
        id="TestConfigurationValidation/invalid BYO name (not prefixed)",
    ),
    pytest.param(
        configuration(template("hellworld", name="foo.bar"), name="byo-name"),
        err_invalid_value(f"not a DNS 1035 label: [{DNS1035_MESSAGE}]", "spec.template.metadata.name"),
        id="TestConfigurationValidation/invalid name for configuration spec",
    ),
    pytest.param(
        configuration(template("hellworld", generate_name="foo.bar"), name="byo-name"),
        err_invalid_value(f"not a DNS 1035 label prefix: [{DNS1035_MESSAGE}]", "spec.template.metadata.generateName"),
        id="TestConfigurationValidation/invalid generate name for configuration spec",
    ),
    pytest.param(
        configuration(template("hellworld", generate_name="valid-generatename"), name="byo-name"),
        NIL,
        id="TestConfigurationValidation/valid generate name for configuration spec",
    ),
    pytest.param(
        configuration(
            template("hellworld"), name="autoscaling-annotation", annotations={"autoscaling.knative.dev/foo": "bar"}
        ),
        err_invalid_key_name(
            "autoscaling.knative.dev/foo",
            "metadata.annotations",
            'autoscaling annotations must be put under "spec.template.metadata.annotations" to work',
        ),
        id="TestConfigurationValidation/invalid autoscaling.knative.dev annotation",
    ),
]


@pytest.mark.parametrize(("c", "want"), CONFIGURATION_VALIDATION)
def test_configuration_validation(c: dict[str, Any], want: FieldError) -> None:
    got = validate_configuration(Context(), c).filter(Level.ERROR)
    assert str(got) == str(want)


# --- TestConfigurationLabelValidation ----------------------------------------------------------------------


def valid_config_spec() -> dict[str, Any]:
    """validConfigSpec."""
    return template("hellworld", name="byo-name-foo")


def _owner(kind: str, name: str) -> dict[str, str]:
    return {"apiVersion": "serving.knative.dev/v1alpha1", "kind": kind, "name": name}


LABEL_VALIDATION = [
    pytest.param(
        configuration(valid_config_spec(), name="byo-name", labels={ROUTE_LABEL_KEY: "test-route"}),
        NIL,
        id="TestConfigurationLabelValidation/valid route name",
    ),
    pytest.param(
        configuration(
            valid_config_spec(),
            name="byo-name",
            labels={SERVICE_LABEL_KEY: "test-svc"},
            owner_references=[_owner("Service", "test-svc")],
        ),
        NIL,
        id="TestConfigurationLabelValidation/valid knative service name",
    ),
    pytest.param(
        configuration(
            valid_config_spec(),
            name="byo-name",
            labels={SERVICE_LABEL_KEY: "test-svc"},
            owner_references=[_owner("Service", "absent-svc")],
        ),
        err_missing_field("metadata.labels.serving.knative.dev/service"),
        id="TestConfigurationLabelValidation/invalid knative service name without matching owner references",
    ),
    pytest.param(
        configuration(
            valid_config_spec(),
            name="byo-name",
            labels={SERVICE_LABEL_KEY: "test-svc"},
            owner_references=[_owner("NewSerice", "test-new-svc"), _owner("Service", "test-svc")],
        ),
        NIL,
        id="TestConfigurationLabelValidation/invalid knative service name with multiple owner ref",
    ),
    pytest.param(
        configuration(valid_config_spec(), name="byo-name", labels={SERVICE_LABEL_KEY: "absent-svc"}),
        err_missing_field("metadata.labels.serving.knative.dev/service"),
        id="TestConfigurationLabelValidation/invalid knative service name",
    ),
    pytest.param(
        configuration(
            valid_config_spec(),
            name="byo-name",
            labels={SERVICE_LABEL_KEY: "test-svc"},
            owner_references=[_owner("BrandNewService", "brand-new-svc")],
        ),
        err_missing_field("metadata.labels.serving.knative.dev/service"),
        id="TestConfigurationLabelValidation/Mismatch knative service label and owner ref",
    ),
    pytest.param(
        configuration(valid_config_spec(), name="byo-name", labels={"serving.knative.dev/testlabel": "value"}),
        NIL,
        id="TestConfigurationLabelValidation/allow unknown uses of knative.dev/serving prefix",
    ),
]


@pytest.mark.parametrize(("c", "want"), LABEL_VALIDATION)
def test_configuration_label_validation(c: dict[str, Any], want: FieldError) -> None:
    got = validate_configuration(Context(), c).filter(Level.ERROR)
    assert str(got) == str(want)


# --- TestImmutableConfigurationFields ----------------------------------------------------------------------

IMMUTABLE_FIELDS = [
    pytest.param(
        configuration(template("helloworld:foo"), name="no-byo-name"),
        configuration(template("helloworld:bar"), name="no-byo-name"),
        NIL,
        id="TestImmutableConfigurationFields/without byo-name",
    ),
    pytest.param(
        configuration(template("helloworld:foo", name="byo-name-foo"), name="byo-name"),
        configuration(template("helloworld:bar", name="byo-name-bar"), name="byo-name"),
        NIL,
        id="TestImmutableConfigurationFields/good byo name change",
    ),
    pytest.param(
        configuration(template("helloworld:foo", name="byo-name-foo"), name="byo-name"),
        configuration(template("helloworld:foo", name="byo-name-foo"), name="byo-name"),
        NIL,
        id="TestImmutableConfigurationFields/good byo name (no change)",
    ),
    pytest.param(
        configuration(template("helloworld:foo", name="byo-name-foo"), name="byo-name"),
        configuration(template("helloworld:bar", name="byo-name-foo"), name="byo-name"),
        FieldError(
            "Saw the following changes without a name change (-old +new)",
            ("spec.template.metadata.name",),
            details='{*v1.RevisionTemplateSpec}.Spec.PodSpec.Containers[0].Image:\n\t-: "helloworld:bar"\n'
            '\t+: "helloworld:foo"\n',
        ),
        id="TestImmutableConfigurationFields/bad byo name change",
    ),
]


@pytest.mark.parametrize(("new", "old", "want"), IMMUTABLE_FIELDS)
def test_immutable_configuration_fields(new: dict[str, Any], old: dict[str, Any], want: FieldError) -> None:
    ctx = Context().within_update(old)
    got = validate_configuration(ctx, new).filter(Level.ERROR)
    assert str(got) == str(want)


# --- TestConfigurationSubresourceUpdate --------------------------------------------------------------------

SUBRESOURCE_UPDATE = [
    pytest.param(
        configuration(template("busybox", timeout_seconds=DEFAULT_MAX_REVISION_TIMEOUT_SECONDS - 1), name="valid"),
        "status",
        NIL,
        id="TestConfigurationSubresourceUpdate/status update with valid revision template",
    ),
    pytest.param(
        configuration(template("busybox", timeout_seconds=DEFAULT_MAX_REVISION_TIMEOUT_SECONDS + 1), name="valid"),
        "status",
        NIL,
        id="TestConfigurationSubresourceUpdate/status update with invalid revision template",
    ),
    pytest.param(
        configuration(template("busybox", timeout_seconds=DEFAULT_MAX_REVISION_TIMEOUT_SECONDS - 1), name="valid"),
        "foo",
        NIL,
        id="TestConfigurationSubresourceUpdate/non-status sub resource update with valid revision template",
    ),
    pytest.param(
        configuration(template("busybox", timeout_seconds=DEFAULT_MAX_REVISION_TIMEOUT_SECONDS + 1), name="valid"),
        "foo",
        err_out_of_bounds_value(
            DEFAULT_MAX_REVISION_TIMEOUT_SECONDS + 1,
            0,
            DEFAULT_MAX_REVISION_TIMEOUT_SECONDS,
            "spec.template.spec.timeoutSeconds",
        ),
        id="TestConfigurationSubresourceUpdate/non-status sub resource update with invalid revision template",
    ),
]


@pytest.mark.parametrize(("c", "subresource", "want"), SUBRESOURCE_UPDATE)
def test_configuration_subresource_update(c: dict[str, Any], subresource: str, want: FieldError) -> None:
    ctx = Context().within_subresource_update(c, subresource)
    got = validate_configuration(ctx, c).filter(Level.ERROR)
    assert str(got) == str(want)


# --- TestConfigurationAnnotationUpdate ---------------------------------------------------------------------

U1 = "oveja@knative.dev"
U2 = "cabra@knative.dev"
U3 = "vaca@knative.dev"


def get_configuration_spec(image: str) -> dict[str, Any]:
    """getConfigurationSpec."""
    return template(image, timeout_seconds=DEFAULT_MAX_REVISION_TIMEOUT_SECONDS)


def _users(creator: str, updater: str) -> dict[str, str]:
    return {CREATOR_ANNOTATION: creator, UPDATER_ANNOTATION: updater}


OWNED_BY_SERVICE = [{"apiVersion": "v1", "kind": GROUP_NAME}]

ANNOTATION_UPDATE = [
    pytest.param(
        configuration(get_configuration_spec("helloworld:foo"), name="valid", annotations=_users(U1, U1)),
        configuration(get_configuration_spec("helloworld:foo"), name="valid", annotations=_users(U2, U1)),
        FieldError("annotation value is immutable", (CREATOR_ANNOTATION,)).via_field("metadata.annotations"),
        id="TestConfigurationAnnotationUpdate/update creator annotation",
    ),
    pytest.param(
        configuration(get_configuration_spec("helloworld:foo"), name="valid", annotations=_users(U1, U1)),
        configuration(get_configuration_spec("helloworld:bar"), name="valid", annotations=_users(U2, U1)),
        FieldError("annotation value is immutable", (CREATOR_ANNOTATION,)).via_field("metadata.annotations"),
        id="TestConfigurationAnnotationUpdate/update creator annotation with spec changes",
    ),
    pytest.param(
        configuration(get_configuration_spec("helloworld:foo"), name="valid", annotations=_users(U1, U1)),
        configuration(get_configuration_spec("helloworld:foo"), name="valid", annotations=_users(U1, U2)),
        err_invalid_value(U2, UPDATER_ANNOTATION).via_field("metadata.annotations"),
        id="TestConfigurationAnnotationUpdate/update lastModifier annotation without spec changes",
    ),
    pytest.param(
        configuration(get_configuration_spec("helloworld:foo"), name="valid", annotations=_users(U1, U1)),
        configuration(get_configuration_spec("helloworld:bar"), name="valid", annotations=_users(U1, U3)),
        NIL,
        id="TestConfigurationAnnotationUpdate/update lastModifier annotation with spec changes",
    ),
    pytest.param(
        configuration(get_configuration_spec("helloworld:foo"), name="valid", annotations=_users(U1, U1)),
        configuration(
            get_configuration_spec("helloworld:foo"),
            name="valid",
            annotations=_users(U1, U3),
            owner_references=OWNED_BY_SERVICE,
        ),
        NIL,
        id="TestConfigurationAnnotationUpdate/no validation for lastModifier annotation even after update without "
        "spec changes as configuration owned by service",
    ),
    pytest.param(
        configuration(get_configuration_spec("helloworld:foo"), name="valid", annotations=_users(U1, U1)),
        configuration(
            get_configuration_spec("helloworld:foo"),
            name="valid",
            annotations=_users(U3, U1),
            owner_references=OWNED_BY_SERVICE,
        ),
        NIL,
        id="TestConfigurationAnnotationUpdate/no validation for creator annotation even after update as "
        "configuration owned by service",
    ),
]


@pytest.mark.parametrize(("prev", "this", "want"), ANNOTATION_UPDATE)
def test_configuration_annotation_update(prev: dict[str, Any], this: dict[str, Any], want: FieldError) -> None:
    ctx = Context().within_update(prev)
    got = validate_configuration(ctx, this).filter(Level.ERROR)
    assert str(got) == str(want)


LEFT_OUT: dict[str, str] = {}
