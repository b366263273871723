"""NVIDIA Triton as a benchmark peer: tritonserver 2.51 from the nvidia-pytriton 0.7.0 wheel, in a venv of its own.

`start_triton(repo, "fraud", logs, response_cache=True)` serves one model of an `edgeinfer examples`
repository with benchmarks/peers/triton_onnx.py (see its docstring for what runs where: the wheel's
tritonserver has only the Python backend, so ONNX Runtime runs in a PyTriton callable on the CPU) and
returns once the model is ready. The peer batches as the function does: max batch size and the dynamic
batcher's max queue delay come from the model's config.yaml (edgeinfer.functions.config, the one reader of
that file). Its gRPC and HTTP listeners are on 127.0.0.1, checked after the start.

The venv: $EDGEINFER_TRITON_VENV, else benchmarks/.venvs/triton-pytriton-0.7.0 (git-ignored, beside the other
peers'), built on first use by procs.ensure_venv under a file lock (pytest-xdist workers and a benchmark may
ask at once). The Python-backend stub links libpython3.X.so.1.0 and loads the venv's stdlib: the venv
interpreter's own lib directory goes first on LD_LIBRARY_PATH (`triton_env`), or the stub loads the system's
libpython and dies on `RLock._recursion_count`. An interpreter built without a shared libpython cannot host
the stub: TritonUnavailable says so.

    python benchmarks/common/triton_peer.py    # builds the venv, prints its python
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.common.procs import (
    LOOPBACK,
    ManagedProcess,
    ServerFailed,
    ensure_venv,
    free_port,
    is_loopback,
    listening_addresses,
)
from edgeinfer.functions.config import load_config
from edgeinfer.protocol import open_inference_pb2 as pb

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTRITON_VERSION = "0.7.0"
TRITONSERVER_VERSION = "2.51.0"  # the tritonserver that wheel ships
# numpy < 2 is what the wheel resolves to (tritonclient's pin); onnxruntime matches the project's venv.
REQUIREMENTS = (f"nvidia-pytriton=={PYTRITON_VERSION}", "onnxruntime==1.32.0", "numpy==1.26.4")
VENV_ENV = "EDGEINFER_TRITON_VENV"
DEFAULT_VENV = REPO_ROOT / "benchmarks" / ".venvs" / f"triton-pytriton-{PYTRITON_VERSION}"
SERVER_SCRIPT = REPO_ROOT / "benchmarks" / "peers" / "triton_onnx.py"
MODEL_READY = "/inference.GRPCInferenceService/ModelReady"
READY_TIMEOUT_S = 180.0


class TritonUnavailable(RuntimeError):
    """The Triton peer cannot be installed or cannot run on this machine; the message says why."""


def venv_path() -> Path:
    configured = os.environ.get(VENV_ENV)
    return Path(configured).expanduser().resolve() if configured else DEFAULT_VENV


def ensure_triton_venv(venv: Path | None = None) -> Path:
    """The Triton venv's python, the venv built first if missing (once, whoever else is building it)."""
    venv = venv or venv_path()
    log = venv.parent / f"{venv.name}.build.log"
    try:
        return ensure_venv(venv, REQUIREMENTS, log)  # one build at a time: ensure_venv locks it
    except RuntimeError as error:
        raise TritonUnavailable(
            f"building the Triton peer's venv {venv} failed (log {log}); it needs a package index with "
            f"{', '.join(REQUIREMENTS)}:\n{error}"
        ) from error


def libpython_dir(python: Path) -> Path:
    """The directory holding `python`'s own libpython3.X.so.1.0, which the Python-backend stub must load."""
    code = (
        "import json, sys, sysconfig\n"
        "print(json.dumps({'libdir': sysconfig.get_config_var('LIBDIR'),"
        " 'soname': sysconfig.get_config_var('INSTSONAME'),"
        " 'shared': sysconfig.get_config_var('Py_ENABLE_SHARED'),"
        " 'version': '%d.%d' % sys.version_info[:2]}))\n"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False, timeout=60)
    if done.returncode != 0:
        raise TritonUnavailable(f"{python} did not start: {done.stderr.strip()}")
    info = json.loads(done.stdout)
    libdir = Path(info["libdir"] or "")
    if not info["shared"] or not (libdir / info["soname"]).exists():
        raise TritonUnavailable(
            f"{python} (Python {info['version']}) has no shared libpython ({info['soname']} in {libdir}): "
            "Triton's Python-backend stub links one and would load the system's copy against this interpreter's "
            "standard library. Build the Triton venv from an interpreter configured with --enable-shared "
            f"(set {VENV_ENV} to a venv made from it)."
        )
    return libdir


