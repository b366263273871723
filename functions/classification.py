"""Triton's classification extension: an output requested with the `classification` parameter (tritonclient's
`class_count`) comes back as the top-k "score:index[:label]" strings instead of the tensor.

As Triton's server does it (src/classification.cc, src/grpc/infer_handler.h): per batch element when the model
batches (shape [batch, k]), else over the whole tensor (shape [k]); k is capped at the class count; the score
printed as C++'s std::to_string prints it ("%f" for floats, the integer for integer types); the label is line
`index` of the model directory's labels.txt, left out when there is no such line or it is empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.tensors import Array

PARAMETER = "classification"
LABELS_FILE = "labels.txt"
# Triton's bound on the elements one classification may sort.
MAX_ELEMENTS = 1_000_000
_NUMERIC = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}


def read_labels(model_dir: Path) -> tuple[str, ...]:
    """The lines of `model_dir/labels.txt`, or () without one."""
    path = model_dir / LABELS_FILE
    if not path.is_file():
        return ()
    return tuple(line.rstrip("\r") for line in path.read_text(encoding="utf-8", errors="replace").split("\n"))


def requested(model: str, request: pb.ModelInferRequest, datatypes: Mapping[str, str]) -> dict[str, int]:
    """Output name -> k for the outputs the request asks to classify; InvalidArgument for a bad parameter."""
    wanted: dict[str, int] = {}
    for output in request.outputs:
        if PARAMETER not in output.parameters:
            continue
        param = output.parameters[PARAMETER]
        if param.WhichOneof("parameter_choice") != "int64_param":
            raise InvalidArgument(
                f"model '{model}' output '{output.name}': the 'classification' parameter must be an int64 (the "
                "number of top classes to return)"
            )
        count = param.int64_param
        if count <= 0:
            raise InvalidArgument(
                f"model '{model}' output '{output.name}': 'classification' must be at least 1, got {count}"
            )
        datatype = datatypes.get(output.name)
        if datatype is not None and datatype not in _NUMERIC:
            raise InvalidArgument(
                f"model '{model}' output '{output.name}': classification needs a numeric output, this one is {datatype}"
            )
        wanted[output.name] = count
    return wanted


def _score(value: np.generic) -> str:
    if isinstance(value, np.floating):
        return f"{float(value):f}"
    return str(int(value))  # type: ignore[call-overload]


def top_k(model: str, name: str, array: Array, k: int, batched: bool, labels: Sequence[str]) -> Array:
    """The classification of one output: a BYTES array of shape [batch, min(k, classes)] (or [min(k, classes)])."""
    if array.size > MAX_ELEMENTS:
        raise InvalidArgument(
            f"model '{model}' output '{name}': {array.size} elements is too many to classify (at most {MAX_ELEMENTS})"
        )
    rows = array.reshape(array.shape[0], -1) if batched and array.ndim > 0 else array.reshape(1, -1)
    classes = rows.shape[1]
    count = min(k, classes)
    out = np.empty((rows.shape[0], count), dtype=np.object_)
    for r, row in enumerate(rows):
        # Highest first; ties keep the lower index first.
        order = np.argsort(-row.astype(np.float64), kind="stable")[:count]
        for c, index in enumerate(order):
            text = f"{_score(row[index])}:{int(index)}"
            if index < len(labels) and labels[index]:
                text += ":" + labels[index]
            out[r, c] = text.encode()
    return out if batched and array.ndim > 0 else out.reshape(count)
