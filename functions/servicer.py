"""Thin gRPC adapter over the data plane. Errors become statuses where its methods are registered (`register`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc

from edgeinfer.functions.dataplane import DataPlane
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.grpc_service import SharedMemoryPlacement, add_inference_service
from edgeinfer.protocol.tracing import Tracing
from edgeinfer.serving import ErrorMapping

log = logging.getLogger(__name__)

ERRORS = ErrorMapping("function", log)


class InferenceServicer:
    """The data plane's RPCs (not a subclass of the generated servicer: its stubs of every RPC would shadow the
    providers' methods); `providers` serve the RPCs it does not (shared memory, trace and log settings),
    and `shared_memory` resolves ModelInfer tensors held in registered regions."""

    def __init__(
        self,
        dataplane: DataPlane,
        tracing: Tracing,
        *,
        providers: Sequence[Any] = (),
        shared_memory: SharedMemoryPlacement | None = None,
    ) -> None:
        self._dp = dataplane
        self._tracing = tracing
        self._providers = tuple(providers)
        self._shared_memory = shared_memory

    def register(self, server: grpc.aio.Server) -> None:
        add_inference_service(
            self,
            server,
            wrap=ERRORS.wrap,
            providers=self._providers,
            shared_memory=self._shared_memory,
            what="function",
        )

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

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        return self._dp.model_config(request.name, request.version)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> pb.ModelStatisticsResponse:
        return self._dp.statistics(request.name, request.version)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:
        # One repository per function: any repository_name names it (Triton's "" is every repository).
        return await self._dp.repository_index(request.ready)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        config, files = load_parameters(request.model_name, request.parameters)
        await self._dp.load_model(request.model_name, config, files)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        # Triton's unload_dependents concerns ensembles, which a function does not have: either value holds.
        for key, value in request.parameters.items():
            if key != "unload_dependents" or value.WhichOneof("parameter_choice") != "bool_param":
                raise InvalidArgument(f"unload '{request.model_name}': unknown parameter '{key}'")
        await self._dp.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

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


def load_parameters(
    model: str, parameters: Mapping[str, pb.ModelRepositoryParameter]
) -> tuple[str | None, dict[str, bytes]]:
    """A load's `config` (Triton's ModelConfig as JSON, a string) and `file:<path>` (bytes) parameters."""
    config: str | None = None
    files: dict[str, bytes] = {}
    for key, value in parameters.items():
        kind = value.WhichOneof("parameter_choice")
        if key == "config":
            if kind != "string_param":
                raise InvalidArgument(f"load '{model}': parameter 'config' must be a string (the model config as JSON)")
            config = value.string_param
        elif key.startswith("file:"):
            if kind != "bytes_param":
                raise InvalidArgument(f"load '{model}': parameter '{key}' must be bytes (the file's content)")
            files[key.removeprefix("file:")] = value.bytes_param
        else:
            raise InvalidArgument(f"load '{model}': unknown parameter '{key}'; known: config, file:<version>/<name>")
    return config, files
