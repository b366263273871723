"""Knative's pkg/apis/serving/v1/revision_validation_test.go at knative/serving 98e5ef90, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from edgeinfer.knative.webhook.config import (
    DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY,
    DEFAULT_MAX_REVISION_TIMEOUT_SECONDS,
    Autoscaler,
    Defaults,
    Features,
)
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    CURRENT_FIELD,
    NIL,
    FieldError,
    Level,
    err_disallowed_fields,
    err_generic,
    err_invalid_key_name,
    err_invalid_value,
    err_missing_field,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.keys import (
    CONFIGURATION_GENERATION_LABEL_KEY,
    CONFIGURATION_LABEL_KEY,
    CREATOR_ANNOTATION,
    INITIAL_SCALE_ANNOTATION_KEY,
    MAX_SCALE_ANNOTATION_KEY,
    MIN_SCALE_ANNOTATION_KEY,
    PROGRESS_DEADLINE_ANNOTATION_KEY,
    QUEUE_SIDECAR_CPU_RESOURCE_LIMIT_ANNOTATION_KEY,
    QUEUE_SIDECAR_CPU_RESOURCE_REQUEST_ANNOTATION_KEY,
    QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_LIMIT_ANNOTATION_KEY,
    QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_REQUEST_ANNOTATION_KEY,
    QUEUE_SIDECAR_MEMORY_RESOURCE_LIMIT_ANNOTATION_KEY,
    QUEUE_SIDECAR_MEMORY_RESOURCE_REQUEST_ANNOTATION_KEY,
    QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY,
    ROUTE_LABEL_KEY,
    SERVICE_LABEL_KEY,
)
from edgeinfer.knative.webhook.metadata import validate_container_concurrency
from edgeinfer.knative.webhook.revision import (
    validate_queue_sidecar_resource_annotations,
    validate_revision,
    validate_revision_name,
    validate_revision_spec,
    validate_revision_template_spec,
    validate_timeout_seconds,
)

DNS1035_MESSAGE = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def spec(image: str, **fields: Any) -> dict[str, Any]:
    """A RevisionSpec of one container."""
    return {"containers": [{"image": image}], **fields}


def revision(name: str, rev_spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}, "spec": rev_spec}


def template(rev_spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    rts: dict[str, Any] = {}
    if meta:
        rts["metadata"] = meta
    if rev_spec is not None:
        rts["spec"] = rev_spec
    return rts


def with_features(**flags: str) -> Context:
    """config.NewStore with config-features' data (the other ConfigMaps empty)."""
    return Context().with_features(Features.from_map(flags))


def with_defaults(data: dict[str, str]) -> Context:
    return Context().with_defaults(Defaults.from_map(data))


def autoscaler_config_ctx(allow_initial_scale_zero: bool, initial_scale: int) -> Context:
    """autoscalerConfigCtx: a Config of only config-autoscaler (FromContextOrDefaults fills in the rest)."""
    data = {
        "allow-zero-initial-scale": "true" if allow_initial_scale_zero else "false",
        "initial-scale": str(initial_scale),
    }
    return Context().with_autoscaler(Autoscaler.from_map(data))


CUSTOM_TIMEOUTS = {
    "revision-timeout-seconds": "25",
    "max-revision-timeout-seconds": "50",
    "revision-response-start-timeout-seconds": "10",
    "revision-idle-timeout-seconds": "10",
}


def check(got: FieldError, want: FieldError) -> None:
    assert str(got) == str(want)


# --- TestRevisionValidation --------------------------------------------------------------------------------

REVISION_VALIDATION = [
    pytest.param(revision("valid", spec("busybox")), NIL, id="TestRevisionValidation/valid"),
    pytest.param(
        revision("valid", spec("busybox", containerConcurrency=-10)),
        err_out_of_bounds_value(-10, 0, DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY, "spec.containerConcurrency"),
        id="TestRevisionValidation/invalid container concurrency",
    ),
]


@pytest.mark.parametrize(("r", "want"), REVISION_VALIDATION)
def test_revision_validation(r: dict[str, Any], want: FieldError) -> None:
    check(validate_revision(Context(), r).filter(Level.ERROR), want)


