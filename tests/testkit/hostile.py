"""Hostile ModelInferRequests and REST bodies for the fuzz tests, each with the answer it must get.

Every strategy draws a `Hostile` (or a `HostileBody`): the bytes to send and
the answers that are right for them: each status code allowed, with the
fragments of which the message must contain one (the cause, as
docs/reliability.md's table says). An error status always comes with its
fragments; only success has none. The targets are `fraud` (FP32 [-1, 30],
max_batch_size 64) and `echo_text` (BYTES [-1, 2]).

Where a case cannot know its answer beforehand (cut, random or randomly built
bytes), `answers_for` works it out from the bytes alone, with protobuf's own
parser as the oracle: unparsable, oversized, an unknown model or version, or a
served model whose rules the request may break.
"""

from __future__ import annotations

import gzip
import json
import os
import string
import struct
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from edgeinfer.functions.examples import write_examples
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.datatypes import NUMPY_DTYPES
from edgeinfer.protocol.tensors import build_request

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK
# Small, so oversized messages are cheap to send.
MAX_MESSAGE_BYTES = 256 * 1024
FEATURES = 30
MAX_BATCH = 64
# A hostile request answered later than this counts as a hang.
ANSWER_WITHIN_S = 10.0
DATATYPES = sorted(NUMPY_DTYPES)
T = TypeVar("T")
# What the messages must say, by cause (the fragments docs/reliability.md quotes).
UNPARSABLE = ("not a valid inference.ModelInferRequest",)
TOO_LARGE = ("larger than max",)
UNKNOWN_MODEL = ("unknown model '",)
NO_VERSION = ("has no version '",)
# A request for a served model that breaks its rules is told which input, which model rule or what in the request.
REQUEST_FAULTS = ("input '", "missing input(s): ", "request has ", "model '")
MODELS = ("echo_text", "fraud", "ranker")  # every one at version 1 only
VERSIONS = ("", "1")

Answers = Mapping[grpc.StatusCode, tuple[str, ...]]
BodyAnswers = Mapping[int, tuple[str, ...]]


def _named_causes(kind: str, answers: Mapping[Any, tuple[str, ...]], ok: Any) -> None:
    """Every error an example allows comes with the fragments that name its cause: none may be vague."""
    assert answers, f"{kind}: no answer is right"
    for code, says in answers.items():
        assert code == ok or says, f"{kind}: {code} is allowed with any message; name the cause it must give"


@dataclass(frozen=True, eq=False)
class Hostile:
    kind: str
    payload: bytes
    # Each right status code, with the fragments of which its message must contain one (OK: none).
    answers: Answers
    # The RPC of inference.GRPCInferenceService the payload is sent to.
    method: str = "ModelInfer"

    def __post_init__(self) -> None:
        _named_causes(self.kind, self.answers, OK)

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them readable
        want = {code.name: says for code, says in self.answers.items()}
        return f"Hostile({self.kind}, {self.method}, {len(self.payload)} bytes, {self.payload[:120]!r}..., want {want})"


@dataclass(frozen=True, eq=False)
class HostileBody:
    kind: str
    body: bytes
    answers: BodyAnswers  # HTTP status: fragments, as for Hostile (200: none)
    model: str = "fraud"

    def __post_init__(self) -> None:
        _named_causes(self.kind, self.answers, 200)

    def __repr__(self) -> str:
        return f"HostileBody({self.kind}, {len(self.body)} bytes, {self.body[:120]!r}..., want {dict(self.answers)})"


def parse(payload: bytes) -> pb.ModelInferRequest | None:
    """The request the bytes are, or None if protobuf (the servers' parser too) refuses them."""
    try:
        return pb.ModelInferRequest.FromString(payload)
    except DecodeError:
        return None


def refused_on_receipt(payload: bytes) -> Answers | None:
    """The answer to bytes no handler sees: over the size limit, or not a ModelInferRequest at all."""
    if len(payload) > MAX_MESSAGE_BYTES:
        return {EXHAUSTED: TOO_LARGE}
    if parse(payload) is None:
        return {INVALID: UNPARSABLE}
    return None


def answers_for(payload: bytes) -> Answers:
    """The right answers to any bytes sent as a ModelInferRequest, worked out from the bytes alone."""
    refused = refused_on_receipt(payload)
    if refused is not None:
        return refused
    request = parse(payload)
    assert request is not None
    if request.model_name not in MODELS:
        return {NOT_FOUND: UNKNOWN_MODEL}
    if request.model_version not in VERSIONS:
        return {NOT_FOUND: NO_VERSION}
    return {OK: (), INVALID: REQUEST_FAULTS}


def write_echo_text(root: Path) -> None:
    """echo_text, a BYTES identity model, into the repository at `root`."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["text"], ["same"])],
        "echo_text",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch", 2])],
        [helper.make_tensor_value_info("same", TensorProto.STRING, ["batch", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (root / "echo_text" / "1").mkdir(parents=True)
    (root / "echo_text" / "1" / "model.onnx").write_bytes(model.SerializeToString())
    (root / "echo_text" / "config.yaml").write_text("max_batch_size: 8\n")


def write_fuzz_repo(root: Path) -> Path:
    """fraud and ranker (the examples) and echo_text, a BYTES identity model."""
    write_examples(root)
    write_echo_text(root)
    return root


def good_request(batch: int = 2) -> pb.ModelInferRequest:
    return build_request("fraud", {"features": np.ones((batch, FEATURES), dtype=np.float32)})


# -- protobuf by hand: what a well-behaved serializer never writes ---------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(data)) + data


# ModelInferRequest: model_name 1, model_version 2, id 3, parameters 4, inputs 5, outputs 6, raw 7.
# InferInputTensor: name 1, datatype 2, shape 3, parameters 4, contents 5.


def _raw_input(name: bytes, datatype: bytes, shape: list[int], raw: bytes) -> bytes:
    tensor = _field(1, name) + _field(2, datatype) + _field(3, b"".join(_varint(d & (2**64 - 1)) for d in shape))
    return _field(5, tensor) + _field(7, raw)


# -- strategies ------------------------------------------------------------------------------

batches = st.integers(1, MAX_BATCH)
blobs = st.binary(max_size=2048)


def _fraud(shape: list[int], raw: bytes, datatype: str = "FP32", name: str = "features") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="fraud")
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


@st.composite
def wrong_datatype(draw: st.DrawFn) -> Hostile:
    datatype = draw((st.sampled_from(DATATYPES) | st.text(max_size=20)).filter(lambda d: d != "FP32"))
    batch = draw(batches)
    raw = draw(blobs)
    request = _fraud([batch, FEATURES], raw, datatype)
    return Hostile("wrong datatype", request.SerializeToString(), {INVALID: ("expected datatype FP32",)})


@st.composite
def absent_datatype(draw: st.DrawFn) -> Hostile:
    request = _fraud([draw(batches), FEATURES], draw(blobs), "")
    return Hostile("absent datatype", request.SerializeToString(), {INVALID: ("got (none)",)})


def _shape_is_wrong(shape: list[int]) -> bool:
    return len(shape) != 2 or shape[1] != FEATURES or not 1 <= shape[0] <= MAX_BATCH


@st.composite
def bad_shape(draw: st.DrawFn) -> Hostile:
    dims = st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 3) | st.sampled_from([FEATURES, 2**31, 2**32 + 1])
    shape = draw(st.lists(dims, max_size=6).filter(_shape_is_wrong))
    request = _fraud(shape, draw(blobs))
    # A zero or too large batch is the model's rule (batch size outside 1..64); any other is the input's.
    says = ("input 'features'", "model 'fraud'")
    return Hostile("negative, huge or wrong shape", request.SerializeToString(), {INVALID: says})


@st.composite
def raw_size_mismatch(draw: st.DrawFn) -> Hostile:
    batch = draw(batches)
    expected = batch * FEATURES * 4
    size = draw(st.integers(0, expected + 4096).filter(lambda n: n != expected))
    request = _fraud([batch, FEATURES], bytes(size))
    says = (f"raw content is {size} bytes, expected {expected}",)
    return Hostile("raw size does not match", request.SerializeToString(), {INVALID: says})


@st.composite
def duplicate_names(draw: st.DrawFn) -> Hostile:
    request = good_request(draw(batches))
    for _ in range(draw(st.integers(1, 4))):
        request.inputs.add().CopyFrom(request.inputs[0])
        request.raw_input_contents.append(request.raw_input_contents[0])
    return Hostile("duplicate input names", request.SerializeToString(), {INVALID: ("appears more than once",)})


_param_values = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=64),
)


def _set_parameter(param: pb.InferParameter, value: Any) -> None:
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    else:
        param.string_param = value


@st.composite
def many_parameters(draw: st.DrawFn) -> Hostile:
    """Many (within the size limit) parameters of every kind on the request and its input: served."""
    request = good_request(draw(st.integers(1, 4)))
    for key, value in draw(st.dictionaries(st.text(max_size=32), _param_values, max_size=200)).items():
        _set_parameter(request.parameters[key], value)
    for key, value in draw(st.dictionaries(st.text(max_size=8), _param_values, max_size=20)).items():
        _set_parameter(request.inputs[0].parameters[key], value)
    return Hostile("many parameters", request.SerializeToString(), {OK: ()})


@st.composite
def oversized_parameters(draw: st.DrawFn) -> Hostile:
    request = good_request(1)
    size = draw(st.integers(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES))
    request.parameters["big"].string_param = "x" * size
    return Hostile("oversized parameters", request.SerializeToString(), {EXHAUSTED: TOO_LARGE})


@st.composite
def nested_parameters(draw: st.DrawFn) -> Hostile:
    """A parameter value holding deeply nested groups: the parser's depth limit refuses it."""
    depth = draw(st.integers(101, 5000))
    field = draw(st.integers(9, 200))
    start, end = _varint((field << 3) | 3), _varint((field << 3) | 4)
    entry = _field(1, b"nested") + _field(2, start * depth + end * depth)
    payload = good_request(1).SerializeToString() + _field(4, entry)
    return Hostile("deeply nested parameters", payload, {INVALID: UNPARSABLE})


