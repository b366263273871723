"""Knative's own Service defaulting tables: pkg/apis/serving/v1/service_defaults_test.go at knative/serving 98e5ef90.

Each case keeps its upstream name as the pytest id; the Go structs are written as the manifests they decode from
(a zero struct is an absent key; revision_defaults_test.go's defaultResources and defaultProbe as the port writes
them: empty requests and limits maps, a TCP socket probe on the default port).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edgeinfer.knative.webhook.config import (
    DEFAULT_CONTAINER_CONCURRENCY,
    DEFAULT_REVISION_TIMEOUT_SECONDS,
    DEFAULT_USER_CONTAINER_NAME,
)
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.keys import CREATOR_ANNOTATION, UPDATER_ANNOTATION
from edgeinfer.knative.webhook.service import set_service_defaults


def default_resources() -> dict[str, Any]:
    return {"requests": {}, "limits": {}}


def default_probe() -> dict[str, Any]:
    return {"successThreshold": 1, "tcpSocket": {}}


def defaulted_container(image: str) -> dict[str, Any]:
    return {
        "name": DEFAULT_USER_CONTAINER_NAME,
        "image": image,
        "resources": default_resources(),
        "readinessProbe": default_probe(),
    }


def latest_traffic() -> list[dict[str, Any]]:
    return [{"percent": 100, "latestRevision": True}]


def svc(template_spec: dict[str, Any], traffic: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"spec": template_spec}}
    if traffic is not None:
        spec["traffic"] = traffic
    return {"spec": spec}


SERVICE_DEFAULTING_CASES = [
    pytest.param(
        {},
        None,
        svc(
            {"timeoutSeconds": DEFAULT_REVISION_TIMEOUT_SECONDS, "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY},
            latest_traffic(),
        ),
        id="TestServiceDefaulting/empty",
    ),
    pytest.param(
        svc({"containers": [{"image": "busybox"}]}),
        Context().within_create(),
        svc(
            {
                "enableServiceLinks": False,
                "containers": [defaulted_container("busybox")],
                "timeoutSeconds": DEFAULT_REVISION_TIMEOUT_SECONDS,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            },
            latest_traffic(),
        ),
        id="TestServiceDefaulting/run latest, in create",
    ),
    pytest.param(
        svc({"containers": [{"image": "busybox"}]}),
        None,
        svc(
            {
                "containers": [defaulted_container("busybox")],
                "timeoutSeconds": DEFAULT_REVISION_TIMEOUT_SECONDS,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            },
            latest_traffic(),
        ),
        id="TestServiceDefaulting/run latest",
    ),
    pytest.param(
        svc(
            {
                "enableServiceLinks": True,
                "containers": [{"image": "busybox"}],
                "timeoutSeconds": 60,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            }
        ),
        None,
        svc(
            {
                "containers": [defaulted_container("busybox")],
                "enableServiceLinks": True,
                "timeoutSeconds": 60,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            },
            latest_traffic(),
        ),
        id="TestServiceDefaulting/run latest with some default overrides",
    ),
    pytest.param(
        svc(
            {"containers": [{"image": "busybox"}]},
            [
                {"tag": "current", "revisionName": "foo", "percent": 90},
                {"tag": "candidate", "revisionName": "bar", "percent": 10},
                {"tag": "latest"},
            ],
        ),
        None,
        svc(
            {
                "containers": [defaulted_container("busybox")],
                "timeoutSeconds": DEFAULT_REVISION_TIMEOUT_SECONDS,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            },
            [
                {"tag": "current", "revisionName": "foo", "percent": 90, "latestRevision": False},
                {"tag": "candidate", "revisionName": "bar", "percent": 10, "latestRevision": False},
                {"tag": "latest", "percent": 0, "latestRevision": True},
            ],
        ),
        id="TestServiceDefaulting/byo traffic block",
    ),
]


@pytest.mark.parametrize(("given", "ctx", "want"), SERVICE_DEFAULTING_CASES)
def test_service_defaulting(given: dict[str, Any], ctx: Context | None, want: dict[str, Any]) -> None:
    got = copy.deepcopy(given)
    set_service_defaults(ctx if ctx is not None else Context(), got)
    assert got == want


U1, U2, U3 = "oveja@knative.dev", "cabra@knative.dev", "vaca@knative.dev"


def with_user_anns(creator: str, updater: str, s: dict[str, Any]) -> dict[str, Any]:
    s.setdefault("metadata", {}).setdefault("annotations", {}).update(
        {CREATOR_ANNOTATION: creator, UPDATER_ANNOTATION: updater}
    )
    return s


def with_container_concurrency(cc: int) -> dict[str, Any]:
    return svc({"containerConcurrency": cc})


ANNOTATE_USER_INFO_CASES = [
    pytest.param(U1, {}, None, {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}, id="TestAnnotateUserInfo/create-new"),
    # Old objects without the annotations get none unless their spec changes.
    pytest.param(U1, {}, {}, {}, id="TestAnnotateUserInfo/update-no-diff-old-object"),
    pytest.param(
        U2,
        with_user_anns(U1, U1, {}),
        with_user_anns(U1, U1, {}),
        {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1},
        id="TestAnnotateUserInfo/update-no-diff-new-object",
    ),
    pytest.param(
        U2,
        with_container_concurrency(1),
        with_container_concurrency(2),
        {UPDATER_ANNOTATION: U2},
        id="TestAnnotateUserInfo/update-diff-old-object",
    ),
    pytest.param(
        U3,
        with_user_anns(U1, U2, with_container_concurrency(1)),
        with_user_anns(U1, U2, with_container_concurrency(2)),
        {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U3},
        id="TestAnnotateUserInfo/update-diff-new-object",
    ),
]


@pytest.mark.parametrize(("user", "this", "prev", "want_anns"), ANNOTATE_USER_INFO_CASES)
def test_annotate_user_info(
    user: str, this: dict[str, Any], prev: dict[str, Any] | None, want_anns: dict[str, str]
) -> None:
    this, prev = copy.deepcopy(this), copy.deepcopy(prev)
    ctx = Context().with_user_info({"username": user})
    if prev is not None:
        ctx = ctx.within_update(prev)
        set_service_defaults(ctx, prev)
    set_service_defaults(ctx, this)
    # SetUserInfo makes the annotations map even when it writes nothing into it (Go compares a non-nil map).
    assert this["metadata"]["annotations"] == want_anns


LEFT_OUT: dict[str, str] = {}
