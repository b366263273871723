"""The shared serving pieces (edgeinfer/serving.py), in-process: the gRPC front and its one error mapping.

A real grpc.aio server on 127.0.0.1 with a small servicer; what the client sees is what the function's and the
gateway's callers see, since both servicers are registered through the same seam.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.errors import ModelNotFound
from edgeinfer.protocol.grpc_service import add_inference_service
from edgeinfer.serving import ErrorMapping, GrpcFront

TRAILER = (("x-edgeinfer-region", "eu-west"),)


class Servicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, errors: ErrorMapping) -> None:
        self.errors = errors

    def register(self, server: grpc.aio.Server) -> None:
        add_inference_service(self, server, wrap=self.errors.wrap)

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        raise ModelNotFound(f"unknown model '{request.name}'; this gateway serves: fraud")

    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        raise RuntimeError("a bug")


async def call(front: GrpcFront, method: str, request: Any, reply: Any) -> tuple[Any, grpc.aio.Call]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{front.port}") as channel:
        rpc = channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply.FromString,
        )
        invocation = rpc(request, timeout=5)
        try:
            return await invocation, invocation
        except grpc.aio.AioRpcError as exc:
            return exc, invocation


async def health_status(front: GrpcFront) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{front.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)


def front(errors: ErrorMapping, port: int = 0) -> GrpcFront:
    return GrpcFront("127.0.0.1", port, max_message_bytes=1 << 20, register=Servicer(errors).register, grace=0.5)


def test_errors_end_as_their_status_with_the_trailer_and_health_follows_the_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        grpc_front = front(ErrorMapping("gateway", logging.getLogger("test.serving"), trailer=TRAILER))
        await grpc_front.start()
        try:
            assert await health_status(grpc_front) == health_pb2.HealthCheckResponse.NOT_SERVING
            await grpc_front.set_serving(True)
            assert await health_status(grpc_front) == health_pb2.HealthCheckResponse.SERVING

            live, _ = await call(grpc_front, "ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse)
            assert live.live

            error, invocation = await call(
                grpc_front, "ModelMetadata", pb.ModelMetadataRequest(name="nope"), pb.ModelMetadataResponse
            )
            assert isinstance(error, grpc.aio.AioRpcError)
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert error.details() == "unknown model 'nope'; this gateway serves: fraud"
            assert ("x-edgeinfer-region", "eu-west") in tuple(await invocation.trailing_metadata() or ())

            error, _ = await call(grpc_front, "ServerMetadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse)
            assert isinstance(error, grpc.aio.AioRpcError)
            assert error.code() == grpc.StatusCode.INTERNAL
            # Named by class only: the message of an unexpected error stays in the log.
            assert error.details() == "internal error: RuntimeError; see the gateway's log"
        finally:
            await grpc_front.stop()

    with caplog.at_level(logging.ERROR, logger="test.serving"):
        asyncio.run(run())
    assert any("a bug" in (r.exc_text or "") for r in caplog.records)


def test_a_port_in_use_is_one_line_naming_the_address() -> None:
    async def run() -> None:
        first = front(ErrorMapping("function", logging.getLogger("test.serving")))
        try:
            with pytest.raises(SystemExit, match=rf"cannot listen on 127.0.0.1:{first.port}.*is the port in use\?"):
                front(ErrorMapping("function", logging.getLogger("test.serving")), first.port)
        finally:
            await first.stop()

    asyncio.run(run())