_bad_utf8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80abc"])


@st.composite
def invalid_utf8_names(draw: st.DrawFn) -> Hostile:
    ascii_text = st.text(alphabet=string.ascii_letters + string.digits, max_size=8).map(str.encode)
    bad = draw(ascii_text) + draw(_bad_utf8) + draw(ascii_text)  # ASCII around it: it stays invalid
    where = draw(st.sampled_from(["model", "input", "datatype", "id", "parameter", "output"]))
    good = good_request(1)
    raw = good.raw_input_contents[0]
    if where == "model":
        payload = _field(1, bad) + _raw_input(b"features", b"FP32", [1, FEATURES], raw)
    elif where == "input":
        payload = _field(1, b"fraud") + _raw_input(bad, b"FP32", [1, FEATURES], raw)
    elif where == "datatype":
        payload = _field(1, b"fraud") + _raw_input(b"features", bad, [1, FEATURES], raw)
    elif where == "id":
        payload = good.SerializeToString() + _field(3, bad)
    elif where == "parameter":
        payload = good.SerializeToString() + _field(4, _field(1, bad) + _field(2, _field(3, b"v")))
    else:
        payload = good.SerializeToString() + _field(6, _field(1, bad))
    return Hostile(f"invalid UTF-8 ({where})", payload, {INVALID: UNPARSABLE})


def _frames(raw: bytes, count: int) -> bool:
    """Whether `raw` is exactly `count` length-prefixed elements (an oracle independent of the server's)."""
    offset = 0
    for _ in range(count):
        if offset + 4 > len(raw):
            return False
        offset += 4 + struct.unpack_from("<I", raw, offset)[0]
    return offset == len(raw)


# deserialize_bytes: an element's prefix past the end, the data ending before a prefix, or bytes left over.
_BYTES_FRAMING = ("input 'text': BYTES element ", "input 'text': BYTES data ends after ", " BYTES elements")


@st.composite
def lying_bytes_prefixes(draw: st.DrawFn) -> Hostile:
    """echo_text's BYTES elements whose 4-byte length prefixes claim more (or fewer) bytes than follow."""
    batch = draw(st.integers(1, 8))
    elements = draw(st.lists(st.binary(max_size=16), min_size=2 * batch, max_size=2 * batch))
    lies = draw(st.lists(st.integers(0, 2**32 - 1), min_size=len(elements), max_size=len(elements)))
    truthful = [len(e) for e in elements]
    if lies == truthful:
        lies[0] = truthful[0] + 1
    raw = b"".join(struct.pack("<I", n) + e for n, e in zip(lies, elements, strict=True))
    raw = raw[: draw(st.integers(0, len(raw)))] if draw(st.booleans()) else raw
    if _frames(raw, 2 * batch):  # the lies happen to add up to a valid framing: one trailing byte breaks it
        raw += b"\x00"
    request = pb.ModelInferRequest(model_name="echo_text")
    request.inputs.add(name="text", datatype="BYTES", shape=[batch, 2])
    request.raw_input_contents.append(raw)
    return Hostile("BYTES length prefixes lie", request.SerializeToString(), {INVALID: _BYTES_FRAMING})


@st.composite
def truncated(draw: st.DrawFn) -> Hostile:
    whole = good_request(draw(st.integers(1, 4))).SerializeToString()
    cut = draw(st.integers(0, len(whole) - 1))
    part = whole[:cut]
    # Cut inside a field, it does not parse. Cut between fields (model_name 1, inputs 5, raw contents 7) it
    # does: nothing left names the model; or the model is named but its input is missing; or the input is
    # there without its raw contents, so it has no values.
    request = parse(part)
    answers: Answers = {INVALID: UNPARSABLE}
    if request is not None:
        if not request.model_name:
            answers = {NOT_FOUND: ("unknown model ''",)}
        elif not request.inputs:
            answers = {INVALID: ("missing input(s): features",)}
        else:
            answers = {INVALID: ("input 'features': fp32_contents has 0 values",)}
    return Hostile("truncated protobuf", part, answers)


@st.composite
def random_bytes(draw: st.DrawFn) -> Hostile:
    payload = draw(st.binary(min_size=1, max_size=4096))
    return Hostile("random bytes", payload, answers_for(payload))


@st.composite
def random_requests(draw: st.DrawFn) -> Hostile:
    """Well-formed protobuf, anything in it: names, datatypes, shapes, raw or typed contents."""
    request = pb.ModelInferRequest(
        model_name=draw(st.sampled_from(["fraud", "echo_text", "ranker"]) | st.text(max_size=10)),
        model_version=draw(st.sampled_from(["", "", "", "1", "2"])),  # mostly versions that exist
        id=draw(st.text(max_size=16)),
    )
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add(
            name=draw(st.sampled_from(["features", "text"]) | st.text(max_size=8)),
            datatype=draw(st.sampled_from(DATATYPES) | st.text(max_size=6)),
            shape=draw(st.lists(st.integers(-2, 70) | st.integers(-(2**63), 2**63 - 1), max_size=4)),
        )
        if raw:
            request.raw_input_contents.append(draw(blobs))
        else:
            contents = tensor.contents
            which = draw(st.sampled_from(["fp32", "int", "bytes", "bool", "uint64", "none"]))
            if which == "fp32":
                contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=200)))
            elif which == "int":
                contents.int_contents.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=200)))
            elif which == "bytes":
                contents.bytes_contents.extend(draw(st.lists(st.binary(max_size=8), max_size=20)))
            elif which == "bool":
                contents.bool_contents.extend(draw(st.lists(st.booleans(), max_size=200)))
            elif which == "uint64":
                contents.uint64_contents.extend(draw(st.lists(st.integers(0, 2**64 - 1), max_size=20)))
    if draw(st.booleans()):
        extra = draw(st.integers(0, 2))
        request.raw_input_contents.extend(draw(blobs) for _ in range(extra))
    for _ in range(draw(st.integers(0, 2))):
        request.outputs.add(name=draw(st.sampled_from(["probabilities", "label"]) | st.text(max_size=6)))
    payload = request.SerializeToString()
    return Hostile("random request", payload, answers_for(payload))


_SHM_FAULTS = ("shared_memory_", "shared memory region", "input 'features'")


@st.composite
def bogus_shared_memory(draw: st.DrawFn) -> Hostile:
    """fraud's input (and maybe outputs) in a region never registered, at any offset and size, parameters of any
    type: INVALID_ARGUMENT naming the region or the parameter. (A data plane that ignores the parameters finds the
    input without values, and names the input.)"""
    batch = draw(st.integers(1, 4))
    request = pb.ModelInferRequest(model_name="fraud")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=[batch, FEATURES])
    targets: list[Any] = [tensor]
    for _ in range(draw(st.integers(0, 2))):
        targets.append(request.outputs.add(name=draw(st.sampled_from(["probabilities", "label"]))))
    region = "bogus-" + draw(st.text(alphabet=string.ascii_letters + string.digits + "/._-", max_size=24))
    for target in targets:
        params = target.parameters
        _set_parameter(params["shared_memory_region"], draw(st.just(region) | _param_values))
        for key in ("shared_memory_byte_size", "shared_memory_offset"):
            if draw(st.integers(0, 3)):
                value = draw(st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 4, 120 * batch]) | _param_values)
                _set_parameter(params[key], value)
    return Hostile("inputs in a bogus shared-memory region", request.SerializeToString(), {INVALID: _SHM_FAULTS})


