"""Thin gRPC front of the gateway. Errors become statuses here, in one place, each naming the region."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from edgeinfer.gateway.dataplane import DEFAULT_TENANT, GatewayDataPlane, region_metadata
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InferenceError, InvalidArgument
from edgeinfer.protocol.grpc_service import decode_error
from edgeinfer.protocol.tracing import TRACE_HEADERS

log = logging.getLogger(__name__)

SERVER_NAME = "edgeinfer-gateway"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ("response_cache", "statistics_prometheus")


class GatewayServicer:
    def __init__(self, dataplane: GatewayDataPlane, region: str) -> None:
        self._dp = dataplane
        self._region = region
        self._trailer = region_metadata(region, None)

    async def _fail(self, context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> None:
        if isinstance(exc, InferenceError):
            code, message = exc.code, exc.message
        else:
            log.exception("unexpected error in the gateway", exc_info=exc)
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}; see the gateway's log"
        # Nothing was sent yet, so this is a trailers-only reply: Envoy may retry it elsewhere.
        await context.abort(code, message, trailing_metadata=self._trailer)

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
        try:
            reply = await self._dp.model_metadata(request.name, request.version)
        except Exception as exc:
            await self._fail(context, exc)
            raise
        context.set_trailing_metadata(self._trailer)
        return reply

    async def ModelInferRaw(self, data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            try:
                request = pb.ModelInferRequest.FromString(data)
            except DecodeError:
                raise InvalidArgument(decode_error(pb.ModelInferRequest)) from None
            metadata = _trace_metadata(context) if self._dp.tracing.enabled else None
            with self._dp.tracing.server_span("gateway.ModelInfer", metadata, {"model": request.model_name}):
                outcome = await self._dp.infer(
                    request, raw_request=data, tenant=DEFAULT_TENANT, timeout=context.time_remaining()
                )
        except Exception as exc:
            await self._fail(context, exc)
            raise
        context.set_trailing_metadata(region_metadata(self._region, outcome.cache))
        return outcome.payload


def _trace_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() or () if k in TRACE_HEADERS and isinstance(v, str)}