# --- TestRevisionLabelAnnotationValidation ----------------------------------------------------------------

VALID_REVISION_SPEC = spec("busybox")
CONFIGURATION_LABEL_MISSING = err_missing_field("metadata.labels.serving.knative.dev/configuration")


def _owner(kind: str, name: str) -> dict[str, str]:
    return {"apiVersion": "serving.knative.dev/v1alpha1", "kind": kind, "name": name}


LABEL_ANNOTATION_VALIDATION = [
    pytest.param(
        revision("byo-name", VALID_REVISION_SPEC, labels={ROUTE_LABEL_KEY: "test-route"}),
        NIL,
        id="TestRevisionLabelAnnotationValidation/valid route name",
    ),
    pytest.param(
        revision("byo-name", VALID_REVISION_SPEC, labels={SERVICE_LABEL_KEY: "test-svc"}),
        NIL,
        id="TestRevisionLabelAnnotationValidation/valid knative service name",
    ),
    pytest.param(
        revision("byo-name", VALID_REVISION_SPEC, labels={CONFIGURATION_GENERATION_LABEL_KEY: "1234"}),
        NIL,
        id="TestRevisionLabelAnnotationValidation/valid knative service name#01",
    ),
    pytest.param(
        revision("byo-name", VALID_REVISION_SPEC, labels={CONFIGURATION_LABEL_KEY: "absent-cfg"}),
        CONFIGURATION_LABEL_MISSING,
        id="TestRevisionLabelAnnotationValidation/invalid knative configuration name",
    ),
    pytest.param(
        revision(
            "byo-name",
            VALID_REVISION_SPEC,
            labels={CONFIGURATION_LABEL_KEY: "test-cfg"},
            ownerReferences=[_owner("Configuration", "test-cfg")],
        ),
        NIL,
        id="TestRevisionLabelAnnotationValidation/valid knative configuration name",
    ),
    pytest.param(
        revision(
            "byo-name",
            VALID_REVISION_SPEC,
            labels={CONFIGURATION_LABEL_KEY: "test-svc"},
            ownerReferences=[_owner("Configuration", "diff-cfg")],
        ),
        CONFIGURATION_LABEL_MISSING,
        id="TestRevisionLabelAnnotationValidation/invalid knative configuration name without owner ref",
    ),
    pytest.param(
        revision(
            "byo-name",
            VALID_REVISION_SPEC,
            labels={CONFIGURATION_LABEL_KEY: "test-cfg"},
            ownerReferences=[_owner("NewConfiguration", "test-new-cfg"), _owner("Configuration", "test-cfg")],
        ),
        NIL,
        id="TestRevisionLabelAnnotationValidation/invalid knative configuration name with multiple owner ref",
    ),
    pytest.param(
        revision(
            "byo-name",
            VALID_REVISION_SPEC,
            labels={CONFIGURATION_LABEL_KEY: "test-cfg"},
            ownerReferences=[_owner("BrandNewService", "brand-new-svc")],
        ),
        CONFIGURATION_LABEL_MISSING,
        id="TestRevisionLabelAnnotationValidation/Mismatch knative configuration label and owner ref",
    ),
    pytest.param(
        # New labels under the serving prefix must not break a downgrade.
        revision("byo-name", VALID_REVISION_SPEC, labels={"serving.knative.dev/testlabel": "value"}),
        NIL,
        id="TestRevisionLabelAnnotationValidation/allow unknown uses of knative.dev/serving prefix",
    ),
]


@pytest.mark.parametrize(("r", "want"), LABEL_ANNOTATION_VALIDATION)
def test_revision_label_annotation_validation(r: dict[str, Any], want: FieldError) -> None:
    check(validate_revision(Context(), r).filter(Level.ERROR), want)


# --- TestContainerConcurrencyValidation ----------------------------------------------------------------------

