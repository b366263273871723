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

    async def infer(self, model: str, version: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        """Send a serialized ModelInferRequest; return the serialized ModelInferResponse. `version` is the resolved
        version the request is for ("" = the backend's default); the bytes already carry it, and a backend that
        serves versions apart (the local pool's pool per version, a Knative tag route) picks by it."""
        ...

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse: ...

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        """The function's Triton ModelConfig of the model (its response_cache says whether the model caches)."""
        ...

    async def model_ready(self, model: str, version: str, timeout: float) -> bool: ...

    async def close(self) -> None: ...


DEFAULT_CONNECTIONS = 1
"""HTTP/2 connections per function endpoint. One multiplexes every call of a gateway process; more spread a busy
endpoint's calls over several (each with its own flow-control window and, on the function, its own reads)."""


class FunctionEndpoint:
    """A pool of `connections` HTTP/2 connections to one function (a process, or a Knative Service behind an
    ingress), counting its outstanding requests; each call takes the connection with the fewest in flight.
    `authority` overrides the :authority an ingress routes by (Knative's Host-based routing)."""

    def __init__(
        self,
        address: str,
        max_message_bytes: int,
        tls: ClientTLS | None = None,
        authority: str | None = None,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        if connections < 1:
            raise ValueError(f"a function endpoint needs at least 1 connection, not {connections}")
        self.address = address
        self.outstanding = 0
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.enable_retries", 0),  # the backend decides about retries
        ]
        if connections > 1:
            # Channels with equal arguments share one connection (gRPC's global subchannel pool): each its own.
            options.append(("grpc.use_local_subchannel_pool", 1))
        if authority is not None:
            options.append(("grpc.default_authority", authority))
        if tls is None:
            self.channels = [grpc.aio.insecure_channel(address, options=options) for _ in range(connections)]
        else:
            secure = options + tls.channel_options()
            self.channels = [
                grpc.aio.secure_channel(address, tls.grpc_credentials(), options=secure) for _ in range(connections)
            ]
        self.channel = self.channels[0]  # metadata, config and readiness: rare, on the first connection
        self._infers = [
            channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer", request_serializer=None, response_deserializer=None
            )
            for channel in self.channels
        ]
        self._in_flight = [0] * connections
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
        in_flight = self._in_flight
        index = 0 if len(in_flight) == 1 else min(range(len(in_flight)), key=in_flight.__getitem__)
        self.outstanding += 1
        in_flight[index] += 1
        try:
            reply: bytes = await self._infers[index](request, timeout=timeout, metadata=metadata or None)
            return reply
        finally:
            self.outstanding -= 1
            in_flight[index] -= 1

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
        for channel in self.channels:
            await channel.close(grace=None)
