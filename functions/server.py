"""`edgeinfer function`: serve a model repository over the Open Inference Protocol (gRPC, h2c).

The composer: the data plane (functions/dataplane.py), then its fronts: gRPC (edgeinfer/serving.py's GrpcFront
with the servicer) and, with --metrics-port, the metrics front (functions/metrics_server.py).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from edgeinfer import serving
from edgeinfer.exposure import read_secret
from edgeinfer.functions.config import ConfigError
from edgeinfer.functions.dataplane import DataPlane
from edgeinfer.functions.metrics_server import MetricsServer
from edgeinfer.functions.priority import DEFAULT_COMPUTE_NICE
from edgeinfer.functions.repository import RepositoryError
from edgeinfer.functions.runtime import ModelLoadError
from edgeinfer.functions.servicer import InferenceServicer
from edgeinfer.functions.settings import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PORT, METRICS_TOKEN_ENV, FunctionSettings
from edgeinfer.protocol.shared_memory import SharedMemoryRPCs, SystemSharedMemory
from edgeinfer.protocol.tracing import Tracing
from edgeinfer.runtime_settings import RuntimeSettings, SettingsRPCs
from edgeinfer.tls import ServerTLS, TLSConfigError

log = logging.getLogger("edgeinfer.function")
GRACE_S = 5.0


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-repo",
        required=True,
        type=Path,
        help="DIR laid out DIR/<model>/<version>/model.onnx (or model.pt2, model.pt: PyTorch, docs/pytorch.md)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=_env_int("PORT", DEFAULT_PORT),
        help=f"gRPC (h2c) port (default $PORT, then {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("EDGEINFER_METRICS_PORT", None),
        help="serve Prometheus /metrics on this port of --metrics-host (default: off); over TLS when gRPC has TLS",
    )
    parser.add_argument(
        "--metrics-host",
        default=os.environ.get("EDGEINFER_METRICS_HOST", "127.0.0.1"),
        help="address of the metrics port (default 127.0.0.1); any other needs a metrics token",
    )
    parser.add_argument(
        "--metrics-token-file",
        type=Path,
        help=f"file holding the bearer token the metrics port requires (or set {METRICS_TOKEN_ENV}); "
        "not a flag value, so it stays out of the process list",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help="largest request or reply; bigger ones get RESOURCE_EXHAUSTED (default 64 MiB)",
    )
    parser.add_argument(
        "--compute-nice",
        type=int,
        default=_env_int("EDGEINFER_COMPUTE_NICE", DEFAULT_COMPUTE_NICE),
        choices=range(0, 20),
        metavar="0..19",
        help="add this to the nice value of the threads that run the models, so the gRPC front (replies, "
        f"rejections, health checks) gets the CPU first; 0 keeps them equal (default {DEFAULT_COMPUTE_NICE})",
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (chain): serve gRPC over TLS instead of h2c")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA bundle: require callers (the gateway) to present a certificate it signed (mutual TLS)",
    )
    parser.add_argument(
        "--trace",
        choices=("none", "console", "otlp"),
        default=os.environ.get("EDGEINFER_TRACE", "none"),
        help="OpenTelemetry span exporter (default none)",
    )
    parser.add_argument("--trace-file", type=Path, help="with --trace console: write spans (JSON lines) here")
    parser.add_argument("--log-level", default=os.environ.get("EDGEINFER_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--model-control-mode",
        choices=("none", "explicit", "poll"),
        default="none",
        help="as Triton's: none loads every model at start and refuses load/unload; explicit loads the "
        "--load-model ones at start and others on request (RepositoryModelLoad/Unload); poll follows the "
        "repository, rescanning it every --repository-poll-secs (default none)",
    )
    parser.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="NAME",
        help="with --model-control-mode explicit: load this model at start (repeatable; '*' loads every model)",
    )
    parser.add_argument(
        "--repository-poll-secs",
        type=float,
        default=15.0,
        help="with --model-control-mode poll: seconds between rescans of the repository (default 15)",
    )


def settings_from(args: argparse.Namespace) -> FunctionSettings:
    """The flags as settings, once, at the CLI edge; ValueError (a settings error, an unreadable token file)."""
    # Without a file, pydantic-settings reads EDGEINFER_FUNCTION_METRICS_TOKEN.
    secrets: dict[str, Any] = {}
    if args.metrics_token_file is not None:
        secrets["metrics_token"] = read_secret(args.metrics_token_file, "--metrics-token-file")
    return FunctionSettings(
        model_repo=args.model_repo,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        max_message_bytes=args.max_message_bytes,
        compute_nice=args.compute_nice,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        trace=args.trace,
        trace_file=args.trace_file,
        log_level=args.log_level,
        model_control_mode=args.model_control_mode,
        load_models=tuple(args.load_model),
        repository_poll_secs=args.repository_poll_secs,
        **secrets,
    )


def process_age_seconds() -> float:
    """Seconds since this process was spawned (from /proc), so imports count in the cold start."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            uptime_s = float(uptime.read().split()[0])
        return max(0.0, uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED_AT


_IMPORTED_AT = time.monotonic()


def load_tls(settings: FunctionSettings) -> ServerTLS | None:
    """The gRPC port's TLS (and the metrics port's), or None for h2c; SystemExit naming the unreadable file."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        return ServerTLS.load(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    except TLSConfigError as exc:
        raise SystemExit(str(exc)) from None


class FunctionServer:
    """Data plane, then fronts: the gRPC port listens at once (not ready) while the models load and warm up."""

    def __init__(self, settings: FunctionSettings) -> None:
        self.settings = settings
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        # What is stopped last is pushed first: the stack unwinds fronts, then the data plane, then tracing.
        trace_out: IO[str] | None = None
        if settings.trace_file is not None:
            trace_out = stack.enter_context(settings.trace_file.open("a", buffering=1))
        tracing = Tracing(settings.trace, trace_out, service="edgeinfer-function")
        stack.callback(tracing.shutdown)
        dataplane = DataPlane(
            settings.model_repo,
            compute_nice=settings.compute_nice,
            control_mode=settings.model_control_mode,
            startup_models=settings.load_models,
            poll_seconds=settings.repository_poll_secs,
        )
        # Shared with the gateway: system shared-memory regions, and the trace and log settings at run time.
        shared_memory = SystemSharedMemory()
        stack.callback(shared_memory.close)
        runtime = RuntimeSettings(tracing, known_model=lambda name: name in dataplane.models)
        servicer = InferenceServicer(
            dataplane,
            tracing,
            providers=(SharedMemoryRPCs(shared_memory), SettingsRPCs(runtime)),
            shared_memory=shared_memory,
        )
        tls = load_tls(settings)
        grpc_front = serving.GrpcFront(
            settings.host,
            settings.port,
            max_message_bytes=settings.max_message_bytes,
            register=servicer.register,
            credentials=tls.grpc_credentials() if tls is not None else None,
            grace=GRACE_S,
        )
        if settings.metrics_port is not None:
            token = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else None
            metrics_tls = tls.ssl_context() if tls is not None else None
            metrics = MetricsServer(
                dataplane.metrics.registry, settings.metrics_host, settings.metrics_port, token, metrics_tls
            )
            await metrics.start()
            stack.push_async_callback(metrics.stop)
        stack.push_async_callback(dataplane.close)
        # Listen first so probes get an answer (not ready) while models load and warm up.
        await grpc_front.start()
        stack.push_async_callback(self._drain, grpc_front)
        log.info("listening on %s:%d", settings.host, grpc_front.port)
        dataplane.record_process_phase(process_age_seconds())
        await dataplane.load()
        # Everything loaded so far lives as long as the process: out of the collector's sight, a full collection
        # costs a few milliseconds instead of ~50 ms of a stalled event loop.
        serving.freeze_heap()
        await grpc_front.set_serving(True)
        cold_start = process_age_seconds()
        dataplane.metrics.cold_start.observe(cold_start)
        dataplane.metrics.start_phase.labels("", "ready").set(cold_start)
        log.info(
            "ready: cold start %.3f s (process start to ready), serving %s (model control %s); phases: %s",
            cold_start,
            ", ".join(dataplane.models) or "no model yet",
            settings.model_control_mode,
            dataplane.start_phases_text(),
        )
        print(
            f"edgeinfer function ready on {settings.host}:{grpc_front.port} cold_start_s={cold_start:.3f}", flush=True
        )

    @staticmethod
    async def _drain(grpc_front: serving.GrpcFront) -> None:
        log.info("stopping: draining in-flight requests")
        await grpc_front.stop()

    async def stop(self) -> None:
        await self._stack.aclose()


GIL_SWITCH_INTERVAL_S = 0.0005


def run(args: argparse.Namespace) -> int:
    serving.configure_logging(args.log_level)
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"edgeinfer function: {serving.settings_problem(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"edgeinfer function: {exc}", file=sys.stderr)
        return 2
    serving.install_uvloop()
    # ONNX Runtime computes on worker threads without the GIL; when a batch ends the worker must win the GIL
    # back from a busy event loop, which by default takes up to 5 ms: longer than a small batch's compute.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        return serving.run_main("edgeinfer function", serving.serve_until_signalled(FunctionServer(settings)))
    except (ConfigError, RepositoryError, ModelLoadError) as exc:  # one clear line, not a traceback
        print(f"edgeinfer function: {exc}", file=sys.stderr)
        return 2