GRPC_CASES = {
    "bogus_shared_memory": bogus_shared_memory(),
    "wrong_datatype": wrong_datatype(),
    "absent_datatype": absent_datatype(),
    "bad_shape": bad_shape(),
    "raw_size_mismatch": raw_size_mismatch(),
    "duplicate_names": duplicate_names(),
    "many_parameters": many_parameters(),
    "oversized_parameters": oversized_parameters(),
    "nested_parameters": nested_parameters(),
    "invalid_utf8_names": invalid_utf8_names(),
    "lying_bytes_prefixes": lying_bytes_prefixes(),
    "truncated": truncated(),
    "random_bytes": random_bytes(),
    "random_requests": random_requests(),
}


# -- the other RPCs: config, statistics, repository, shared memory, trace and log settings ---------

# Every status a handled call may get (UNIMPLEMENTED too, for an RPC a server does not serve yet); never INTERNAL,
# UNKNOWN or a hang.
HANDLED = (
    OK,
    INVALID,
    NOT_FOUND,
    EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.ALREADY_EXISTS,
)
TRACE_KEYS = ("trace_level", "trace_rate", "trace_count", "log_frequency", "trace_file", "trace_mode")
LOG_KEYS = ("log_file", "log_info", "log_warning", "log_error", "log_verbose_level", "log_format")
# What an error may name that is not one of the request's own strings, by RPC.
_RPC_CAUSES: dict[str, tuple[str, ...]] = {
    "RepositoryModelLoad": ("model-control-mode", "model control", "edgeinfer deploy"),
    "RepositoryModelUnload": ("model-control-mode", "model control", "edgeinfer deploy"),
    "CudaSharedMemoryStatus": ("CUDA shared memory",),
    "CudaSharedMemoryRegister": ("CUDA shared memory",),
    "CudaSharedMemoryUnregister": ("CUDA shared memory",),
    "SystemSharedMemoryRegister": ("shared memory region",),
    "TraceSetting": ("--trace",),
}
_names = st.sampled_from(MODELS) | st.text(max_size=12)
# Load and unload never name a served model: in explicit mode an unload would take it away from the next request.
_unserved = st.text(max_size=12).filter(lambda n: n not in MODELS)
_u64 = st.integers(0, 2**64 - 1) | st.sampled_from([0, 1, 4096, 2**63])
_texts = st.text(max_size=16) | st.sampled_from(["1", "0", "-1", "OFF", "TIMESTAMPS", "TENSORS", "ISO8601"])


def _repository_parameters(draw: st.DrawFn, parameters: Any) -> None:
    for key in draw(
        st.lists(
            st.sampled_from(["config", "file:1/model.onnx", "unload_dependents"]) | st.text(max_size=8), max_size=3
        )
    ):
        param = parameters[key]
        which = draw(st.sampled_from(["bool", "int", "string", "bytes", "unset"]))
        if which == "bool":
            param.bool_param = draw(st.booleans())
        elif which == "int":
            param.int64_param = draw(st.integers(-(2**63), 2**63 - 1))
        elif which == "string":
            param.string_param = draw(st.text(max_size=64) | st.just('{"max_batch_size": -1}'))
        elif which == "bytes":
            param.bytes_param = draw(st.binary(max_size=64))


def _trace_settings(draw: st.DrawFn, request: pb.TraceSettingRequest) -> None:
    request.model_name = draw(_names | st.just(""))
    for key in draw(st.lists(st.sampled_from(TRACE_KEYS) | st.text(max_size=8), max_size=4)):
        request.settings[key].value.extend(draw(st.lists(_texts, max_size=3)))


def _log_settings(draw: st.DrawFn, request: pb.LogSettingsRequest) -> None:
    # log_error and log_info stay on: the fuzz tests read the log for tracebacks (reset_settings restores the rest).
    for key in draw(st.lists(st.sampled_from(LOG_KEYS) | st.text(max_size=8), max_size=4)):
        value = request.settings[key]
        which = draw(st.sampled_from(["bool", "uint32", "string", "unset"]))
        if which == "bool":
            value.bool_param = key in ("log_error", "log_info") or draw(st.booleans())
        elif which == "uint32":
            value.uint32_param = draw(st.integers(0, 2**32 - 1))
        elif which == "string":
            value.string_param = draw(_texts)


def _rpc_request(method: str, draw: st.DrawFn) -> Any:
    message_type: Any
    request: Any
    if method in ("ModelConfig", "ModelStatistics"):
        message_type = pb.ModelConfigRequest if method == "ModelConfig" else pb.ModelStatisticsRequest
        return message_type(name=draw(_names), version=draw(st.sampled_from(VERSIONS) | st.text(max_size=4)))
    if method == "RepositoryIndex":
        return pb.RepositoryIndexRequest(repository_name=draw(st.text(max_size=8)), ready=draw(st.booleans()))
    if method in ("RepositoryModelLoad", "RepositoryModelUnload"):
        message_type = pb.RepositoryModelLoadRequest if method.endswith("Load") else pb.RepositoryModelUnloadRequest
        request = message_type(repository_name=draw(st.text(max_size=8)), model_name=draw(_unserved))
        _repository_parameters(draw, request.parameters)
        return request
    region = draw(st.text(max_size=12))
    if method in ("SystemSharedMemoryStatus", "CudaSharedMemoryStatus"):
        return getattr(pb, method + "Request")(name=region)
    if method in ("SystemSharedMemoryUnregister", "CudaSharedMemoryUnregister"):
        return getattr(pb, method + "Request")(name=region)
    if method == "SystemSharedMemoryRegister":
        key = draw(
            st.text(max_size=16)
            | st.sampled_from(
                ["/", "///", "/../../etc/passwd", "/edgeinfer-no-such-key", "/triton_python_backend_shm_region_x"]
            )
        )
        return pb.SystemSharedMemoryRegisterRequest(name=region, key=key, offset=draw(_u64), byte_size=draw(_u64))
    if method == "CudaSharedMemoryRegister":
        return pb.CudaSharedMemoryRegisterRequest(
            name=region,
            raw_handle=draw(st.binary(max_size=128)),
            device_id=draw(st.integers(-(2**63), 2**63 - 1)),
            byte_size=draw(_u64),
        )
    if method == "TraceSetting":
        request = pb.TraceSettingRequest()
        _trace_settings(draw, request)
        return request
    assert method == "LogSettings", method
    request = pb.LogSettingsRequest()
    _log_settings(draw, request)
    return request


def _strings(message: Any) -> set[str]:
    """Every string in a message (fields, map keys, nested messages): what an error may name."""
    found: set[str] = set()
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                found.add(str(key))
                if hasattr(item, "ListFields"):
                    found |= _strings(item)
        elif field.type == field.TYPE_STRING:
            found.update(value if field.is_repeated else [value])
        elif field.message_type is not None:
            for item in value if field.is_repeated else [value]:
                found |= _strings(item)
    return found


def rpc_answers(method: str, payload: bytes) -> Answers:
    """The right answers to any bytes sent to `method`, worked out from the bytes: unparsable is INVALID_ARGUMENT
    naming the message type; else any handled status, an error naming one of the request's strings (quoted), its
    RPC (UNIMPLEMENTED) or the RPC's own cause."""
    if len(payload) > MAX_MESSAGE_BYTES:
        return {EXHAUSTED: TOO_LARGE}
    message_type = getattr(pb, method + "Request")
    try:
        request = message_type.FromString(payload)
    except DecodeError:
        return {INVALID: (f"not a valid {message_type.DESCRIPTOR.full_name}",)}
    named = (*sorted(f"'{s}'" for s in _strings(request) | {""}), *_RPC_CAUSES.get(method, ()))
    answers: dict[grpc.StatusCode, tuple[str, ...]] = {code: named for code in HANDLED if code != OK}
    answers[OK] = ()
    answers[grpc.StatusCode.UNIMPLEMENTED] = (method, *named)
    return answers


RPCS = (
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
)


