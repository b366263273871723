"""Knative's container validation tables: pkg/apis/serving/k8s_validation_test.go at knative/serving 98e5ef90.

TestUserContainerValidation, TestSidecarContainerValidation, TestInitContainerValidation, each with the cases of
getCommonContainerValidationTestCases appended, as upstream does. The Go structs are written as the manifests
they decode from; each case keeps its upstream name as the pytest id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from edgeinfer.knative.webhook import config as kc
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    CURRENT_FIELD,
    NIL,
    FieldError,
    Level,
    err_disallowed_fields,
    err_invalid_value,
    err_missing_field,
    err_missing_one_of,
    err_multiple_one_of,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.k8s_container import (
    path_clean,
    validate_containers_ports,
    validate_init_container,
    validate_sidecar_container,
    validate_user_container,
)

MAX_INT32 = 2**31 - 1

Option = Callable[[kc.Features], kc.Features]


def enabled(key: str) -> Option:
    """The upstream `with...Enabled()` configOption for one feature flag."""
    return lambda features: features.set(key, kc.ENABLED)


with_pod_spec_init_containers_enabled = enabled(kc.POD_SPEC_INIT_CONTAINERS)
with_multi_container_probes_enabled = enabled(kc.MULTI_CONTAINER_PROBING)
with_container_spec_add_capabilities_enabled = enabled(kc.CONTAINER_SPEC_ADD_CAPABILITIES)
with_pod_spec_security_context_enabled = enabled(kc.POD_SPEC_SECURITY_CONTEXT)


def make_ctx(options: tuple[Option, ...]) -> Context:
    ctx = Context()
    features = ctx.features
    for option in options:
        features = option(features)
    return ctx.with_features(features)


Case = tuple[str, dict[str, Any], FieldError, Mapping[str, Mapping[str, Any]] | None, tuple[Option, ...]]


def case(
    name: str,
    c: dict[str, Any],
    want: FieldError = NIL,
    volumes: Mapping[str, Mapping[str, Any]] | None = None,
    cfg: tuple[Option, ...] = (),
) -> Case:
    return (name, c, want, volumes, cfg)


def http_probe(**fields: Any) -> dict[str, Any]:
    return {"httpGet": {"path": "/"}, **fields}


READY = {"periodSeconds": 1, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3}
CONFIG_MAP_VOLUME = {"the-name": {"name": "the-name", "configMap": {"name": "test-cm"}}}
NOT_IN_INIT = "field not allowed in an init container"


def reserved_port(port: int) -> FieldError:
    return err_invalid_value(
        f"{port} is a reserved port", "ports.containerPort", f"{port} is a reserved port, please use a different value"
    )


# --- getCommonContainerValidationTestCases -----------------------------------------------------------------------

COMMON: list[Case] = [
    case("empty container", {}, err_missing_field(CURRENT_FIELD), cfg=(with_pod_spec_init_containers_enabled,)),
    case("valid container", {"image": "foo"}),
    case(
        "invalid container image",
        {"image": "foo:bar:baz"},
        FieldError(
            "Failed to parse image reference",
            ("image",),
            details='image: "foo:bar:baz", error: could not parse reference: foo:bar:baz',
        ),
    ),
    case("has resources", {"image": "foo", "resources": {"limits": {"memory": "250M"}, "requests": {"cpu": "25m"}}}),
    case("has no container ports set", {"image": "foo", "ports": []}),
    case(
        "has container port value too large",
        {"image": "foo", "ports": [{"containerPort": 65536}]},
        err_out_of_bounds_value(65536, 0, 65535, "ports.containerPort"),
    ),
    case("has host ip", {"image": "foo", "ports": [{"hostIP": "127.0.0.1"}]}, err_disallowed_fields("ports.hostIP")),
    case(
        "port conflicts with profiling port", {"image": "foo", "ports": [{"containerPort": 8008}]}, reserved_port(8008)
    ),
    case("port conflicts with queue proxy", {"image": "foo", "ports": [{"containerPort": 8013}]}, reserved_port(8013)),
    # Upstream has two cases of this name; the second (8012) gets a suffix to keep the ids unique.
    case(
        "port conflicts with queue proxy #2", {"image": "foo", "ports": [{"containerPort": 8012}]}, reserved_port(8012)
    ),
    case(
        "port conflicts with queue proxy metrics",
        {"image": "foo", "ports": [{"containerPort": 9090}]},
        reserved_port(9090),
    ),
    case(
        "port conflicts with user queue proxy metrics for user",
        {"image": "foo", "ports": [{"containerPort": 9091}]},
        reserved_port(9091),
    ),
    case(
        "port conflicts with queue proxy admin",
        {"image": "foo", "ports": [{"containerPort": 8022}]},
        reserved_port(8022),
    ),
    case(
        "has unknown volumeMounts",
        {"image": "foo", "volumeMounts": [{"name": "the-name", "subPath": "oops"}]},
        FieldError("volumeMount has no matching volume", ("name",))
        .via_field_index("volumeMounts", 0)
        .also(
            FieldError("volume mount should be readOnly for this type of volume", ("readOnly",)).via_field_index(
                "volumeMounts", 0
            )
        )
        .also(err_missing_field("mountPath").via_field_index("volumeMounts", 0)),
    ),
    case(
        "has known volumeMounts",
        {"image": "foo", "volumeMounts": [{"mountPath": "/mount/path", "name": "the-name", "readOnly": True}]},
        volumes=CONFIG_MAP_VOLUME,
    ),
    case(
        "has known volumeMounts, but at reserved path",
        {"image": "foo", "volumeMounts": [{"mountPath": "//dev//", "name": "the-name", "readOnly": True}]},
        FieldError('mountPath "/dev" is a reserved path', ("mountPath",)).via_field_index("volumeMounts", 0),
        volumes=CONFIG_MAP_VOLUME,
    ),
    case(
        "has known volumeMounts, bad mountPath",
        {"image": "foo", "volumeMounts": [{"mountPath": "not/absolute", "name": "the-name", "readOnly": True}]},
        err_invalid_value("not/absolute", "volumeMounts[0].mountPath"),
        volumes=CONFIG_MAP_VOLUME,
    ),
    case(
        "Empty dir has rw access",
        {"image": "foo", "volumeMounts": [{"mountPath": "/mount/path", "name": "the-name"}]},
        volumes={"the-name": {"name": "the-name", "emptyDir": {"medium": "Memory"}}},
    ),
    case(
        "has known volumeMount twice",
        {
            "image": "foo",
            "volumeMounts": [
                {"mountPath": "/mount/path", "name": "the-name", "readOnly": True},
                {"mountPath": "/another/mount/path", "name": "the-name", "readOnly": True},
            ],
        },
        volumes=CONFIG_MAP_VOLUME,
    ),
    case(
        "not allowed to add a security context capability",
        {"image": "foo", "securityContext": {"capabilities": {"add": ["all"]}}},
        err_disallowed_fields("securityContext.capabilities.add"),
    ),
    case(
        "allowed to add a security context capability when gate is enabled",
        {"image": "foo", "securityContext": {"capabilities": {"add": ["all"]}}},
        cfg=(with_container_spec_add_capabilities_enabled,),
    ),
    case(
        "disallowed security context field",
        {"image": "foo", "securityContext": {"privileged": True}},
        err_disallowed_fields("securityContext.privileged"),
    ),
    case(
        "allowed setting security context field Privileged to false",
        {"image": "foo", "securityContext": {"privileged": False}},
    ),
    case(
        "too large uid",
        {"image": "foo", "securityContext": {"runAsUser": MAX_INT32 + 1}},
        err_out_of_bounds_value(MAX_INT32 + 1, 0, MAX_INT32, "securityContext.runAsUser"),
    ),
    case(
        "negative uid",
        {"image": "foo", "securityContext": {"runAsUser": -10}},
        err_out_of_bounds_value(-10, 0, MAX_INT32, "securityContext.runAsUser"),
    ),
    case(
        "too large gid - feature enabled",
        {"image": "foo", "securityContext": {"runAsGroup": MAX_INT32 + 1}},
        err_out_of_bounds_value(MAX_INT32 + 1, 0, MAX_INT32, "securityContext.runAsGroup"),
        cfg=(with_pod_spec_security_context_enabled,),
    ),
    case(
        "negative gid - feature enabled",
        {"image": "foo", "securityContext": {"runAsGroup": -10}},
        err_out_of_bounds_value(-10, 0, MAX_INT32, "securityContext.runAsGroup"),
        cfg=(with_pod_spec_security_context_enabled,),
    ),
    case(
        "envFrom - None of",
        {"image": "foo", "envFrom": [{}]},
        err_missing_one_of("envFrom.configMapRef", "envFrom.secretRef"),
    ),
    case(
        "envFrom - Multiple",
        {"image": "foo", "envFrom": [{"configMapRef": {"name": "ConfigMapName"}, "secretRef": {"name": "SecretName"}}]},
        err_multiple_one_of("envFrom.configMapRef", "envFrom.secretRef"),
    ),
    case("envFrom - Secret", {"image": "foo", "envFrom": [{"secretRef": {"name": "SecretName"}}]}),
    case("envFrom - ConfigMap", {"image": "foo", "envFrom": [{"configMapRef": {"name": "ConfigMapName"}}]}),
    case(
        "termination message policy",
        {"image": "foo", "terminationMessagePolicy": "Not a Policy"},
        err_invalid_value("Not a Policy", "terminationMessagePolicy"),
    ),
    case("empty env var name", {"image": "foo", "env": [{"value": "Foo"}]}, err_missing_field("env[0].name")),
    case(
        "disallowed envvarsource",
        {"image": "foo", "env": [{"name": "Foo", "valueFrom": {"fieldRef": {"fieldPath": "/v1"}}}]},
        err_disallowed_fields("env[0].valueFrom.fieldRef"),
    ),
]

# --- TestUserContainerValidation ---------------------------------------------------------------------------------

MORE_THAN_ONE_PORT = FieldError(
    "more than one container port is set", ("ports",), details="Only a single port is allowed across all containers"
)
OUT_OF_BOUNDS_READINESS = (
    err_out_of_bounds_value(-1, 0, MAX_INT32, "readinessProbe.periodSeconds")
    .also(err_out_of_bounds_value(0, 1, MAX_INT32, "readinessProbe.timeoutSeconds"))
    .also(err_out_of_bounds_value(0, 1, MAX_INT32, "readinessProbe.successThreshold"))
    .also(err_out_of_bounds_value(0, 1, MAX_INT32, "readinessProbe.failureThreshold"))
    .also(err_out_of_bounds_value(-1, 0, MAX_INT32, "readinessProbe.initialDelaySeconds"))
)
NO_HANDLER = err_missing_one_of(
    "livenessProbe.httpGet", "livenessProbe.tcpSocket", "livenessProbe.exec", "livenessProbe.grpc"
)
MULTIPLE_HANDLERS = err_multiple_one_of("readinessProbe.exec", "readinessProbe.tcpSocket", "readinessProbe.httpGet")
DISALLOWED_CONTAINER_FIELDS = {
    "image": "foo",
    "name": "fail",
    "stdin": True,
    "stdinOnce": True,
    "tty": True,
    "lifecycle": {},
    "volumeDevices": [{"name": "disallowed", "devicePath": "/"}],
}

USER: list[Case] = [
    case(
        "has a lifecycle",
        {"name": "foo", "image": "foo", "lifecycle": {}},
        err_disallowed_fields("lifecycle"),
        cfg=(with_pod_spec_init_containers_enabled,),
    ),
    case("has lifecycle", {"image": "foo", "lifecycle": {}}, err_disallowed_fields("lifecycle")),
    case("has valid unnamed user port", {"image": "foo", "ports": [{"containerPort": 8181}]}),
    case("has valid user port http1", {"image": "foo", "ports": [{"name": "http1"}]}),
    case("has valid user port h2c", {"image": "foo", "ports": [{"name": "h2c"}]}),
    case(
        "has more than one ports with valid names",
        {"image": "foo", "ports": [{"name": "h2c"}, {"name": "http1"}]},
        MORE_THAN_ONE_PORT,
    ),
    case("has an empty port set", {"image": "foo", "ports": [{}]}),
    case(
        "has more than one unnamed port",
        {"image": "foo", "ports": [{"containerPort": 8080}, {"containerPort": 8181}]},
        MORE_THAN_ONE_PORT,
    ),
    case("has tcp protocol", {"image": "foo", "ports": [{"protocol": "TCP"}]}),
    case(
        "has invalid protocol",
        {"image": "foo", "ports": [{"protocol": "tdp"}]},
        err_invalid_value("tdp", "ports.protocol"),
    ),
    case("has host port", {"image": "foo", "ports": [{"hostPort": 80}]}, err_disallowed_fields("ports.hostPort")),
    case(
        "has invalid port name",
        {"image": "foo", "ports": [{"name": "foobar"}]},
        FieldError(
            "Port name foobar is not allowed", ("ports",), details="Name must be empty, or one of: 'h2c', 'http1'"
        ),
    ),
    case(
        "valid with probes (no port)",
        {"image": "foo", "readinessProbe": http_probe(**READY), "livenessProbe": {"tcpSocket": {}}},
    ),
    case(
        "valid with exec probes ",
        {
            "image": "foo",
            "readinessProbe": http_probe(initialDelaySeconds=0, **READY),
            "livenessProbe": {"exec": {}, "terminationGracePeriodSeconds": 10},
        },
    ),
    case(
        "invalid with no handler",
        {"image": "foo", "readinessProbe": http_probe(**READY), "livenessProbe": {}},
        NO_HANDLER,
    ),
    case(
        "valid with startup probe",
        {"image": "foo", "startupProbe": http_probe(terminationGracePeriodSeconds=10, **READY)},
    ),
    case(
        "invalid with multiple handlers",
        {"image": "foo", "readinessProbe": http_probe(exec={}, tcpSocket={}, **READY)},
        MULTIPLE_HANDLERS,
    ),
    case(
        "valid liveness http probe with a different container port",
        {"image": "foo", "livenessProbe": {"httpGet": {"path": "/", "port": 5000}, **READY}},
    ),
    case(
        "valid liveness tcp probe with a different container port",
        {"image": "foo", "livenessProbe": {"tcpSocket": {"port": 5000}, "terminationGracePeriodSeconds": 10, **READY}},
    ),
    case(
        "valid readiness http probe with a different container port",
        {"image": "foo", "readinessProbe": {"httpGet": {"path": "/", "port": 5000}, **READY}},
    ),
    case(
        "valid readiness tcp probe with a different container port",
        {"image": "foo", "readinessProbe": {"tcpSocket": {"port": 5000}, **READY}},
    ),
    case(
        "valid readiness http probe with port",
        {"image": "foo", "readinessProbe": {"successThreshold": 1, "httpGet": {"port": "http"}}},
    ),
    case(
        "invalid readiness probe (has failureThreshold while using special probe)",
        {"image": "foo", "readinessProbe": http_probe(periodSeconds=0, failureThreshold=2, successThreshold=1)},
        FieldError("failureThreshold is disallowed when periodSeconds is zero", ("readinessProbe.failureThreshold",)),
    ),
    case(
        "invalid readiness probe (has timeoutSeconds while using special probe)",
        {"image": "foo", "readinessProbe": http_probe(periodSeconds=0, timeoutSeconds=2, successThreshold=1)},
        FieldError("timeoutSeconds is disallowed when periodSeconds is zero", ("readinessProbe.timeoutSeconds",)),
    ),
    case(
        "out of bounds probe values",
        {
            "image": "foo",
            "readinessProbe": {
                "periodSeconds": -1,
                "timeoutSeconds": 0,
                "successThreshold": 0,
                "failureThreshold": 0,
                "initialDelaySeconds": -1,
                "httpGet": {},
            },
        },
        OUT_OF_BOUNDS_READINESS,
    ),
    case(
        "reserved env var name for serving container",
        {"image": "foo", "env": [{"name": "PORT", "value": "Foo"}], "ports": [{"containerPort": 8888}]},
        FieldError('"PORT" is a reserved environment variable', ("env[0].name",)),
    ),
    case(
        "invalid liveness tcp probe (has port)",
        {"image": "foo", "livenessProbe": {"tcpSocket": {"port": "imap"}}},
        err_invalid_value("imap", "livenessProbe.tcpSocket.port", "Probe port must match container port"),
    ),
    case(
        "valid liveness tcp probe with correct port",
        {"image": "foo", "ports": [{"containerPort": 8888}], "livenessProbe": {"tcpSocket": {"port": 8888}}},
    ),
    case(
        "disallowed container fields",
        DISALLOWED_CONTAINER_FIELDS,
        err_disallowed_fields("lifecycle")
        .also(err_disallowed_fields("stdin"))
        .also(err_disallowed_fields("stdinOnce"))
        .also(err_disallowed_fields("tty"))
        .also(err_disallowed_fields("volumeDevices")),
    ),
    case(
        "has numerous problems",
        {"lifecycle": {}},
        err_disallowed_fields("lifecycle").also(err_missing_field("image")),
    ),
    case("valid grpc probe", {"image": "foo", "readinessProbe": {"grpc": {"port": 46}, **READY}}),
    case(
        "valid grpc probe with service",
        {"image": "foo", "readinessProbe": {"grpc": {"port": 46, "service": "foo"}, **READY}},
    ),
]

# --- TestSidecarContainerValidation ------------------------------------------------------------------------------

PROBING = (with_multi_container_probes_enabled,)

SIDECAR: list[Case] = [
    case(
        "probes not allowed",
        {
            "image": "foo",
            "readinessProbe": http_probe(**READY),
            "livenessProbe": {"tcpSocket": {}},
            "startupProbe": http_probe(terminationGracePeriodSeconds=10, **READY),
        },
        err_disallowed_fields(
            "livenessProbe",
            "readinessProbe",
            "readinessProbe.failureThreshold",
            "readinessProbe.periodSeconds",
            "readinessProbe.successThreshold",
            "readinessProbe.timeoutSeconds",
            "startupProbe",
            "startupProbe.failureThreshold",
            "startupProbe.periodSeconds",
            "startupProbe.successThreshold",
            "startupProbe.terminationGracePeriodSeconds",
            "startupProbe.timeoutSeconds",
        ),
    ),
    case(
        "invalid probes (no port defined)",
        {"image": "foo", "readinessProbe": http_probe(**READY), "livenessProbe": {"tcpSocket": {}}},
        err_invalid_value(
            0, "livenessProbe.tcpSocket.port, readinessProbe.httpGet.port", "Probe port must be specified"
        ),
        cfg=PROBING,
    ),
    case(
        "valid with exec probes",
        {
            "image": "foo",
            "readinessProbe": {"initialDelaySeconds": 0, "httpGet": {"path": "/", "port": 5000}, **READY},
            "livenessProbe": {"exec": {}},
        },
        cfg=PROBING,
    ),
    case(
        "invalid with startup probe",
        {"image": "foo", "startupProbe": http_probe(terminationGracePeriodSeconds=10, **READY)},
        err_disallowed_fields(
            "startupProbe",
            "startupProbe.failureThreshold",
            "startupProbe.periodSeconds",
            "startupProbe.successThreshold",
            "startupProbe.terminationGracePeriodSeconds",
            "startupProbe.timeoutSeconds",
        ),
    ),
    case(
        "valid with startup probe and multi container probing",
        {
            "image": "foo",
            "startupProbe": {"httpGet": {"path": "/", "port": 5000}, "terminationGracePeriodSeconds": 10, **READY},
        },
        cfg=PROBING,
    ),
    case(
        "invalid with no handler",
        {"image": "foo", "readinessProbe": {"httpGet": {"path": "/", "port": 5000}, **READY}, "livenessProbe": {}},
        NO_HANDLER,
        cfg=PROBING,
    ),
    case(
        "invalid with multiple handlers",
        {
            "image": "foo",
            "readinessProbe": {
                "httpGet": {"path": "/", "port": 5000},
                "exec": {},
                "tcpSocket": {"port": 5000},
                **READY,
            },
        },
        MULTIPLE_HANDLERS,
        cfg=PROBING,
    ),
    case(
        "valid liveness http probe",
        {
            "image": "foo",
            "livenessProbe": {"httpGet": {"path": "/", "port": 5000}, "terminationGracePeriodSeconds": 10, **READY},
        },
        cfg=PROBING,
    ),
    case(
        "valid liveness tcp probe",
        {"image": "foo", "livenessProbe": {"tcpSocket": {"port": 5000}, **READY}},
        cfg=PROBING,
    ),
    case(
        "valid readiness http probe",
        {"image": "foo", "readinessProbe": {"httpGet": {"path": "/", "port": 5000}, **READY}},
        cfg=PROBING,
    ),
    case(
        "valid readiness tcp probe",
        {"image": "foo", "readinessProbe": {"tcpSocket": {"port": 5000}, **READY}},
        cfg=PROBING,
    ),
    case(
        "valid readiness http probe with named port",
        {"image": "foo", "readinessProbe": {"successThreshold": 1, "httpGet": {"port": "http"}}},
        cfg=PROBING,
    ),
    case(
        "invalid readiness probe (has failureThreshold while using special probe)",
        {
            "image": "foo",
            "readinessProbe": {
                "periodSeconds": 0,
                "failureThreshold": 2,
                "successThreshold": 1,
                "httpGet": {"path": "/", "port": 5000},
            },
        },
        FieldError("failureThreshold is disallowed when periodSeconds is zero", ("readinessProbe.failureThreshold",)),
        cfg=PROBING,
    ),
    case(
        "invalid readiness probe (has timeoutSeconds while using special probe)",
        {
            "image": "foo",
            "readinessProbe": {
                "periodSeconds": 0,
                "timeoutSeconds": 2,
                "successThreshold": 1,
                "httpGet": {"path": "/", "port": 5000},
            },
        },
        FieldError("timeoutSeconds is disallowed when periodSeconds is zero", ("readinessProbe.timeoutSeconds",)),
        cfg=PROBING,
    ),
    case(
        "out of bounds probe values",
        {
            "image": "foo",
            "readinessProbe": {
                "periodSeconds": -1,
                "timeoutSeconds": 0,
                "successThreshold": 0,
                "failureThreshold": 0,
                "initialDelaySeconds": -1,
                "httpGet": {"port": 5000},
            },
        },
        OUT_OF_BOUNDS_READINESS,
        cfg=PROBING,
    ),
    case("valid grpc probe", {"image": "foo", "readinessProbe": {"grpc": {"port": 46}, **READY}}, cfg=PROBING),
    case(
        "valid grpc probe with service",
        {"image": "foo", "readinessProbe": {"grpc": {"port": 46, "service": "foo"}, **READY}},
        cfg=PROBING,
    ),
]

# --- TestInitContainerValidation ---------------------------------------------------------------------------------

INIT: list[Case] = [
    case(
        "has a lifecycle",
        {"name": "foo", "image": "foo", "lifecycle": {}},
        err_disallowed_fields("lifecycle").also(FieldError(NOT_IN_INIT, ("lifecycle",))),
        cfg=(with_pod_spec_init_containers_enabled,),
    ),
    case(
        "has lifecycle",
        {"image": "foo", "lifecycle": {}},
        err_disallowed_fields("lifecycle").also(FieldError(NOT_IN_INIT, ("lifecycle",))),
    ),
    case(
        "invalid liveness tcp probe (has port)",
        {"image": "foo", "livenessProbe": {"tcpSocket": {"port": "http"}}},
        FieldError(NOT_IN_INIT, ("livenessProbe",)),
    ),
    case(
        "has readiness probe",
        {"image": "foo", "readinessProbe": {"tcpSocket": {"port": "http"}}},
        FieldError(NOT_IN_INIT, ("readinessProbe",)),
    ),
    case(
        "has startup probe",
        {"image": "foo", "startupProbe": {"tcpSocket": {"port": "http"}}},
        FieldError(NOT_IN_INIT, ("startupProbe",)),
    ),
    case(
        "disallowed container fields",
        DISALLOWED_CONTAINER_FIELDS,
        err_disallowed_fields("lifecycle")
        .also(FieldError(NOT_IN_INIT, ("lifecycle",)))
        .also(err_disallowed_fields("stdin"))
        .also(err_disallowed_fields("stdinOnce"))
        .also(err_disallowed_fields("tty"))
        .also(err_disallowed_fields("volumeDevices")),
    ),
    case(
        "has numerous problems",
        {"lifecycle": {}},
        err_disallowed_fields("lifecycle")
        .also(FieldError(NOT_IN_INIT, ("lifecycle",)))
        .also(err_missing_field("image")),
    ),
]


def params(test: str, cases: list[Case]) -> list[Any]:
    return [pytest.param(*c[1:], id=f"{test}/{c[0]}") for c in cases]


@pytest.mark.parametrize(("c", "want", "volumes", "cfg"), params("TestUserContainerValidation", USER + COMMON))
def test_user_container_validation(
    c: dict[str, Any], want: FieldError, volumes: Mapping[str, Mapping[str, Any]] | None, cfg: tuple[Option, ...]
) -> None:
    ctx = make_ctx(cfg)
    port, err = validate_containers_ports([c])
    got = err.also(validate_user_container(ctx, c, volumes, port)).filter(Level.ERROR)
    assert str(got) == str(want)


@pytest.mark.parametrize(("c", "want", "volumes", "cfg"), params("TestSidecarContainerValidation", SIDECAR + COMMON))
def test_sidecar_container_validation(
    c: dict[str, Any], want: FieldError, volumes: Mapping[str, Mapping[str, Any]] | None, cfg: tuple[Option, ...]
) -> None:
    got = validate_sidecar_container(make_ctx(cfg), c, volumes).filter(Level.ERROR)
    assert str(got) == str(want)


@pytest.mark.parametrize(("c", "want", "volumes", "cfg"), params("TestInitContainerValidation", INIT + COMMON))
def test_init_container_validation(
    c: dict[str, Any], want: FieldError, volumes: Mapping[str, Mapping[str, Any]] | None, cfg: tuple[Option, ...]
) -> None:
    got = validate_init_container(make_ctx(cfg), c, volumes).filter(Level.ERROR)
    assert str(got) == str(want)


# --- not upstream: Go's path.Clean, which the reserved-path check relies on --------------------------------------


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("", "."),
        ("//dev//", "/dev"),
        ("//", "/"),  # posixpath.normpath keeps "//"
        ("/../x", "/x"),
        ("a/../../b", "../b"),
        ("./a/./b/", "a/b"),
        ("/dev/log/.", "/dev/log"),
        ("abc/def/../..", "."),
    ],
)
def test_path_clean(path: str, want: str) -> None:
    assert path_clean(path) == want


LEFT_OUT: dict[str, str] = {}
