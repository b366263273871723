"""Knative's own autoscaling annotation table: TestValidateAnnotations of
pkg/apis/autoscaling/annotation_validation_test.go at knative/serving 98e5ef90.

Upstream compares `ValidateAnnotations(...).Error()` with an expected string; so do these cases.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from edgeinfer.knative.webhook.autoscaling import validate_annotations
from edgeinfer.knative.webhook.config import Autoscaler
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.keys import (
    ACTIVATION_SCALE_KEY,
    CLASS_ANNOTATION_KEY,
    CONCURRENCY,
    CPU,
    HPA,
    INITIAL_SCALE_ANNOTATION_KEY,
    KPA,
    MAX_SCALE_ANNOTATION_KEY,
    METRIC_AGGREGATION_ALGORITHM_KEY,
    METRIC_AGGREGATION_ALGORITHM_LINEAR,
    METRIC_ANNOTATION_KEY,
    MIN_SCALE_ANNOTATION_KEY,
    PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY,
    PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY,
    RPS,
    SCALE_DOWN_DELAY_ANNOTATION_KEY,
    SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY,
    TARGET_ANNOTATION_KEY,
    TARGET_BURST_CAPACITY_KEY,
    TARGET_UTILIZATION_PERCENTAGE_KEY,
    WINDOW_ANNOTATION_KEY,
)


def zero_autoscaler(**fields: Any) -> Autoscaler:
    """A Go &autoscalerconfig.Config{...} literal: every field not named is its zero value."""
    zeros = {f.name: type(getattr(Autoscaler(), f.name))(0) for f in dataclasses.fields(Autoscaler)}
    zeros["pod_autoscaler_class"] = ""
    return dataclasses.replace(Autoscaler(), **{**zeros, **fields})


def default_config(**changes: Any) -> Autoscaler:
    """defaultConfig() of the Go test, then its configMutator."""
    base = {"allow_zero_initial_scale": False, "max_scale_limit": 0, "pod_autoscaler_class": KPA}
    return zero_autoscaler(**{**base, **changes})


def case(name: str, annotations: dict[str, str] | None, expect_err: str = "", **config: Any) -> Any:
    return pytest.param(annotations, expect_err, config, id=f"TestValidateAnnotations/{name}")


CASES = [
    case("nil annotations", None),
    case("empty annotations", {}),
    case(
        "invalid class",
        {CLASS_ANNOTATION_KEY: "unsupported.knative.dev"},
        "invalid value: unsupported.knative.dev: " + CLASS_ANNOTATION_KEY,
    ),
    case("non-knative.dev domain class", {CLASS_ANNOTATION_KEY: "some.other.domain"}),
    case("minScale is 0", {MIN_SCALE_ANNOTATION_KEY: "0"}),
    case("maxScale is 0", {MAX_SCALE_ANNOTATION_KEY: "0"}),
    case(
        "minScale is -1",
        {MIN_SCALE_ANNOTATION_KEY: "-1"},
        "expected 0 <= -1 <= 2147483647: " + MIN_SCALE_ANNOTATION_KEY,
    ),
    case(
        "maxScale is huuuuuuuge",
        {MAX_SCALE_ANNOTATION_KEY: "2147483648"},
        "expected 0 <= 2147483648 <= 2147483647: " + MAX_SCALE_ANNOTATION_KEY,
    ),
    case(
        "maxScale is -1",
        {MAX_SCALE_ANNOTATION_KEY: "-1"},
        "expected 0 <= -1 <= 2147483647: " + MAX_SCALE_ANNOTATION_KEY,
    ),
    case("minScale is foo", {MIN_SCALE_ANNOTATION_KEY: "foo"}, "invalid value: foo: " + MIN_SCALE_ANNOTATION_KEY),
    case("maxScale is bar", {MAX_SCALE_ANNOTATION_KEY: "bar"}, "invalid value: bar: " + MAX_SCALE_ANNOTATION_KEY),
    case(
        "max/minScale is bar",
        {MAX_SCALE_ANNOTATION_KEY: "bar", MIN_SCALE_ANNOTATION_KEY: "bar"},
        "invalid value: bar: " + MAX_SCALE_ANNOTATION_KEY + ", " + MIN_SCALE_ANNOTATION_KEY,
    ),
    case("minScale is 5", {MIN_SCALE_ANNOTATION_KEY: "5"}),
    case("maxScale is 2", {MAX_SCALE_ANNOTATION_KEY: "2"}),
    case("minScale is 2, maxScale is 5", {MIN_SCALE_ANNOTATION_KEY: "2", MAX_SCALE_ANNOTATION_KEY: "5"}),
    case(
        "minScale is 5, maxScale is 2",
        {MIN_SCALE_ANNOTATION_KEY: "5", MAX_SCALE_ANNOTATION_KEY: "2"},
        "max-scale=2 is less than min-scale=5: " + MAX_SCALE_ANNOTATION_KEY + ", " + MIN_SCALE_ANNOTATION_KEY,
    ),
    case("minScale is 0, maxScale is 0", {MIN_SCALE_ANNOTATION_KEY: "0", MAX_SCALE_ANNOTATION_KEY: "0"}),
    case(
        "maxScale is greater than MaxScaleLimit when in create",
        {MAX_SCALE_ANNOTATION_KEY: "11"},
        "expected 1 <= 11 <= 10: " + MAX_SCALE_ANNOTATION_KEY,
        max_scale_limit=10,
    ),
    case(
        "maxScale is greater than MaxScaleLimit when in create and default MaxScale is set",
        {MAX_SCALE_ANNOTATION_KEY: "20"},
        "expected 1 <= 20 <= 10: " + MAX_SCALE_ANNOTATION_KEY,
        max_scale_limit=10,
        max_scale=11,
    ),
    case(
        "maxScale is explicitly set to 0 when MaxScaleLimit and default MaxScale are set",
        {MAX_SCALE_ANNOTATION_KEY: "0"},
        "max-scale=0 (unlimited), must be less than 10: " + MAX_SCALE_ANNOTATION_KEY,
        max_scale_limit=10,
        max_scale=1,
    ),
    case(
        "maxScale is not set when both MaxScaleLimit and default MaxScale are set",
        None,
        max_scale_limit=10,
        max_scale=11,
    ),
    case("maxScale is less than MaxScaleLimit", {MAX_SCALE_ANNOTATION_KEY: "9"}, max_scale_limit=10),
    case(
        "min-scale, activation-scale, max-scale all set appropriately",
        {MIN_SCALE_ANNOTATION_KEY: "1", ACTIVATION_SCALE_KEY: "2", MAX_SCALE_ANNOTATION_KEY: "3"},
    ),
    case(
        "min-scale is greater than activation-scale",
        {MIN_SCALE_ANNOTATION_KEY: "3", ACTIVATION_SCALE_KEY: "2"},
        "min-scale=3 is greater than activation-scale=2: " + ACTIVATION_SCALE_KEY,
    ),
    case(
        "max-scale is less than activation-scale",
        {MAX_SCALE_ANNOTATION_KEY: "1", ACTIVATION_SCALE_KEY: "2"},
        "max-scale=1 is less than activation-scale=2: " + ACTIVATION_SCALE_KEY,
    ),
    case(
        "valid algorithm on KPA",
        {METRIC_AGGREGATION_ALGORITHM_KEY: METRIC_AGGREGATION_ALGORITHM_LINEAR, CLASS_ANNOTATION_KEY: KPA},
    ),
    case("empty algorithm", {METRIC_AGGREGATION_ALGORITHM_KEY: "", CLASS_ANNOTATION_KEY: KPA}),
    case(
        "random algorithm on KPA",
        {METRIC_AGGREGATION_ALGORITHM_KEY: "random-selection", CLASS_ANNOTATION_KEY: KPA},
        "invalid value: random-selection: " + METRIC_AGGREGATION_ALGORITHM_KEY,
    ),
    case(
        "random algorithm on non KPA",
        {METRIC_AGGREGATION_ALGORITHM_KEY: "random-selection", CLASS_ANNOTATION_KEY: "of-keys"},
    ),
    case(
        "panic window percentage bad",
        {PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY: "-1"},
        "expected 1 <= -1 <= 100: " + PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY,
    ),
    case(
        "panic window percentage bad2",
        {PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY: "202"},
        "expected 1 <= 202 <= 100: " + PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY,
    ),
    case(
        "panic window percentage bad3",
        {PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY: "fifty"},
        "invalid value: fifty: " + PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY,
    ),
    case("panic window percentage good", {PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY: "210"}),
    case(
        "panic threshold percentage bad2",
        {PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY: "109"},
        "expected 110 <= 109 <= 1000: " + PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY,
    ),
    case(
        "panic threshold percentage bad2.5",
        {PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY: "10009"},
        "expected 110 <= 10009 <= 1000: " + PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY,
    ),
    case(
        "panic threshold percentage bad3",
        {PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY: "fifty"},
        "invalid value: fifty: " + PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY,
    ),
    case(
        "target negative",
        {TARGET_ANNOTATION_KEY: "-11"},
        "target -11 should be at least 0.01: " + TARGET_ANNOTATION_KEY,
    ),
    case("target 0", {TARGET_ANNOTATION_KEY: "0"}, "target 0 should be at least 0.01: " + TARGET_ANNOTATION_KEY),
    # An unnamed case `{}` (nil annotations, no error); Go's t.Run names it "#00".
    case("#00", None),
    case("invalid target", {TARGET_ANNOTATION_KEY: "100}"}, "invalid value: 100}: " + TARGET_ANNOTATION_KEY),
    case("target okay", {TARGET_ANNOTATION_KEY: "11"}),
    case("TBC negative", {TARGET_BURST_CAPACITY_KEY: "-11"}, "invalid value: -11: " + TARGET_BURST_CAPACITY_KEY),
    case("TBC 0", {TARGET_BURST_CAPACITY_KEY: "0"}),
    case("TBC 19880709", {TARGET_BURST_CAPACITY_KEY: "19870709"}),
    case("TBC -1", {TARGET_BURST_CAPACITY_KEY: "-1"}),
    case(
        "TBC invalid", {TARGET_BURST_CAPACITY_KEY: "qarashen"}, "invalid value: qarashen: " + TARGET_BURST_CAPACITY_KEY
    ),
    case(
        "TU too small",
        {TARGET_UTILIZATION_PERCENTAGE_KEY: "0"},
        "expected 1 <= 0 <= 100: " + TARGET_UTILIZATION_PERCENTAGE_KEY,
    ),
    case(
        "TU too big",
        {TARGET_UTILIZATION_PERCENTAGE_KEY: "101"},
        "expected 1 <= 101 <= 100: " + TARGET_UTILIZATION_PERCENTAGE_KEY,
    ),
    case(
        "TU invalid",
        {TARGET_UTILIZATION_PERCENTAGE_KEY: "dghyak"},
        "invalid value: dghyak: " + TARGET_UTILIZATION_PERCENTAGE_KEY,
    ),
    case(
        "window invalid",
        {WINDOW_ANNOTATION_KEY: "jerry-was-a-racecar-driver"},
        "invalid value: jerry-was-a-racecar-driver: " + WINDOW_ANNOTATION_KEY,
    ),
    case("window too short", {WINDOW_ANNOTATION_KEY: "1s"}, "expected 6s <= 1s <= 1h0m0s: " + WINDOW_ANNOTATION_KEY),
    case("window too long", {WINDOW_ANNOTATION_KEY: "365h"}, "expected 6s <= 365h <= 1h0m0s: " + WINDOW_ANNOTATION_KEY),
    case(
        "window too precise",
        {WINDOW_ANNOTATION_KEY: "1m9s82ms"},
        "must be specified with at most second precision: " + WINDOW_ANNOTATION_KEY,
    ),
    case("annotation /window is valid for class KPA", {WINDOW_ANNOTATION_KEY: "7s", CLASS_ANNOTATION_KEY: KPA}, ""),
    case(
        "annotation /window is valid for other than HPA and KPA class",
        {WINDOW_ANNOTATION_KEY: "7s", CLASS_ANNOTATION_KEY: "test"},
        "",
    ),
    case(
        "value too long and valid class for /window annotation",
        {WINDOW_ANNOTATION_KEY: "365h", CLASS_ANNOTATION_KEY: KPA},
        "expected 6s <= 365h <= 1h0m0s: " + WINDOW_ANNOTATION_KEY,
    ),
    case(
        "invalid format and valid class for /window annotation",
        {WINDOW_ANNOTATION_KEY: "jerry-was-a-racecar-driver", CLASS_ANNOTATION_KEY: KPA},
        "invalid value: jerry-was-a-racecar-driver: " + WINDOW_ANNOTATION_KEY,
    ),
    case("valid 0 last pod scaledown timeout", {SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY: "0"}),
    case("valid positive last pod scaledown timeout", {SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY: "21m31s"}),
    case(
        "invalid positive last pod scaledown timeout",
        {SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY: "311m"},
        "expected 0s <= 311m <= 1h0m0s: " + SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY,
    ),
    case(
        "invalid negative last pod scaledown timeout",
        {SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY: "-42s"},
        "expected 0s <= -42s <= 1h0m0s: " + SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY,
    ),
    case(
        "invalid last pod scaledown timeout",
        {SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY: "twenty-two-minutes-and-five-seconds"},
        "invalid value: twenty-two-minutes-and-five-seconds: " + SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY,
    ),
    case("valid 0 scale down delay", {SCALE_DOWN_DELAY_ANNOTATION_KEY: "0"}),
    case("valid positive scale down delay", {SCALE_DOWN_DELAY_ANNOTATION_KEY: "21m31s"}),
    case(
        "invalid positive scale down delay",
        {SCALE_DOWN_DELAY_ANNOTATION_KEY: "311m"},
        "expected 0s <= 311m <= 1h0m0s: " + SCALE_DOWN_DELAY_ANNOTATION_KEY,
    ),
    case(
        "invalid positive scale down delay - too precise",
        {SCALE_DOWN_DELAY_ANNOTATION_KEY: "42.5s"},
        "must be specified with at most second precision: " + SCALE_DOWN_DELAY_ANNOTATION_KEY,
    ),
    case(
        "invalid negative scale down delay",
        {SCALE_DOWN_DELAY_ANNOTATION_KEY: "-42s"},
        "expected 0s <= -42s <= 1h0m0s: " + SCALE_DOWN_DELAY_ANNOTATION_KEY,
    ),
    case(
        "invalid scale down delay",
        {SCALE_DOWN_DELAY_ANNOTATION_KEY: "twenty-two-minutes-and-five-seconds"},
        "invalid value: twenty-two-minutes-and-five-seconds: " + SCALE_DOWN_DELAY_ANNOTATION_KEY,
    ),
    case(
        "all together now fail",
        {
            PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY: "fifty",
            PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY: "-11",
            MIN_SCALE_ANNOTATION_KEY: "-4",
            MAX_SCALE_ANNOTATION_KEY: "never",
        },
        "expected 0 <= -4 <= 2147483647: "
        + MIN_SCALE_ANNOTATION_KEY
        + "\nexpected 1 <= -11 <= 100: "
        + PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY
        + "\ninvalid value: fifty: "
        + PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY
        + "\ninvalid value: never: "
        + MAX_SCALE_ANNOTATION_KEY,
    ),
    case(
        "all together now, succeed",
        {
            PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY: "125",
            PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY: "75",
            MIN_SCALE_ANNOTATION_KEY: "5",
            MAX_SCALE_ANNOTATION_KEY: "8",
            WINDOW_ANNOTATION_KEY: "1984s",
        },
    ),
    case(
        "invalid metric for default class(KPA)",
        {METRIC_ANNOTATION_KEY: CPU},
        "invalid value: cpu: " + METRIC_ANNOTATION_KEY,
    ),
    case(
        "invalid metric for HPA class",
        {METRIC_ANNOTATION_KEY: "", CLASS_ANNOTATION_KEY: HPA},
        "invalid value: : " + METRIC_ANNOTATION_KEY,
    ),
    case("valid class KPA with metric RPS", {METRIC_ANNOTATION_KEY: RPS}),
    case("valid class KPA with metric Concurrency", {METRIC_ANNOTATION_KEY: CONCURRENCY}),
    case("valid class HPA with metric CPU", {CLASS_ANNOTATION_KEY: HPA, METRIC_ANNOTATION_KEY: CPU}),
    case("other than HPA and KPA class", {CLASS_ANNOTATION_KEY: "other", METRIC_ANNOTATION_KEY: RPS}),
    case(
        "initial scale is zero but cluster doesn't allow",
        {INITIAL_SCALE_ANNOTATION_KEY: "0"},
        "invalid value: 0: " + INITIAL_SCALE_ANNOTATION_KEY + "=0 not allowed by cluster",
    ),
    case("valid global class HPA with metric CPU", {METRIC_ANNOTATION_KEY: CPU}, pod_autoscaler_class=HPA),
    case(
        "initial scale is zero and cluster allows", {INITIAL_SCALE_ANNOTATION_KEY: "0"}, allow_zero_initial_scale=True
    ),
    case("initial scale is greater than 0", {INITIAL_SCALE_ANNOTATION_KEY: "2"}),
    case(
        "initial scale is less than 0",
        {INITIAL_SCALE_ANNOTATION_KEY: "-1"},
        "invalid value: -1: " + INITIAL_SCALE_ANNOTATION_KEY + " must be greater than 0",
    ),
    case(
        "initial scale non-parseable",
        {INITIAL_SCALE_ANNOTATION_KEY: "invalid"},
        "invalid value: invalid: autoscaling.knative.dev/initial-scale",
    ),
]


@pytest.mark.parametrize(("annotations", "expect_err", "config"), CASES)
def test_validate_annotations(annotations: dict[str, str] | None, expect_err: str, config: dict[str, Any]) -> None:
    got = validate_annotations(Context(), default_config(**config), annotations)
    assert str(got) == expect_err


# Every case of TestValidateAnnotations is ported.
LEFT_OUT: dict[str, str] = {}
