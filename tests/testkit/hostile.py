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

import json
import os
import string
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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

    def __post_init__(self) -> None:
        _named_causes(self.kind, self.answers, OK)

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them readable
        want = {code.name: says for code, says in self.answers.items()}
        return f"Hostile({self.kind}, {len(self.payload)} bytes, {self.payload[:120]!r}..., want {want})"


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


GRPC_CASES = {
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
