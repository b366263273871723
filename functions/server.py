"""`edgeinfer function`: serve a model repository over the Open Inference Protocol (gRPC, h2c)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from edgeinfer.functions.priority import DEFAULT_COMPUTE_NICE

DEFAULT_PORT = 8080
METRICS_TOKEN_ENV = "EDGEINFER_FUNCTION_METRICS_TOKEN"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

log = logging.getLogger("edgeinfer.function")


def _env_int(name: str, default: int | None) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-repo", required=True, type=Path, help="DIR laid out DIR/<model>/<version>/model.onnx")
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


def server_tls(args: argparse.Namespace) -> Any:
    """edgeinfer.tls.ServerTLS from the --tls-* flags, or None for h2c."""
    from edgeinfer.tls import ServerTLS, TLSConfigError

    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise SystemExit("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS runs over TLS")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise SystemExit("--tls-cert and --tls-key go together: give both, or neither for h2c")
    try:
        return ServerTLS.load(args.tls_cert, args.tls_key, args.tls_client_ca)
    except TLSConfigError as exc:
        raise SystemExit(str(exc)) from None


def metrics_token(args: argparse.Namespace) -> str | None:
    """The metrics port's bearer token, if any; SystemExit when the port leaves loopback without one."""
    from edgeinfer.exposure import is_loopback, read_secret

    if args.metrics_token_file is not None:
        try:
            token: str | None = read_secret(args.metrics_token_file, "--metrics-token-file")
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    else:
        token = os.environ.get(METRICS_TOKEN_ENV) or None
    if args.metrics_port is not None and token is None and not is_loopback(args.metrics_host):
        raise SystemExit(
            f"--metrics-host {args.metrics_host} is not loopback: give the metrics port a token "
            f"(--metrics-token-file FILE or {METRICS_TOKEN_ENV}), or keep the default 127.0.0.1"
        )
    return token


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from edgeinfer.functions.dataplane import DataPlane
    from edgeinfer.functions.metrics_server import MetricsServer
    from edgeinfer.functions.servicer import InferenceServicer
    from edgeinfer.protocol.grpc_service import add_inference_service
    from edgeinfer.protocol.tracing import Tracing

    trace_out: IO[str] | None = args.trace_file.open("a", buffering=1) if args.trace_file else None
    tracing = Tracing(args.trace, trace_out, service="edgeinfer-function")
    dataplane = DataPlane(args.model_repo, compute_nice=args.compute_nice)
    options = [
        ("grpc.max_receive_message_length", args.max_message_bytes),
        ("grpc.max_send_message_length", args.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(options=options)
    add_inference_service(InferenceServicer(dataplane, tracing), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{args.host}:{args.port}"
    tls = server_tls(args)
    token = metrics_token(args)
    try:
        bound = (
            server.add_insecure_port(address)
            if tls is None
            else server.add_secure_port(address, tls.grpc_credentials())
        )
    except RuntimeError as exc:
        raise SystemExit(f"cannot listen on {address}: {exc}; is the port in use?") from exc
    if bound == 0:
        raise SystemExit(f"cannot listen on {address}; is the port in use?")
    metrics_server = None
    if args.metrics_port is not None:
        metrics_tls = tls.ssl_context() if tls is not None else None
        try:
            metrics_server = MetricsServer(
                dataplane.metrics.registry, args.metrics_host, args.metrics_port, token, metrics_tls
            )
        except OSError as exc:
            raise SystemExit(
                f"cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc.strerror}; is the port in use?"
            ) from None
    services = ("", "inference.GRPCInferenceService")
    for service in services:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    # Listen first so probes get an answer (not ready) while models load and warm up.
    await server.start()
    log.info("listening on %s:%d", args.host, bound)
    await dataplane.load()
    # Everything loaded so far lives as long as the process: out of the collector's sight, a full collection
    # costs a few milliseconds instead of ~50 ms of a stalled event loop.
    gc.collect()
    gc.freeze()
    for service in services:
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    cold_start = process_age_seconds()
    dataplane.metrics.cold_start.observe(cold_start)
    log.info("ready: cold start %.3f s (process start to ready), serving %s", cold_start, ", ".join(dataplane.models))
    print(f"edgeinfer function ready on {args.host}:{bound} cold_start_s={cold_start:.3f}", flush=True)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping: draining in-flight requests")
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace=5.0)
    await dataplane.close()
    if metrics_server is not None:
        metrics_server.close()
    tracing.shutdown()
    if trace_out is not None:
        trace_out.close()


GIL_SWITCH_INTERVAL_S = 0.0005


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    # ONNX Runtime computes on worker threads without the GIL; when a batch ends the worker must win the GIL
    # back from a busy event loop, which by default takes up to 5 ms: longer than a small batch's compute.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        asyncio.run(serve(args))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"edgeinfer function: {exc.code}", file=sys.stderr)
            return 2
        raise
    except Exception as exc:  # e.g. a repository or config error: one clear line, not a traceback
        from edgeinfer.functions.config import ConfigError
        from edgeinfer.functions.repository import RepositoryError
        from edgeinfer.functions.runtime import ModelLoadError

        if isinstance(exc, ConfigError | RepositoryError | ModelLoadError):
            print(f"edgeinfer function: {exc}", file=sys.stderr)
            return 2
        raise
    return 0
