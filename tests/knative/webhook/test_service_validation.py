"""Knative's own Service validation tables: pkg/apis/serving/v1/service_validation_test.go at knative/serving
98e5ef90.

Each case keeps its upstream name as the pytest id; the Go structs are written as the manifests they decode from.
As upstream, only error-level findings are compared (warnings are filtered out).
"""

from __future__ import annotations

from typing import Any

import pytest

from edgeinfer.knative.webhook.config import (
    DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY,
    DEFAULT_MAX_REVISION_TIMEOUT_SECONDS,
)
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    NIL,
    FieldError,
    Level,
    err_disallowed_fields,
    err_generic,
    err_invalid_key_name,
    err_invalid_value,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.keys import CREATOR_ANNOTATION, ROLLOUT_DURATION_KEY, UPDATER_ANNOTATION
from edgeinfer.knative.webhook.service import validate_service

VISIBILITY_LABEL_KEY = "networking.knative.dev/visibility"  # knative.dev/networking netapi.VisibilityLabelKey


def template(image: str, name: str = "", **spec: Any) -> dict[str, Any]:
    """A RevisionTemplateSpec with one container."""
    result: dict[str, Any] = {"spec": {"containers": [{"image": image}], **spec}}
    if name:
        result["metadata"] = {"name": name}
    return result


def latest_traffic() -> list[dict[str, Any]]:
    return [{"latestRevision": True, "percent": 100}]


def good_config_spec() -> dict[str, Any]:
    return {"template": template("busybox")}


def good_route_spec() -> dict[str, Any]:
    return {"traffic": latest_traffic()}


def service(name: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}, "spec": spec}


def get_service_spec(image: str) -> dict[str, Any]:
    """getServiceSpec."""
    return {
        "template": template(image, timeoutSeconds=DEFAULT_MAX_REVISION_TIMEOUT_SECONDS),
        "traffic": latest_traffic(),
    }


SERVICE_CASES = [
    pytest.param(
        service("valid", {**good_config_spec(), "traffic": [{"latestRevision": True, "percent": 100}]}),
        NIL,
        id="TestServiceValidation/valid run latest",
    ),
    pytest.param(
        service("valid", {**good_config_spec(), **good_route_spec()}, labels={VISIBILITY_LABEL_KEY: "cluster-local"}),
        NIL,
        id="TestServiceValidation/valid visibility label",
    ),
    pytest.param(
        service("valid", {**good_config_spec(), **good_route_spec()}, labels={"serving.name": "some-name"}),
        NIL,
        id="TestServiceValidation/valid non knative label",
    ),
    pytest.param(
        service(
            "valid",
            {
                **good_config_spec(),
                "traffic": [
                    {"tag": "current", "latestRevision": False, "revisionName": "valid-00001", "percent": 98},
                    {"tag": "candidate", "latestRevision": False, "revisionName": "valid-00002", "percent": 2},
                    {"tag": "latest", "latestRevision": True, "percent": None},
                ],
            },
        ),
        NIL,
        id="TestServiceValidation/valid release",
    ),
    pytest.param(
        service(
            "valid",
            {**good_config_spec(), "traffic": [{"configurationName": "valid", "latestRevision": True, "percent": 100}]},
        ),
        err_disallowed_fields("spec.traffic[0].configurationName"),
        id="TestServiceValidation/invalid configurationName",
    ),
    pytest.param(
        service(
            "valid",
            {**good_config_spec(), "traffic": [{"revisionName": "valid", "latestRevision": True, "percent": 100}]},
        ),
        err_generic('may not set revisionName "valid" when latestRevision is true', "spec.traffic[0].latestRevision"),
        id="TestServiceValidation/invalid latestRevision",
    ),
    pytest.param(
        service("valid", {"template": template("busybox", containerConcurrency=-10), "traffic": latest_traffic()}),
        err_out_of_bounds_value(
            -10, 0, DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY, "spec.template.spec.containerConcurrency"
        ),
        id="TestServiceValidation/invalid container concurrency",
    ),
    pytest.param(
        service(
            "rollout-duration-annotation",
            {"template": template("hellworld"), "traffic": latest_traffic()},
            annotations={ROLLOUT_DURATION_KEY: "CLXXXIIIs"},  # 183s.
        ),
        err_invalid_value("CLXXXIIIs", ROLLOUT_DURATION_KEY).via_field("metadata.annotations"),
        id="TestServiceValidation/invalid rollout duration",
    ),
    pytest.param(
        service(
            "autoscaling-annotation",
            get_service_spec("helloworld:foo"),
            annotations={"autoscaling.knative.dev/foo": "bar"},
        ),
        err_invalid_key_name(
            "autoscaling.knative.dev/foo",
            "metadata.annotations",
            'autoscaling annotations must be put under "spec.template.metadata.annotations" to work',
        ),
        id="TestServiceValidation/invalid autoscaling.knative.dev annotation",
    ),
    # New labels and annotations under the serving prefix may come, and must not break a downgrade.
    pytest.param(
        service("byo-name", get_service_spec("helloworld:foo"), labels={"serving.knative.dev/testlabel": "value"}),
        NIL,
        id="TestServiceValidation/allow unknown uses of knative.dev/serving prefix for labels",
    ),
    pytest.param(
        service(
            "serving-annotation", get_service_spec("helloworld:foo"), annotations={"serving.knative.dev/foo": "bar"}
        ),
        NIL,
        id="TestServiceValidation/allow unknown uses of serving.knative.dev prefix for annotations",
    ),
    pytest.param(
        service("", get_service_spec("helloworld:foo")),
        FieldError("name or generateName is required", ("metadata.name",)),
        id="TestServiceValidation/invalid name",
    ),
]


