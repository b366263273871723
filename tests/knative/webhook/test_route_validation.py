"""Knative's own Route validation tables: pkg/apis/serving/v1/route_validation_test.go at knative/serving 98e5ef90.

Each case keeps its upstream name as the pytest id; the Go structs are written as the manifests they decode from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    NIL,
    FieldError,
    err_disallowed_fields,
    err_generic,
    err_invalid_key_name,
    err_invalid_value,
    err_missing_field,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.keys import (
    CREATOR_ANNOTATION,
    GROUP_NAME,
    ROLLOUT_DURATION_KEY,
    SERVICE_LABEL_KEY,
    UPDATER_ANNOTATION,
)
from edgeinfer.knative.webhook.route import validate_route, validate_traffic_target

VISIBILITY_LABEL_KEY = "networking.knative.dev/visibility"  # knative.dev/networking netapi.VisibilityLabelKey

QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation "
    "is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)

Wrap = Callable[[Context], Context]


def within_spec(ctx: Context) -> Context:
    return ctx.within_spec()


def within_status(ctx: Context) -> Context:
    return ctx.within_status()


def with_default_configuration_name(ctx: Context) -> Context:
    return ctx.with_default_configuration_name()


def with_default_configuration_name_within_spec(ctx: Context) -> Context:
    return ctx.within_spec().with_default_configuration_name()


def tt(**fields: Any) -> dict[str, Any]:
    """A TrafficTarget: keyword arguments are its JSON fields."""
    return dict(fields)


def _case(name: str, target: dict[str, Any], want: FieldError = NIL, wc: Wrap | None = None) -> Any:
    return pytest.param(target, want, wc, id=f"TestTrafficTargetValidation/{name}")


TRAFFIC_TARGET_CASES = [
    _case("valid with revisionName", tt(revisionName="bar", percent=12), wc=within_spec),
    _case("valid with revisionName and name (spec)", tt(tag="foo", revisionName="bar", percent=12), wc=within_spec),
    _case(
        "valid with revisionName and name (status)",
        tt(tag="foo", revisionName="bar", percent=12, url="http://foo.bar.com"),
        wc=within_status,
    ),
    _case(
        "invalid with revisionName and name (status)",
        tt(tag="foo", revisionName="bar", percent=12),
        err_missing_field("url"),
        within_status,
    ),
    _case(
        "invalid with bad revisionName",
        tt(revisionName="b ar", percent=12),
        err_invalid_key_name("b ar", "revisionName", QUALIFIED_NAME_MSG),
        within_spec,
    ),
    _case(
        "valid with revisionName and latestRevision",
        tt(revisionName="bar", latestRevision=False, percent=12),
        wc=within_spec,
    ),
    _case(
        "invalid with revisionName and latestRevision (spec)",
        tt(revisionName="bar", latestRevision=True, percent=12),
        err_generic('may not set revisionName "bar" when latestRevision is true', "latestRevision"),
        within_spec,
    ),
    _case(
        "valid with revisionName and latestRevision (status)",
        tt(revisionName="bar", latestRevision=True, percent=12),
        wc=within_status,
    ),
    _case("valid with configurationName", tt(configurationName="bar", percent=37), wc=within_spec),
    _case(
        "valid with configurationName and name (spec)",
        tt(tag="foo", configurationName="bar", percent=37),
        wc=within_spec,
    ),
    _case(
        "invalid with bad configurationName",
        tt(configurationName="b ar", percent=37),
        err_invalid_key_name("b ar", "configurationName", QUALIFIED_NAME_MSG),
        within_spec,
    ),
    _case(
        "valid with configurationName and latestRevision",
        tt(configurationName="blah", latestRevision=True, percent=37),
        wc=within_spec,
    ),
    _case(
        "invalid with configurationName and latestRevision",
        tt(configurationName="blah", latestRevision=False, percent=37),
        err_generic('may not set revisionName "" when latestRevision is false', "latestRevision"),
        within_spec,
    ),
    _case(
        "invalid with configurationName and default configurationName",
        tt(configurationName="blah", percent=37),
        err_disallowed_fields("configurationName"),
        with_default_configuration_name,
    ),
    _case("valid with only default configurationName", tt(percent=37), wc=with_default_configuration_name_within_spec),
    _case(
        "valid with default configurationName and latestRevision",
        tt(latestRevision=True, percent=37),
        wc=with_default_configuration_name_within_spec,
    ),
    _case(
        "invalid with default configurationName and latestRevision",
        tt(latestRevision=False, percent=37),
        err_generic('may not set revisionName "" when latestRevision is false', "latestRevision"),
        with_default_configuration_name_within_spec,
    ),
    _case(
        "valid with revisionName and default configurationName",
        tt(revisionName="bar", percent=12),
        wc=with_default_configuration_name,
    ),
    _case("valid with no percent", tt(configurationName="booga")),
    _case("valid with nil percent", tt(configurationName="booga", percent=None)),
    _case("valid with zero percent", tt(configurationName="booga", percent=0)),
    _case("valid with no name", tt(configurationName="booga", percent=100)),
    _case(
        "invalid with both",
        tt(revisionName="foo", configurationName="bar"),
        FieldError("expected exactly one, got both", ("revisionName", "configurationName")),
    ),
    _case(
        "invalid with neither",
        tt(percent=100),
        FieldError("expected exactly one, got neither", ("revisionName", "configurationName")),
    ),
    _case(
        "invalid percent too low",
        tt(revisionName="foo", percent=-5),
        err_out_of_bounds_value("-5", "0", "100", "percent"),
    ),
    _case(
        "invalid percent too high",
        tt(revisionName="foo", percent=101),
        err_out_of_bounds_value("101", "0", "100", "percent"),
    ),
    _case(
        "disallowed url set",
        # apis.URL{Host: "should.not.be.set"} prints as a scheme-relative URL.
        tt(configurationName="foo", percent=100, url="//should.not.be.set"),
        err_disallowed_fields("url"),
        within_spec,
    ),
]


@pytest.mark.parametrize(("target", "want", "wc"), TRAFFIC_TARGET_CASES)
def test_traffic_target_validation(target: dict[str, Any], want: FieldError, wc: Wrap | None) -> None:
    ctx = Context()
    if wc is not None:
        ctx = wc(ctx)
    got = validate_traffic_target(ctx, target)
    assert str(got) == str(want)


def route(name: str, traffic: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}, "spec": {"traffic": traffic}}


ROUTE_CASES = [
    pytest.param(
        {
            **route("valid", [tt(tag="bar", revisionName="foo", percent=100)]),
            "status": {"traffic": [tt(tag="bar", revisionName="foo", percent=100, url="http://bar.blah.com")]},
        },
        NIL,
        id="TestRouteValidation/valid",
    ),
    pytest.param(
        route(
            "valid",
            [tt(tag="prod", revisionName="foo", percent=90), tt(tag="experiment", configurationName="bar", percent=10)],
        ),
        NIL,
        id="TestRouteValidation/valid split",
    ),
    pytest.param(
        route("valid", [tt(revisionName="foo", percent=90), tt(revisionName="bar", percent=10)]),
        NIL,
        id="TestRouteValidation/valid split without tags",
    ),
    pytest.param(
        route("valid", [tt(tag="foo", percent=100)]),
        FieldError(
            "expected exactly one, got neither",
            ("spec.traffic[0].configurationName", "spec.traffic[0].revisionName"),
        ),
        id="TestRouteValidation/invalid traffic entry (missing oneof)",
    ),
    pytest.param(
        route("valid", [tt(tag="foo", revisionName="bar", percent=50), tt(tag="foo", revisionName="bar", percent=50)]),
        FieldError('Multiple definitions for "foo"', ("spec.traffic[0].tag", "spec.traffic[1].tag")),
        id="TestRouteValidation/invalid traffic entry (multiple names)",
    ),
    pytest.param(
        route("do.not.use.dots", [tt(revisionName="foo", percent=100)]),
        FieldError(f"not a DNS 1035 label: [{DNS1035_MSG}]", ("metadata.name",)),
        id="TestRouteValidation/invalid name - dots",
    ),
    pytest.param(
        route("do.not.use.dots", [tt(revisionName="foo", percent=90)]),
        FieldError(f"not a DNS 1035 label: [{DNS1035_MSG}]", ("metadata.name",)).also(
            FieldError("Traffic targets sum to 90, want 100", ("spec.traffic",))
        ),
        id="TestRouteValidation/invalid name - dots and spec percent is not 100",
    ),
    pytest.param(
        route("a" * 64, [tt(revisionName="foo", percent=100)]),
        FieldError("not a DNS 1035 label: [must be no more than 63 characters]", ("metadata.name",)),
        id="TestRouteValidation/invalid name - too long",
    ),
    pytest.param(
        route("valid", [tt(tag="foo@", revisionName="bar", percent=100)]),
        FieldError(f"invalid value: not a DNS 1035 label: [{DNS1035_MSG}]", ("spec.traffic.tag[0]",)),
        id="TestRouteValidation/invalid tag name",
    ),
]


@pytest.mark.parametrize(("r", "want"), ROUTE_CASES)
def test_route_validation(r: dict[str, Any], want: FieldError) -> None:
    got = validate_route(Context(), r)
    assert str(got) == str(want)


def _valid_route_spec_traffic() -> list[dict[str, Any]]:
    return [tt(tag="bar", revisionName="foo", percent=100)]


def _owner(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "serving.knative.dev/v1alpha1", "kind": kind, "name": name}


SERVICE_LABEL_MISSING = err_missing_field("metadata.labels.serving.knative.dev/service")

ROUTE_LABEL_CASES = [
    pytest.param(
        route("byo-name", _valid_route_spec_traffic(), labels={VISIBILITY_LABEL_KEY: "my-visibility"}),
        NIL,
        id="TestRouteLabelValidation/visibility label specified",
    ),
    pytest.param(
        route(
            "byo-name",
            _valid_route_spec_traffic(),
            labels={SERVICE_LABEL_KEY: "test-svc"},
            ownerReferences=[_owner("Service", "test-svc")],
        ),
        NIL,
        id="TestRouteLabelValidation/valid knative service name",
    ),
    pytest.param(
        route("byo-name", _valid_route_spec_traffic(), labels={SERVICE_LABEL_KEY: "absent-svc"}),
        SERVICE_LABEL_MISSING,
        id="TestRouteLabelValidation/invalid knative service name",
    ),
    pytest.param(
        route(
            "byo-name",
            _valid_route_spec_traffic(),
            labels={SERVICE_LABEL_KEY: "test-svc"},
            ownerReferences=[_owner("BrandNewService", "brand-new-svc")],
        ),
        SERVICE_LABEL_MISSING,
        id="TestRouteLabelValidation/Mismatch knative service label and owner ref",
    ),
    pytest.param(
        route(
            "byo-name",
            _valid_route_spec_traffic(),
            labels={SERVICE_LABEL_KEY: "test-svc"},
            ownerReferences=[_owner("Service", "absent-svc")],
        ),
        SERVICE_LABEL_MISSING,
        id="TestRouteLabelValidation/invalid knative service name without correct owner ref",
    ),
    pytest.param(
        route(
            "byo-name",
            _valid_route_spec_traffic(),
            labels={SERVICE_LABEL_KEY: "test-svc"},
            ownerReferences=[_owner("NewSerice", "test-new-svc"), _owner("Service", "test-svc")],
        ),
        NIL,
        id="TestRouteLabelValidation/invalid knative service name with multiple owner ref",
    ),
    # New labels under the serving prefix may come, and must not break a downgrade.
    pytest.param(
        route("byo-name", _valid_route_spec_traffic(), labels={"serving.knative.dev/testlabel": "value"}),
        NIL,
        id="TestRouteLabelValidation/allow unknown uses of knative.dev/serving prefix",
    ),
]


@pytest.mark.parametrize(("r", "want"), ROUTE_LABEL_CASES)
def test_route_label_validation(r: dict[str, Any], want: FieldError) -> None:
    got = validate_route(Context(), r)
    assert str(got) == str(want)


def get_route_traffic(conf_name: str) -> list[dict[str, Any]]:
    """getRouteSpec's traffic."""
    return [tt(latestRevision=True, percent=100, configurationName=conf_name)]


