from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeinfer.protocol import codegen
from edgeinfer.protocol import open_inference_pb2 as pb


def test_regenerating_gives_the_checked_in_files(tmp_path: Path) -> None:
    written = codegen.generate(tmp_path)
    assert [p.name for p in written] == list(codegen.GENERATED)
    for path in written:
        checked_in = codegen.PROTO.parent / path.name
        stale = f"{path.name} is stale: run python -m edgeinfer.protocol.codegen"
        assert path.read_bytes() == checked_in.read_bytes(), stale


def test_stubs_coexist_with_tritonclient_and_match_its_wire_format() -> None:
    import tritonclient.grpc.service_pb2 as triton_pb

    ours = pb.ModelInferRequest(model_name="fraud", id="r1")
    tensor = ours.inputs.add(name="features", datatype="FP32", shape=[1, 3])
    tensor.parameters["p"].int64_param = 7
    ours.raw_input_contents.append(np.arange(3, dtype="<f4").tobytes())
    ours.parameters["cache"].bool_param = False
    theirs = triton_pb.ModelInferRequest.FromString(ours.SerializeToString())
    assert theirs.model_name == "fraud" and theirs.id == "r1"
    assert list(theirs.inputs[0].shape) == [1, 3]
    assert theirs.inputs[0].parameters["p"].int64_param == 7
    assert theirs.parameters["cache"].bool_param is False
    assert theirs.raw_input_contents[0] == ours.raw_input_contents[0]
    # And back: Triton's message parses as ours with nothing lost.
    assert pb.ModelInferRequest.FromString(theirs.SerializeToString()) == ours


def test_service_names_match_the_open_inference_protocol() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert {m.name for m in service.methods} >= {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
    }
