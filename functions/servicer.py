"""Thin gRPC adapter over the data plane. Errors become statuses here, in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc

from edgeinfer.functions.dataplane import DataPlane
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.errors import InferenceError
from edgeinfer.protocol.tracing import Tracing

log = logging.getLogger(__name__)

Reply = TypeVar("Reply")
_DEADLINE_PASSED_S = 0.001
Handler = Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Reply]]


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and message a client sees for an exception."""
    if isinstance(exc, InferenceError):
        return exc.code, exc.message
    log.exception("unexpected error while serving a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}; see the function's log"


def _maps_errors(method: Handler[Reply]) -> Handler[Reply]:
    @wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Reply:
        try:
            return await method(self, request, context)
        except Exception as exc:
            code, message = status_for(exc)
        remaining = context.time_remaining()
        if remaining is not None and remaining < _DEADLINE_PASSED_S:
            # The caller's deadline has passed (or passes before an answer could arrive): gRPC ends the call with
            # DEADLINE_EXCEEDED on both sides, and an abort now would only fail. Cancelling says "nobody to answer".
            raise asyncio.CancelledError
        # Outside the except block, so gRPC's abort exception does not chain the handled one, whose traceback
        # holds every frame down to the batcher: less garbage for the collector per rejection under overload.
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    return wrapper


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, tracing: Tracing) -> None:
        self._dp = dataplane
        self._tracing = tracing

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._dp.ready)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self._dp.model_ready(request.name, request.version))

    @_maps_errors
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> pb.ServerMetadataResponse:
        return self._dp.server_metadata()

    @_maps_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        return self._dp.model_metadata(request.name, request.version)

    @_maps_errors
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
                _, message = status_for(exc)
                reply = pb.ModelStreamInferResponse(error_message=message)
                reply.infer_response.model_name = request.model_name
                reply.infer_response.id = request.id
                yield reply
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)