@pytest.mark.parametrize(("s", "want"), SERVICE_CASES)
def test_service_validation(s: dict[str, Any], want: FieldError) -> None:
    got = validate_service(Context(), s).filter(Level.ERROR)
    assert str(got) == str(want)


IMMUTABLE_CASES = [
    pytest.param(
        service("no-byo-name", {"template": template("helloworld:foo"), "traffic": latest_traffic()}),
        service("no-byo-name", {"template": template("helloworld:bar"), "traffic": latest_traffic()}),
        NIL,
        id="TestImmutableServiceFields/without byo-name",
    ),
    pytest.param(
        service(
            "byo-name",
            {
                "template": template("helloworld:foo", name="byo-name-foo"),
                "traffic": [{"revisionName": "byo-name-foo", "percent": 100}],  # Used it!
            },
        ),
        service(
            "byo-name",
            {
                "template": template("helloworld:bar", name="byo-name-bar"),
                "traffic": [{"revisionName": "byo-name-bar", "percent": 100}],  # Used it!
            },
        ),
        NIL,
        id="TestImmutableServiceFields/good byo-name (name change)",
    ),
    pytest.param(
        service(
            "byo-name",
            {
                "template": template("helloworld:foo", name="byo-name-foo"),
                "traffic": [{"revisionName": "byo-name-bar", "percent": 100}],  # Leave old.
            },
        ),
        service(
            "byo-name",
            {
                "template": template("helloworld:bar", name="byo-name-bar"),
                "traffic": [{"revisionName": "byo-name-bar", "percent": 100}],  # Used it!
            },
        ),
        NIL,
        id="TestImmutableServiceFields/good byo-name (with delta)",
    ),
    pytest.param(
        service("byo-name", {"template": template("helloworld:foo", name="byo-name-foo"), "traffic": latest_traffic()}),
        service("byo-name", {"template": template("helloworld:bar", name="byo-name-foo"), "traffic": latest_traffic()}),
        FieldError(
            "Saw the following changes without a name change (-old +new)",
            ("spec.template.metadata.name",),
            details='{*v1.RevisionTemplateSpec}.Spec.PodSpec.Containers[0].Image:\n\t-: "helloworld:bar"\n\t+: '
            '"helloworld:foo"\n',
        ),
        id="TestImmutableServiceFields/bad byo-name",
    ),
]