CONTAINER_CONCURRENCY_VALIDATION = [
    pytest.param(1, NIL, id="TestContainerConcurrencyValidation/single"),
    pytest.param(0, NIL, id="TestContainerConcurrencyValidation/unlimited"),
    pytest.param(10, NIL, id="TestContainerConcurrencyValidation/ten"),
    pytest.param(
        -1,
        err_out_of_bounds_value(-1, 0, DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY, CURRENT_FIELD),
        id="TestContainerConcurrencyValidation/invalid container concurrency (too small)",
    ),
    pytest.param(
        DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY + 1,
        err_out_of_bounds_value(
            DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY + 1, 0, DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY, CURRENT_FIELD
        ),
        id="TestContainerConcurrencyValidation/invalid container concurrency (too large)",
    ),
]


@pytest.mark.parametrize(("cc", "want"), CONTAINER_CONCURRENCY_VALIDATION)
def test_container_concurrency_validation(cc: int, want: FieldError) -> None:
    check(validate_container_concurrency(Context(), cc).filter(Level.ERROR), want)


# --- TestRevisionSpecValidation -----------------------------------------------------------------------------

SECRET_MOUNT = {"mountPath": "/mount/path", "name": "the-name", "readOnly": True}

REVISION_SPEC_VALIDATION = [
    pytest.param(spec("helloworld"), None, NIL, id="TestRevisionSpecValidation/valid"),
    pytest.param(
        {
            "containers": [{"image": "helloworld", "volumeMounts": [SECRET_MOUNT]}],
            "volumes": [{"name": "the-name", "secret": {"secretName": "foo"}}],
        },
        None,
        NIL,
        id="TestRevisionSpecValidation/with volume (ok)",
    ),
    pytest.param(
        {
            "containers": [
                {"name": "container-a", "image": "busybox", "ports": [{"containerPort": 8881}]},
                {"name": "container-b", "image": "helloworld"},
            ]
        },
        None,
        NIL,
        id="TestRevisionSpecValidation/with multi containers (ok)",
    ),
    pytest.param(
        {
            "containers": [{"image": "helloworld", "volumeMounts": [SECRET_MOUNT]}],
            "volumes": [
                {"name": "the-name", "secret": {"secretName": "foo"}},
                {"name": "the-name", "configMap": {}},
            ],
        },
        None,
        FieldError('duplicate volume name "the-name"', ("name",)).via_field_index("volumes", 1),
        id="TestRevisionSpecValidation/with volume name collision",
    ),
    pytest.param(
        {"containers": [{"name": "steve", "image": "helloworld", "lifecycle": {}}]},
        None,
        err_disallowed_fields("containers[0].lifecycle"),
        id="TestRevisionSpecValidation/bad pod spec",
    ),
    pytest.param(
        {"containers": []}, None, err_missing_field("containers"), id="TestRevisionSpecValidation/missing container"
    ),
    pytest.param(
        {"containers": [{"image": "busybox"}, {"image": "helloworld", "ports": [{}]}]},
        with_features(**{"multi-container": "disabled"}),
        FieldError("multi-container is off, but found 2 containers"),
        id="TestRevisionSpecValidation/too many containers",
    ),
    pytest.param(
        spec("helloworld", timeoutSeconds=6000),
        None,
        err_out_of_bounds_value(6000, 0, DEFAULT_MAX_REVISION_TIMEOUT_SECONDS, "timeoutSeconds"),
        id="TestRevisionSpecValidation/exceed max timeout",
    ),
    pytest.param(
        spec("helloworld", timeoutSeconds=100, responseStartTimeoutSeconds=0, idleTimeoutSeconds=0),
        with_defaults(CUSTOM_TIMEOUTS),
        err_out_of_bounds_value(100, 0, 50, "timeoutSeconds"),
        id="TestRevisionSpecValidation/exceed custom max timeout",
    ),
    pytest.param(
        spec("helloworld", timeoutSeconds=-30),
        None,
        err_out_of_bounds_value(-30, 0, DEFAULT_MAX_REVISION_TIMEOUT_SECONDS, "timeoutSeconds"),
        id="TestRevisionSpecValidation/negative timeout",
    ),
]


@pytest.mark.parametrize(("rs", "ctx", "want"), REVISION_SPEC_VALIDATION)
def test_revision_spec_validation(rs: dict[str, Any], ctx: Context | None, want: FieldError) -> None:
    check(validate_revision_spec(ctx or Context(), rs).filter(Level.ERROR), want)


# --- TestImmutableFields -------------------------------------------------------------------------------------


