"""Register an Open Inference servicer with a gRPC server: every RPC of `inference.GRPCInferenceService`.

The generated `add_..._to_server` lets a protobuf DecodeError surface as UNKNOWN with a Python class name in it;
here the bytes are parsed by the handler so a truncated or malformed message gets a clear INVALID_ARGUMENT. An RPC
that neither the servicer nor a provider implements gets UNIMPLEMENTED naming the RPC, not gRPC's bare "Method not
found!". Inference whose tensors live in system shared memory is resolved here, around the servicer's ModelInfer,
so the data planes see plain tensors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError, Message

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument, Unimplemented

SERVICE = "inference.GRPCInferenceService"
# A unary method of a servicer: (request, context) -> reply.
UnaryMethod = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
# Present in a serialized request only when a tensor names a shared-memory region (a cheap test before parsing).
SHARED_MEMORY_MARK = b"shared_memory_region"


class SharedMemoryPlacement(Protocol):
    """Moves tensors between registered shared-memory regions and a request or reply (protocol/shared_memory.py)."""

    def resolve(self, request: pb.ModelInferRequest) -> Any | None:
        """Read the inputs that name a region into the request (raw) and strip their region parameters; return
        what place() needs for the outputs bound for a region, or None if the request uses no region."""
        ...

    def place(self, reply: pb.ModelInferResponse, placement: Any) -> None:
        """Write the outputs bound for a region into it and leave them out of the reply's raw contents."""
        ...


def _service_methods() -> dict[str, tuple[type[Message], type[Message], bool]]:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    return {
        m.name: (getattr(pb, m.input_type.name), getattr(pb, m.output_type.name), m.client_streaming)
        for m in service.methods
    }


_METHODS = _service_methods()


def decode_error(message_type: type[Message]) -> str:
    return (
        f"request is not a valid {message_type.DESCRIPTOR.full_name}: the protobuf is truncated or malformed, "
        "or a string field (a name, datatype or id) is not valid UTF-8"
    )


def _parse(request_type: type[Message], data: bytes) -> Any:
    try:
        return request_type.FromString(data)
    except DecodeError:
        raise InvalidArgument(decode_error(request_type)) from None


def _unary(method: UnaryMethod, request_type: type[Message]) -> UnaryMethod:
    async def handler(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        return await method(_parse(request_type, data), context)

    return handler


def _unimplemented(name: str, what: str) -> UnaryMethod:
    async def handler(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        raise Unimplemented(f"{name} is not served by the edgeinfer {what}; docs/protocol.md lists what is")

    return handler


def _with_shared_memory_parsed(method: UnaryMethod, shm: SharedMemoryPlacement) -> UnaryMethod:
    async def handler(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request = _parse(pb.ModelInferRequest, data)
        placement = shm.resolve(request) if SHARED_MEMORY_MARK in data else None
        reply = await method(request, context)
        if placement is None:
            return reply
        if isinstance(reply, bytes):
            reply = pb.ModelInferResponse.FromString(reply)
        shm.place(reply, placement)
        return reply

    return handler


def _with_shared_memory_raw(method: UnaryMethod, shm: SharedMemoryPlacement) -> UnaryMethod:
    async def handler(data: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if SHARED_MEMORY_MARK not in data:
            return await method(data, context)
        request = _parse(pb.ModelInferRequest, data)
        placement = shm.resolve(request)
        if placement is None:
            return await method(data, context)
        reply = pb.ModelInferResponse.FromString(await method(request.SerializeToString(), context))
        shm.place(reply, placement)
        return reply

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


def _stream_unimplemented(what: str) -> Callable[..., AsyncIterator[Any]]:
    async def handler(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"ModelStreamInfer is not served by the edgeinfer {what}; docs/protocol.md lists what is",
        )
        yield  # an async generator, as gRPC needs for a streaming handler

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
    *,
    providers: Iterable[Any] = (),
    shared_memory: SharedMemoryPlacement | None = None,
    what: str = "server",
) -> None:
    """Serve every RPC of the service: each from `servicer`, else from the first of `providers` that has it (the
    shared-memory and settings RPCs, shared by the function and the gateway), else UNIMPLEMENTED.

    A servicer with `ModelInferRaw(data: bytes, context)` gets ModelInfer's request bytes unparsed, to parse or
    forward as it sees fit. `wrap` is applied to each unary method once, here (edgeinfer.serving.ErrorMapping maps
    errors to statuses this way); parsing and shared memory happen inside it, so their errors map the same way.
    `what` names the server in UNIMPLEMENTED messages.
    """
    sources = (servicer, *providers)
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for name, (request_type, response_type, streaming) in _METHODS.items():
        if streaming:
            continue
        raw = name == "ModelInfer" and hasattr(servicer, "ModelInferRaw")
        if raw:
            behaviour: UnaryMethod = servicer.ModelInferRaw
            if shared_memory is not None:
                behaviour = _with_shared_memory_raw(behaviour, shared_memory)
        else:
            method = next((getattr(s, name) for s in sources if hasattr(s, name)), None)
            if method is None:
                behaviour = _unimplemented(name, what)
            elif name == "ModelInfer" and shared_memory is not None:
                behaviour = _with_shared_memory_parsed(method, shared_memory)
            else:
                behaviour = _unary(method, request_type)
        if wrap is not None:
            behaviour = wrap(behaviour)
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=None, response_serializer=_serializer(response_type)
        )
    stream = getattr(servicer, "ModelStreamInfer", None)
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        _stream(stream) if stream is not None else _stream_unimplemented(what),
        request_deserializer=None,
        response_serializer=_serializer(pb.ModelStreamInferResponse),
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
