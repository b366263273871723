"""The REST front's bodies in Triton's JSON shapes: inference requests and replies (JSON or binary tensors, see
rest_binary.py), model metadata and configuration, statistics and the repository index.

Tensors stay bytes: a binary input's bytes go straight into raw_input_contents, a binary output's straight from
raw_output_contents; only tensors sent or asked for as JSON are turned into lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from edgeinfer.gateway.rest_binary import BinarySection, binary_data_size, check_binary_input
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.datatypes import NUMPY_DTYPES, WIRE_DTYPES, deserialize_bytes
from edgeinfer.protocol.errors import InferenceError, InvalidArgument
from edgeinfer.protocol.tensors import Array, element_count, raw_bytes, shape_text

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Parameters of the REST encoding itself: they say how tensors travel, so they are not forwarded (and so the JSON
# and the binary form of one request share a cache entry).
BINARY_DATA_SIZE = "binary_data_size"
BINARY_DATA = "binary_data"
BINARY_DATA_OUTPUT = "binary_data_output"
CLASSIFICATION = "classification"
REGION = "shared_memory_region"
REGION_BYTE_SIZE = "shared_memory_byte_size"
REGION_OFFSET = "shared_memory_offset"
_REGION_PARAMETERS = (REGION, REGION_BYTE_SIZE, REGION_OFFSET)


# -- parameters --------------------------------------------------------------------------------------------------


def brief(value: Any) -> str:
    """A short repr of a client's value for an error message (never the whole of a large one)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_parameter(value: Any) -> pb.InferParameter:
    param = pb.InferParameter()
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidArgument(f"parameter value {value} is outside the int64 range")
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    elif isinstance(value, str):
        param.string_param = value
    else:
        raise InvalidArgument(f"parameter value {brief(value)} must be a bool, integer, number or string")
    return param


def parameter_value(param: pb.InferParameter) -> Any:
    choice = param.WhichOneof("parameter_choice")
    return getattr(param, choice) if choice else None