def _immutable(details: str) -> FieldError:
    return FieldError("Immutable fields changed (-old +new)", ("spec",), details=details)


def _cpu_request(amount: str) -> dict[str, Any]:
    return {"containers": [{"resources": {"requests": {"cpu": amount}}}]}


IMMUTABLE_FIELDS = [
    pytest.param(
        revision("valid", spec("helloworld")),
        revision("valid", spec("helloworld")),
        None,
        NIL,
        id="TestImmutableFields/good (no change)",
    ),
    pytest.param(
        # A max-revision-timeout lowered below an existing revision's timeout leaves the revision alone.
        revision("valid", spec("helloworld", timeoutSeconds=100, responseStartTimeoutSeconds=0, idleTimeoutSeconds=0)),
        revision("valid", spec("helloworld", timeoutSeconds=100, responseStartTimeoutSeconds=0, idleTimeoutSeconds=0)),
        Defaults.from_map(CUSTOM_TIMEOUTS),
        NIL,
        id="TestImmutableFields/good (max revision timeout change)",
    ),
    pytest.param(
        revision("valid", _cpu_request("50m")),
        revision("valid", _cpu_request("100m")),
        None,
        _immutable(
            '{v1.RevisionSpec}.PodSpec.Containers[0].Resources.Requests["cpu"]:\n'
            '\t-: resource.Quantity: "{i:{value:100 scale:-3} d:{Dec:<nil>} s:100m Format:DecimalSI}"\n'
            '\t+: resource.Quantity: "{i:{value:50 scale:-3} d:{Dec:<nil>} s:50m Format:DecimalSI}"\n'
        ),
        id="TestImmutableFields/bad (resources image change)",
    ),
    pytest.param(
        revision("valid", spec("helloworld")),
        revision("valid", spec("busybox")),
        None,
        _immutable('{v1.RevisionSpec}.PodSpec.Containers[0].Image:\n\t-: "busybox"\n\t+: "helloworld"\n'),
        id="TestImmutableFields/bad (container image change)",
    ),
    pytest.param(
        revision("valid", spec("helloworld", containerConcurrency=1)),
        revision("valid", spec("helloworld", containerConcurrency=2)),
        None,
        _immutable('*{v1.RevisionSpec}.ContainerConcurrency:\n\t-: "2"\n\t+: "1"\n'),
        id="TestImmutableFields/bad (concurrency model change)",
    ),
    pytest.param(
        revision("valid", spec("helloworld", serviceAccountName="foobar")),
        revision("valid", spec("helloworld")),
        None,
        _immutable('{v1.RevisionSpec}.PodSpec.ServiceAccountName:\n\t-: ""\n\t+: "foobar"\n'),
        id="TestImmutableFields/bad (new field added)",
    ),
    pytest.param(
        revision("valid", {"serviceAccountName": "foobar", "containers": [{"image": "helloworld"}]}),
        revision("valid", spec("busybox")),
        None,
        _immutable(
            '{v1.RevisionSpec}.PodSpec.Containers[0].Image:\n\t-: "busybox"\n\t+: "helloworld"\n'
            '{v1.RevisionSpec}.PodSpec.ServiceAccountName:\n\t-: ""\n\t+: "foobar"\n'
        ),
        id="TestImmutableFields/bad (multiple changes)",
    ),
]


@pytest.mark.parametrize(("new", "old", "defaults", "want"), IMMUTABLE_FIELDS)
def test_immutable_fields(
    new: dict[str, Any], old: dict[str, Any], defaults: Defaults | None, want: FieldError
) -> None:
    ctx = Context().within_update(old)
    if defaults is not None:
        ctx = ctx.with_defaults(defaults)
    check(validate_revision(ctx, new).filter(Level.ERROR), want)


# --- TestRevisionTemplateSpecValidation ---------------------------------------------------------------------

HELLO = spec("helloworld")
ANNOTATIONS = "metadata.annotations"

