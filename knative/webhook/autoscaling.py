"""The autoscaling annotations' checks: pkg/apis/autoscaling/annotation_validation.go of knative/serving 98e5ef90.

ValidateAnnotations reads the annotations of a Revision template (class, min/max/activation scale, window,
targets, delays...) with their deprecated spellings (kmap.KeyPriority), against config-autoscaler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeinfer.knative.webhook import keys
from edgeinfer.knative.webhook.config import Autoscaler
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import (
    NIL,
    FieldError,
    err_generic,
    err_invalid_value,
    err_out_of_bounds_value,
)
from edgeinfer.knative.webhook.go import SECOND, Duration, DurationError, parse_duration, sprint
from edgeinfer.knative.webhook.strconv import NumError, NumErrorKind, atoi, parse_float, parse_int

_DOMAIN = ".knative.dev"
_MAX_INT32 = 2**31 - 1
_MAX_DURATION = 2**63 - 1
_MIN_DURATION = -(2**63)

Annotations = Mapping[str, Any] | None


def round_duration(d: int, m: int) -> int:
    """time.Duration.Round: halves away from zero, saturating at the int64 bounds as Go does."""
    if m <= 0:
        return d
    r = abs(d) % m  # Go's d % m has d's sign; its magnitude is this
    if d < 0:
        if r + r < m:
            return d + r
        result = d - m + r
        return result if result >= _MIN_DURATION else _MIN_DURATION
    if r + r < m:
        return d - r
    result = d + m - r
    return result if result <= _MAX_DURATION else _MAX_DURATION


def truncate_duration(d: int, m: int) -> int:
    """time.Duration.Truncate: toward zero."""
    if m <= 0:
        return d
    r = abs(d) % m
    return d - r if d >= 0 else d + r


def _get_int_ge0(m: Annotations, key: keys.KeyPriority) -> tuple[int, FieldError]:
    k, v, ok = keys.get_key(m, key)
    if not ok:
        return 0, NIL
    # Parsing as uint would give a bad-format error rather than the range one.
    try:
        i = parse_int(v, 32)
    except NumError as error:
        if error.kind is NumErrorKind.RANGE:
            return 0, err_out_of_bounds_value(v, 0, _MAX_INT32, k)
        return 0, err_invalid_value(v, k)
    if i < 0:
        return 0, err_out_of_bounds_value(v, 0, _MAX_INT32, k)
    return i, NIL


def validate_annotations(ctx: Context, config: Autoscaler, annotations: Annotations) -> FieldError:
    """ValidateAnnotations: the autoscaling annotations, in Go's order."""
    return (
        _validate_class(annotations)
        .also(_validate_min_max_scale(config, annotations))
        .also(_validate_floats(annotations))
        .also(_validate_window(annotations))
        .also(_validate_last_pod_retention(annotations))
        .also(_validate_scale_down_delay(annotations))
        .also(_validate_metric(config, annotations))
        .also(_validate_algorithm(annotations))
        .also(_validate_initial_scale(config, annotations))
    )


def _validate_class(m: Annotations) -> FieldError:
    k, v, ok = keys.get_key(m, keys.CLASS_ANNOTATION)
    if ok and v.endswith(_DOMAIN) and v not in (keys.KPA, keys.HPA):
        return err_invalid_value(v, k)
    return NIL


def _validate_algorithm(m: Annotations) -> FieldError:
    # Not a KPA? Custom autoscalers may have custom values.
    if keys.get_key(m, keys.CLASS_ANNOTATION)[1] != keys.KPA:
        return NIL
    k, v, _ = keys.get_key(m, keys.METRIC_AGGREGATION_ALGORITHM_ANNOTATION)
    if v and v not in (
        keys.METRIC_AGGREGATION_ALGORITHM_LINEAR,
        keys.METRIC_AGGREGATION_ALGORITHM_WEIGHTED_EXPONENTIAL,
        keys.METRIC_AGGREGATION_ALGORITHM_WEIGHTED_EXPONENTIAL_ALT,
    ):
        return err_invalid_value(v, k)
    return NIL


