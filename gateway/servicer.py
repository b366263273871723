"""Thin gRPC servicer of the gateway. Errors become statuses where its methods are registered (`register`), each
reply naming the region in its trailers."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from edgeinfer.gateway.dataplane import DEFAULT_TENANT, GatewayDataPlane, region_metadata
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.grpc_service import add_inference_service, decode_error
from edgeinfer.protocol.tracing import TRACE_HEADERS
from edgeinfer.serving import ErrorMapping
from edgeinfer.version import __version__

log = logging.getLogger(__name__)

SERVER_NAME = "edgeinfer-gateway"
SERVER_VERSION = __version__
EXTENSIONS = ("response_cache", "statistics_prometheus")


class GatewayServicer:
    def __init__(self, dataplane: GatewayDataPlane, region: str) -> None:
        self._dp = dataplane
        self._region = region
        self._trailer = region_metadata(region, None)
        self.errors = ErrorMapping("gateway", log, trailer=self._trailer)

    def register(self, server: grpc.aio.Server) -> None:
        add_inference_service(self, server, wrap=self.errors.wrap)

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

    async def ModelInferRaw(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            request = pb.ModelInferRequest.FromString(data)
        except DecodeError:
            raise InvalidArgument(decode_error(pb.ModelInferRequest)) from None
        metadata = _trace_metadata(context) if self._dp.tracing.enabled else None
        with self._dp.tracing.server_span("gateway.ModelInfer", metadata, {"model": request.model_name}):
            outcome = await self._dp.infer(
                request, raw_request=data, tenant=DEFAULT_TENANT, timeout=context.time_remaining()
            )
        context.set_trailing_metadata(region_metadata(self._region, outcome.cache))
        return outcome.payload


def _trace_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() or () if k in TRACE_HEADERS and isinstance(v, str)}
