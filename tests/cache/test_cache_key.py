"""Cache keys: everything that can change a result changes the key; nothing else does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgeinfer.cache.key import (
    DIGEST_SIZE,
    KEY_VERSION,
    NON_SEMANTIC_PARAMETERS,
    CacheKeyParts,
    InputPart,
    OutputPart,
    ParamValue,
    cache_key,
    encode_parts,
    key_parts_from_request,
    uncacheable_reason,
)
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.tensors import build_request, decode_inputs, raw_bytes

DATA = np.arange(6, dtype=np.float32)


def base(**changes: object) -> CacheKeyParts:
    parts = CacheKeyParts(
        tenant="acme",
        model="fraud",
        version="1",
        inputs=[InputPart("x", "FP32", (2, 3), raw_bytes(DATA, "FP32"))],
        outputs=[OutputPart("y")],
        parameters={"temperature": ParamValue.of(0.5)},
    )
    return replace(parts, **changes)  # type: ignore[arg-type]


def key_of(request: pb.ModelInferRequest, tenant: str = "acme", version: str = "1") -> bytes:
    decoded, _ = decode_inputs(request)
    return cache_key(key_parts_from_request(request, decoded, tenant=tenant, version=version))


def test_digest_is_stable_and_sized() -> None:
    assert cache_key(base()) == cache_key(base())
    assert len(cache_key(base())) == DIGEST_SIZE
    assert b"".join(encode_parts(base()))[:2] == KEY_VERSION.to_bytes(2, "little")


@pytest.mark.parametrize(
    "changes",
    [
        # Same bytes, another shape.
        {"inputs": [InputPart("x", "FP32", (3, 2), raw_bytes(DATA, "FP32"))]},
        {"inputs": [InputPart("x", "FP32", (6,), raw_bytes(DATA, "FP32"))]},
        # Same bytes, another datatype.
        {"inputs": [InputPart("x", "INT32", (2, 3), raw_bytes(DATA, "FP32"))]},
        {"inputs": [InputPart("x", "FP32", (2, 3), raw_bytes(DATA + 1, "FP32"))]},
        {"inputs": [InputPart("z", "FP32", (2, 3), raw_bytes(DATA, "FP32"))]},
        {"inputs": [InputPart("x", "FP32", (2, 3), raw_bytes(DATA, "FP32"), {"p": ParamValue.of(1)})]},
        {"outputs": []},
        {"outputs": [OutputPart("y"), OutputPart("z")]},
        {"outputs": [OutputPart("y", {"classification": ParamValue.of(3)})]},
        {"parameters": {}},
        {"parameters": {"temperature": ParamValue.of(0.6)}},
        {"parameters": {"temperature": ParamValue.of("0.5")}},
        {"parameters": {"temperature": ParamValue.of(0.5), "top_k": ParamValue.of(5)}},
        {"tenant": "other"},
        {"version": "2"},
        {"model": "ranker"},
    ],
)
def test_each_field_changes_the_key(changes: dict[str, object]) -> None:
    assert cache_key(base(**changes)) != cache_key(base())


def test_parameter_types_are_tagged() -> None:
    values = [
        ParamValue.of(True), ParamValue.of(1), ParamValue.of(1.0), ParamValue.of("1"),
        ParamValue(ParamValue.of(1).type.UINT64, 1),
    ]
    keys = {cache_key(base(parameters={"p": v})) for v in values}
    assert len(keys) == len(values)


def test_length_prefixes_remove_ambiguity() -> None:
    assert cache_key(base(tenant="a", model="bc")) != cache_key(base(tenant="ab", model="c"))
    assert cache_key(base(model="m", version="12")) != cache_key(base(model="m1", version="2"))
    two = [InputPart("a", "UINT8", (1,), b"\x01"), InputPart("b", "UINT8", (2,), b"\x02\x03")]
    moved = [InputPart("a", "UINT8", (2,), b"\x01\x02"), InputPart("b", "UINT8", (1,), b"\x03")]
    assert cache_key(base(inputs=two)) != cache_key(base(inputs=moved))
    assert cache_key(base(parameters={"ab": ParamValue.of("c")})) != cache_key(
        base(parameters={"a": ParamValue.of("bc")})
    )


def test_order_of_inputs_outputs_and_parameters_does_not_matter() -> None:
    a, b = InputPart("a", "UINT8", (1,), b"\x01"), InputPart("b", "UINT8", (1,), b"\x02")
    p = {"x": ParamValue.of(1), "y": ParamValue.of("z")}
    one = base(inputs=[a, b], outputs=[OutputPart("y"), OutputPart("z")], parameters=p)
    other = base(inputs=[b, a], outputs=[OutputPart("z"), OutputPart("y")], parameters=dict(reversed(p.items())))
    assert cache_key(one) == cache_key(other)


@pytest.mark.parametrize(
    "inputs",
    [
        {"x": np.arange(12, dtype=np.float32).reshape(3, 4)},
        {"x": np.arange(4, dtype=np.int64), "y": np.array([[True, False]])},
        {"ids": np.array([b"alpha", b"", b"\x00\xff"], dtype=np.object_)},
        {"u8": np.array([1, 255], dtype=np.uint8), "f64": np.array([0.1, -2.5], dtype=np.float64)},
    ],
)
def test_raw_and_typed_contents_give_the_same_key(inputs: dict[str, np.ndarray]) -> None:
    raw = build_request("m", inputs, raw=True)
    typed = build_request("m", inputs, raw=False)
    assert len(raw.raw_input_contents) and not len(typed.raw_input_contents)
    assert key_of(raw) == key_of(typed)


def test_request_id_and_denylisted_parameters_do_not_change_the_key() -> None:
    x = {"x": np.arange(3, dtype=np.float32)}
    plain = build_request("m", x, request_id="r1")
    other = build_request("m", x, request_id="r2")
    for name in NON_SEMANTIC_PARAMETERS:
        other.parameters[name].string_param = "whatever"
    other.parameters["cache"].bool_param = True
    assert key_of(plain) == key_of(other)
    other.parameters["temperature"].double_param = 0.1
    assert key_of(plain) != key_of(other)


def test_request_fields_reach_the_key() -> None:
    x = {"x": np.arange(3, dtype=np.float32)}
    plain = build_request("m", x, outputs=["y"])
    assert key_of(plain) != key_of(plain, tenant="t2")
    assert key_of(plain) != key_of(plain, version="2")
    assert key_of(plain) != key_of(build_request("m2", x, outputs=["y"]))
    assert key_of(plain) != key_of(build_request("m", x, outputs=["z"]))
    classified = build_request("m", x, outputs=["y"])
    classified.outputs[0].parameters["classification"].int64_param = 2
    assert key_of(plain) != key_of(classified)
    framed = build_request("m", x, outputs=["y"])
    framed.outputs[0].parameters["binary_data"].bool_param = True
    framed.inputs[0].parameters["binary_data_size"].int64_param = 12
    assert key_of(plain) == key_of(framed)


def test_same_bytes_other_shape_or_datatype_from_requests() -> None:
    flat = build_request("m", {"x": np.arange(4, dtype=np.float32)})
    square = build_request("m", {"x": np.arange(4, dtype=np.float32).reshape(2, 2)})
    as_int = build_request("m", {"x": np.arange(4, dtype=np.float32).view(np.int32)})
    assert flat.raw_input_contents[0] == square.raw_input_contents[0] == as_int.raw_input_contents[0]
    assert len({key_of(flat), key_of(square), key_of(as_int)}) == 3


def test_uncacheable_requests() -> None:
    x = {"x": np.arange(3, dtype=np.float32)}
    assert uncacheable_reason(build_request("m", x)) is None
    off = build_request("m", x)
    off.parameters["cache"].bool_param = False
    assert uncacheable_reason(off) == "client disabled caching"
    off.parameters["cache"].string_param = "Off"
    assert uncacheable_reason(off) == "client disabled caching"
    on = build_request("m", x)
    on.parameters["cache"].bool_param = True
    assert uncacheable_reason(on) is None
    seq = build_request("m", x)
    seq.parameters["sequence_id"].int64_param = 7
    assert uncacheable_reason(seq) is not None
    shm = build_request("m", x)
    shm.inputs[0].parameters["shared_memory_region"].string_param = "r0"
    assert uncacheable_reason(shm) is not None


def test_classification_and_other_output_parameters_change_the_key() -> None:
    """The classification extension (class_count in tritonclient) turns an output into top-k strings: its count,
    and which output it applies to, are part of the key, as is any output parameter that is not framing."""
    x = {"x": np.arange(3, dtype=np.float32)}

    def classified(counts: dict[str, int], extra: dict[str, str] | None = None) -> pb.ModelInferRequest:
        request = build_request("m", x, outputs=["a", "b"])
        for out in request.outputs:
            if out.name in counts:
                out.parameters["classification"].int64_param = counts[out.name]
            for name, value in (extra or {}).items():
                out.parameters[name].string_param = value
        return request

    keys = [
        key_of(classified({})),
        key_of(classified({"a": 2})),
        key_of(classified({"a": 3})),
        key_of(classified({"b": 2})),
        key_of(classified({"a": 2, "b": 2})),
        key_of(classified({}, {"label_set": "en"})),
    ]
    assert len(set(keys)) == len(keys)
    # Same classification, sent again or with binary_data framing: the same key, so it is served from the cache.
    framed = classified({"a": 2})
    framed.outputs[0].parameters["binary_data"].bool_param = False
    assert key_of(framed) == key_of(classified({"a": 2})) == keys[1]
