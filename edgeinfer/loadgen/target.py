"""Talk to the target before the run: is it reachable, and what does the model take?"""

from __future__ import annotations

import grpc

from edgeinfer.loadgen.options import BenchError
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.tensors import TensorSpec

METADATA_METHOD = "/inference.GRPCInferenceService/ModelMetadata"


def check_reachable(channel: grpc.Channel, target: str, timeout: float) -> None:
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise BenchError(f"cannot reach {target}: no connection within {timeout:g} s") from None


def fetch_inputs(channel: grpc.Channel, model: str, version: str, timeout: float) -> list[TensorSpec]:
    """The model's inputs from ModelMetadata; a clear BenchError if the model is unknown."""
    metadata = channel.unary_unary(
        METADATA_METHOD,
        request_serializer=pb.ModelMetadataRequest.SerializeToString,
        response_deserializer=pb.ModelMetadataResponse.FromString,
    )
    request = pb.ModelMetadataRequest(name=model, version=version)
    try:
        response: pb.ModelMetadataResponse = metadata(request, timeout=timeout)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        detail: str = exc.details() or ""  # type: ignore[attr-defined]
        if code == grpc.StatusCode.NOT_FOUND:
            raise BenchError(f"model '{model}' not found on target: {detail}") from None
        if code == grpc.StatusCode.UNAVAILABLE:
            raise BenchError(f"target unavailable: {detail}") from None
        raise BenchError(f"ModelMetadata for '{model}' failed with {code.name}: {detail}") from None
    if not response.inputs:
        raise BenchError(f"metadata of model '{model}' lists no inputs; describe them with --input NAME:DATATYPE:DIMS")
    return [TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in response.inputs]