@st.composite
def hostile_rpc(draw: st.DrawFn, method: str) -> Hostile:
    """A request to `method`: well formed with hostile values, cut short, or random bytes."""
    payload = _rpc_request(method, draw).SerializeToString()
    how = draw(st.sampled_from(["built", "built", "built", "truncated", "random"]))
    if how == "truncated" and payload:
        payload = payload[: draw(st.integers(0, len(payload) - 1))]
    elif how == "random":
        payload = draw(st.binary(min_size=1, max_size=512))
    return Hostile(f"{how} {method}", payload, rpc_answers(method, payload), method=method)


RPC_CASES = {method: hostile_rpc(method) for method in RPCS}


def unary(channel: grpc.Channel, method: str) -> Callable[..., bytes]:
    """`method` of inference.GRPCInferenceService with the request bytes sent as they are."""
    return channel.unary_unary(
        f"/inference.GRPCInferenceService/{method}", request_serializer=None, response_deserializer=None
    )


def reset_settings(channel: grpc.Channel) -> None:
    """Log settings back to the defaults (a hostile LogSettings may have changed them); refused is fine too."""
    request = pb.LogSettingsRequest()
    for key in ("log_info", "log_warning", "log_error"):
        request.settings[key].bool_param = True
    request.settings["log_verbose_level"].uint32_param = 0
    request.settings["log_format"].string_param = "default"
    answer(unary(channel, "LogSettings"), request.SerializeToString())


# -- REST bodies ------------------------------------------------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _good_input(batch: int = 1) -> dict[str, Any]:
    return {"name": "features", "datatype": "FP32", "shape": [batch, FEATURES], "data": [0.5] * (batch * FEATURES)}


@st.composite
def not_json(draw: st.DrawFn) -> HostileBody:
    body = draw(st.binary(min_size=1, max_size=2048) | st.text(max_size=200).map(str.encode))
    if _json_fault(body) is None:  # it happens to be JSON: an unclosed object in front breaks it
        body = b"{" + body
    fault = _json_fault(body)
    assert fault is not None
    return HostileBody("body is not JSON", body, {400: (fault,)})


def _json_fault(body: bytes) -> str | None:
    """What is wrong with a body read as the REST front reads it (UTF-8, then JSON); None: nothing."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "request body is not valid UTF-8"
    try:
        json.loads(text)
    except RecursionError:
        return "request body is nested too deeply"
    except ValueError:
        return "request body is not valid JSON"
    return None


@st.composite
def deeply_nested_json(draw: st.DrawFn) -> HostileBody:
    depth = draw(st.integers(1000, 40_000))  # stays under the size limit
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    where = draw(st.sampled_from(["body", "data", "parameters", "shape"]))
    nested = opener * depth + "1" + closer * depth
    if where == "body":
        text = nested
    elif where == "data":
        text = '{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": ' + nested + "}]}"
    elif where == "parameters":
        text = '{"inputs": [], "parameters": {"p": ' + nested + "}}"
    else:
        text = '{"inputs": [{"name": "features", "datatype": "FP32", "shape": ' + nested + ', "data": [1]}]}'
    return HostileBody("deeply nested JSON", text.encode(), {400: ("request body is nested too deeply",)})


_INPUT_FAULTS = ("input '", "an input has no name", "missing input(s): ")
_INPUTS_FAULTS = ("request body needs an 'inputs' list", "each input must be an object", *_INPUT_FAULTS)
_JSON_FAULTS: dict[str, tuple[str, ...]] = {
    "inputs": _INPUTS_FAULTS,
    "input": _INPUTS_FAULTS,
    **dict.fromkeys(("name", "datatype", "shape", "data"), _INPUT_FAULTS),
    "params": ("'parameters' must be an object", "parameter value "),
    "outputs": ("'outputs' must be a list", "each requested output must be", "has no output(s)"),
}
_JSON_FAULTS["body"] = (
    "request body must be a JSON object",
    "'id' must be a string",
    *sorted(set().union(*_JSON_FAULTS.values())),
)


@st.composite
def hostile_json(draw: st.DrawFn) -> HostileBody:
    """Valid JSON with anything anywhere: the body, inputs, a tensor's fields, parameters, outputs."""
    body: Any = {"inputs": [_good_input(draw(st.integers(1, 3)))]}
    where = draw(st.sampled_from(["body", "inputs", "input", "name", "datatype", "shape", "data", "params", "outputs"]))
    junk = draw(json_values)
    tensor = body["inputs"][0]
    if where == "body":
        body = junk
    elif where == "inputs":
        body["inputs"] = junk
    elif where == "input":
        body["inputs"] = [junk]
    elif where in ("name", "datatype", "shape", "data"):
        tensor[where] = junk
    elif where == "params":
        body["parameters"] = junk
    else:
        body["outputs"] = junk
    # A 400 names the part that is wrong; the junk may happen to be valid there (200).
    return HostileBody(f"hostile JSON ({where})", json.dumps(body).encode(), {200: (), 400: _JSON_FAULTS[where]})


@st.composite
def hostile_bytes_data(draw: st.DrawFn) -> HostileBody:
    """echo_text BYTES data that is not strings: numbers (huge ones too), nested lists, null."""
    junk = draw(
        st.lists(st.integers() | st.floats(allow_nan=False) | st.none() | st.booleans(), min_size=2, max_size=2)
        | st.just([10**12, 10**12])
        | st.just([-1, "a"])
    )
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1, 2], "data": junk}]}
    says = ("input 'text': BYTES data must be strings",)
    return HostileBody("BYTES data not strings", json.dumps(body).encode(), {400: says}, model="echo_text")


@st.composite
def huge_rest_shape(draw: st.DrawFn) -> HostileBody:
    shape = draw(st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=5).filter(_shape_is_wrong))
    data = draw(st.lists(st.floats(allow_nan=False, width=32), max_size=40))
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": shape, "data": data}]}
    # Negative, past the element limit, not filled by the data, or not fraud's: each names the input.
    return HostileBody("negative or huge shape", json.dumps(body).encode(), {400: ("input 'features': ",)})


@st.composite
def invalid_utf8_body(draw: st.DrawFn) -> HostileBody:
    good = json.dumps({"inputs": [_good_input()]}).encode()
    cut = draw(st.integers(0, len(good)))
    body = good[:cut] + draw(_bad_utf8) + good[cut:]
    return HostileBody("body is not UTF-8", body, {400: ("request body is not valid UTF-8",)})


@st.composite
def oversized_body(draw: st.DrawFn) -> HostileBody:
    size = draw(st.integers(MAX_MESSAGE_BYTES + 1, 2 * MAX_MESSAGE_BYTES))
    body = b'{"inputs": [], "id": "' + b"x" * size + b'"}'
    return HostileBody("oversized body", body, {413: ("request body is too large",)})


REST_CASES = {
    "not_json": not_json(),
    "deeply_nested_json": deeply_nested_json(),
    "hostile_json": hostile_json(),
    "hostile_bytes_data": hostile_bytes_data(),
    "huge_rest_shape": huge_rest_shape(),
    "invalid_utf8_body": invalid_utf8_body(),
    "oversized_body": oversized_body(),
}


# -- sending and judging ----------------------------------------------------------------------


def raw_infer(channel: grpc.Channel) -> Callable[..., bytes]:
    """ModelInfer with the request bytes sent as they are."""
    return channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer", request_serializer=None, response_deserializer=None
    )


def answer(call: Callable[..., bytes], payload: bytes) -> tuple[grpc.StatusCode, str]:
    try:
        call(payload, timeout=ANSWER_WITHIN_S)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return OK, ""


def judge(code: Any, message: str, answers: Mapping[Any, tuple[str, ...]], ok: Any) -> None:
    """The answer is one of the right ones; an error's message names its cause (one of its fragments)."""
    assert code in answers, f"got {code} ({message!r}), want one of {sorted(map(str, answers))}"
    if code != ok:
        says = answers[code]
        assert any(s in message for s in says), f"{code}: {message!r} should say one of {says}"


def assert_good_request_served(call: Callable[..., bytes]) -> None:
    reply = pb.ModelInferResponse.FromString(call(good_request(3).SerializeToString(), timeout=ANSWER_WITHIN_S))
    assert reply.model_name == "fraud"
    assert reply.outputs[0].shape[0] == 3


