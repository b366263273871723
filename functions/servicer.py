"""Thin gRPC adapter over the data plane. Errors become statuses where its methods are registered (`register`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from edgeinfer.functions.dataplane import DataPlane
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.grpc_service import add_inference_service
from edgeinfer.protocol.tracing import Tracing
from edgeinfer.serving import ErrorMapping

log = logging.getLogger(__name__)

ERRORS = ErrorMapping("function", log)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, tracing: Tracing) -> None:
        self._dp = dataplane
        self._tracing = tracing

    def register(self, server: grpc.aio.Server) -> None:
        add_inference_service(self, server, wrap=ERRORS.wrap)

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dp.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._dp.model_ready(request.name, request.version))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return self._dp.server_metadata()

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        return self._dp.model_metadata(request.name, request.version)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInferResponse:
        timeout = context.time_remaining()
        if not self._tracing.enabled:
            return await self._dp.infer(request, timeout)
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        attributes = {"model": request.model_name, "model_version": request.model_version, "id": request.id}
        with self._tracing.server_span("ModelInfer", metadata, attributes):
            return await self._dp.infer(request, timeout)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Triton's contract: an error goes back in-band and the stream stays open.
        async for request in request_iterator:
            try:
                response = await self._dp.infer(request)
            except Exception as exc:
                _, message = ERRORS.status(exc)
                reply = pb.ModelStreamInferResponse(error_message=message)
                reply.infer_response.model_name = request.model_name
                reply.infer_response.id = request.id
                yield reply
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)