REVISION_TEMPLATE_SPEC_VALIDATION = [
    pytest.param(template(HELLO), None, NIL, id="TestRevisionTemplateSpecValidation/valid"),
    pytest.param(
        template(), None, err_missing_field("spec.containers"), id="TestRevisionTemplateSpecValidation/empty spec"
    ),
    pytest.param(
        template({"containers": [{"name": "kevin", "image": "helloworld", "lifecycle": {}}]}),
        None,
        err_disallowed_fields("spec.containers[0].lifecycle"),
        id="TestRevisionTemplateSpecValidation/nested spec error",
    ),
    pytest.param(
        # Users may bring their own revision name.
        template(HELLO, name="parent-foo"),
        None,
        NIL,
        id="TestRevisionTemplateSpecValidation/has revision template name",
    ),
    pytest.param(
        # An empty name is no name.
        template(HELLO, name=""),
        None,
        NIL,
        id="TestRevisionTemplateSpecValidation/valid name for revision template",
    ),
    pytest.param(
        template(HELLO, name="parent-@foo-bar"),
        None,
        err_invalid_value(f"not a DNS 1035 label: [{DNS1035_MESSAGE}]", "metadata.name"),
        id="TestRevisionTemplateSpecValidation/invalid name for revision template",
    ),
    pytest.param(
        template(HELLO, generateName="parent-@foo-bar"),
        None,
        err_invalid_value(f"not a DNS 1035 label prefix: [{DNS1035_MESSAGE}]", "metadata.generateName"),
        id="TestRevisionTemplateSpecValidation/invalid generate name for revision template",
    ),
    pytest.param(
        template(HELLO, annotations={MIN_SCALE_ANNOTATION_KEY: "5", MAX_SCALE_ANNOTATION_KEY: "covid-19"}),
        None,
        err_invalid_value("covid-19", MAX_SCALE_ANNOTATION_KEY).via_field("annotations").via_field("metadata"),
        id="TestRevisionTemplateSpecValidation/invalid metadata.annotations for scale",
    ),
    pytest.param(
        template(HELLO, annotations={QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY: "200"}),
        None,
        FieldError("expected 0.1 <= 200 <= 100", (f"[{QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY}]",)).via_field(
            ANNOTATIONS
        ),
        id="TestRevisionTemplateSpecValidation/Queue sidecar resource percentage annotation more than 100",
    ),
    pytest.param(
        template(HELLO, annotations={QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY: "50mx"}),
        None,
        FieldError("invalid value: 50mx", (f"[{QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY}]",)).via_field(
            ANNOTATIONS
        ),
        id="TestRevisionTemplateSpecValidation/Invalid queue sidecar resource percentage annotation",
    ),
    pytest.param(
        template(
            HELLO,
            annotations={
                QUEUE_SIDECAR_CPU_RESOURCE_LIMIT_ANNOTATION_KEY: "100mx",
                QUEUE_SIDECAR_CPU_RESOURCE_REQUEST_ANNOTATION_KEY: "50mx",
                QUEUE_SIDECAR_MEMORY_RESOURCE_LIMIT_ANNOTATION_KEY: "1Gi",
                QUEUE_SIDECAR_MEMORY_RESOURCE_REQUEST_ANNOTATION_KEY: "100Mi",
                QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_LIMIT_ANNOTATION_KEY: "5Gi",
                QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_REQUEST_ANNOTATION_KEY: "2Gi",
            },
        ),
        None,
        FieldError("invalid value: 100mx", (f"[{QUEUE_SIDECAR_CPU_RESOURCE_LIMIT_ANNOTATION_KEY}]",))
        .also(FieldError("invalid value: 50mx", (f"[{QUEUE_SIDECAR_CPU_RESOURCE_REQUEST_ANNOTATION_KEY}]",)))
        .via_field(ANNOTATIONS),
        id="TestRevisionTemplateSpecValidation/Invalid queue sidecar resource annotations",
    ),
    pytest.param(
        template(HELLO, annotations={INITIAL_SCALE_ANNOTATION_KEY: "0"}),
        autoscaler_config_ctx(False, 1),
        FieldError("invalid value: 0", (INITIAL_SCALE_ANNOTATION_KEY + "=0 not allowed by cluster",)).via_field(
            ANNOTATIONS
        ),
        id="TestRevisionTemplateSpecValidation/Invalid initial scale when cluster doesn't allow zero",
    ),
    pytest.param(
        template(HELLO, annotations={INITIAL_SCALE_ANNOTATION_KEY: "0"}),
        autoscaler_config_ctx(True, 1),
        NIL,
        id="TestRevisionTemplateSpecValidation/Valid initial scale when cluster allows zero",
    ),
    pytest.param(
        template(HELLO, annotations={PROGRESS_DEADLINE_ANNOTATION_KEY: "1m3s"}),
        autoscaler_config_ctx(True, 1),
        NIL,
        id="TestRevisionTemplateSpecValidation/Valid progress-deadline",
    ),
    pytest.param(
        template(HELLO, annotations={PROGRESS_DEADLINE_ANNOTATION_KEY: "1m3s34ms"}),
        autoscaler_config_ctx(True, 1),
        FieldError(
            "progress-deadline=1m3s34ms is not at second precision", (PROGRESS_DEADLINE_ANNOTATION_KEY,)
        ).via_field(ANNOTATIONS),
        id="TestRevisionTemplateSpecValidation/progress-deadline too precise",
    ),
    pytest.param(
        template(HELLO, annotations={PROGRESS_DEADLINE_ANNOTATION_KEY: "not-a-duration"}),
        autoscaler_config_ctx(True, 1),
        FieldError("invalid value: not-a-duration", (PROGRESS_DEADLINE_ANNOTATION_KEY,)).via_field(ANNOTATIONS),
        id="TestRevisionTemplateSpecValidation/invalid progress-deadline duration",
    ),
    pytest.param(
        template(HELLO, annotations={PROGRESS_DEADLINE_ANNOTATION_KEY: "-1m3s"}),
        autoscaler_config_ctx(True, 1),
        FieldError("progress-deadline=-1m3s must be positive", (PROGRESS_DEADLINE_ANNOTATION_KEY,)).via_field(
            ANNOTATIONS
        ),
        id="TestRevisionTemplateSpecValidation/negative progress-deadline",
    ),
    pytest.param(
        template(HELLO, annotations={"networking.knative.dev/visibility": "cluster-local"}),
        None,
        err_invalid_key_name("networking.knative.dev/visibility", ANNOTATIONS),
        id="TestRevisionTemplateSpecValidation/invalid networking.knative.dev/visibility annotation",
    ),
    pytest.param(
        template(HELLO, annotations={"networking.knative.dev/foo": "bar"}),
        None,
        err_invalid_key_name("networking.knative.dev/foo", ANNOTATIONS),
        id="TestRevisionTemplateSpecValidation/invalid unknown networking.knative.dev annotation",
    ),
    pytest.param(
        template(HELLO, annotations={"networking.knative.dev/ingress.class": "istio.ingress.networking.knative.dev"}),
        None,
        NIL,
        id="TestRevisionTemplateSpecValidation/valid networking.knative.dev/ingress.class annotation",
    ),
]