def send_every_case(cases: Mapping[str, st.SearchStrategy[T]], send: Callable[[T], None]) -> None:
    """Every case's examples (as many as its own test draws), each handed to `send` once.

    The memory tests' own pass, so that what they measure does not depend on which tests ran before.
    """
    for case, strategy in sorted(cases.items()):
        fuzz_settings(case)(given(strategy)(send))()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class Tally:
    """Examples run per front and case, by the status they got; written out for docs/reliability.md.

    Set EDGEINFER_FUZZ_REPORT=FILE to append one JSON line per front and case.
    """

    def __init__(self) -> None:
        self.codes: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)

    def add(self, front: str, case: str, code: Any) -> None:
        self.codes[front, case][code.name if isinstance(code, grpc.StatusCode) else str(code)] += 1

    def write(self, fronts: tuple[str, ...], **facts: Any) -> None:
        path = os.environ.get("EDGEINFER_FUZZ_REPORT")
        if not path:
            return
        with open(path, "a") as out:
            for (front, case), codes in sorted(self.codes.items()):
                if front in fronts:
                    line = {"front": front, "case": case, "examples": sum(codes.values()), "codes": dict(codes)}
                    out.write(json.dumps({**line, **facts}) + "\n")


TALLY = Tally()


# gRPC takes 0.1-0.5 s to refuse an oversized message (it drains the stream): fewer examples of those.
SLOW_CASES = {"oversized_parameters": 8, "oversized_body": 8}