def _float_or_none(v: str) -> float | None:
    try:
        return parse_float(v)
    except NumError:
        return None


def _validate_floats(m: Annotations) -> FieldError:
    errs = NIL
    k, v, ok = keys.get_key(m, keys.PANIC_WINDOW_PERCENTAGE_ANNOTATION)
    if ok:
        fv = _float_or_none(v)
        if fv is None:
            errs = errs.also(err_invalid_value(v, k))
        elif fv < keys.PANIC_WINDOW_PERCENTAGE_MIN or fv > keys.PANIC_WINDOW_PERCENTAGE_MAX:
            # Go assigns here rather than appending; nothing is in errs yet, so the two agree.
            errs = err_out_of_bounds_value(v, keys.PANIC_WINDOW_PERCENTAGE_MIN, keys.PANIC_WINDOW_PERCENTAGE_MAX, k)
    k, v, ok = keys.get_key(m, keys.PANIC_THRESHOLD_PERCENTAGE_ANNOTATION)
    if ok:
        fv = _float_or_none(v)
        if fv is None:
            errs = errs.also(err_invalid_value(v, k))
        elif fv < keys.PANIC_THRESHOLD_PERCENTAGE_MIN or fv > keys.PANIC_THRESHOLD_PERCENTAGE_MAX:
            errs = errs.also(
                err_out_of_bounds_value(v, keys.PANIC_THRESHOLD_PERCENTAGE_MIN, keys.PANIC_THRESHOLD_PERCENTAGE_MAX, k)
            )
    k, v, ok = keys.get_key(m, keys.TARGET_ANNOTATION)
    if ok:
        fv = _float_or_none(v)
        if fv is None:
            errs = errs.also(err_invalid_value(v, k))
        elif fv < keys.TARGET_MIN:
            errs = errs.also(err_generic(f"target {v} should be at least {sprint(keys.TARGET_MIN)}", k))
    k, v, ok = keys.get_key(m, keys.TARGET_UTILIZATION_PERCENTAGE_ANNOTATION)
    if ok:
        fv = _float_or_none(v)
        if fv is None:
            errs = errs.also(err_invalid_value(v, k))
        elif fv < 1 or fv > 100:
            errs = errs.also(err_out_of_bounds_value(v, 1, 100, k))
    k, v, ok = keys.get_key(m, keys.TARGET_BURST_CAPACITY_ANNOTATION)
    if ok:
        fv = _float_or_none(v)
        if fv is None or (fv < 0 and fv != -1):
            errs = errs.also(err_invalid_value(v, k))
    return errs


def _duration_or_none(v: str) -> Duration | None:
    try:
        return parse_duration(v)
    except DurationError:
        return None


def _validate_scale_down_delay(m: Annotations) -> FieldError:
    errs = NIL
    k, v, ok = keys.get_key(m, keys.SCALE_DOWN_DELAY_ANNOTATION)
    if ok:
        d = _duration_or_none(v)
        if d is None:
            errs = err_invalid_value(v, k)
        elif d < 0 or d > keys.WINDOW_MAX:
            # Windows longer than WindowMax are refused, so is a longer delay.
            errs = err_out_of_bounds_value(v, Duration(0), keys.WINDOW_MAX, k)
        elif round_duration(d, SECOND) != d:
            errs = err_generic("must be specified with at most second precision", k)
    return errs


def _validate_last_pod_retention(m: Annotations) -> FieldError:
    k, v, ok = keys.get_key(m, keys.SCALE_TO_ZERO_POD_RETENTION_PERIOD_ANNOTATION)
    if ok:
        d = _duration_or_none(v)
        if d is None:
            return err_invalid_value(v, k)
        if d < 0 or d > keys.WINDOW_MAX:
            return err_out_of_bounds_value(v, Duration(0), keys.WINDOW_MAX, k)
    return NIL


