"""Serve ONNX models with KServe's python ModelServer (runs in KServe's own virtualenv).

    python kserve_onnx.py --model NAME=PATH.onnx [--model ...] --grpc_port N --http_port M \
        --bind 127.0.0.1 [--enable_latency_logging false]

Each model is a `kserve.Model` subclass that runs ONNX Runtime on the v2 `InferRequest`
KServe builds from a gRPC ModelInferRequest, and answers an `InferResponse` with raw
(binary) outputs. Sessions use one intra-op thread, like the edgeinfer example config.

Binding: KServe 0.21 hard-codes its listeners, gRPC to `[::]:{grpc_port}`
(kserve/protocol/grpc/server.py, GRPCServer.start) and REST to `0.0.0.0`
(kserve/protocol/rest/server.py, RESTServer.__init__ builds a uvicorn.Config), and has no
flag for either host. This launcher rebinds both to `--bind` before the server starts:
the grpc.aio server KServe creates gets an `add_insecure_port` that swaps the `[::]` host,
and the REST server's uvicorn config gets its host replaced after construction.
The REST server cannot be turned off, so it listens on a loopback port nobody uses.

Not type-checked with the project (kserve is not installed in the project's venv).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

BIND_HOST = "127.0.0.1"


def _parse_own_args() -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--bind", default=BIND_HOST)
    own, rest = parser.parse_known_args()
    # kserve.model_server parses sys.argv when it is imported: leave it only its own flags.
    sys.argv = [sys.argv[0], *rest]
    return own, rest


def _rebind(host: str) -> None:
    import grpc.aio
    import kserve.protocol.grpc.server as grpc_server_module
    import kserve.protocol.rest.server as rest_server_module

    real_server = grpc.aio.server

    def loopback_server(*args: Any, **kwargs: Any) -> Any:
        server = real_server(*args, **kwargs)
        add_port = server.add_insecure_port

        def add_insecure_port(address: str) -> int:
            _, _, port = address.rpartition(":")
            return add_port(f"{host}:{port}")

        server.add_insecure_port = add_insecure_port
        return server

    class _AioShim:
        server = staticmethod(loopback_server)

        def __getattr__(self, name: str) -> Any:
            return getattr(grpc.aio, name)

    grpc_server_module.aio = _AioShim()

    rest_init = rest_server_module.RESTServer.__init__

    def init_on_host(self: Any, *args: Any, **kwargs: Any) -> None:
        rest_init(self, *args, **kwargs)
        self.config.host = host

    rest_server_module.RESTServer.__init__ = init_on_host


def main() -> None:
    own, _ = _parse_own_args()

    import kserve
    import onnxruntime as ort
    from kserve import InferOutput, InferRequest, InferResponse

    _rebind(own.bind)

    class OnnxModel(kserve.Model):
        def __init__(self, name: str, path: str) -> None:
            super().__init__(name)
            self._path = path
            self.load()

        def load(self) -> bool:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self._session = ort.InferenceSession(self._path, sess_options=options, providers=["CPUExecutionProvider"])
            self._output_names = [o.name for o in self._session.get_outputs()]
            self.ready = True
            return self.ready

        def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
            feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
            results = self._session.run(self._output_names, feeds)
            outputs = []
            for name, value in zip(self._output_names, results, strict=True):
                output = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
                output.set_data_from_numpy(value, binary_data=True)
                outputs.append(output)
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=outputs,
                from_grpc=payload.from_grpc,
            )

    models = []
    for spec in own.model:
        name, _, path = spec.partition("=")
        models.append(OnnxModel(name, path))
    kserve.ModelServer().start(models)


if __name__ == "__main__":
    main()