def fuzz_settings(case: str = "") -> settings:
    """Examples per case: EDGEINFER_FUZZ_EXAMPLES, or a quick default for the normal test run."""
    examples = int(os.environ.get("EDGEINFER_FUZZ_EXAMPLES", "25"))
    return settings(
        max_examples=max(1, examples // SLOW_CASES.get(case, 1)),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# -- the other REST routes: binary tensors, compression, config, statistics, repository, shared memory, settings ---

INFERENCE_HEADER = "Inference-Header-Content-Length"
# A real POSIX shared-memory object the test creates (FUZZ_SHM_BYTES long), so some registrations map for real.
FUZZ_SHM_KEY = f"/edgeinfer-fuzz-{os.getpid()}"
FUZZ_SHM_BYTES = 4096
# Log settings the REST front starts with: restored after every example that may change them.
DEFAULT_LOG_SETTINGS = {
    "log_info": True,
    "log_warning": True,
    "log_error": True,
    "log_verbose_level": 0,
    "log_format": "default",
}
# Trace settings a null clears back to the server's defaults.
TRACE_RESET = {"trace_level": None, "trace_rate": None, "trace_count": None, "log_frequency": None}


@dataclass(frozen=True, eq=False)
class HostileCall:
    """One HTTP request to any route of the REST front, with the answers that are right for it (as HostileBody).

    An error's body must be JSON {"error": message}, the message holding one of the fragments.
    """

    kind: str
    method: str
    path: str  # percent-encoded, as sent
    body: bytes
    answers: BodyAnswers
    headers: tuple[tuple[str, bytes], ...] = ()
    # Whether it may change the log settings (then they are restored after it).
    changes_logging: bool = False

    def __post_init__(self) -> None:
        _named_causes(self.kind, self.answers, 200)
        if "%7B" in self.path or "%7D" in self.path:
            # A name with a brace matches no dynamic route of aiohttp's: its own 404, which names nothing else.
            answers = {**self.answers, 404: (*self.answers.get(404, ()), "Not Found")}
            object.__setattr__(self, "answers", answers)

    def __repr__(self) -> str:
        return (
            f"HostileCall({self.kind}, {self.method} {self.path[:200]}, headers {dict(self.headers)!r:.300}, "
            f"{len(self.body)} bytes {self.body[:200]!r}..., want {dict(self.answers)})"
        )


def _quote(segment: str) -> str:
    return quote(segment, safe="")


# A path segment from any text: percent-encoded, never empty, "." or ".." (which the URL would normalise away).
_segments = st.text(min_size=1, max_size=16).filter(lambda s: s not in (".", ".."))
_model_segments = st.sampled_from(MODELS) | _segments


def _infer_path(model: str, version: str) -> str:
    path = f"/v2/models/{_quote(model)}"
    if version:
        path += f"/versions/{_quote(version)}"
    return path + "/infer"


_infer_paths = st.builds(_infer_path, st.just("fraud"), st.sampled_from(VERSIONS))


def _binary_body(document: Any, binary: bytes) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    header = json.dumps(document).encode()
    return header + binary, ((INFERENCE_HEADER, str(len(header)).encode()),)


def _features_bytes(batch: int) -> bytes:
    return np.full((batch, FEATURES), 0.5, dtype="<f4").tobytes()


def _binary_fraud(batch: int, **input_params: Any) -> dict[str, Any]:
    params = {"binary_data_size": batch * FEATURES * 4, **input_params}
    return {"inputs": [{"name": "features", "datatype": "FP32", "shape": [batch, FEATURES], "parameters": params}]}


_BODY_FAULTS = (
    "request body is not valid",
    "request body must be a JSON object",
    "request body needs an 'inputs' list",
    "request body is nested too deeply",
)
_BINARY_FAULTS = (
    INFERENCE_HEADER,
    "binary_data_size",
    "bytes after the JSON header belong to no input",
    "input 'features'",
    *_BODY_FAULTS,
)
_header_values = st.one_of(
    st.integers(-(2**70), -1).map(str),
    st.integers(2**20, 10**60).map(str),  # past the body
    st.text(alphabet=string.printable.strip() + " \t", max_size=12),  # no CR or LF: http.client refuses them
    st.sampled_from(["", " ", "0", "-0", "+5", "1e3", "0x10", "12abc", "3.5", "٣", "²", "１２", "nan", "\t7"]),
)


@st.composite
def binary_header_length(draw: st.DrawFn) -> HostileCall:
    """Inference-Header-Content-Length that is negative, not a number, past the body, or cuts the JSON header."""
    batch = draw(st.integers(1, 4))
    body, _ = _binary_body(_binary_fraud(batch), _features_bytes(batch))
    header_length = len(body) - batch * FEATURES * 4
    how = draw(st.sampled_from(["value", "cuts the header", "past the header"]))
    if how == "value":
        value = draw(_header_values).encode("utf-8")
    elif how == "cuts the header":
        value = str(draw(st.integers(1, header_length - 1))).encode()
    else:
        value = str(draw(st.integers(header_length + 1, len(body) + 64))).encode()
    answers: BodyAnswers = {400: _BINARY_FAULTS}
    if value.strip() == str(header_length).encode():
        answers = {200: ()}
    return HostileCall(
        f"{INFERENCE_HEADER} {how}", "POST", draw(_infer_paths), body, answers, ((INFERENCE_HEADER, value),)
    )


_hostile_sizes = st.one_of(
    st.integers(-(2**63), -1),
    st.integers(0, 2**16),
    st.sampled_from([2**31, 2**32 + 1, 2**63 - 1, 2**63, 2**64, 2**70, 10**40]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def binary_data_sizes(draw: st.DrawFn) -> HostileCall:
    """binary_data_size negative, huge, of the wrong type, or not what the body holds (data and size both, too)."""
    batch = draw(st.integers(1, 4))
    size = draw(_hostile_sizes)
    document = _binary_fraud(batch, binary_data_size=size)
    if draw(st.integers(0, 4)) == 0:
        document["inputs"][0]["data"] = [0.5] * (batch * FEATURES)
    expected = batch * FEATURES * 4
    sent = draw(st.sampled_from([expected, expected, 0, expected - 4, expected + 4]) | st.integers(0, 2 * expected))
    binary = (_features_bytes(batch) * 2)[:sent]
    body, headers = _binary_body(document, binary)
    answers: BodyAnswers = {400: _BINARY_FAULTS}
    has_data = "data" in document["inputs"][0]
    exact = type(size) is int and size == expected == sent and not has_data
    if exact or (size is None and has_data and sent == 0):  # a null size is no size: then the JSON data counts
        answers = {200: ()}
    return HostileCall("hostile binary_data_size", "POST", draw(_infer_paths), body, answers, headers)


_OUTPUT_FAULTS = (
    "parameter 'binary_data'",
    "parameter 'binary_data_output'",
    "output '",
    "each requested output must be an object with a name",
    "'outputs' must be a list",
    "has no output(s)",
    "parameter value ",
    "an output is requested more than once",
)


@st.composite
def binary_parameters(draw: st.DrawFn) -> HostileCall:
    """binary_data on outputs and binary_data_output on the request, of any type, with JSON or binary inputs."""
    batch = draw(st.integers(1, 3))
    values = json_values | st.booleans()
    if draw(st.booleans()):
        document: Any = _binary_fraud(batch)
        binary = _features_bytes(batch)
    else:
        document, binary = {"inputs": [_good_input(batch)]}, b""
    if draw(st.booleans()):
        document["parameters"] = {"binary_data_output": draw(values)}
    if draw(st.booleans()):
        names = st.sampled_from(["probabilities", "label"]) | st.text(max_size=6)
        document["outputs"] = [
            {"name": draw(names), "parameters": {"binary_data": draw(values)}} for _ in range(draw(st.integers(0, 2)))
        ]
    if draw(st.booleans()):  # binary_data on an input means nothing to the front; it may be anything
        document["inputs"][0].setdefault("parameters", {})["binary_data"] = draw(values)
    if binary:
        body, headers = _binary_body(document, binary)
    else:
        body, headers = json.dumps(document).encode(), ()
    return HostileCall(
        "hostile binary_data parameters", "POST", draw(_infer_paths), body, {200: (), 400: _OUTPUT_FAULTS}, headers
    )


@st.composite
def binary_bytes_framing(draw: st.DrawFn) -> HostileCall:
    """echo_text's BYTES input as binary data whose 4-byte length prefixes lie (or happen to be right)."""
    batch = draw(st.integers(1, 8))
    count = batch * 2
    elements = draw(st.lists(st.text(max_size=6).map(str.encode), min_size=count, max_size=count))
    raw = bytearray(b"".join(struct.pack("<I", len(e)) + e for e in elements))
    for _ in range(draw(st.integers(0, 3))):  # overwrite a prefix-sized window with any length
        if len(raw) >= 4:
            at = draw(st.integers(0, len(raw) - 4))
            raw[at : at + 4] = struct.pack("<I", draw(st.integers(0, 2**32 - 1) | st.integers(0, 16)))
    cut = draw(st.sampled_from(["none", "none", "truncate", "append"]))
    if cut == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif cut == "append":
        raw += draw(st.binary(min_size=1, max_size=8))
    data = bytes(raw)
    document = {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [batch, 2], "parameters": {"binary_data_size": len(data)}}
        ]
    }
    body, headers = _binary_body(document, data)
    # Well framed, an element made of a lying prefix's bytes may not be UTF-8 (echo_text's strings are text).
    framed: BodyAnswers = {200: (), 400: ("input 'text' element ",)}
    answers = framed if _frames(data, count) else {400: _BYTES_FRAMING}
    path = _infer_path("echo_text", draw(st.sampled_from(VERSIONS)))
    return HostileCall("lying binary BYTES prefixes", "POST", path, body, answers, headers)


_ENCODING_FAULTS = ("request body cannot be read", "Content-Encoding", *_BODY_FAULTS)
# A cut or flipped stream may still decode: to the same JSON, or to JSON that says something else.
_ENCODING_ANY: BodyAnswers = {200: (), 400: (*_ENCODING_FAULTS, *_JSON_FAULTS["body"])}


def _good_json() -> bytes:
    return json.dumps({"inputs": [_good_input(1)]}).encode()


def _packer(encoding: str) -> Callable[[bytes], bytes]:
    packers: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress}
    return packers[encoding]


@st.composite
def encoded_bodies(draw: st.DrawFn) -> HostileCall:
    """Bodies that decode (gzip or deflate, what tritonclient sends): good JSON, not JSON, a bomb past the body
    limit; or an encoding not served (br and zstd among them), or a list of them."""
    encoding = draw(st.sampled_from(["gzip", "deflate"]))
    pack = _packer(encoding)
    how = draw(st.sampled_from(["good", "not JSON", "bomb", "unknown encoding"]))
    answers: BodyAnswers = {400: _ENCODING_FAULTS}
    if how == "good":
        body, answers = pack(_good_json()), {200: ()}
    elif how == "not JSON":
        body = pack(draw(st.binary(min_size=1, max_size=64)))
        answers = {400: (*_BODY_FAULTS, *_JSON_FAULTS["body"])}
    elif how == "bomb":  # a few KiB that inflate past the body limit
        size = draw(st.integers(MAX_MESSAGE_BYTES + 1, 4 * MAX_MESSAGE_BYTES))
        body = pack(b'{"inputs": [], "id": "' + b"x" * size + b'"}')
        answers = {413: ("request body is too large",)}
    else:
        encoding = draw(
            st.sampled_from(["compress", "x-gzip", "gzip, gzip", "identity, br", "*", "bogus", "GZIP ", "br", "zstd"])
        )
        body = pack(_good_json())
        if encoding == "GZIP ":  # the front compares stripped and lower-cased: this is gzip
            body, answers = gzip.compress(_good_json()), {200: ()}
    headers = (("Content-Encoding", encoding.encode()), ("Content-Type", b"application/json"))
    return HostileCall(f"{how} {encoding} body", "POST", draw(_infer_paths), body, answers, headers)


@st.composite
def corrupt_encoding(draw: st.DrawFn) -> HostileCall:
    """Content-Encoding gzip or deflate with corrupt, cut, flipped or trailing-junk data: a JSON 400 (or, where it
    still decodes, the answer to what it decodes to), and no traceback."""
    encoding = draw(st.sampled_from(["gzip", "deflate"]))
    packed = _packer(encoding)(_good_json())
    how = draw(st.sampled_from(["random", "cut", "junk after", "flipped"]))
    if how == "random":
        body = draw(st.binary(min_size=1, max_size=256))
    elif how == "cut":
        body = packed[: draw(st.integers(0, len(packed) - 1))]
    elif how == "junk after":
        body = packed + draw(st.binary(min_size=1, max_size=16))
    else:
        at = draw(st.integers(0, len(packed) - 1))
        body = packed[:at] + bytes([packed[at] ^ draw(st.integers(1, 255))]) + packed[at + 1 :]
    headers = (("Content-Encoding", encoding.encode()), ("Content-Type", b"application/json"))
    return HostileCall(f"{how} {encoding} body", "POST", draw(_infer_paths), body, _ENCODING_ANY, headers)


_REST_SHM_FAULTS = (
    "shared_memory_",
    "shared memory region",
    "input 'features'",
    "output '",
    "has no output(s)",
    "parameter value ",
)


@st.composite
def rest_bogus_shared_memory(draw: st.DrawFn) -> HostileCall:
    """Inputs and/or outputs naming regions never registered, with offsets and sizes of any value and type."""
    batch = draw(st.integers(1, 4))
    values = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 4, 120 * batch, 2**64]) | json_values
    region = "bogus-" + draw(st.text(max_size=16))
    region_value = draw(st.just(region) | json_values)

    def params() -> dict[str, Any]:
        out: dict[str, Any] = {"shared_memory_region": region_value}
        for key in ("shared_memory_byte_size", "shared_memory_offset"):
            if draw(st.integers(0, 3)):
                out[key] = draw(values)
        return out

    tensor: dict[str, Any] = {"name": "features", "datatype": "FP32", "shape": [batch, FEATURES]}
    in_region = draw(st.booleans())
    if in_region:
        tensor["parameters"] = params()
    else:
        tensor["data"] = [0.5] * (batch * FEATURES)
    document: dict[str, Any] = {"inputs": [tensor]}
    if not in_region or draw(st.booleans()):
        output: dict[str, Any] = {"name": draw(st.sampled_from(["probabilities", "label"])), "parameters": params()}
        if draw(st.integers(0, 3)) == 0:
            output["parameters"][draw(st.sampled_from(["binary_data", "classification"]))] = draw(values)
        document["outputs"] = [output]
    answers: BodyAnswers = {400: _REST_SHM_FAULTS}
    if draw(st.integers(0, 3)) == 0:  # sizes without a region
        target = document.get("outputs", [tensor])[0]
        target_params = target.setdefault("parameters", {})
        target_params.pop("shared_memory_region", None)
        if "shared_memory_offset" not in target_params:
            target_params.setdefault("shared_memory_byte_size", draw(values))
        if not in_region:
            # The REST front checks region parameters only where some tensor names a region: an output's size or
            # offset alone is passed on, and served (gRPC refuses it, as Triton does).
            answers = {200: (), **answers}
    body = json.dumps(document).encode()
    return HostileCall("tensors in bogus shared memory", "POST", draw(_infer_paths), body, answers)


_CLASSIFICATION_FAULTS = (
    "classification",
    "output '",
    "has no output(s)",
    "model '",
    "an output is requested",
    "each requested output must be an object with a name",
)


