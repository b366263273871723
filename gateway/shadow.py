"""Prediction agreement: a candidate version's answer to a shadow copy of a request, compared with the reply the
caller got from the baseline (gateway/dataplane.py sends the copy; gateway/traffic.py says which version and how
often). Runs in a background task, never on a reply's path."""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InferenceError
from edgeinfer.protocol.tensors import Array, output_arrays

AGREE = "agree"
DISAGREE = "disagree"
ERROR = "error"


def compare_outputs(baseline: dict[str, Array], candidate: dict[str, Array], atol: float, rtol: float) -> str:
    """AGREE when every output of the baseline's is in the candidate's with the same datatype and shape, each
    element within |candidate - baseline| <= atol + rtol * |baseline| (numbers) or equal (anything else), and the
    argmax over the last axis is the same for outputs whose last axis is longer than 1; else DISAGREE."""
    if set(baseline) != set(candidate):
        return DISAGREE
    for name, b in baseline.items():
        a = candidate[name]
        if a.dtype != b.dtype or a.shape != b.shape:
            return DISAGREE
        if b.dtype.kind in "fiu":
            if not np.all(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)):
                return DISAGREE
            # A near tie can keep every element within tolerance and still change the predicted class.
            tie_breaks = b.ndim >= 1 and b.shape[-1] > 1 and b.size > 0
            if tie_breaks and not np.array_equal(np.argmax(a, axis=-1), np.argmax(b, axis=-1)):
                return DISAGREE
        elif not np.array_equal(a, b):
            return DISAGREE
    return AGREE


def compare_replies(baseline: bytes, candidate: bytes, atol: float, rtol: float) -> str:
    """compare_outputs of two serialized ModelInferResponses; ERROR when either cannot be decoded."""
    try:
        expected = output_arrays(pb.ModelInferResponse.FromString(baseline))
        got = output_arrays(pb.ModelInferResponse.FromString(candidate))
    except (DecodeError, InferenceError, ValueError):
        return ERROR
    return compare_outputs(expected, got, atol, rtol)
