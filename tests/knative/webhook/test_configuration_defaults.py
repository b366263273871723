"""Knative's pkg/apis/serving/v1/configuration_defaults_test.go at knative/serving 98e5ef90, case by case."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from edgeinfer.knative.webhook.config import (
    DEFAULT_CONTAINER_CONCURRENCY,
    DEFAULT_REVISION_TIMEOUT_SECONDS,
    DEFAULT_USER_CONTAINER_NAME,
    DEFAULTS_CONFIG_NAME,
    FEATURES_CONFIG_NAME,
    Config,
)
from edgeinfer.knative.webhook.configuration import set_configuration_defaults
from edgeinfer.knative.webhook.context import Context

SOME_TIMEOUT_SECONDS = 400

GROUP_NAME = "serving.knative.dev"
CREATOR_ANNOTATION = GROUP_NAME + "/creator"
UPDATER_ANNOTATION = GROUP_NAME + "/lastModifier"


def default_resources() -> dict[str, Any]:
    """defaultResources of revision_defaults_test.go: empty, non-nil Requests and Limits."""
    return {"requests": {}, "limits": {}}


def default_probe() -> dict[str, Any]:
    """defaultProbe of revision_defaults_test.go."""
    return {"successThreshold": 1, "tcpSocket": {}}


def configuration(rev_spec: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"template": {"spec": rev_spec}}}


def defaulted_container() -> dict[str, Any]:
    return {
        "name": DEFAULT_USER_CONTAINER_NAME,
        "image": "busybox",
        "resources": default_resources(),
        "readinessProbe": default_probe(),
    }


def default_configuration_context_with_store(data_by_name: dict[str, dict[str, str] | None]) -> Context:
    """defaultConfigurationContextWithStore: the configuration reconciler's store, given these ConfigMaps."""
    return Context().with_config(Config.from_configmaps(data_by_name))


# --- TestConfigurationDefaulting ---------------------------------------------------------------------------

CONFIGURATION_DEFAULTING = [
    pytest.param(
        None,
        {},
        configuration(
            {"timeoutSeconds": DEFAULT_REVISION_TIMEOUT_SECONDS, "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY}
        ),
        id="TestConfigurationDefaulting/empty",
    ),
    pytest.param(
        None,
        configuration({"containers": [{"image": "busybox"}]}),
        configuration(
            {
                "containers": [defaulted_container()],
                "timeoutSeconds": DEFAULT_REVISION_TIMEOUT_SECONDS,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            }
        ),
        id="TestConfigurationDefaulting/run latest, not create",
    ),
    pytest.param(
        Context().within_create(),
        configuration({"containers": [{"image": "busybox"}]}),
        configuration(
            {
                "enableServiceLinks": False,
                "containers": [defaulted_container()],
                "timeoutSeconds": DEFAULT_REVISION_TIMEOUT_SECONDS,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            }
        ),
        id="TestConfigurationDefaulting/run latest, create",
    ),
    pytest.param(
        None,
        configuration(
            {
                "enableServiceLinks": True,
                "containers": [{"image": "busybox"}],
                "timeoutSeconds": 60,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            }
        ),
        configuration(
            {
                "enableServiceLinks": True,
                "containers": [defaulted_container()],
                "timeoutSeconds": 60,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            }
        ),
        id="TestConfigurationDefaulting/run latest with some default overrides",
    ),
    pytest.param(
        default_configuration_context_with_store(
            {
                FEATURES_CONFIG_NAME: None,
                DEFAULTS_CONFIG_NAME: {
                    "revision-timeout-seconds": str(SOME_TIMEOUT_SECONDS),
                    "revision-response-start-timeout-seconds": str(SOME_TIMEOUT_SECONDS),
                    "revision-idle-timeout-seconds": str(SOME_TIMEOUT_SECONDS),
                },
            }
        ),
        configuration(
            {
                "enableServiceLinks": True,
                "containers": [{"image": "busybox"}],
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            }
        ),
        configuration(
            {
                "enableServiceLinks": True,
                "containers": [defaulted_container()],
                "timeoutSeconds": SOME_TIMEOUT_SECONDS,
                "containerConcurrency": DEFAULT_CONTAINER_CONCURRENCY,
            }
        ),
        id="TestConfigurationDefaulting/run latest with identical timeout defaults",
    ),
]


@pytest.mark.parametrize(("ctx", "given", "want"), CONFIGURATION_DEFAULTING)
def test_configuration_defaulting(ctx: Context | None, given: dict[str, Any], want: dict[str, Any]) -> None:
    got = given
    set_configuration_defaults(ctx if ctx is not None else Context(), got)
    assert got == want


# --- TestBYORevisionName -----------------------------------------------------------------------------------


def test_byo_revision_name() -> None:
    """TestBYORevisionName: an update keeping a chosen revision name is not defaulted; a create is."""
    new: dict[str, Any] = {
        "metadata": {"name": "thing", "annotations": {"annotated": "yes"}},
        "spec": {
            "template": {
                "metadata": {"name": "thing-2022"},
                "spec": {"containers": [{"image": "busybox"}]},
            }
        },
    }
    old = copy.deepcopy(new)
    old["metadata"]["annotations"] = {}
    want = copy.deepcopy(new)

    ctx = Context().within_update(old)
    set_configuration_defaults(ctx, new)
    assert new == want

    set_configuration_defaults(Context(), new)
    assert new != want


# --- TestConfigurationUserInfo -----------------------------------------------------------------------------

U1 = "oveja@knative.dev"
U2 = "cabra@knative.dev"
U3 = "vaca@knative.dev"


def with_user_anns(u1: str, u2: str, c: dict[str, Any]) -> dict[str, Any]:
    """withUserAnns."""
    annotations = c.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[CREATOR_ANNOTATION] = u1
    annotations[UPDATER_ANNOTATION] = u2
    return c


USER_INFO = [
    pytest.param(
        U1,
        {},
        None,
        {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1},
        id="TestConfigurationUserInfo/create-new",
    ),
    # Old objects don't have the annotation, and unless there's a change in data they won't get it.
    pytest.param(U1, {}, {}, {}, id="TestConfigurationUserInfo/update-no-diff-old-object"),
    pytest.param(
        U2,
        with_user_anns(U1, U1, {}),
        with_user_anns(U1, U1, {}),
        {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1},
        id="TestConfigurationUserInfo/update-no-diff-new-object",
    ),
    pytest.param(
        U2,
        configuration({"containerConcurrency": 1}),
        configuration({"containerConcurrency": 2}),
        {UPDATER_ANNOTATION: U2},
        id="TestConfigurationUserInfo/update-diff-old-object",
    ),
    pytest.param(
        U3,
        with_user_anns(U1, U2, configuration({"containerConcurrency": 1})),
        with_user_anns(U1, U2, configuration({"containerConcurrency": 2})),
        {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U3},
        id="TestConfigurationUserInfo/update-diff-new-object",
    ),
]


@pytest.mark.parametrize(("user", "this", "prev", "want_anns"), USER_INFO)
def test_configuration_user_info(
    user: str, this: dict[str, Any], prev: dict[str, Any] | None, want_anns: dict[str, str]
) -> None:
    this, prev = copy.deepcopy(this), copy.deepcopy(prev)
    ctx = Context().with_user_info({"username": user})
    if prev is not None:
        ctx = ctx.within_update(prev)
        set_configuration_defaults(ctx, prev)
    set_configuration_defaults(ctx, this)
    assert this.get("metadata", {}).get("annotations") == want_anns


LEFT_OUT: dict[str, str] = {}