def triton_env(python: Path) -> dict[str, str]:
    """The environment variables the peer needs: the interpreter's lib directory first on LD_LIBRARY_PATH."""
    paths = [str(libpython_dir(python)), *filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep))]
    return {"LD_LIBRARY_PATH": os.pathsep.join(paths)}


def batching_of(model_dir: Path) -> tuple[int, int]:
    """(max_batch_size, max_queue_delay_microseconds) of the model's config.yaml; a delay of 0 with batching off."""
    config = load_config(model_dir / "config.yaml")
    batching = config.dynamic_batching
    delay = batching.max_queue_delay_microseconds if batching.enabled and config.max_batch_size > 0 else 0
    return config.max_batch_size, delay


def model_ready(target: str, model: str, timeout: float = 2.0) -> bool:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            MODEL_READY,
            request_serializer=pb.ModelReadyRequest.SerializeToString,
            response_deserializer=pb.ModelReadyResponse.FromString,
        )
        try:
            reply: pb.ModelReadyResponse = call(pb.ModelReadyRequest(name=model), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(reply.ready)


@dataclass(slots=True)
class TritonPeer:
    process: ManagedProcess
    address: str  # gRPC, host:port
    http_port: int
    model: str
    response_cache: bool
    max_batch_size: int
    max_queue_delay_us: int
    ready_s: float

    def stop(self) -> None:
        # PyTriton stops tritonserver and its stub on SIGTERM (a few seconds); then the group is killed.
        self.process.stop(grace=20.0)

    def describe(self) -> dict[str, object]:
        return {
            "server": f"tritonserver {TRITONSERVER_VERSION} (nvidia-pytriton {PYTRITON_VERSION})",
            "backend": "python (PyTriton callable, ONNX Runtime CPU, 1 intra-op thread)",
            "address": self.address,
            "response_cache": self.response_cache,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_us": self.max_queue_delay_us,
            "ready_s": self.ready_s,
        }


def start_triton(
    model_repo: Path,
    model: str,
    log_dir: Path,
    *,
    response_cache: bool,
    name: str | None = None,
    python: Path | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
) -> TritonPeer:
    """Serve `model_repo/model` (version 1's model.onnx) with Triton; returns once ModelReady says ready."""
    python = python or ensure_triton_venv()
    model_dir = model_repo / model
    onnx = model_dir / "1" / "model.onnx"
    if not onnx.is_file():
        raise FileNotFoundError(f"{onnx}: no model to serve (write the repository with `edgeinfer examples`)")
    max_batch_size, delay_us = batching_of(model_dir)
    grpc_port, http_port = free_port(), free_port()
    name = name or f"triton-{model}{'-cache' if response_cache else ''}"
    workspace = log_dir / f"{name}-workspace"
    argv = [
        str(python), str(SERVER_SCRIPT),
        "--model", f"{model}={onnx}",
        "--max-batch-size", str(max_batch_size),
        "--max-queue-delay-us", str(delay_us),
        "--grpc-port", str(grpc_port),
        "--http-port", str(http_port),
        "--bind", LOOPBACK,
        "--workspace", str(workspace),
    ]  # fmt: skip
    if response_cache:
        argv.append("--response-cache")
    process = ManagedProcess(name, argv, log_dir / f"{name}.log", env=triton_env(python), cwd=REPO_ROOT)
    address = f"{LOOPBACK}:{grpc_port}"
    started = time.monotonic()
    try:
        while not model_ready(address, model, timeout=1.0):
            if not process.alive():
                raise ServerFailed(
                    f"{name} exited with code {process.proc.returncode} before {model} was ready; "
                    f"log {process.log_path}:\n{process.log_tail()}"
                )
            if time.monotonic() - started > ready_timeout:
                raise ServerFailed(f"{name}: {model} not ready after {ready_timeout:g} s:\n{process.log_tail()}")
            time.sleep(0.25)
        exposed = [a for a in listening_addresses(process.group_pids()) if not is_loopback(a)]
        if exposed:
            raise ServerFailed(f"{name} listens beyond loopback: {', '.join(exposed)}")
    except BaseException:
        process.stop()
        raise
    return TritonPeer(
        process, address, http_port, model, response_cache, max_batch_size, delay_us, time.monotonic() - started
    )


if __name__ == "__main__":
    print(ensure_triton_venv())