U1, U2, U3 = "oveja@knative.dev", "cabra@knative.dev", "vaca@knative.dev"


def _annotated(conf_name: str, annotations: dict[str, str], **meta: Any) -> dict[str, Any]:
    return route("valid", get_route_traffic(conf_name), annotations=annotations, **meta)


_OWNED_BY_SERVICE = [{"apiVersion": "v1", "kind": GROUP_NAME}]

ROUTE_ANNOTATION_CASES = [
    pytest.param(
        _annotated("old", {CREATOR_ANNOTATION: U2, UPDATER_ANNOTATION: U1}),
        _annotated("old", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}),
        FieldError("annotation value is immutable", (CREATOR_ANNOTATION,)).via_field("metadata.annotations"),
        id="TestRouteAnnotationUpdate/update creator annotation",
    ),
    pytest.param(
        _annotated("new", {CREATOR_ANNOTATION: U2, UPDATER_ANNOTATION: U1}),
        _annotated("old", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}),
        FieldError("annotation value is immutable", (CREATOR_ANNOTATION,)).via_field("metadata.annotations"),
        id="TestRouteAnnotationUpdate/update creator annotation with spec changes",
    ),
    pytest.param(
        _annotated("old", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U2}),
        _annotated("old", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}),
        err_invalid_value(U2, UPDATER_ANNOTATION).via_field("metadata.annotations"),
        id="TestRouteAnnotationUpdate/update lastModifier annotation without spec changes",
    ),
    pytest.param(
        _annotated("new", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U3}),
        _annotated("old", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}),
        NIL,
        id="TestRouteAnnotationUpdate/update lastModifier annotation with spec changes",
    ),
    pytest.param(
        _annotated("new", {ROLLOUT_DURATION_KEY: "123s"}),
        None,
        NIL,
        id="TestRouteAnnotationUpdate/rollout duration validation",
    ),
    pytest.param(
        _annotated("new", {ROLLOUT_DURATION_KEY: "three hours and seventeen seconds"}),
        None,
        err_invalid_value("three hours and seventeen seconds", ROLLOUT_DURATION_KEY).via_field("metadata.annotations"),
        id="TestRouteAnnotationUpdate/rollout duration validation, fail",
    ),
    pytest.param(
        _annotated("old", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U3}, ownerReferences=_OWNED_BY_SERVICE),
        _annotated("old", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}),
        NIL,
        id="TestRouteAnnotationUpdate/no validation for lastModifier annotation even after update without spec "
        "changes as route owned by service",
    ),
    pytest.param(
        _annotated("old", {CREATOR_ANNOTATION: U3, UPDATER_ANNOTATION: U1}, ownerReferences=_OWNED_BY_SERVICE),
        _annotated("old", {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}),
        NIL,
        id="TestRouteAnnotationUpdate/no validation for creator annotation even after update as route owned by service",
    ),
]


@pytest.mark.parametrize(("this", "prev", "want"), ROUTE_ANNOTATION_CASES)
def test_route_annotation_update(this: dict[str, Any], prev: dict[str, Any] | None, want: FieldError) -> None:
    ctx = Context()
    if prev is not None:
        ctx = ctx.within_update(prev)
    got = validate_route(ctx, this)
    assert str(got) == str(want)


LEFT_OUT: dict[str, str] = {}
