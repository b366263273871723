"""A bare grpc.aio Open Inference server: the ceiling for any Python gRPC model server.

ModelInfer answers every request with one fixed, pre-serialized response and never
parses the request: whatever this server sustains is what Python gRPC itself costs.
The readiness RPCs and the standard health service answer so that benchmark harnesses
can treat it like a real server. With `--input` (repeatable, `edgeinfer bench`'s NAME:DATATYPE:DIMS)
ModelMetadata and ModelConfig describe those inputs and the output, and ModelStatistics answers
zero counts, all built once: enough for perf_analyzer, which reads all three, to drive it.

    python benchmarks/common/echo_server.py --port 8001 [--host 127.0.0.1]
        [--input features:FP32:-1,30 --max-batch-size 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Description:
    """What ModelMetadata and ModelConfig say about the echoed model (for perf_analyzer)."""

    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]  # name, datatype, dims (-1: the batch dimension)
    output: str
    output_elements: int
    max_batch_size: int


def parse_input(text: str) -> tuple[str, str, tuple[int, ...]]:
    """NAME:DATATYPE:d1,d2,... as `edgeinfer bench --input` takes it."""
    name, _, rest = text.partition(":")
    datatype, _, dims = rest.partition(":")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:DATATYPE:d1,d2,...") from None
    if not (name and datatype):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:DATATYPE:d1,d2,...")
    return name, datatype.upper(), shape


def _described(description: Description, model_name: str) -> tuple[bytes, bytes]:
    """(ModelMetadataResponse, ModelConfigResponse) for `model_name`, serialized."""
    batching = description.max_batch_size > 0
    metadata = pb.ModelMetadataResponse(name=model_name, versions=["1"], platform="echo")
    config = pb.ModelConfigResponse()
    config.config.name = model_name
    config.config.platform = "echo"
    config.config.max_batch_size = description.max_batch_size
    for name, datatype, dims in description.inputs:
        metadata.inputs.add(name=name, datatype=datatype, shape=list(dims))
        tensor = config.config.input.add(name=name, data_type=pb.DataType.Value(f"TYPE_{datatype}"))
        tensor.dims.extend(list(dims[1:] if batching else dims))
    out_dims = [-1, description.output_elements] if batching else [1, description.output_elements]
    metadata.outputs.add(name=description.output, datatype="FP32", shape=out_dims)
    output = config.config.output.add(name=description.output, data_type=pb.DataType.TYPE_FP32)
    output.dims.extend(out_dims[1:] if batching else out_dims)
    return metadata.SerializeToString(), config.SerializeToString()


def _handlers(reply: bytes, description: Description | None = None) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
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
        # Names the model asked about; without a description it lists no tensors (clients pass shapes).
        name = pb.ModelMetadataRequest.FromString(request).name
        if description is not None:
            return _described(description, name)[0]
        return pb.ModelMetadataResponse(name=name, versions=["1"], platform="echo").SerializeToString()

    handlers = {
        "ServerLive": constant(live),
        "ServerReady": constant(ready),
        "ModelReady": constant(model_ready),
        "ServerMetadata": constant(server_metadata),
        "ModelMetadata": grpc.unary_unary_rpc_method_handler(model_metadata),
        "ModelInfer": constant(reply),
    }
    if description is not None:

        async def model_config(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return _described(description, pb.ModelConfigRequest.FromString(request).name)[1]

        async def model_statistics(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            # Zero counts: the echo keeps none, and perf_analyzer only needs the model listed.
            name = pb.ModelStatisticsRequest.FromString(request).name
            reply = pb.ModelStatisticsResponse()
            reply.model_stats.add(name=name, version="1")
            return reply.SerializeToString()

        handlers["ModelConfig"] = grpc.unary_unary_rpc_method_handler(model_config)
        handlers["ModelStatistics"] = grpc.unary_unary_rpc_method_handler(model_statistics)
    return handlers


async def serve(
    host: str, port: int, reply: bytes, stop: asyncio.Event | None = None, description: Description | None = None
) -> None:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, _handlers(reply, description)),))
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
    parser.add_argument(
        "--input",
        type=parse_input,
        action="append",
        default=[],
        metavar="NAME:DATATYPE:DIMS",
        help="describe an input in ModelMetadata/ModelConfig, and answer ModelStatistics (for perf_analyzer)",
    )
    parser.add_argument("--max-batch-size", type=int, default=0, help="ModelConfig's max_batch_size (with --input)")
    args = parser.parse_args(argv)
    description = (
        Description(tuple(args.input), args.output, args.output_elements, args.max_batch_size) if args.input else None
    )
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    reply = fixed_response(args.model, args.output, args.output_elements)
    asyncio.run(serve(args.host, args.port, reply, description=description))
    return 0


if __name__ == "__main__":
    sys.exit(main())
