"""Knative's own metadata tables: pkg/apis/serving/metadata_validation_test.go at knative/serving 98e5ef90.

Every test function is here (TestValidateObjectMetadata, TestValidateHasNoAutoscalingAnnotation,
TestValidateContainerConcurrency, TestAnnotationCreate, TestAnnotationUpdate, TestValidateRolloutDurationAnnotation);
each case keeps its upstream name as the pytest id. Go's `withPod` (TypeMeta, ObjectMeta, a PodSpec) is a manifest.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from edgeinfer.knative.webhook.config import DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY, Autoscaler, Defaults
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    CURRENT_FIELD,
    NIL,
    FieldError,
    err_invalid_key_name,
    err_invalid_value,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.keys import (
    CREATOR_ANNOTATION,
    INITIAL_SCALE_ANNOTATION_KEY,
    REVISION_LAST_PINNED_ANNOTATION_KEY,
    ROLLOUT_DURATION_KEY,
    UPDATER_ANNOTATION,
)
from edgeinfer.knative.webhook.metadata import (
    semantic_equal,
    set_user_info,
    validate_container_concurrency,
    validate_has_no_autoscaling_annotation,
    validate_object_metadata,
    validate_rollout_duration_annotation,
)

DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation "
    "is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
AUTOSCALING_ON_PARENT = 'autoscaling annotations must be put under "spec.template.metadata.annotations" to work'


def autoscaler_literal(**fields: Any) -> Autoscaler:
    """A Go &autoscalerconfig.Config{...} literal: every field not named is its zero value."""
    zeros = {f.name: type(getattr(Autoscaler(), f.name))(0) for f in dataclasses.fields(Autoscaler)}
    zeros["pod_autoscaler_class"] = ""
    return dataclasses.replace(Autoscaler(), **{**zeros, **fields})


def autoscaler_ctx(allow_zero_initial_scale: bool) -> Context:
    """config.ToContext(ctx, &config.Config{Autoscaler: &autoscalerconfig.Config{AllowZeroInitialScale: ...}})."""
    return Context().with_autoscaler(autoscaler_literal(allow_zero_initial_scale=allow_zero_initial_scale))


# --- TestValidateObjectMetadata --------------------------------------------------------------------------


def meta_case(
    name: str,
    object_meta: dict[str, Any],
    expect_err: FieldError = NIL,
    *,
    allow_autoscaling: bool = False,
    ctx: Context | None = None,
) -> Any:
    return pytest.param(object_meta, allow_autoscaling, ctx, expect_err, id=f"TestValidateObjectMetadata/{name}")


META_CASES = [
    meta_case(
        "invalid name - dots",
        {"name": "do.not.use.dots"},
        FieldError(f"not a DNS 1035 label: [{DNS1035_MSG}]", ("name",)),
    ),
    meta_case(
        "invalid name - too long",
        {"name": "a" * 64},
        FieldError("not a DNS 1035 label: [must be no more than 63 characters]", ("name",)),
    ),
    meta_case(
        "invalid name - trailing dash",
        {"name": "some-name-"},
        FieldError(f"not a DNS 1035 label: [{DNS1035_MSG}]", ("name",)),
    ),
    meta_case("valid generateName", {"generateName": "some-name"}),
    meta_case("valid generateName - trailing dash", {"generateName": "some-name-"}),
    meta_case(
        "invalid generateName - dots",
        {"generateName": "do.not.use.dots"},
        FieldError(f"not a DNS 1035 label prefix: [{DNS1035_MSG}]", ("generateName",)),
    ),
    meta_case(
        "invalid generateName - too long",
        {"generateName": "a" * 64},
        FieldError("not a DNS 1035 label prefix: [must be no more than 63 characters]", ("generateName",)),
    ),
    meta_case("missing name and generateName", {}, FieldError("name or generateName is required", ("name",))),
    meta_case(
        "valid creator annotation label",
        {"generateName": "some-name", "annotations": {CREATOR_ANNOTATION: "svc-creator"}},
    ),
    meta_case(
        "valid lastModifier annotation label",
        {"generateName": "some-name", "annotations": {UPDATER_ANNOTATION: "svc-modifier"}},
    ),
    meta_case(
        "valid lastPinned annotation label",
        {"generateName": "some-name", "annotations": {REVISION_LAST_PINNED_ANNOTATION_KEY: "pinned-val"}},
    ),
    meta_case(
        "valid preserve annotation label",
        {"generateName": "some-name", "annotations": {REVISION_LAST_PINNED_ANNOTATION_KEY: "true"}},
    ),
    meta_case(
        "valid knative prefix annotation",
        {"generateName": "some-name", "annotations": {"serving.knative.dev/testAnnotation": "value"}},
    ),
    meta_case(
        "valid non-knative prefix annotation label",
        {"generateName": "some-name", "annotations": {"testAnnotation": "testValue"}},
    ),
    meta_case(
        "revision initial scale not parseable",
        {"generateName": "some-name", "annotations": {INITIAL_SCALE_ANNOTATION_KEY: "invalid"}},
        err_invalid_value("invalid", "annotations." + INITIAL_SCALE_ANNOTATION_KEY),
        allow_autoscaling=True,
        ctx=autoscaler_ctx(True),
    ),
    meta_case(
        "negative revision initial scale",
        {"generateName": "some-name", "annotations": {INITIAL_SCALE_ANNOTATION_KEY: "-2"}},
        err_invalid_value("-2", "annotations." + INITIAL_SCALE_ANNOTATION_KEY + " must be greater than 0"),
        allow_autoscaling=True,
        ctx=autoscaler_ctx(True),
    ),
    meta_case(
        "cluster allows zero revision initial scale",
        {"generateName": "some-name", "annotations": {INITIAL_SCALE_ANNOTATION_KEY: "0"}},
        allow_autoscaling=True,
        ctx=autoscaler_ctx(True),
    ),
    meta_case(
        "cluster does not allow zero revision initial scale",
        {"generateName": "some-name", "annotations": {INITIAL_SCALE_ANNOTATION_KEY: "0"}},
        err_invalid_value("0", "annotations." + INITIAL_SCALE_ANNOTATION_KEY + "=0 not allowed by cluster"),
        allow_autoscaling=True,
    ),
    meta_case(
        "autoscaling annotations on a resource that doesn't allow them",
        {"generateName": "some-name", "annotations": {INITIAL_SCALE_ANNOTATION_KEY: "0"}},
        err_invalid_key_name(INITIAL_SCALE_ANNOTATION_KEY, "annotations", AUTOSCALING_ON_PARENT),
        allow_autoscaling=False,
    ),
]


@pytest.mark.parametrize(("object_meta", "allow_autoscaling", "ctx", "expect_err"), META_CASES)
def test_validate_object_metadata(
    object_meta: dict[str, Any], allow_autoscaling: bool, ctx: Context | None, expect_err: FieldError
) -> None:
    if ctx is None:
        ctx = autoscaler_ctx(False)
    got = validate_object_metadata(ctx, object_meta, allow_autoscaling)
    assert str(got) == str(expect_err)


# --- TestValidateHasNoAutoscalingAnnotation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "expect_err"),
    [
        pytest.param(None, NIL, id="TestValidateHasNoAutoscalingAnnotation/nil"),
        pytest.param({}, NIL, id="TestValidateHasNoAutoscalingAnnotation/empty"),
        pytest.param({"foo": "bar"}, NIL, id="TestValidateHasNoAutoscalingAnnotation/no offender"),
        pytest.param(
            {"autoscaling.knative.dev/foo": "bar"},
            err_invalid_key_name("autoscaling.knative.dev/foo", CURRENT_FIELD, AUTOSCALING_ON_PARENT),
            id="TestValidateHasNoAutoscalingAnnotation/only offender",
        ),
        pytest.param(
            {"autoscaling.knative.dev/foo": "bar", "foo": "bar"},
            err_invalid_key_name("autoscaling.knative.dev/foo", CURRENT_FIELD, AUTOSCALING_ON_PARENT),
            id="TestValidateHasNoAutoscalingAnnotation/offender and non-offender",
        ),
    ],
)
def test_validate_has_no_autoscaling_annotation(annotation: dict[str, str] | None, expect_err: FieldError) -> None:
    assert str(validate_has_no_autoscaling_annotation(annotation)) == str(expect_err)


# --- TestValidateContainerConcurrency --------------------------------------------------------------------


def defaults_ctx(data: dict[str, str]) -> Context:
    """cfg(map) of the Go test: a Config of just config-defaults from `data`."""
    return Context().with_defaults(Defaults.from_map(data))


@pytest.mark.parametrize(
    ("container_concurrency", "ctx", "expect_err"),
    [
        pytest.param(None, None, NIL, id="TestValidateContainerConcurrency/empty containerConcurrency"),
        pytest.param(
            2000,
            None,
            err_out_of_bounds_value(2000, 0, DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY, CURRENT_FIELD),
            id="TestValidateContainerConcurrency/invalid containerConcurrency value",
        ),
        pytest.param(
            2000,
            defaults_ctx({"container-concurrency-max-limit": "1950"}),
            err_out_of_bounds_value(2000, 0, 1950, CURRENT_FIELD),
            id="TestValidateContainerConcurrency/invalid containerConcurrency value, non def config",
        ),
        pytest.param(
            0,
            defaults_ctx({"allow-container-concurrency-zero": "false"}),
            err_out_of_bounds_value(0, 1, DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY, CURRENT_FIELD),
            id="TestValidateContainerConcurrency/invalid containerConcurrency value, zero but "
            "allow-container-concurrency-zero is false",
        ),
        pytest.param(10, None, NIL, id="TestValidateContainerConcurrency/valid containerConcurrency value"),
        pytest.param(0, None, NIL, id="TestValidateContainerConcurrency/valid containerConcurrency value zero"),
        pytest.param(
            2019,
            defaults_ctx({"container-concurrency-max-limit": "2021"}),
            NIL,
            id="TestValidateContainerConcurrency/valid containerConcurrency value huge",
        ),
    ],
)
def test_validate_container_concurrency(
    container_concurrency: int | None, ctx: Context | None, expect_err: FieldError
) -> None:
    got = validate_container_concurrency(ctx or Context(), container_concurrency)
    assert str(got) == str(expect_err)


# --- TestAnnotationCreate, TestAnnotationUpdate ----------------------------------------------------------

U1 = "oveja@knative.dev"
U2 = "cabra@knative.dev"


def get_spec(image: str) -> dict[str, Any]:
    return {"containers": [{"image": image}]}


def with_pod(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {"metadata": {}, "spec": spec}
    if annotations is not None:
        pod["metadata"]["annotations"] = dict(annotations)
    return pod


@pytest.mark.parametrize(
    ("user", "this", "want"),
    [
        pytest.param(
            U1,
            with_pod(get_spec("foo")),
            {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1},
            id="TestAnnotationCreate/create annotation",
        ),
        pytest.param(
            U1,
            with_pod(get_spec("foo"), {CREATOR_ANNOTATION: U2, UPDATER_ANNOTATION: U2}),
            {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1},
            id="TestAnnotationCreate/create annotation should override user provided annotations",
        ),
    ],
)
def test_annotation_create(user: str, this: dict[str, Any], want: dict[str, str]) -> None:
    ctx = Context().with_user_info({"username": user})
    set_user_info(ctx, None, this["spec"], this)
    assert this["metadata"]["annotations"] == want


@pytest.mark.parametrize(
    ("user", "this", "prev", "want"),
    [
        pytest.param(
            U2,
            with_pod(get_spec("foo"), {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}),
            with_pod(get_spec("foo")),
            {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1},
            id="TestAnnotationUpdate/update annotation without spec changes",
        ),
        pytest.param(
            U2,
            with_pod(get_spec("bar"), {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}),
            with_pod(get_spec("foo")),
            {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U2},
            id="TestAnnotationUpdate/update annotation with spec changes",
        ),
    ],
)
def test_annotation_update(user: str, this: dict[str, Any], prev: dict[str, Any], want: dict[str, str]) -> None:
    ctx = Context().with_user_info({"username": user})
    if prev is not None:
        ctx = ctx.within_update(prev)
    set_user_info(ctx, prev["spec"], this["spec"], this)
    assert this["metadata"]["annotations"] == want


# --- TestValidateRolloutDurationAnnotation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "want"),
    [
        pytest.param("", "", id="TestValidateRolloutDurationAnnotation/empty"),
        pytest.param("120s", "", id="TestValidateRolloutDurationAnnotation/valid"),
        pytest.param("3h15m21s", "", id="TestValidateRolloutDurationAnnotation/fancy valid"),
        pytest.param(
            "120000000000",
            "invalid value: 120000000000: serving.knative.dev/rollout-duration",
            id="TestValidateRolloutDurationAnnotation/in ns",
        ),
        pytest.param(
            "five minutes and 6 seconds",
            "invalid value: five minutes and 6 seconds: serving.knative.dev/rollout-duration",
            id="TestValidateRolloutDurationAnnotation/not a valid duration",
        ),
        pytest.param(
            "-211s",
            "rollout-duration=-211s must be positive: serving.knative.dev/rollout-duration",
            id="TestValidateRolloutDurationAnnotation/negative",
        ),
        pytest.param(
            "211s44ms",
            "rollout-duration=211s44ms is not at second precision: serving.knative.dev/rollout-duration",
            id="TestValidateRolloutDurationAnnotation/too precise",
        ),
    ],
)
def test_validate_rollout_duration_annotation(value: str, want: str) -> None:
    got = validate_rollout_duration_annotation({ROLLOUT_DURATION_KEY: value})
    assert str(got) == want


# Every case of every test function is ported.
# --- not upstream: Go's semantic equality, which decides whether an update changed the spec ---------------------


def test_semantic_equal_compares_quantities_by_value() -> None:
    old = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    same = {"containers": [{"resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"}}}]}
    more = {"containers": [{"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}]}
    assert semantic_equal(old, same)
    assert not semantic_equal(old, more)
    assert semantic_equal({"emptyDir": {"sizeLimit": "1Gi"}}, {"emptyDir": {"sizeLimit": "1024Mi"}})
    assert not semantic_equal({"image": "a:1"}, {"image": "a:2"})


LEFT_OUT: dict[str, str] = {}