def _validate_window(m: Annotations) -> FieldError:
    _, v, ok = keys.get_key(m, keys.WINDOW_ANNOTATION)
    if ok:
        d = _duration_or_none(v)
        if d is None:
            return err_invalid_value(v, keys.WINDOW_ANNOTATION_KEY)
        if d < keys.WINDOW_MIN or d > keys.WINDOW_MAX:
            return err_out_of_bounds_value(v, keys.WINDOW_MIN, keys.WINDOW_MAX, keys.WINDOW_ANNOTATION_KEY)
        if truncate_duration(d, SECOND) != d:
            return err_generic("must be specified with at most second precision", keys.WINDOW_ANNOTATION_KEY)
    return NIL


def _validate_min_max_scale(config: Autoscaler, m: Annotations) -> FieldError:
    min_scale, errs = _get_int_ge0(m, keys.MIN_SCALE_ANNOTATION)
    max_scale, err = _get_int_ge0(m, keys.MAX_SCALE_ANNOTATION)
    errs = errs.also(err)

    if max_scale != 0 and max_scale < min_scale:
        errs = errs.also(
            FieldError(
                f"max-scale={max_scale} is less than min-scale={min_scale}",
                (keys.MAX_SCALE_ANNOTATION_KEY, keys.MIN_SCALE_ANNOTATION_KEY),
            )
        )

    k, _, ok = keys.get_key(m, keys.MAX_SCALE_ANNOTATION)
    if ok:
        errs = errs.also(_validate_max_scale_within_limit(k, max_scale, config.max_scale_limit))

    # With activation-scale set too: min <= activation <= max.
    k, v, ok = keys.get_key(m, keys.ACTIVATION_SCALE)
    if ok:
        try:
            nz_min = parse_int(v, 32)
        except NumError:
            errs = errs.also(err_invalid_value(v, k))
        else:
            if min_scale > nz_min:
                errs = errs.also(FieldError(f"min-scale={min_scale} is greater than activation-scale={nz_min}", (k,)))
            elif max_scale < nz_min and max_scale != 0:
                errs = errs.also(FieldError(f"max-scale={max_scale} is less than activation-scale={nz_min}", (k,)))
            elif nz_min < 2:
                errs = errs.also(FieldError(f"activation-scale={nz_min} must be greater than 1", (k,)))
    return errs


def _validate_max_scale_within_limit(key: str, max_scale: int, max_scale_limit: int) -> FieldError:
    if max_scale_limit == 0:
        return NIL
    errs = NIL
    if max_scale > max_scale_limit:
        errs = errs.also(err_out_of_bounds_value(max_scale, 1, max_scale_limit, key))
    if max_scale == 0:
        # fmt.Sprint puts no space between a string operand and the next.
        errs = errs.also(FieldError(f"max-scale=0 (unlimited), must be less than {max_scale_limit}", (key,)))
    return errs


def _validate_metric(config: Autoscaler, m: Annotations) -> FieldError:
    _, metric, ok = keys.get_key(m, keys.METRIC_ANNOTATION)
    if not ok:
        return NIL
    class_value = config.pod_autoscaler_class
    _, annotated_class, has_class = keys.get_key(m, keys.CLASS_ANNOTATION)
    if has_class:
        class_value = annotated_class
    if class_value == keys.KPA:
        if metric in (keys.CONCURRENCY, keys.RPS):
            return NIL
    elif class_value == keys.HPA:
        if metric != "":
            return NIL
    else:
        # Other classes of PodAutoscaler are left alone.
        return NIL
    return err_invalid_value(metric, keys.METRIC_ANNOTATION_KEY)


def _validate_initial_scale(config: Autoscaler, m: Annotations) -> FieldError:
    k, v, ok = keys.get_key(m, keys.INITIAL_SCALE_ANNOTATION)
    if ok:
        try:
            init_scale = atoi(v)
        except NumError:
            return err_invalid_value(v, k)
        if init_scale < 0:
            return err_invalid_value(v, k + " must be greater than 0")
        if not config.allow_zero_initial_scale and init_scale == 0:
            return err_invalid_value(v, k + "=0 not allowed by cluster")
    return NIL
