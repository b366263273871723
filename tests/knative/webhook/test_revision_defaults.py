"""Knative's pkg/apis/serving/v1/revision_defaults_test.go at knative/serving 98e5ef90: TestRevisionDefaulting and
TestRevisionDefaultingContainerName, case by case.

Upstream compares the defaulted struct with cmp.Equal; here the defaulted manifest map is compared with the map
of the wanted struct (Go's zero fields absent, a set pointer or a non-nil empty map/slice present).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edgeinfer.knative.webhook.config import (
    DEFAULT_CONTAINER_CONCURRENCY,
    DEFAULT_REVISION_TIMEOUT_SECONDS,
    DEFAULT_USER_CONTAINER_NAME,
    Defaults,
    Features,
)
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.revision import set_revision_defaults

SOME_TIMEOUT_SECONDS = 400  # configuration_defaults_test.go


def default_resources() -> dict[str, Any]:
    return {"requests": {}, "limits": {}}


def default_probe() -> dict[str, Any]:
    return {"successThreshold": 1, "tcpSocket": {}}


def rev(**spec: Any) -> dict[str, Any]:
    return {"spec": spec}


def one_empty_container() -> dict[str, Any]:
    return rev(containers=[{}])


def defaulted(name: str = DEFAULT_USER_CONTAINER_NAME, **fields: Any) -> dict[str, Any]:
    """A user container as SetDefaults leaves it: named, empty resources, the TCP readiness probe."""
    return {"name": name, "resources": default_resources(), "readinessProbe": default_probe(), **fields}


def with_defaults(data: dict[str, str], *, create: bool = False) -> Context:
    """configMapsToContext with a config-defaults ConfigMap (and apis.WithinCreate when `create`)."""
    ctx = Context().within_create() if create else Context()
    return ctx.with_defaults(Defaults.from_map(data))


def with_features(data: dict[str, str]) -> Context:
    return Context().with_features(Features.from_map(data))


def tcp_probe(host: str, **fields: Any) -> dict[str, Any]:
    return {"tcpSocket": {"host": host}, **fields}


def exec_probe(**fields: Any) -> dict[str, Any]:
    return {"exec": {"command": ["echo", "hi"]}, **fields}


def restricted(*, non_root: bool = True, add: list[str] | None = None, escalate: bool = False) -> dict[str, Any]:
    """The securityContext secure-pod-defaults gives a container without one."""
    sc: dict[str, Any] = {
        "allowPrivilegeEscalation": escalate,
        "seccompProfile": {"type": "RuntimeDefault"},
        "capabilities": {"drop": ["ALL"]},
    }
    if add is not None:
        sc["capabilities"]["add"] = add
    if non_root:
        sc["runAsNonRoot"] = True
    return sc


def special_sidecar_in() -> dict[str, Any]:
    return {
        "name": "special-sidecar",
        "securityContext": {"allowPrivilegeEscalation": True, "capabilities": {"add": ["NET_ADMIN"], "drop": []}},
    }


def special_init_in() -> dict[str, Any]:
    return {
        "name": "special-init",
        "securityContext": {
            "allowPrivilegeEscalation": True,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "special"},
            "capabilities": {"add": ["NET_ADMIN"]},
        },
    }


def secure_in() -> dict[str, Any]:
    return rev(
        containers=[
            {"name": "user-container", "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "securityContext": {}},
            special_sidecar_in(),
        ],
        initContainers=[special_init_in()],
    )


def secure_want(*, non_root: bool) -> dict[str, Any]:
    special_sidecar = special_sidecar_in()
    special_sidecar["resources"] = default_resources()
    special_sidecar["securityContext"]["seccompProfile"] = {"type": "RuntimeDefault"}
    special_init = special_init_in()
    if non_root:
        special_sidecar["securityContext"]["runAsNonRoot"] = True
        special_init["securityContext"]["runAsNonRoot"] = True
    return rev(
        containerConcurrency=DEFAULT_CONTAINER_CONCURRENCY,
        timeoutSeconds=DEFAULT_REVISION_TIMEOUT_SECONDS,
        containers=[
            defaulted(
                "user-container",
                ports=[{"containerPort": 80}],
                securityContext=restricted(non_root=non_root, add=["NET_BIND_SERVICE"]),
            ),
            {"name": "sidecar", "resources": default_resources(), "securityContext": restricted(non_root=non_root)},
            special_sidecar,
        ],
        initContainers=[special_init],
    )


def secure_empty_in() -> dict[str, Any]:
    return rev(containers=[{"name": "user-container", "ports": [{"containerPort": 80}]}, {"name": "sidecar"}])


def secure_empty_want(*, non_root: bool) -> dict[str, Any]:
    return rev(
        containerConcurrency=DEFAULT_CONTAINER_CONCURRENCY,
        timeoutSeconds=DEFAULT_REVISION_TIMEOUT_SECONDS,
        containers=[
            defaulted(
                "user-container",
                ports=[{"containerPort": 80}],
                securityContext=restricted(non_root=non_root, add=["NET_BIND_SERVICE"]),
            ),
            {"name": "sidecar", "resources": default_resources(), "securityContext": restricted(non_root=non_root)},
        ],
    )


def plain(name: str, **fields: Any) -> dict[str, Any]:
    """A non-serving container: named and with empty resources, no probe."""
    return {"name": name, "resources": default_resources(), **fields}


DEFAULTS_SPEC = {
    "timeoutSeconds": DEFAULT_REVISION_TIMEOUT_SECONDS,
    "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
}
PORT_8888 = [{"containerPort": 8888}]

REVISION_DEFAULTING = [
    pytest.param({}, None, rev(**DEFAULTS_SPEC), id="TestRevisionDefaulting/empty"),
    pytest.param(
        one_empty_container(),
        with_defaults({"revision-timeout-seconds": str(SOME_TIMEOUT_SECONDS)}),
        rev(containerConcurrency=0, timeoutSeconds=SOME_TIMEOUT_SECONDS, containers=[defaulted()]),
        id="TestRevisionDefaulting/with context",
    ),
    pytest.param(
        one_empty_container(),
        with_defaults(
            {
                "revision-timeout-seconds": str(SOME_TIMEOUT_SECONDS),
                "revision-idle-timeout-seconds": "100",
                "revision-response-start-timeout-seconds": "50",
            }
        ),
        rev(
            containerConcurrency=0,
            timeoutSeconds=SOME_TIMEOUT_SECONDS,
            responseStartTimeoutSeconds=50,
            idleTimeoutSeconds=100,
            containers=[defaulted()],
        ),
        id="TestRevisionDefaulting/all revision timeouts set",
    ),
    pytest.param(
        one_empty_container(),
        with_defaults(
            {
                "revision-timeout-seconds": str(SOME_TIMEOUT_SECONDS),
                "revision-response-start-timeout-seconds": str(SOME_TIMEOUT_SECONDS),
            }
        ),
        rev(containerConcurrency=0, timeoutSeconds=SOME_TIMEOUT_SECONDS, containers=[defaulted()]),
        id="TestRevisionDefaulting/Some revision timeouts set with identical values",
    ),
    pytest.param(
        one_empty_container(),
        with_defaults({"revision-timeout-seconds": "323"}, create=True),
        rev(containerConcurrency=0, timeoutSeconds=323, enableServiceLinks=False, containers=[defaulted()]),
        id="TestRevisionDefaulting/with context, in create, expect ESL set",
    ),
    pytest.param(
        rev(enableServiceLinks=True, containers=[{}]),
        with_defaults({"enable-service-links": "true"}),
        rev(containerConcurrency=0, timeoutSeconds=300, containers=[defaulted()], enableServiceLinks=True),
        id="TestRevisionDefaulting/with service spec `true`",
    ),
    pytest.param(
        one_empty_container(),
        with_defaults({"enable-service-links": "true"}, create=True),
        rev(containerConcurrency=0, timeoutSeconds=300, containers=[defaulted()], enableServiceLinks=True),
        id="TestRevisionDefaulting/with service links CM `true`",
    ),
    pytest.param(
        one_empty_container(),
        with_defaults({"enable-service-links": "false"}, create=True),
        rev(containerConcurrency=0, timeoutSeconds=300, containers=[defaulted()], enableServiceLinks=False),
        id="TestRevisionDefaulting/with service links `false`",
    ),
    pytest.param(
        rev(enableServiceLinks=False, containers=[{}]),
        with_defaults({"enable-service-links": "true"}),  # ignored: the spec sets it
        rev(containerConcurrency=0, timeoutSeconds=300, containers=[defaulted()], enableServiceLinks=False),
        id="TestRevisionDefaulting/with service set",
    ),
    pytest.param(
        rev(
            enableServiceLinks=False,
            containers=[{"image": "foo", "volumeMounts": [{"name": "bar"}]}],
            containerConcurrency=1,
            timeoutSeconds=99,
        ),
        None,
        rev(
            enableServiceLinks=False,
            containers=[defaulted(image="foo", volumeMounts=[{"name": "bar", "readOnly": True}])],
            containerConcurrency=1,
            timeoutSeconds=99,
        ),
        id="TestRevisionDefaulting/readonly volumes",
    ),
    pytest.param(
        rev(containers=[{}], timeoutSeconds=0),
        with_defaults({"revision-timeout-seconds": "456"}),
        rev(containerConcurrency=0, timeoutSeconds=456, containers=[defaulted()]),
        id="TestRevisionDefaulting/timeout sets to default when 0 is specified",
    ),
    pytest.param(
        rev(
            containerConcurrency=1,
            timeoutSeconds=99,
            containers=[{"name": "foo", "readinessProbe": tcp_probe("127.0.0.2")}],
        ),
        None,
        rev(
            containerConcurrency=1,
            timeoutSeconds=99,
            containers=[plain("foo", readinessProbe=tcp_probe("127.0.0.2", successThreshold=1))],
        ),
        id="TestRevisionDefaulting/no overwrite",
    ),
    pytest.param(
        rev(containers=[{"readinessProbe": exec_probe()}]),
        None,
        rev(
            **DEFAULTS_SPEC,
            containers=[plain(DEFAULT_USER_CONTAINER_NAME, readinessProbe=exec_probe(successThreshold=1))],
        ),
        id="TestRevisionDefaulting/no overwrite exec",
    ),
    pytest.param(
        # FailureThreshold and TimeoutSeconds missing
        rev(containers=[{"readinessProbe": {"periodSeconds": 10}}]),
        None,
        rev(
            containerConcurrency=DEFAULT_CONTAINER_CONCURRENCY,
            containers=[
                plain(
                    DEFAULT_USER_CONTAINER_NAME,
                    readinessProbe={
                        "failureThreshold": 3,  # the Kubernetes default
                        "tcpSocket": {},
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "timeoutSeconds": 1,  # the Kubernetes default
                    },
                )
            ],
            timeoutSeconds=DEFAULT_REVISION_TIMEOUT_SECONDS,
        ),
        id="TestRevisionDefaulting/apply k8s defaults when period seconds has a non zero value",
    ),
    pytest.param(
        one_empty_container(),
        None,
        rev(**DEFAULTS_SPEC, containers=[defaulted()]),
        id="TestRevisionDefaulting/partially initialized",
    ),
    pytest.param(
        one_empty_container(),
        with_defaults(
            {
                "revision-cpu-request": "100m",
                "revision-memory-request": "200M",
                "revision-ephemeral-storage-request": "300m",
                "revision-cpu-limit": "400M",
                "revision-memory-limit": "500m",
                "revision-ephemeral-storage-limit": "600M",
            }
        ),
        rev(
            **DEFAULTS_SPEC,
            containers=[
                {
                    "name": DEFAULT_USER_CONTAINER_NAME,
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "200M", "ephemeral-storage": "300m"},
                        "limits": {"cpu": "400M", "memory": "500m", "ephemeral-storage": "600M"},
                    },
                    "readinessProbe": default_probe(),
                }
            ],
        ),
        id="TestRevisionDefaulting/with resources from context",
    ),
    pytest.param(
        rev(containers=[{"name": "busybox", "ports": PORT_8888}, {"name": "helloworld"}]),
        None,
        rev(**DEFAULTS_SPEC, containers=[defaulted("busybox", ports=PORT_8888), plain("helloworld")]),
        id="TestRevisionDefaulting/multiple containers",
    ),
    pytest.param(
        rev(
            containers=[
                {"name": ""},
                {"name": "user-container-0", "ports": PORT_8888},
                {"name": "user-container-3"},
                {"name": ""},
                {"name": "user-container-5"},
                {"name": ""},
                {"name": ""},
                {"name": "user-container-4"},
            ]
        ),
        None,
        rev(
            **DEFAULTS_SPEC,
            containers=[
                plain("user-container-1"),
                defaulted("user-container-0", ports=PORT_8888),
                plain("user-container-3"),
                plain("user-container-2"),
                plain("user-container-5"),
                plain("user-container-6"),
                plain("user-container-7"),
                plain("user-container-4"),
            ],
        ),
        id="TestRevisionDefaulting/multiple containers with some names empty",
    ),
    pytest.param(
        rev(containers=[{"name": "user-container-1"}]),
        Context().within_update("fake"),
        rev(containers=[{"name": "user-container-1"}]),
        id="TestRevisionDefaulting/no SetDefaults if update revision",
    ),
    pytest.param(
        rev(
            containers=[{"name": "busybox", "ports": PORT_8888}, {"name": "helloworld"}],
            initContainers=[{"name": "init1"}, {"name": "init2"}],
        ),
        None,
        rev(
            **DEFAULTS_SPEC,
            containers=[defaulted("busybox", ports=PORT_8888), plain("helloworld")],
            initContainers=[{"name": "init1"}, {"name": "init2"}],
        ),
        id="TestRevisionDefaulting/multiple init containers",
    ),
    pytest.param(
        rev(
            containers=[{"name": "busybox", "ports": PORT_8888}, {"name": "helloworld"}],
            initContainers=[{"name": "init1"}, {"name": "init2"}, {"name": ""}, {"name": ""}],
        ),
        None,
        rev(
            **DEFAULTS_SPEC,
            containers=[defaulted("busybox", ports=PORT_8888), plain("helloworld")],
            initContainers=[
                {"name": "init1"},
                {"name": "init2"},
                {"name": "init-container-0"},
                {"name": "init-container-1"},
            ],
        ),
        id="TestRevisionDefaulting/multiple init containers with some names empty",
    ),
    pytest.param(
        rev(
            containers=[{"name": "", "ports": PORT_8888}, {"name": ""}],
            initContainers=[{"name": "init1"}, {"name": "init2"}, {"name": ""}, {"name": ""}],
        ),
        None,
        rev(
            **DEFAULTS_SPEC,
            containers=[defaulted("user-container-0", ports=PORT_8888), plain("user-container-1")],
            initContainers=[
                {"name": "init1"},
                {"name": "init2"},
                {"name": "init-container-0"},
                {"name": "init-container-1"},
            ],
        ),
        id="TestRevisionDefaulting/multiple init and user containers with some names empty",
    ),
    pytest.param(
        rev(
            containers=[{"name": "init-container-0", "ports": PORT_8888}, {"name": "init-container-1"}],
            initContainers=[{"name": "init1"}, {"name": "init2"}, {"name": ""}, {"name": ""}],
        ),
        None,
        rev(
            **DEFAULTS_SPEC,
            containers=[defaulted("init-container-0", ports=PORT_8888), plain("init-container-1")],
            initContainers=[
                {"name": "init1"},
                {"name": "init2"},
                {"name": "init-container-2"},
                {"name": "init-container-3"},
            ],
        ),
        id="TestRevisionDefaulting/multiple init and user containers with some conflicting default names",
    ),
    pytest.param(
        secure_in(),
        with_features({"secure-pod-defaults": "Enabled", "kubernetes.podspec-securitycontext": "Enabled"}),
        secure_want(non_root=True),
        id="TestRevisionDefaulting/Default security context with feature enabled",
    ),
    pytest.param(
        secure_empty_in(),
        with_features({"secure-pod-defaults": "Enabled", "kubernetes.podspec-securitycontext": "Enabled"}),
        secure_empty_want(non_root=True),
        id="TestRevisionDefaulting/Default security context with feature enabled when input securityContext is empty",
    ),
    pytest.param(
        secure_in(),
        with_features({"secure-pod-defaults": "AllowRootBounded"}),
        secure_want(non_root=False),
        id="TestRevisionDefaulting/Default security context with feature set to AllowRootBounded",
    ),
    pytest.param(
        secure_empty_in(),
        with_features({"secure-pod-defaults": "AllowRootBounded", "kubernetes.podspec-securitycontext": "Enabled"}),
        secure_empty_want(non_root=False),
        id="TestRevisionDefaulting/"
        "Default security context with feature set to AllowRootBounded when input securityContext is empty",
    ),
    pytest.param(
        rev(
            containers=[{"name": "user-container", "ports": [{"containerPort": 8080}]}],
            initContainers=[{"name": "init", "securityContext": {}}],
            securityContext={"seccompProfile": {"type": "Unconfined"}},
        ),
        with_features({"secure-pod-defaults": "Enabled"}),
        rev(
            containerConcurrency=DEFAULT_CONTAINER_CONCURRENCY,
            timeoutSeconds=DEFAULT_REVISION_TIMEOUT_SECONDS,
            containers=[
                defaulted(
                    "user-container",
                    ports=[{"containerPort": 8080}],
                    securityContext={
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                )
            ],
            initContainers=[
                {
                    "name": "init",
                    "securityContext": {
                        "runAsNonRoot": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
            securityContext={"seccompProfile": {"type": "Unconfined"}},
        ),
        id="TestRevisionDefaulting/uses pod defaults in security context",
    ),
    pytest.param(
        rev(
            containerConcurrency=1,
            timeoutSeconds=99,
            containers=[{"name": "foo", "readinessProbe": tcp_probe("127.0.0.2")}, {"name": "second"}],
        ),
        None,
        rev(
            containerConcurrency=1,
            timeoutSeconds=99,
            containers=[plain("foo", readinessProbe=tcp_probe("127.0.0.2", successThreshold=1)), plain("second")],
        ),
        id="TestRevisionDefaulting/multiple containers with default probes",
    ),
    pytest.param(
        rev(
            containerConcurrency=1,
            timeoutSeconds=99,
            containers=[
                {"name": "foo", "readinessProbe": tcp_probe("127.0.0.2")},
                {"name": "second", "readinessProbe": tcp_probe("127.0.0.2")},
            ],
        ),
        None,
        rev(
            containerConcurrency=1,
            timeoutSeconds=99,
            containers=[
                plain("foo", readinessProbe=tcp_probe("127.0.0.2", successThreshold=1)),
                plain("second", readinessProbe=tcp_probe("127.0.0.2", successThreshold=1)),
            ],
        ),
        id="TestRevisionDefaulting/multiple containers with probes no override",
    ),
    pytest.param(
        rev(containers=[{"readinessProbe": exec_probe()}, {"readinessProbe": exec_probe()}]),
        None,
        rev(
            **DEFAULTS_SPEC,
            containers=[
                plain(DEFAULT_USER_CONTAINER_NAME + "-0", readinessProbe=exec_probe(successThreshold=1)),
                plain(DEFAULT_USER_CONTAINER_NAME + "-1", readinessProbe=exec_probe(successThreshold=1)),
            ],
        ),
        id="TestRevisionDefaulting/multiple containers with exec probes no override",
    ),
    pytest.param(
        # FailureThreshold and TimeoutSeconds missing
        rev(
            containers=[
                {"ports": [{"containerPort": 8080}], "readinessProbe": {"periodSeconds": 10}},
                {"readinessProbe": {"periodSeconds": 10}},
            ]
        ),
        None,
        rev(
            containerConcurrency=DEFAULT_CONTAINER_CONCURRENCY,
            containers=[
                plain(
                    DEFAULT_USER_CONTAINER_NAME + "-0",
                    ports=[{"containerPort": 8080}],
                    readinessProbe={
                        "failureThreshold": 3,
                        "tcpSocket": {},
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "timeoutSeconds": 1,
                    },
                ),
                plain(
                    DEFAULT_USER_CONTAINER_NAME + "-1",
                    readinessProbe={
                        "failureThreshold": 3,
                        "periodSeconds": 10,
                        "successThreshold": 1,
                        "timeoutSeconds": 1,
                    },
                ),
            ],
            timeoutSeconds=DEFAULT_REVISION_TIMEOUT_SECONDS,
        ),
        id="TestRevisionDefaulting/multiple containers apply k8s defaults when period seconds has a non zero value",
    ),
    pytest.param(
        rev(containers=[{"ports": [{"containerPort": 8080}]}, {}]),
        None,
        rev(
            **DEFAULTS_SPEC,
            containers=[
                defaulted(DEFAULT_USER_CONTAINER_NAME + "-0", ports=[{"containerPort": 8080}]),
                plain(DEFAULT_USER_CONTAINER_NAME + "-1"),  # no readiness probe
            ],
        ),
        id="TestRevisionDefaulting/multiple containers partially initialized",
    ),
]


@pytest.mark.parametrize(("r", "ctx", "want"), REVISION_DEFAULTING)
def test_revision_defaulting(r: dict[str, Any], ctx: Context | None, want: dict[str, Any]) -> None:
    got = copy.deepcopy(r)
    set_revision_defaults(ctx or Context(), got)
    assert got == want


@pytest.mark.parametrize("case", [pytest.param(None, id="TestRevisionDefaultingContainerName")])
def test_revision_defaulting_container_name(case: None) -> None:
    got = rev(containers=[{}, {}], initContainers=[{}, {}])
    set_revision_defaults(Context(), got)
    containers, init_containers = got["spec"]["containers"], got["spec"]["initContainers"]
    # Upstream's check: not both left unnamed.
    assert containers[0].get("name", "") != "" or containers[1].get("name", "") != ""
    assert init_containers[0].get("name", "") != "" or init_containers[1].get("name", "") != ""


# Every upstream case of TestRevisionDefaulting and TestRevisionDefaultingContainerName is ported.
LEFT_OUT: dict[str, str] = {}
