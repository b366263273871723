"""Register an Open Inference servicer with a gRPC server, turning undecodable requests into INVALID_ARGUMENT.

The generated `add_..._to_server` lets a protobuf DecodeError surface as
UNKNOWN with a Python class name in it; here the bytes are parsed by the
handler so a truncated or malformed message gets a clear INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from edgeinfer.protocol import open_inference_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
# A unary method of a servicer: (request, context) -> reply.
UnaryMethod = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]

_UNARY: dict[str, tuple[type[Message], type[Message]]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}


def decode_error(message_type: type[Message]) -> str:
    return (
        f"request is not a valid {message_type.DESCRIPTOR.full_name}: the protobuf is truncated or malformed, "
        "or a string field (a name, datatype or id) is not valid UTF-8"
    )


def _unary(method: Callable[[Any, Any], Awaitable[Any]], request_type: type[Message]) -> Callable[..., Any]:
    parse = request_type.FromString

    async def handler(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = parse(data)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, decode_error(request_type))
        return await method(request, context)

    return handler


def _stream(method: Callable[[Any, Any], AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def parsed(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        async for data in requests:
            try:
                yield pb.ModelInferRequest.FromString(data)
            except DecodeError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, decode_error(pb.ModelInferRequest))

    # gRPC needs an async generator function here, not a function returning one.
    async def handler(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async for reply in method(parsed(requests, context), context):
            yield reply

    return handler


def _serializer(response_type: type[Message]) -> Callable[[Any], bytes]:
    serialize = response_type.SerializeToString

    def to_bytes(reply: Any) -> bytes:
        # Handlers may answer with bytes already serialized (a cache hit).
        return reply if isinstance(reply, bytes) else serialize(reply)

    return to_bytes


def add_inference_service(
    servicer: Any,
    server: grpc.aio.Server,
    wrap: Callable[[UnaryMethod], UnaryMethod] | None = None,
) -> None:
    """Serve `servicer`'s Open Inference methods (ModelStreamInfer if it has one).

    A servicer with `ModelInferRaw(data: bytes, context)` gets ModelInfer's
    request bytes unparsed, to parse or forward as it sees fit. `wrap` is
    applied to each unary method once, here (edgeinfer.serving.ErrorMapping
    maps errors to statuses this way); the request is parsed outside it.
    """
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, (request_type, response_type) in _UNARY.items():
        raw = name == "ModelInfer" and hasattr(servicer, "ModelInferRaw")
        method = servicer.ModelInferRaw if raw else getattr(servicer, name)
        if wrap is not None:
            method = wrap(method)
        behaviour = method if raw else _unary(method, request_type)
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=None, response_serializer=_serializer(response_type)
        )
    if hasattr(servicer, "ModelStreamInfer"):
        handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
            _stream(servicer.ModelStreamInfer),
            request_deserializer=None,
            response_serializer=pb.ModelStreamInferResponse.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
