"""Property tests: the wire-level key (cache/wire_key.py) never disagrees with the canonical key (cache/key.py).

Requests are drawn from small pools (two tenants, versions, ids, parameters, outputs, tensors, raw or typed,
fields repeated or reordered on the wire), so equal wire keys come up often: each such pair must have equal
canonical keys. Different tenants or resolved versions never share a wire key, and the byte scan reads what the
protobuf parser reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeinfer.cache.key import cache_key, key_parts_from_request, uncacheable_reason
from edgeinfer.cache.wire_key import wire_cacheable, wire_key
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.tensors import build_request, decode_inputs
from edgeinfer.protocol.wire import scan_infer_request

MODEL = "m"
TENSORS = [np.arange(4, dtype=np.float32).reshape(1, 4), np.ones((1, 4), dtype=np.float32)]
PARAMETERS: dict[str, pb.InferParameter] = {
    "priority": pb.InferParameter(int64_param=2),  # non-semantic: out of the canonical key
    "temperature": pb.InferParameter(double_param=0.5),
    "top_k": pb.InferParameter(int64_param=3),
    "cache": pb.InferParameter(bool_param=True),
}
UNCACHEABLE: dict[str, pb.InferParameter] = {
    "cache": pb.InferParameter(string_param="off"),
    "sequence_id": pb.InferParameter(int64_param=9),
    "sequence_end": pb.InferParameter(bool_param=True),
}


@dataclass(frozen=True)
class Drawn:
    data: bytes
    tenant: str
    default_version: str  # what an unversioned request resolves to (the model's metadata says)

    @property
    def request(self) -> pb.ModelInferRequest:
        return pb.ModelInferRequest.FromString(self.data)

    @property
    def version(self) -> str:
        return self.request.model_version or self.default_version

    def wire(self) -> bytes | None:
        scanned = scan_infer_request(self.data)
        assert scanned is not None
        # The model's tag stands for its metadata: here, which version is the newest.
        return wire_key(scanned, tenant=self.tenant, version=self.version, model_tag=self.default_version.encode())

    def canonical(self) -> bytes:
        request = self.request
        decoded, _ = decode_inputs(request)
        return cache_key(key_parts_from_request(request, decoded, tenant=self.tenant, version=self.version))


@st.composite
def requests(draw: st.DrawFn, parameters: dict[str, pb.InferParameter] = PARAMETERS) -> Drawn:
    request = build_request(
        MODEL,
        {"x": TENSORS[draw(st.integers(0, len(TENSORS) - 1))]},
        version=draw(st.sampled_from(["", "1", "2"])),
        request_id=draw(st.sampled_from(["", "a", "b", "ü"])),
        outputs=draw(st.sampled_from([(), ("y",), ("y", "z"), ("z", "y")])),
        raw=draw(st.booleans()),
    )
    for name in draw(st.lists(st.sampled_from(sorted(parameters)), unique=True, max_size=2)):
        request.parameters[name].CopyFrom(parameters[name])
    data = request.SerializeToString()
    # On the wire an id may come more than once (the last wins), before or after the rest.
    extra_id = pb.ModelInferRequest(id=draw(st.sampled_from(["", "early", "late"]))).SerializeToString()
    data = draw(st.sampled_from([data, extra_id + data, data + extra_id]))
    return Drawn(data, draw(st.sampled_from(["acme", "globex"])), draw(st.sampled_from(["1", "2"])))


@settings(max_examples=400)
@given(requests(), requests())
def test_equal_wire_keys_imply_equal_canonical_keys(a: Drawn, b: Drawn) -> None:
    if a.wire() == b.wire():
        assert a.canonical() == b.canonical()


@settings(max_examples=200)
@given(requests(), st.sampled_from(["", "a", "zz", "日本"]))
def test_the_id_never_changes_either_key(drawn: Drawn, other_id: str) -> None:
    # Appended, an id field replaces the id (the last wins); re-serializing could reorder the parameter map.
    again = Drawn(
        drawn.data + pb.ModelInferRequest(id=other_id).SerializeToString(), drawn.tenant, drawn.default_version
    )
    assert again.wire() == drawn.wire()
    assert again.canonical() == drawn.canonical()


@settings(max_examples=300)
@given(requests(), requests())
def test_different_tenants_or_resolved_versions_never_share_a_wire_key(a: Drawn, b: Drawn) -> None:
    if a.tenant != b.tenant or a.version != b.version:
        assert a.wire() != b.wire()


@given(requests())
def test_raw_and_typed_contents_share_the_canonical_key_under_different_wire_keys(drawn: Drawn) -> None:
    request = drawn.request
    decoded, raw = decode_inputs(request)
    other = build_request(
        MODEL,
        decoded,
        version=request.model_version,
        request_id=request.id,
        outputs=[o.name for o in request.outputs],
        raw=not raw,
    )
    for name, value in request.parameters.items():
        other.parameters[name].CopyFrom(value)
    flipped = Drawn(other.SerializeToString(), drawn.tenant, drawn.default_version)
    assert flipped.canonical() == drawn.canonical()
    assert flipped.wire() != drawn.wire()


@given(requests())
def test_the_scan_reads_what_the_parser_reads(drawn: Drawn) -> None:
    scanned = scan_infer_request(drawn.data)
    assert scanned is not None
    parsed = drawn.request
    assert (scanned.model_name, scanned.model_version, scanned.request_id.decode()) == (
        parsed.model_name,
        parsed.model_version,
        parsed.id,
    )
    parsed.id = ""
    assert pb.ModelInferRequest.FromString(scanned.without_id()) == parsed
    assert pb.ModelInferRequest.FromString(scanned.without_id(b"\x12\x012")).model_version == "2"


@given(requests(parameters={**PARAMETERS, **UNCACHEABLE}))
def test_a_request_the_wire_path_looks_up_is_one_the_canonical_path_caches(drawn: Drawn) -> None:
    scanned = scan_infer_request(drawn.data)
    assert scanned is not None
    assert wire_cacheable(scanned) == (uncacheable_reason(drawn.request) is None)


def test_shared_memory_requests_are_never_looked_up() -> None:
    request = build_request(MODEL, {"x": TENSORS[0]})
    request.inputs[0].parameters["shared_memory_region"].string_param = "r"
    scanned = scan_infer_request(request.SerializeToString())
    assert scanned is not None and uncacheable_reason(request) is not None
    assert not wire_cacheable(scanned)


@given(st.binary(max_size=64))
def test_any_bytes_the_scan_accepts_parse_to_the_same_request_without_their_id(data: bytes) -> None:
    scanned = scan_infer_request(data)
    try:
        parsed = pb.ModelInferRequest.FromString(data)
    except Exception:
        return  # the canonical path refuses these; a wire entry for them is never written
    if scanned is None:
        return  # the scan declined: the request takes the canonical path
    assert scanned.model_name == parsed.model_name and scanned.model_version == parsed.model_version
    parsed.id = ""
    assert pb.ModelInferRequest.FromString(scanned.without_id()) == parsed