@pytest.mark.parametrize(("new", "old", "want"), IMMUTABLE_CASES)
def test_immutable_service_fields(new: dict[str, Any], old: dict[str, Any], want: FieldError) -> None:
    ctx = Context().within_update(old)
    got = validate_service(ctx, new).filter(Level.ERROR)
    assert str(got) == str(want)


def _timeout_service(timeout_seconds: int) -> dict[str, Any]:
    return service(
        "valid", {"template": template("helloworld:foo", timeoutSeconds=timeout_seconds), "traffic": latest_traffic()}
    )


SUBRESOURCE_CASES = [
    pytest.param(
        _timeout_service(DEFAULT_MAX_REVISION_TIMEOUT_SECONDS - 1),
        "status",
        NIL,
        id="TestServiceSubresourceUpdate/status update with valid revision template",
    ),
    pytest.param(
        _timeout_service(DEFAULT_MAX_REVISION_TIMEOUT_SECONDS + 1),
        "status",
        NIL,
        id="TestServiceSubresourceUpdate/status update with invalid revision template",
    ),
    pytest.param(
        _timeout_service(DEFAULT_MAX_REVISION_TIMEOUT_SECONDS - 1),
        "foo",
        NIL,
        id="TestServiceSubresourceUpdate/non-status sub resource update with valid revision template",
    ),
    pytest.param(
        _timeout_service(DEFAULT_MAX_REVISION_TIMEOUT_SECONDS + 1),
        "foo",
        err_out_of_bounds_value(
            DEFAULT_MAX_REVISION_TIMEOUT_SECONDS + 1,
            0,
            DEFAULT_MAX_REVISION_TIMEOUT_SECONDS,
            "spec.template.spec.timeoutSeconds",
        ),
        id="TestServiceSubresourceUpdate/non-status sub resource update with invalid revision template",
    ),
]


@pytest.mark.parametrize(("s", "subresource", "want"), SUBRESOURCE_CASES)
def test_service_subresource_update(s: dict[str, Any], subresource: str, want: FieldError) -> None:
    ctx = Context().within_update(s).within_subresource_update(s, subresource)
    got = validate_service(ctx, s).filter(Level.ERROR)
    assert str(got) == str(want)


U1, U2, U3 = "oveja@knative.dev", "cabra@knative.dev", "vaca@knative.dev"

ANNOTATION_CASES = [
    pytest.param(
        service(
            "valid", get_service_spec("helloworld:foo"), annotations={CREATOR_ANNOTATION: U2, UPDATER_ANNOTATION: U1}
        ),
        service(
            "valid", get_service_spec("helloworld:foo"), annotations={CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}
        ),
        FieldError("annotation value is immutable", (CREATOR_ANNOTATION,)).via_field("metadata.annotations"),
        id="TestServiceAnnotationUpdate/update creator annotation",
    ),
    pytest.param(
        service(
            "valid", get_service_spec("helloworld:foo"), annotations={CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U2}
        ),
        service(
            "valid", get_service_spec("helloworld:foo"), annotations={CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}
        ),
        err_invalid_value(U2, UPDATER_ANNOTATION).via_field("metadata.annotations"),
        id="TestServiceAnnotationUpdate/update lastModifier without spec changes",
    ),
    pytest.param(
        service(
            "valid", get_service_spec("helloworld:bar"), annotations={CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U3}
        ),
        service(
            "valid", get_service_spec("helloworld:foo"), annotations={CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}
        ),
        NIL,
        id="TestServiceAnnotationUpdate/update lastModifier with spec changes",
    ),
]


@pytest.mark.parametrize(("this", "prev", "want"), ANNOTATION_CASES)
def test_service_annotation_update(this: dict[str, Any], prev: dict[str, Any], want: FieldError) -> None:
    ctx = Context().within_update(prev)
    got = validate_service(ctx, this).filter(Level.ERROR)
    assert str(got) == str(want)


LEFT_OUT: dict[str, str] = {}
