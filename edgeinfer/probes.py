"""Readiness probes that ask a server on its own protocol (never its log): gRPC health and Open Inference
ServerReady, blocking for supervisors and commands, asynchronous for the gateway's local pool."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgeinfer.protocol import open_inference_pb2 as pb

SERVER_READY = "/inference.GRPCInferenceService/ServerReady"


def server_ready(address: str, timeout: float = 1.0) -> tuple[bool | None, str | None]:
    """Ask the Open Inference ServerReady RPC: (ready, None) if it answers, else (None, why not)."""
    with grpc.insecure_channel(address) as channel:
        try:
            call = channel.unary_unary(
                SERVER_READY,
                request_serializer=pb.ServerReadyRequest.SerializeToString,
                response_deserializer=pb.ServerReadyResponse.FromString,
            )
            reply = call(pb.ServerReadyRequest(), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = error.details() if isinstance(error, grpc.Call) else None
            reason = code.name if code is not None else "error"
            return None, f"{reason}: {details}" if details else reason
        return bool(reply.ready), None


def grpc_serving(address: str, service: str = "", timeout: float = 1.0) -> bool:
    """True when grpc.health.v1 Check answers SERVING for `service`."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def grpc_serving_aio(channel: grpc.aio.Channel, service: str = "", timeout: float = 1.0) -> bool:
    """grpc_serving over an existing asyncio channel (kept across attempts: one connection, not one each)."""
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