@pytest.mark.parametrize(("rts", "ctx", "want"), REVISION_TEMPLATE_SPEC_VALIDATION)
def test_revision_template_spec_validation(rts: dict[str, Any], ctx: Context | None, want: FieldError) -> None:
    ctx = (ctx or Context()).within_parent({"name": "parent"})
    check(validate_revision_template_spec(ctx, rts).filter(Level.ERROR), want)


# --- TestValidateQueueSidecarAnnotation ---------------------------------------------------------------------

PERCENTAGE_KEY_PATH = f"[{QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY}]"
RESOURCE_PERCENTAGE_DEPRECATION_WARNING = (
    err_generic(
        "Queue proxy resource percentage annotation is deprecated. Please use the available annotations to "
        "explicitly set resource values per service"
    )
    .via_key(QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY)
    .at(Level.WARNING)
)

QUEUE_SIDECAR_ANNOTATION = [
    pytest.param(
        {QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY: "0.01982"},
        FieldError("expected 0.1 <= 0.01982 <= 100", (PERCENTAGE_KEY_PATH,)).also(
            RESOURCE_PERCENTAGE_DEPRECATION_WARNING
        ),
        id="TestValidateQueueSidecarAnnotation/too small",
    ),
    pytest.param(
        {QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY: "100.0001"},
        FieldError("expected 0.1 <= 100.0001 <= 100", (PERCENTAGE_KEY_PATH,)).also(
            RESOURCE_PERCENTAGE_DEPRECATION_WARNING
        ),
        id="TestValidateQueueSidecarAnnotation/too big for Queue sidecar resource percentage annotation",
    ),
    pytest.param(
        {QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY: ""},
        FieldError("invalid value: ", (PERCENTAGE_KEY_PATH,)).also(RESOURCE_PERCENTAGE_DEPRECATION_WARNING),
        id="TestValidateQueueSidecarAnnotation/Invalid queue sidecar resource percentage annotation",
    ),
    pytest.param({}, NIL, id="TestValidateQueueSidecarAnnotation/empty annotation"),
    pytest.param(
        {CREATOR_ANNOTATION: "umph"},
        NIL,
        id="TestValidateQueueSidecarAnnotation/"
        "different annotation other than QueueSidecarResourcePercentageAnnotation",
    ),
    pytest.param(
        {QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY: "0.1"},
        RESOURCE_PERCENTAGE_DEPRECATION_WARNING,
        id="TestValidateQueueSidecarAnnotation/valid value for Queue sidecar resource percentage annotation",
    ),
    pytest.param(
        {QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY: "100"},
        RESOURCE_PERCENTAGE_DEPRECATION_WARNING,
        id="TestValidateQueueSidecarAnnotation/valid value for Queue sidecar resource percentage annotation#01",
    ),
]