def _parameters(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: 'parameters' must be an object of name: value")
    return value


def _flag(where: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{where}: parameter '{name}' must be true or false, got {brief(value)}")
    return value


def _count(where: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT64_MAX:
        raise InvalidArgument(f"{where}: parameter '{name}' must be a non-negative integer, got {brief(value)}")
    return value


# -- bodies ------------------------------------------------------------------------------------------------------


def parse_json_body(data: bytes | memoryview, what: str = "request body") -> Any:
    """JSON from a body; one that is not UTF-8, not JSON, or nested past the parser's limit is a 400."""
    try:
        text = str(data, "utf-8") if isinstance(data, memoryview) else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        hint = ""
        if what == "request body":
            hint = "; binary tensors need the Inference-Header-Content-Length header"
        raise InvalidArgument(f"{what} is not valid UTF-8 (byte {exc.start}: {exc.reason}){hint}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer of thousands of digits (Python's int-to-str limit)
        raise InvalidArgument(f"{what} holds a number too long to parse: {str(exc)[:80]}") from None
    except RecursionError:
        raise InvalidArgument(f"{what} is nested too deeply to parse; tensors need at most a few levels") from None


def optional_json_object(data: bytes, what: str) -> dict[str, Any]:
    """A body that may be empty (then {}) or a JSON object."""
    if not data.strip():
        return {}
    body = parse_json_body(data, what)
    if not isinstance(body, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return body


# -- inference ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyForm:
    """How the client asked for each output: as binary data or JSON, or left in a shared-memory region."""

    binary_default: bool
    binary: Mapping[str, bool]
    in_region: frozenset[str]
    uses_regions: bool  # some input or output names a region

    def is_binary(self, name: str) -> bool:
        return self.binary.get(name, self.binary_default)


def _bytes_elements(name: str, data: Any) -> Array:
    """BYTES data in JSON: (nested lists of) strings, each sent as its UTF-8 bytes."""
    flat = np.array(data, dtype=np.object_).reshape(-1)
    out = np.empty(flat.size, dtype=np.object_)
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            raise InvalidArgument(f"input '{name}': BYTES data must be strings, got {brief(item)}")
        out[i] = item.encode("utf-8", "surrogatepass")
    return out


def _json_input_bytes(name: str, datatype: str, shape: list[int], expected: int, data: Any) -> bytes:
    try:
        bytes_data = datatype == "BYTES"
        array = _bytes_elements(name, data) if bytes_data else np.asarray(data, dtype=NUMPY_DTYPES[datatype])
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"input '{name}': data is not valid {datatype}: {exc}") from None
    if array.size != expected:
        raise InvalidArgument(
            f"input '{name}': {array.size} values do not fill shape {shape_text(shape)} ({expected} values)"
        )
    return raw_bytes(array, datatype)


def _add_input(request: pb.ModelInferRequest, tensor: Any, binary: BinarySection) -> bool:
    """Add one input; True if its data is in a shared-memory region (then it has no raw entry yet)."""
    if not isinstance(tensor, dict):
        raise InvalidArgument("each input must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    datatype = tensor.get("datatype")
    shape = tensor.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("an input has no name")
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise InvalidArgument(f"input '{name}': unknown datatype {brief(datatype)}; one of {', '.join(NUMPY_DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidArgument(f"input '{name}': shape must be a list of non-negative integers")
    count = element_count(name, shape)  # refuses negative dimensions and sizes past MAX_ELEMENTS
    if any(d > _INT64_MAX for d in shape):  # a zero elsewhere keeps the count small: the shape is int64 on the wire
        raise InvalidArgument(f"input '{name}': shape {brief(shape)} has a dimension past the int64 range")
    where = f"input '{name}'"
    params = _parameters(where, tensor.get("parameters"))
    data = tensor.get("data")
    size = params.get(BINARY_DATA_SIZE)
    region = params.get(REGION)
    given = [what for what, v in (("data", data), (BINARY_DATA_SIZE, size), (REGION, region)) if v is not None]
    if len(given) != 1:
        raise InvalidArgument(
            f"{where} must have exactly one of 'data', a '{BINARY_DATA_SIZE}' parameter or a '{REGION}' "
            f"parameter; it has {' and '.join(given) if given else 'none'}"
        )
    entry = request.inputs.add(name=name, datatype=datatype, shape=shape)
    if region is not None:
        if not isinstance(region, str) or not region:
            raise InvalidArgument(f"{where}: parameter '{REGION}' must be a region's name")
        entry.parameters[REGION].string_param = region
        entry.parameters[REGION_BYTE_SIZE].int64_param = _count(where, REGION_BYTE_SIZE, params.get(REGION_BYTE_SIZE))
        if REGION_OFFSET in params:
            entry.parameters[REGION_OFFSET].int64_param = _count(where, REGION_OFFSET, params[REGION_OFFSET])
        return True
    if size is not None:
        content = binary.take(name, binary_data_size(name, size))
        check_binary_input(name, datatype, shape, count, content)
    else:
        content = _json_input_bytes(name, datatype, shape, count, data)
    request.raw_input_contents.append(content)
    return False


def _add_output(request: pb.ModelInferRequest, output: Any, binary: dict[str, bool], in_region: set[str]) -> bool:
    if not isinstance(output, dict) or not isinstance(output.get("name"), str) or not output["name"]:
        raise InvalidArgument("each requested output must be an object with a name")
    name = output["name"]
    where = f"output '{name}'"
    params = _parameters(where, output.get("parameters"))
    entry = request.outputs.add(name=name)
    for key, value in params.items():
        if key == BINARY_DATA:
            binary[name] = _flag(where, key, value)
        elif key == CLASSIFICATION:
            if _count(where, key, value) == 0:
                raise InvalidArgument(f"{where}: '{CLASSIFICATION}' must be at least 1 (the top-k classes)")
            entry.parameters[key].int64_param = value
        elif key in (REGION_BYTE_SIZE, REGION_OFFSET):
            entry.parameters[key].int64_param = _count(where, key, value)
        elif key == REGION:
            if not isinstance(value, str) or not value:
                raise InvalidArgument(f"{where}: parameter '{REGION}' must be a region's name")
            entry.parameters[key].string_param = value
            in_region.add(name)
        else:
            entry.parameters[key].CopyFrom(to_parameter(value))
    if name in in_region and (CLASSIFICATION in params or binary.get(name)):
        raise InvalidArgument(f"{where}: a shared-memory output cannot also be binary_data or a classification")
    return name in in_region


def request_from_json(
    model: str, version: str, body: Any, binary: BinarySection
) -> tuple[pb.ModelInferRequest, ReplyForm]:
    """The ModelInferRequest (raw tensors) of a REST inference body, and how its reply is to be laid out."""
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidArgument("request body needs an 'inputs' list")
    request_id = body.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument(f"'id' must be a string, got {brief(request_id)}")
    parameters = _parameters("request", body.get("parameters"))
    outputs = body.get("outputs")
    if outputs is None:
        outputs = []
    if not isinstance(outputs, list):
        raise InvalidArgument("'outputs' must be a list of objects with a name")
    # Datatypes and shapes are checked against the model's metadata downstream.
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    names: set[str] = set()
    regions = False
    for tensor in inputs:
        regions |= _add_input(request, tensor, binary)
        name = request.inputs[-1].name
        if name in names:
            raise InvalidArgument(f"input '{name}' appears more than once")
        names.add(name)
    binary.finish()
    binary_default = False
    for key, value in parameters.items():
        if key == BINARY_DATA_OUTPUT:
            binary_default = _flag("request", key, value)
        else:
            request.parameters[key].CopyFrom(to_parameter(value))
    as_binary: dict[str, bool] = {}
    in_region: set[str] = set()
    for output in outputs:
        regions |= _add_output(request, output, as_binary, in_region)
    if len({o.name for o in request.outputs}) != len(request.outputs):
        raise InvalidArgument("an output is requested more than once")
    return request, ReplyForm(binary_default, as_binary, frozenset(in_region), regions)


def _json_values(name: str, datatype: str, shape: tuple[int, ...], raw: bytes) -> list[Any]:
    count = element_count(name, shape)
    if datatype == "BYTES":
        return [bytes(b).decode("utf-8", "replace") for b in deserialize_bytes(raw, count, name).tolist()]
    values: list[Any] = np.frombuffer(raw, dtype=WIRE_DTYPES[datatype], count=count).tolist()
    return values


def reply_body(reply: pb.ModelInferResponse, form: ReplyForm) -> tuple[bytes, int | None]:
    """The reply laid out as Triton lays it out: the JSON header, then each binary output's bytes in order.

    Returns the body and the header's length, or None when no binary data follows (the body is only JSON).
    """
    raw = reply.raw_output_contents
    outputs = reply.outputs
    # An output placed in a region may keep an empty raw entry (aligned by index) or none at all.
    aligned = len(raw) == len(outputs)
    if not aligned and len(raw) != sum(1 for t in outputs if t.name not in form.in_region):
        raise InferenceError(f"model '{reply.model_name}': the reply has {len(raw)} raw outputs for {len(outputs)}")
    listed = []
    buffers: list[bytes] = []
    next_raw = 0
    for index, tensor in enumerate(outputs):
        item: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        listed.append(item)
        if tensor.name in form.in_region:
            next_raw += aligned
            continue
        content = raw[index if aligned else next_raw]
        next_raw += 1
        if form.is_binary(tensor.name):
            item["parameters"] = {BINARY_DATA_SIZE: len(content)}
            if content:
                buffers.append(content)
        else:
            item["data"] = _json_values(tensor.name, tensor.datatype, tuple(tensor.shape), content)
    document: dict[str, Any] = {"model_name": reply.model_name, "model_version": reply.model_version}
    if reply.id:
        document["id"] = reply.id
    if reply.parameters:
        document["parameters"] = {k: parameter_value(v) for k, v in reply.parameters.items()}
    document["outputs"] = listed
    header = json.dumps(document, separators=(",", ":")).encode()
    if not buffers:
        return header, None
    return b"".join((header, *buffers)), len(header)


# -- metadata, configuration, statistics, repository -------------------------------------------------------------


def metadata_to_json(metadata: pb.ModelMetadataResponse) -> dict[str, Any]:
    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": tensors(metadata.inputs),
        "outputs": tensors(metadata.outputs),
        "properties": {k: parameter_value(v) for k, v in metadata.properties.items()},
    }


_WIDE = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)


def message_json(message: Message) -> dict[str, Any]:
    """A message as Triton writes it: proto field names, every field printed, and 64-bit integers as numbers
    (protobuf's JSON makes them strings; Triton fixes them, and perf_analyzer reads dims as numbers)."""
    document = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _numbers(document, message.DESCRIPTOR)
    return document


def _numbers(document: dict[str, Any], descriptor: Any) -> None:  # a (upb or pure) Descriptor
    for field in descriptor.fields:
        value = document.get(field.name)
        if value is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None:
                for item in value.values():
                    _numbers(item, value_field.message_type)
            elif value_field.cpp_type in _WIDE:
                for key in value:
                    value[key] = int(value[key])
        elif field.message_type is not None:
            for item in value if isinstance(value, list) else (value,):
                _numbers(item, field.message_type)
        elif field.cpp_type in _WIDE:
            document[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)


def model_config_json(config: pb.ModelConfig) -> dict[str, Any]:
    return message_json(config)


def statistics_json(stats: pb.ModelStatisticsResponse) -> dict[str, Any]:
    """{"model_stats": [...]}, each duration present ({"count": 0, "ns": 0} when nothing was counted), as Triton."""
    filled = pb.ModelStatisticsResponse()
    filled.CopyFrom(stats)
    for model in filled.model_stats:
        for field in pb.InferStatistics.DESCRIPTOR.fields:
            getattr(model.inference_stats, field.name).SetInParent()
        for batch in model.batch_stats:
            for name in ("compute_input", "compute_infer", "compute_output"):
                getattr(batch, name).SetInParent()
    return message_json(filled)


def repository_index_json(index: pb.RepositoryIndexResponse) -> list[dict[str, Any]]:
    """[{"name", "version", "state", "reason"}], leaving out an empty version or reason as Triton does."""
    models = []
    for model in index.models:
        entry = {"name": model.name}
        if model.version:
            entry["version"] = model.version
        entry["state"] = model.state
        if model.reason:
            entry["reason"] = model.reason
        models.append(entry)
    return models
