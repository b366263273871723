"""Knative's own Route defaulting tables: pkg/apis/serving/v1/route_defaults_test.go at knative/serving 98e5ef90.

Each case keeps its upstream name as the pytest id; the Go structs are written as the manifests they decode from
(a zero struct is an absent key).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.keys import CREATOR_ANNOTATION, UPDATER_ANNOTATION
from edgeinfer.knative.webhook.route import set_route_defaults

Wrap = Callable[[Context], Context]


def with_default_configuration_name(ctx: Context) -> Context:
    return ctx.with_default_configuration_name()


def route_with_traffic(*traffic: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"traffic": list(traffic)}}


ROUTE_DEFAULTING_CASES = [
    pytest.param({}, {}, None, id="TestRouteDefaulting/empty"),
    pytest.param(
        {},
        route_with_traffic({"percent": 100, "latestRevision": True}),
        with_default_configuration_name,
        id="TestRouteDefaulting/empty w/ default configuration",
    ),
    # A missing percent becomes an explicit 0.
    pytest.param(
        route_with_traffic({"percent": 100, "latestRevision": True}, {"revisionName": "bar"}),
        route_with_traffic(
            {"percent": 100, "latestRevision": True},
            {"revisionName": "bar", "latestRevision": False, "percent": 0},
        ),
        with_default_configuration_name,
        id="TestRouteDefaulting/implied zero percent",
    ),
    # An explicit 0 stays 0.
    pytest.param(
        route_with_traffic({"percent": 100, "latestRevision": True}, {"revisionName": "bar", "percent": 0}),
        route_with_traffic(
            {"percent": 100, "latestRevision": True},
            {"revisionName": "bar", "percent": 0, "latestRevision": False},
        ),
        with_default_configuration_name,
        id="TestRouteDefaulting/explicit zero percent",
    ),
    pytest.param(
        route_with_traffic(
            {"revisionName": "foo", "percent": 12},
            {"revisionName": "bar", "percent": 34},
            {"configurationName": "baz", "percent": 54},
        ),
        route_with_traffic(
            {"revisionName": "foo", "percent": 12, "latestRevision": False},
            {"revisionName": "bar", "percent": 34, "latestRevision": False},
            {"configurationName": "baz", "percent": 54, "latestRevision": True},
        ),
        None,
        id="TestRouteDefaulting/latest revision defaulting",
    ),
]


@pytest.mark.parametrize(("given", "want", "wc"), ROUTE_DEFAULTING_CASES)
def test_route_defaulting(given: dict[str, Any], want: dict[str, Any], wc: Wrap | None) -> None:
    got = copy.deepcopy(given)
    ctx = Context()
    if wc is not None:
        ctx = wc(ctx)
    set_route_defaults(ctx, got)
    assert got == want


U1, U2, U3 = "oveja@knative.dev", "cabra@knative.dev", "vaca@knative.dev"


def with_user_anns(creator: str, updater: str, r: dict[str, Any]) -> dict[str, Any]:
    r.setdefault("metadata", {}).setdefault("annotations", {}).update(
        {CREATOR_ANNOTATION: creator, UPDATER_ANNOTATION: updater}
    )
    return r


ROUTE_USER_INFO_CASES = [
    pytest.param(U1, {}, None, {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1}, id="TestRouteUserInfo/create-new"),
    # Old objects without the annotations get none unless their spec changes.
    pytest.param(U1, {}, {}, {}, id="TestRouteUserInfo/update-no-diff-old-object"),
    pytest.param(
        U2,
        with_user_anns(U1, U1, {}),
        with_user_anns(U1, U1, {}),
        {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U1},
        id="TestRouteUserInfo/update-no-diff-new-object",
    ),
    pytest.param(
        U2,
        route_with_traffic({"configurationName": "new"}),
        route_with_traffic({"configurationName": "old"}),
        {UPDATER_ANNOTATION: U2},
        id="TestRouteUserInfo/update-diff-old-object",
    ),
    pytest.param(
        U3,
        with_user_anns(U1, U2, route_with_traffic({"configurationName": "new"})),
        with_user_anns(U1, U2, route_with_traffic({"configurationName": "old"})),
        {CREATOR_ANNOTATION: U1, UPDATER_ANNOTATION: U3},
        id="TestRouteUserInfo/update-diff-new-object",
    ),
]


@pytest.mark.parametrize(("user", "this", "prev", "want_anns"), ROUTE_USER_INFO_CASES)
def test_route_user_info(
    user: str, this: dict[str, Any], prev: dict[str, Any] | None, want_anns: dict[str, str]
) -> None:
    this, prev = copy.deepcopy(this), copy.deepcopy(prev)
    ctx = Context().with_user_info({"username": user})
    if prev is not None:
        ctx = ctx.within_update(prev)
        set_route_defaults(ctx, prev)
    set_route_defaults(ctx, this)
    # SetUserInfo makes the annotations map even when it writes nothing into it (Go compares a non-nil map).
    assert this["metadata"]["annotations"] == want_anns


LEFT_OUT: dict[str, str] = {}
