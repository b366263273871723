"""Thin gRPC servicer of the gateway. Errors become statuses where its methods are registered (`register`), each
reply naming the region in its trailers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from edgeinfer.gateway.dataplane import DEFAULT_TENANT, GatewayDataPlane, region_metadata
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.grpc_service import SharedMemoryPlacement, add_inference_service, decode_error
from edgeinfer.protocol.tracing import TRACE_HEADERS
from edgeinfer.serving import ErrorMapping
from edgeinfer.version import __version__

log = logging.getLogger(__name__)

SERVER_NAME = "edgeinfer-gateway"
SERVER_VERSION = __version__
# Triton's extension names (its server.cc) that hold for the gateway, then its own. Not claimed:
# model_repository (load/unload are refused: FAILED_PRECONDITION), sequence, schedule_policy, cuda_shared_memory.
EXTENSIONS = (
    "classification",
    "model_configuration",
    "system_shared_memory",
    "binary_tensor_data",
    "parameters",
    "statistics",
    "trace",
    "logging",
    "response_cache",
    "statistics_prometheus",
)
ProviderMethod = Callable[[Any, Any], Awaitable[Any]]


class _Trailed:
    """A provider (shared memory, settings) whose RPCs name the region in their trailers, like the servicer's."""

    def __init__(self, provider: Any, trailer: Sequence[tuple[str, str]]) -> None:
        self._provider = provider
        self._trailer = trailer

    def __getattr__(self, name: str) -> ProviderMethod:
        method: ProviderMethod = getattr(self._provider, name)  # AttributeError: hasattr() says "not provided"
        trailer = self._trailer

        async def trailed(request: Any, context: Any) -> Any:
            reply = await method(request, context)
            context.set_trailing_metadata(trailer)
            return reply

        return trailed


class GatewayServicer:
    """`providers` serve the RPCs shared with the function (shared memory, settings); `shared_memory`, when given,
    resolves ModelInfer tensors in registered regions before the data plane: the gateway forwards bytes, and its
    cache sees plain requests."""

    def __init__(
        self,
        dataplane: GatewayDataPlane,
        region: str,
        *,
        providers: Sequence[Any] = (),
        shared_memory: SharedMemoryPlacement | None = None,
    ) -> None:
        self._dp = dataplane
        self._region = region
        self._trailer = region_metadata(region, None)
        self.errors = ErrorMapping("gateway", log, trailer=self._trailer)
        self._providers = tuple(_Trailed(p, self._trailer) for p in providers)
        self._shared_memory = shared_memory

    def register(self, server: grpc.aio.Server) -> None:
        add_inference_service(
            self,
            server,
            wrap=self.errors.wrap,
            providers=self._providers,
            shared_memory=self._shared_memory,
            what="gateway",
        )

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        context.set_trailing_metadata(self._trailer)
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        context.set_trailing_metadata(self._trailer)
        return pb.ServerReadyResponse(ready=await self._dp.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        context.set_trailing_metadata(self._trailer)
        return pb.ModelReadyResponse(ready=await self._dp.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        context.set_trailing_metadata(self._trailer)
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        reply = await self._dp.model_metadata(request.name, request.version)
        context.set_trailing_metadata(self._trailer)
        return reply

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        reply = await self._dp.model_config(request.name, request.version)
        context.set_trailing_metadata(self._trailer)
        return reply

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> pb.ModelStatisticsResponse:
        reply = await self._dp.statistics_of(request.name, request.version)
        context.set_trailing_metadata(self._trailer)
        return reply

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:
        reply = await self._dp.repository_index(request.ready)
        context.set_trailing_metadata(self._trailer)
        return reply

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        self._dp.refuse_repository_change("load", request.model_name)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        self._dp.refuse_repository_change("unload", request.model_name)

    async def ModelInferRaw(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        # Looked up by its bytes first: a wire hit parses nothing (gateway/dataplane.py wire_lookup).
        wire = self._dp.wire_lookup(data, DEFAULT_TENANT)
        request = _parse(data) if wire is None else None
        model = wire.view.name if wire is not None else request.model_name if request is not None else ""
        metadata = _trace_metadata(context) if self._dp.tracing.enabled else None
        with self._dp.tracing.server_span("gateway.ModelInfer", metadata, {"model": model}):
            outcome = await self._dp.wire_hit(wire) if wire is not None else None
            if outcome is None:
                outcome = await self._dp.infer(
                    request if request is not None else _parse(data),
                    raw_request=data,
                    tenant=DEFAULT_TENANT,
                    timeout=context.time_remaining(),
                    wire=wire,
                )
        context.set_trailing_metadata(region_metadata(self._region, outcome.cache))
        return outcome.payload

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        """Triton's streaming extension: each request answered in order; an error goes back in-band (the stream
        stays open), as Triton and the function do."""
        async for request in request_iterator:
            try:
                outcome = await self._dp.infer(request, tenant=DEFAULT_TENANT)
            except Exception as exc:
                _, message = self.errors.status(exc)
                reply = pb.ModelStreamInferResponse(error_message=message)
                reply.infer_response.model_name = request.model_name
                reply.infer_response.id = request.id
                yield reply.SerializeToString()
            else:
                yield stream_reply(outcome.payload)


def _parse(data: bytes) -> pb.ModelInferRequest:
    try:
        return pb.ModelInferRequest.FromString(data)
    except DecodeError:
        raise InvalidArgument(decode_error(pb.ModelInferRequest)) from None


def stream_reply(payload: bytes) -> bytes:
    """A ModelStreamInferResponse around a serialized ModelInferResponse (field 2), without parsing it again."""
    return _STREAM_INFER_RESPONSE_TAG + _varint(len(payload)) + payload


_STREAM_INFER_RESPONSE_TAG = bytes([(2 << 3) | 2])  # field 2, length-delimited


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _trace_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() or () if k in TRACE_HEADERS and isinstance(v, str)}
