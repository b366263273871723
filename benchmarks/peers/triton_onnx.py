"""Serve an ONNX model with NVIDIA Triton (tritonserver from the nvidia-pytriton wheel; runs in that wheel's venv).

    python triton_onnx.py --model NAME=PATH.onnx --max-batch-size B --max-queue-delay-us D \
        --grpc-port N --http-port M [--response-cache] [--cache-bytes B] [--bind 127.0.0.1] [--workspace DIR]

The wheel's tritonserver has only the Python backend (backends/python; no onnxruntime backend), so the model
runs in a PyTriton callable with ONNX Runtime on the CPU, one intra-op thread like the edgeinfer example config.
Triton's own C++ front does the rest: gRPC, the dynamic batcher (max batch size and max queue delay as the
function's config.yaml has them; the launcher passes them, so both batch alike) and, with --response-cache, its
local response cache, which answers a repeated request without reaching the Python backend at all.

Set up for a fair, loopback-only peer:
- gRPC and HTTP bind --bind (PyTriton's default is 0.0.0.0); the metrics server is off;
- PyTriton's restricted endpoints (a token it generates) cover shared-memory, model-repository, trace and
  logging, but not statistics: perf_analyzer reads ModelStatistics around every window and has no token;
- the process that starts this script puts the interpreter's own lib directory first on LD_LIBRARY_PATH: the
  Python-backend stub links libpython3.X.so.1.0 and would otherwise load the system's copy against this venv's
  standard library (benchmarks/common/triton_peer.py; this script refuses to start without it).

"triton peer ready on HOST:PORT" is printed once the model is loaded. SIGTERM stops Triton and its stub.
Not type-checked with the project (pytriton is not installed in the project's venv).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import sysconfig
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

BIND_HOST = "127.0.0.1"
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
# Everything PyTriton can restrict except statistics (perf_analyzer) and what a client needs to infer.
RESTRICTED_ENDPOINTS = ["shared-memory", "model-repository", "trace", "logging"]
ONNX_TO_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, metavar="NAME=PATH", help="model name and its .onnx file")
    parser.add_argument("--max-batch-size", type=int, required=True, help="1 turns batching off")
    parser.add_argument("--max-queue-delay-us", type=int, required=True, help="the dynamic batcher's queue delay")
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--bind", default=BIND_HOST)
    parser.add_argument("--response-cache", action="store_true", help="Triton's local response cache on")
    parser.add_argument("--cache-bytes", type=int, default=DEFAULT_CACHE_BYTES)
    parser.add_argument("--workspace", type=Path, default=None, help="PyTriton's workspace (default: a temp dir)")
    return parser.parse_args(argv)


def check_libpython() -> None:
    """The stub loads this interpreter's stdlib; it must also load this interpreter's libpython (see docstring)."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    first = (os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) or [""])[0]
    if libdir and os.path.realpath(first) != os.path.realpath(libdir):
        raise SystemExit(
            f"triton peer: LD_LIBRARY_PATH must start with {libdir} (this interpreter's libpython), else the "
            f"Python-backend stub loads the system's libpython against this venv's stdlib; it starts with {first!r}"
        )


def session_for(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_libpython()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    name, _, path = args.model.partition("=")
    session = session_for(path)
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    max_batch_size, delay_us = args.max_batch_size, args.max_queue_delay_us

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        results = session.run(output_names, {k: inputs[k] for k in input_names})
        return dict(zip(output_names, results, strict=True))

    def tensors(nodes: list[Any]) -> list[Any]:
        # The model's own dims (symbolic ones as -1), so Triton's front rejects a wrong shape; without the batch
        # dimension, which PyTriton adds when batching is on.
        def dims(shape: list[Any]) -> tuple[int, ...]:
            return tuple(d if isinstance(d, int) else -1 for d in shape[1:])

        return [Tensor(name=n.name, dtype=ONNX_TO_NUMPY[n.type], shape=dims(n.shape)) for n in nodes]

    config = TritonConfig(
        grpc_address=args.bind,
        grpc_port=args.grpc_port,
        http_address=args.bind,
        http_port=args.http_port,
        allow_metrics=False,
        cache_config=[f"local,size={args.cache_bytes}"] if args.response_cache else None,
        log_verbose=0,
    )
    security = TritonSecurityConfig(restricted_endpoints=list(RESTRICTED_ENDPOINTS))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Triton(config=config, workspace=args.workspace, security_config=security) as triton:
        triton.bind(
            model_name=name,
            infer_func=infer,
            inputs=tensors(session.get_inputs()),
            outputs=tensors(session.get_outputs()),
            config=ModelConfig(
                batching=max_batch_size > 1,
                max_batch_size=max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=delay_us),
                response_cache=args.response_cache,
            ),
            strict=True,
        )
        triton.run()  # starts serving in background threads; returns once the model is loaded
        print(
            f"triton peer ready on {args.bind}:{args.grpc_port} (model {name}, max batch {max_batch_size}, "
            f"queue delay {delay_us} µs, response cache {'on' if args.response_cache else 'off'})",
            flush=True,
        )
        while not stop.wait(0.5):
            if not triton.is_alive():
                print("triton peer: tritonserver exited", file=sys.stderr, flush=True)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