@st.composite
def hostile_classification(draw: st.DrawFn) -> HostileCall:
    """classification of any value on fraud's outputs (or none of its), or on echo_text's BYTES output."""
    model = draw(st.sampled_from(["fraud", "fraud", "echo_text"]))
    if model == "fraud":
        inputs = [_good_input(draw(st.integers(1, 3)))]
        names = st.sampled_from(["probabilities", "probabilities", "label"]) | st.text(max_size=6)
    else:
        inputs = [{"name": "text", "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]}]
        names = st.sampled_from(["same"]) | st.text(max_size=6)
    counts = st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 5) | st.sampled_from([2**64, 10**30]) | json_values
    outputs = [
        {"name": draw(names), "parameters": {"classification": draw(counts)}} for _ in range(draw(st.integers(1, 2)))
    ]
    document: dict[str, Any] = {"inputs": inputs, "outputs": outputs}
    if draw(st.booleans()):
        document["parameters"] = {"binary_data_output": draw(st.booleans())}
    path = _infer_path(model, draw(st.sampled_from(VERSIONS)))
    body = json.dumps(document).encode()
    return HostileCall("hostile classification", "POST", path, body, {200: (), 400: _CLASSIFICATION_FAULTS})


# Raw segments the URL layer itself may reject or normalise (then aiohttp's own 404 "Not Found").
_raw_junk = st.sampled_from(["%", "%zz", "%00", "%FF", "%2F", "%2e%2e", "..", ".", "%C0%AF", "a%", "%%", "~", ";x"])
_LOOKUP_FAULTS = ("unknown model '", "has no version '", "Not Found")


@st.composite
def config_and_stats(draw: st.DrawFn) -> HostileCall:
    """GET a model's config or stats (a version's too), or every model's stats: hostile, percent-encoded names."""
    what = draw(st.sampled_from(["config", "stats", "all stats"]))
    if what == "all stats":
        path = "/v2/models/stats" + draw(st.sampled_from(["", "?x=1", "?model=%00"]))
        return HostileCall("every model's stats", "GET", path, b"", {200: ()})
    raw = draw(st.integers(0, 3)) == 0
    model = draw(_raw_junk) if raw else _quote(draw(_model_segments))
    path = f"/v2/models/{model}"
    if draw(st.booleans()):
        version = draw(_raw_junk) if raw else _quote(draw(st.sampled_from(["1", "2", "0", "-1"]) | _segments))
        path += f"/versions/{version}"
    path += "/" + what
    return HostileCall(f"GET {what}", "GET", path, b"", {200: (), 400: _LOOKUP_FAULTS, 404: _LOOKUP_FAULTS})


def _hostile_json_body(draw: st.DrawFn, keys: st.SearchStrategy[str], values: st.SearchStrategy[Any]) -> bytes:
    """A body for a JSON-object route: an object with hostile keys and values, any JSON, not JSON, or empty."""
    how = draw(st.sampled_from(["object", "object", "object", "any JSON", "not JSON", "empty"]))
    if how == "object":
        return json.dumps(draw(st.dictionaries(keys, values, max_size=5))).encode()
    if how == "any JSON":
        return json.dumps(draw(json_values)).encode()
    if how == "not JSON":
        return draw(st.binary(min_size=1, max_size=128) | st.sampled_from([b"{", b"[1,", b"\xff", b"nul", b"{}{}"]))
    return draw(st.sampled_from([b"", b" ", b"\n\t"]))


_REQUEST_BODY = ("request body", "request is not valid", "request must be a JSON object", "request is nested")


@st.composite
def repository_calls(draw: st.DrawFn) -> HostileCall:
    """POST the repository index with hostile bodies; load and unload any model (always refused here)."""
    route = draw(st.sampled_from(["index", "index", "load", "unload"]))
    if route == "index":
        body = _hostile_json_body(
            draw, st.sampled_from(["ready", "repository_name"]) | st.text(max_size=8), json_values
        )
        faults = ("'ready' must be true or false", *_REQUEST_BODY)
        return HostileCall("repository index", "POST", "/v2/repository/index", body, {200: (), 400: faults})
    name = _quote(draw(_model_segments))
    body = _hostile_json_body(draw, st.sampled_from(["parameters", "config"]) | st.text(max_size=8), json_values)
    path = f"/v2/repository/models/{name}/{route}"
    return HostileCall(f"repository {route}", "POST", path, body, {400: ("edgeinfer deploy",)})


_SHM_KEYS = st.one_of(
    st.text(max_size=24).filter(lambda k: "\x00" not in k),
    st.sampled_from(
        [
            FUZZ_SHM_KEY,
            FUZZ_SHM_KEY[1:],
            "/",
            "",
            ".",
            "..",
            "/..",
            "../" + FUZZ_SHM_KEY[1:],
            "/../../etc/passwd",
            "/dev/shm" + FUZZ_SHM_KEY,
            "/edgeinfer-no-such-key",
            "/triton_python_backend_shm_region_x",
            "x" * 300,
        ]
    ),
)
_region_sizes = st.one_of(
    st.integers(-(2**63), FUZZ_SHM_BYTES + 1),
    st.sampled_from([0, 1, FUZZ_SHM_BYTES, FUZZ_SHM_BYTES - 1, 2**31, 2**63, 2**64 + 1, 2**70, 10**40]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
)
_SHM_ROUTE_FAULTS = (
    "registering region '",
    "register shared memory region '",
    "shared memory region '",
    "system shared memory region: '",
    "shared memory register request",
    *_REQUEST_BODY,
)
_REGISTERED_FAULTS = ("is already registered", "regions are registered")


def _register_body(draw: st.DrawFn, key: st.SearchStrategy[str]) -> bytes:
    document: dict[str, Any] = {}
    for field, values in (("key", key | json_values), ("offset", _region_sizes), ("byte_size", _region_sizes)):
        if draw(st.integers(0, 5)):
            document[field] = draw(values)
    if draw(st.integers(0, 5)) == 0:
        return _hostile_json_body(draw, st.sampled_from(["key", "offset", "byte_size"]), json_values)
    return json.dumps(document).encode()


# The region names register uses: a few, so status and unregister find them too.
_region_names = st.sampled_from(["fuzz-a", "fuzz-b", "r"]) | _segments


@st.composite
def system_shared_memory(draw: st.DrawFn) -> HostileCall:
    """Register (hostile key, offset, byte_size: "../", reserved, absent or real keys, huge sizes), status and
    unregister of any region, or all. A registration that works is undone by the test (unregister_after)."""
    route = draw(st.sampled_from(["register", "register", "register", "status", "status all", "unregister"]))
    name = draw(_region_names)
    path = f"/v2/systemsharedmemory/region/{_quote(name)}"
    if route == "register":
        body = _register_body(draw, _SHM_KEYS)
        answers = {200: (), 400: _SHM_ROUTE_FAULTS, 409: _REGISTERED_FAULTS, 429: _REGISTERED_FAULTS}
        return HostileCall("register a region", "POST", path + "/register", body, answers)
    if route == "status":
        return HostileCall("a region's status", "GET", path + "/status", b"", {200: (), 404: _SHM_ROUTE_FAULTS})
    if route == "status all":
        return HostileCall("every region's status", "GET", "/v2/systemsharedmemory/status", b"", {200: ()})
    if draw(st.booleans()):
        path = "/v2/systemsharedmemory"
    body = _hostile_json_body(draw, st.text(max_size=8), json_values)
    return HostileCall("unregister", "POST", path + "/unregister", body, {200: ()})


@st.composite
def shm_key_nul(draw: st.DrawFn) -> HostileCall:
    """Register with a key holding a NUL byte: a 400 naming the key, as for any key that names no object."""
    key = draw(st.text(max_size=8)) + "\x00" + draw(st.text(max_size=8))
    body = json.dumps({"key": "/" + key.lstrip("/"), "byte_size": draw(st.integers(1, 64))}).encode()
    path = f"/v2/systemsharedmemory/region/{_quote(draw(_region_names))}/register"
    return HostileCall("register a key with NUL", "POST", path, body, {400: _SHM_ROUTE_FAULTS})


@st.composite
def cuda_shared_memory(draw: st.DrawFn) -> HostileCall:
    """Every CUDA shared-memory route with any name and body: registering is 501 naming system shared memory; the
    status of a name is 404 (none can exist), of all an empty list; unregistering succeeds (a CPU build of Triton)."""
    name = _quote(draw(_region_names))
    method, path = draw(
        st.sampled_from(
            [
                ("GET", "/v2/cudasharedmemory/status"),
                ("GET", f"/v2/cudasharedmemory/region/{name}/status"),
                ("POST", f"/v2/cudasharedmemory/region/{name}/register"),
                ("POST", "/v2/cudasharedmemory/unregister"),
                ("POST", f"/v2/cudasharedmemory/region/{name}/unregister"),
            ]
        )
    )
    keys = st.sampled_from(["raw_handle", "device_id", "byte_size"]) | st.text(max_size=8)
    body = _hostile_json_body(draw, keys, json_values) if method == "POST" else b""
    answers: BodyAnswers = {501: ("system shared memory",)}
    if path.endswith("/unregister") or path == "/v2/cudasharedmemory/status":
        answers = {200: ()}
    elif path.endswith("/status"):
        answers = {404: ("no CUDA shared memory region",)}
    return HostileCall("CUDA shared memory", method, path, body, answers)


_setting_values = json_values | _texts | st.lists(_texts, max_size=3)
_TRACE_FAULTS = ("trace setting", "unknown model '", *_REQUEST_BODY)


@st.composite
def trace_settings(draw: st.DrawFn) -> HostileCall:
    """GET or POST the global or a model's trace settings, hostile keys and values (the test restores them)."""
    path = "/v2/trace/setting"
    if draw(st.booleans()):
        path = f"/v2/models/{_quote(draw(_model_segments))}/trace/setting"
    if draw(st.integers(0, 4)) == 0:
        return HostileCall("read trace settings", "GET", path, b"", {200: (), 400: _TRACE_FAULTS})
    body = _hostile_json_body(draw, st.sampled_from(TRACE_KEYS) | st.text(max_size=8), _setting_values)
    answers = {200: (), 400: _TRACE_FAULTS, 429: ("trace settings for model '",), 501: ("trace_file",)}
    return HostileCall("change trace settings", "POST", path, body, answers)


_LOG_FAULTS = ("log setting", *_REQUEST_BODY)


@st.composite
def log_settings(draw: st.DrawFn) -> HostileCall:
    """GET or POST /v2/logging with hostile keys and values (any of them off too: the test restores them)."""
    if draw(st.integers(0, 4)) == 0:
        return HostileCall("read log settings", "GET", "/v2/logging", b"", {200: ()})
    values = _setting_values | st.booleans() | st.integers(-3, 3) | st.sampled_from(["ISO8601", "default"])
    body = _hostile_json_body(draw, st.sampled_from(LOG_KEYS) | st.text(max_size=8), values)
    answers = {200: (), 400: _LOG_FAULTS, 501: ("log_file",)}
    return HostileCall("change log settings", "POST", "/v2/logging", body, answers, changes_logging=True)


# A number past Python's int-string limit (4300 digits): json.loads and int() raise ValueError on it.
_HUGE_NUMBER_FAULTS = ("is not valid JSON", INFERENCE_HEADER, "digits", "too large", "too long")
_JSON_ROUTES = (
    "/v2/models/fraud/infer",
    "/v2/repository/index",
    "/v2/systemsharedmemory/region/fuzz-a/register",
    "/v2/trace/setting",
    "/v2/models/fraud/trace/setting",
    "/v2/logging",
)


@st.composite
def huge_numbers(draw: st.DrawFn) -> HostileCall:
    """A JSON body with an integer of more than 4300 digits, or an Inference-Header-Content-Length that long."""
    digits = "9" * draw(st.integers(4301, 6000))
    if draw(st.booleans()):
        batch = 1
        body, _ = _binary_body(_binary_fraud(batch), _features_bytes(batch))
        headers = ((INFERENCE_HEADER, digits.encode()),)
        return HostileCall(
            "huge Inference-Header-Content-Length",
            "POST",
            "/v2/models/fraud/infer",
            body,
            {400: _HUGE_NUMBER_FAULTS},
            headers,
        )
    route = draw(st.sampled_from(_JSON_ROUTES))
    key = draw(st.sampled_from(["id", "ready", "byte_size", "trace_rate", "log_verbose_level", "x"]))
    body = ('{"' + key + '": ' + digits + "}").encode() if draw(st.booleans()) else digits.encode()
    return HostileCall(
        "huge JSON integer", "POST", route, body, {400: _HUGE_NUMBER_FAULTS}, changes_logging=route == "/v2/logging"
    )


ROUTE_CASES: dict[str, st.SearchStrategy[HostileCall]] = {
    "binary_header_length": binary_header_length(),
    "binary_data_sizes": binary_data_sizes(),
    "binary_parameters": binary_parameters(),
    "binary_bytes_framing": binary_bytes_framing(),
    "corrupt_encoding": corrupt_encoding(),
    "encoded_bodies": encoded_bodies(),
    "rest_bogus_shared_memory": rest_bogus_shared_memory(),
    "hostile_classification": hostile_classification(),
    "config_and_stats": config_and_stats(),
    "repository_calls": repository_calls(),
    "system_shared_memory": system_shared_memory(),
    "shm_key_nul": shm_key_nul(),
    "cuda_shared_memory": cuda_shared_memory(),
    "trace_settings": trace_settings(),
    "log_settings": log_settings(),
    "huge_numbers": huge_numbers(),
}


def _known(kind: str, path: str, body: bytes, answers: BodyAnswers, *headers: tuple[str, bytes]) -> HostileCall:
    return HostileCall(kind, "POST", path, body, answers, headers)


# Crashes this fuzzing found, each with what it was and its reproducers, which run first, every time, as
# hypothesis examples, so none comes back. All fixed: rest_json.parse_json_body refuses over-long numbers,
# rest_binary.split_body caps the header length's digits, SystemSharedMemory.register refuses a NUL in a key, and
# the REST front decodes gzip/deflate itself (rest_binary.decode_body) instead of leaving it to aiohttp.
FOUND_CRASHES: dict[str, tuple[str, tuple[HostileCall, ...]]] = {
    "huge_numbers": (
        "a >4300-digit integer is a 500 with a traceback: in a JSON body (rest_json.parse_json_body catches "
        "JSONDecodeError, but json.loads raises a plain ValueError: 'Exceeds the limit (4300 digits)'), and as "
        "Inference-Header-Content-Length (rest_binary.split_body: int() raises the same ValueError); e.g. "
        'POST /v2/trace/setting with the body {"trace_rate": 999...(5000 digits)}',
        (
            _known(
                "huge JSON integer",
                "/v2/trace/setting",
                b'{"trace_rate": ' + b"9" * 5000 + b"}",
                {400: _HUGE_NUMBER_FAULTS},
            ),
            _known(
                "huge Inference-Header-Content-Length",
                "/v2/models/fraud/infer",
                _binary_body(_binary_fraud(1), _features_bytes(1))[0],
                {400: _HUGE_NUMBER_FAULTS},
                (INFERENCE_HEADER, b"9" * 5000),
            ),
        ),
    ),
    "shm_key_nul": (
        'POST /v2/systemsharedmemory/region/r1/register with the body {"key": "/a\\u0000b", "byte_size": 4} is '
        "a 500 with a traceback: SystemSharedMemory._map's os.open raises ValueError (embedded null byte), which "
        "only OSError is caught for",
        (
            _known(
                "register a key with NUL",
                "/v2/systemsharedmemory/region/r1/register",
                b'{"key": "/a\\u0000b", "byte_size": 4}',
                {400: _SHM_ROUTE_FAULTS},
            ),
        ),
    ),
    "corrupt_encoding": (
        "a compressed body aiohttp cannot decode is answered 400 (JSON), but aiohttp.server then logs 'Unhandled "
        "exception' with a traceback (web_protocol drains the payload after the handler and the decoder's "
        "ContentEncodingError surfaces again): e.g. POST /v2/models/fraud/infer with Content-Encoding: gzip and "
        "the body b'garbage' (deflate and br alike). A cut zlib stream (Content-Encoding: deflate, the body "
        "zlib.compress(json)[:-3]) even gets a 400 whose body is the text 'deflate', not JSON; Content-Encoding: "
        "zstd (backports.zstd not installed) a plain-text 400 and 'Error handling request' with a traceback",
        (
            _known("random gzip", "/v2/models/fraud/infer", b"garbage", _ENCODING_ANY, ("Content-Encoding", b"gzip")),
            _known(
                "cut deflate",
                "/v2/models/fraud/infer",
                zlib.compress(_good_json())[:-3],
                _ENCODING_ANY,
                ("Content-Encoding", b"deflate"),
            ),
            _known("zstd", "/v2/models/fraud/infer", b"x", _ENCODING_ANY, ("Content-Encoding", b"zstd")),
        ),
    ),
}