@pytest.mark.parametrize(("annotations", "want"), QUEUE_SIDECAR_ANNOTATION)
def test_validate_queue_sidecar_annotation(annotations: dict[str, str], want: FieldError) -> None:
    # Unfiltered: the deprecation warning is part of what upstream compares.
    check(validate_queue_sidecar_resource_annotations(annotations), want)


# --- TestValidateTimeoutSecond --------------------------------------------------------------------------------

TIMEOUT_SECOND = [
    pytest.param(
        6000,
        err_out_of_bounds_value(6000, 0, DEFAULT_MAX_REVISION_TIMEOUT_SECONDS, "timeoutSeconds"),
        id="TestValidateTimeoutSecond/exceed max timeout",
    ),
    pytest.param(100, NIL, id="TestValidateTimeoutSecond/valid timeout value"),
]


@pytest.mark.parametrize(("timeout", "want"), TIMEOUT_SECOND)
def test_validate_timeout_second(timeout: int, want: FieldError) -> None:
    check(validate_timeout_seconds(Context(), timeout), want)


# --- TestValidateRevisionName -------------------------------------------------------------------------------

REVISION_NAME = [
    pytest.param(
        "",
        "foo.bar",
        {},
        err_invalid_value(f"not a DNS 1035 label prefix: [{DNS1035_MESSAGE}]", "metadata.generateName"),
        id="TestValidateRevisionName/invalid revision generateName - dots",
    ),
    pytest.param(
        "foo.bar",
        "",
        {},
        err_invalid_value(f"not a DNS 1035 label: [{DNS1035_MESSAGE}]", "metadata.name"),
        id="TestValidateRevisionName/invalid revision name - dots",
    ),
    pytest.param(
        "foo",
        "",
        {"name": "bar"},
        err_invalid_value('"foo" must have prefix "bar-"', "metadata.name"),
        id="TestValidateRevisionName/invalid name (not prefixed)",
    ),
    pytest.param(
        "foo-bar-foo",
        "",
        {"generateName": "foo-bar-"},
        err_disallowed_fields("metadata.name"),
        id="TestValidateRevisionName/invalid name (with generateName)",
    ),
    pytest.param("valid-name", "", {"name": "valid"}, NIL, id="TestValidateRevisionName/valid name"),
]


@pytest.mark.parametrize(("name", "generate_name", "parent", "want"), REVISION_NAME)
def test_validate_revision_name(name: str, generate_name: str, parent: dict[str, str], want: FieldError) -> None:
    ctx = Context().within_parent(parent)
    check(validate_revision_name(ctx, name, generate_name), want)


# Every upstream case of revision_validation_test.go is ported.
LEFT_OUT: dict[str, str] = {}
