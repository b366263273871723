"""One bare grpc.aio hop: a proxy that forwards every Open Inference call's bytes to one upstream, unparsed.

The yardstick for what a gateway's miss path adds: a request crosses one more Python gRPC server and one
more client channel, and nothing else happens to it (no parsing, no cache, no routing). Every method of
inference.GRPCInferenceService is forwarded as bytes over one HTTP/2 channel, the caller's remaining
deadline passed on, and the upstream's status returned unchanged; so `edgeinfer bench` and perf_analyzer
(which also reads ModelMetadata, ModelConfig and ModelStatistics) both drive it like the server behind it.

    python benchmarks/common/grpc_hop.py --port 8002 --upstream 127.0.0.1:8001 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

import grpc

SERVICE = "inference.GRPCInferenceService"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


class Forward(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """A unary-unary handler per method of SERVICE, each a bytes pass-through to `channel`."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if not method.startswith(f"/{SERVICE}/"):
            return None
        handler = self._handlers.get(method)
        if handler is None:
            handler = self._handlers[method] = self._forwarder(method)
        return handler

    def _forwarder(self, method: str) -> grpc.RpcMethodHandler[Any, Any]:
        upstream = self._channel.unary_unary(method, None, None)  # no (de)serializers: bytes in, bytes out

        async def forward(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                reply: bytes = await upstream(request, timeout=context.time_remaining())
            except grpc.aio.AioRpcError as error:
                await context.abort(error.code(), error.details() or "")
            return reply

        return grpc.unary_unary_rpc_method_handler(forward)


async def serve(host: str, port: int, upstream: str, stop: asyncio.Event | None = None) -> None:
    async with grpc.aio.insecure_channel(upstream, options=CHANNEL_OPTIONS) as channel:
        server = grpc.aio.server(options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((Forward(channel),))
        address = f"{host}:{port}"
        if server.add_insecure_port(address) == 0:
            raise SystemExit(f"grpc hop: cannot listen on {address}")
        await server.start()
        print(f"grpc hop ready on {address} → {upstream}", flush=True)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(grace=1.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="gRPC port")
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT", help="the server every call goes to")
    args = parser.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.host, args.port, args.upstream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
