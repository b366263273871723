"""The backend interface and the gRPC client side of one function endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, Protocol

import grpc

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InferenceError,
    InvalidArgument,
    ModelNotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from edgeinfer.tls import ClientTLS

Metadata = Sequence[tuple[str, str]]

# When the current request reached the gateway (monotonic): lets a backend tell whether it waited
# on an instance that was still starting, even if the wait happened while fetching metadata.
request_arrival: ContextVar[float] = ContextVar("request_arrival", default=0.0)

_BY_CODE: dict[grpc.StatusCode, type[InferenceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: ModelNotFound,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
}


class BackendError(InferenceError):
    """A function's error, passed on to the caller with the function's status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = _BY_CODE.get(code, InferenceError).http_status


def error_from_rpc(error: grpc.aio.AioRpcError, endpoint: str, model: str) -> BackendError:
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"function for model '{model}' at {endpoint} is unavailable: {details}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"function for model '{model}' at {endpoint} did not answer before the deadline"
    return BackendError(code, details)


class Backend(Protocol):
    """Routes a model's requests to the functions that serve it."""

    def models(self) -> list[str]: ...

    async def infer(self, model: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        """Send a serialized ModelInferRequest; return the serialized ModelInferResponse."""
        ...

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse: ...

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        """The function's Triton ModelConfig of the model (its response_cache says whether the model caches)."""
        ...

    async def model_ready(self, model: str, version: str, timeout: float) -> bool: ...

    async def close(self) -> None: ...


class FunctionEndpoint:
    """A channel to one function (a process, or a Knative Service behind an ingress), counting its outstanding
    requests. `authority` overrides the :authority an ingress routes by (Knative's Host-based routing)."""

    def __init__(
        self, address: str, max_message_bytes: int, tls: ClientTLS | None = None, authority: str | None = None
    ) -> None:
        self.address = address
        self.outstanding = 0
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.enable_retries", 0),  # the backend decides about retries
        ]
        if authority is not None:
            options.append(("grpc.default_authority", authority))
        if tls is None:
            self.channel = grpc.aio.insecure_channel(address, options=options)
        else:
            self.channel = grpc.aio.secure_channel(
                address, tls.grpc_credentials(), options=options + tls.channel_options()
            )
        self._infer = self.channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer", request_serializer=None, response_deserializer=None
        )
        self._metadata = self.channel.unary_unary(
            "/inference.GRPCInferenceService/ModelMetadata",
            request_serializer=pb.ModelMetadataRequest.SerializeToString,
            response_deserializer=pb.ModelMetadataResponse.FromString,
        )
        self._config = self.channel.unary_unary(
            "/inference.GRPCInferenceService/ModelConfig",
            request_serializer=pb.ModelConfigRequest.SerializeToString,
            response_deserializer=pb.ModelConfigResponse.FromString,
        )
        self._ready = self.channel.unary_unary(
            "/inference.GRPCInferenceService/ModelReady",
            request_serializer=pb.ModelReadyRequest.SerializeToString,
            response_deserializer=pb.ModelReadyResponse.FromString,
        )

    async def infer(self, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        self.outstanding += 1
        try:
            reply: bytes = await self._infer(request, timeout=timeout, metadata=metadata or None)
            return reply
        finally:
            self.outstanding -= 1

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse:
        reply: pb.ModelMetadataResponse = await self._metadata(
            pb.ModelMetadataRequest(name=model, version=version), timeout=timeout
        )
        return reply

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        reply: pb.ModelConfigResponse = await self._config(
            pb.ModelConfigRequest(name=model, version=version), timeout=timeout
        )
        return reply

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        reply = await self._ready(pb.ModelReadyRequest(name=model, version=version), timeout=timeout)
        return bool(reply.ready)

    async def close(self) -> None:
        await self.channel.close(grace=None)
