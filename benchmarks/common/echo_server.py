"""A bare grpc.aio Open Inference server: the ceiling for any Python gRPC model server.

ModelInfer answers every request with one fixed, pre-serialized response and never
parses the request: whatever this server sustains is what Python gRPC itself costs.
The readiness RPCs and the standard health service answer so that benchmark harnesses
can treat it like a real server.

    python benchmarks/common/echo_server.py --port 8001 [--host 127.0.0.1]
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
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from edgeinfer.protocol import open_inference_pb2 as pb

SERVICE = "inference.GRPCInferenceService"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def fixed_response(model: str, output: str, elements: int) -> bytes:
    """A ModelInferResponse with one FP32 [1, elements] raw output of zeros, serialized once."""
    response = pb.ModelInferResponse(model_name=model, model_version="1")
    tensor = response.outputs.add(name=output, datatype="FP32")
    tensor.shape.extend([1, elements])
    response.raw_output_contents.append(bytes(4 * elements))
    return response.SerializeToString()


def _handlers(reply: bytes) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    ready = pb.ServerReadyResponse(ready=True).SerializeToString()
    live = pb.ServerLiveResponse(live=True).SerializeToString()
    model_ready = pb.ModelReadyResponse(ready=True).SerializeToString()
    server_metadata = pb.ServerMetadataResponse(name="echo", version="1").SerializeToString()

    def constant(value: bytes) -> grpc.RpcMethodHandler[Any, Any]:
        async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return value

        # No (de)serializers: the request stays bytes and the reply is sent as is.
        return grpc.unary_unary_rpc_method_handler(handler)

    async def model_metadata(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        # Names the model asked about; lists no tensors (clients pass shapes explicitly).
        name = pb.ModelMetadataRequest.FromString(request).name
        return pb.ModelMetadataResponse(name=name, versions=["1"], platform="echo").SerializeToString()

    return {
        "ServerLive": constant(live),
        "ServerReady": constant(ready),
        "ModelReady": constant(model_ready),
        "ServerMetadata": constant(server_metadata),
        "ModelMetadata": grpc.unary_unary_rpc_method_handler(model_metadata),
        "ModelInfer": constant(reply),
    }


async def serve(host: str, port: int, reply: bytes, stop: asyncio.Event | None = None) -> None:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, _handlers(reply)),))
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise SystemExit(f"echo server: cannot listen on {address}")
    await server.start()
    for service in ("", SERVICE):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    print(f"echo server ready on {host}:{bound}", flush=True)
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
    parser.add_argument("--model", default="echo", help="model_name put in the reply (default echo)")
    parser.add_argument("--output", default="probabilities", help="output tensor name (default probabilities)")
    parser.add_argument("--output-elements", type=int, default=2, help="FP32 elements in the [1, N] output (default 2)")
    args = parser.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.host, args.port, fixed_response(args.model, args.output, args.output_elements)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
