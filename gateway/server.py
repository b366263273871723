"""`edgeinfer gateway`: the regional gateway (gRPC and REST v2 fronts, admin port, prediction cache)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gateway.metrics import GatewayMetrics
from gateway.settings import GatewaySettings, parse_route

log = logging.getLogger("edgeinfer.gateway")

HEALTH_POLL_S = 1.0
DRAIN_GRACE_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--region", default=env("EDGEINFER_GATEWAY_REGION", "local"), help="region name")
    parser.add_argument("--host", default=env("EDGEINFER_GATEWAY_HOST", "127.0.0.1"), help="bind address")
    parser.add_argument("--port", type=int, default=int(env("EDGEINFER_GATEWAY_PORT", "8001")), help="gRPC port")
    parser.add_argument("--rest-port", type=int, help="REST v2 (HTTP/JSON) port (default: off)")
    parser.add_argument("--admin-port", type=int, help="/metrics, /healthz, /readyz on 127.0.0.1 (default: off)")
    parser.add_argument(
        "--redis",
        dest="redis_url",
        default=env("EDGEINFER_GATEWAY_REDIS_URL"),
        help="redis://[:password@]host:port[/db] or rediss://...; without it only the L1 cache runs",
    )
    parser.add_argument("--redis-prefix", default="edgeinfer:", help="prefix of every Redis key")
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="MODEL=HOST:PORT[,HOST:PORT...]",
        help="function endpoints of a model (repeat once per model)",
    )
    parser.add_argument(
        "--backend",
        choices=("static", "local"),
        default="static",
        help="static: --route endpoints; local: a scale-to-zero pool of functions per model",
    )
    parser.add_argument("--model-repo", type=Path, help="with --backend local: the model repository to serve")
    parser.add_argument("--state-dir", type=Path, help="with --backend local: logs and per-model repositories")
    parser.add_argument("--max-instances", type=int, default=4, help="with --backend local: cap per model")
    parser.add_argument("--autoscale-tick", type=float, default=2.0, help="with --backend local: seconds per tick")
    parser.add_argument(
        "--pool-max-queue",
        type=int,
        default=256,
        help="with --backend local: requests that may wait for an instance, per model",
    )
    parser.add_argument("--l1-max-bytes", type=int, default=64 * 1024 * 1024, help="in-process cache size (0: off)")
    parser.add_argument("--max-message-bytes", type=int, default=64 * 1024 * 1024)
    parser.add_argument("--trace", choices=("none", "console", "otlp"), default=env("EDGEINFER_TRACE", "none"))
    parser.add_argument("--trace-file", type=Path, help="with --trace console: write spans (JSON lines) here")
    parser.add_argument("--log-level", default=env("EDGEINFER_LOG_LEVEL", "INFO"))


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    routes: dict[str, list[str]] = {}
    for text in args.route:
        model, endpoints = parse_route(text)
        routes.setdefault(model, []).extend(endpoints)
    return GatewaySettings(
        region=args.region,
        host=args.host,
        port=args.port,
        rest_port=args.rest_port,
        admin_port=args.admin_port,
        redis_url=args.redis_url,
        redis_prefix=args.redis_prefix,
        routes=routes,
        l1_max_bytes=args.l1_max_bytes,
        max_message_bytes=args.max_message_bytes,
        trace=args.trace,
    )


def build_cache(settings: GatewaySettings, metrics: GatewayMetrics) -> tuple[Any, Any, Any]:
    """The prediction cache, its single-flight table and key function (None when caching is off)."""
    if settings.l1_max_bytes == 0 and settings.redis_url is None:
        return None, None, None
    from cache.key import cache_key, key_parts_from_request
    from cache.l1 import L1Cache
    from cache.prediction_cache import PredictionCache
    from cache.redis_store import RedisStore
    from cache.singleflight import SingleFlight

    redis = None
    if settings.redis_url is not None:
        redis = RedisStore(
            settings.redis_url,
            key_prefix=settings.redis_prefix,
            get_timeout=settings.redis_read_budget_ms / 1000,
            write_timeout=settings.redis_write_budget_ms / 1000,
        )
    cache = PredictionCache(
        l1=L1Cache(settings.l1_max_bytes) if settings.l1_max_bytes > 0 else None,
        redis=redis,
        max_entry_bytes=settings.cache_max_entry_bytes,
        xfetch_beta=settings.xfetch_beta,
    )
    metrics.watch_cache(cache.stats)

    def key(request: Any, decoded: Any, tenant: str, version: str) -> bytes:
        return cache_key(key_parts_from_request(request, decoded, tenant=tenant, version=version))

    # The shared call is cancelled only when every caller has given up on it.
    return cache, SingleFlight[bytes](), key


@dataclass(frozen=True)
class LocalPoolOptions:
    model_repo: Path
    state_dir: Path
    max_instances: int = 4
    tick_seconds: float = 2.0
    max_queue: int = 256


async def serve(
    settings: GatewaySettings,
    trace_out: IO[str] | None = None,
    stop: asyncio.Event | None = None,
    local: LocalPoolOptions | None = None,
) -> None:
    import grpc
    from aiohttp import web
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from edgeinfer.protocol.grpc_service import add_inference_service
    from edgeinfer.protocol.tracing import Tracing
    from gateway.backends.local import LocalBackend
    from gateway.backends.static import StaticBackend
    from gateway.dataplane import GatewayDataPlane
    from gateway.rest import AdminFront, RestFront
    from gateway.servicer import GatewayServicer

    metrics = GatewayMetrics(settings.region)
    tracing = Tracing(settings.trace, trace_out, service=f"edgeinfer-gateway-{settings.region}")
    backend: Any
    if local is not None:
        backend = LocalBackend(
            local.model_repo,
            region=settings.region,
            state_dir=local.state_dir,
            metrics=metrics,
            max_instances=local.max_instances,
            max_queue=local.max_queue,
            tick_seconds=local.tick_seconds,
            max_message_bytes=settings.max_message_bytes,
        )
        await backend.start()
    else:
        backend = StaticBackend(settings.routes, settings.max_message_bytes)
    cache, flights, key = build_cache(settings, metrics)
    if cache is not None and settings.redis_url is not None and not await cache.start():
        log.warning("Redis is not answering yet; serving from L1 and functions until it does")
    dataplane = GatewayDataPlane(
        backend,
        metrics,
        tracing,
        cache=cache,
        flights=flights,
        key_function=key,
        metadata_ttl_seconds=settings.metadata_ttl_seconds,
        default_timeout_seconds=settings.default_timeout_ms / 1000,
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    add_inference_service(GatewayServicer(dataplane, settings.region), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{settings.host}:{settings.port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise SystemExit(f"cannot listen on {address}: {exc}; is the port in use?") from exc
    if bound == 0:
        raise SystemExit(f"cannot listen on {address}; is the port in use?")

    runners: list[web.AppRunner] = []
    admin = AdminFront(dataplane, settings.region, backend)

    async def site(app: web.Application, host: str, port: int, what: str) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            message = f"cannot listen on {host}:{port} for the {what}: {exc.strerror}; is the port in use?"
            raise SystemExit(message) from None
        runners.append(runner)

    if settings.rest_port is not None:
        await site(
            RestFront(dataplane, settings.region, settings.max_message_bytes).app,
            settings.host,
            settings.rest_port,
            "REST front",
        )
    if settings.admin_port is not None:
        # The admin port stays on loopback whatever --host says.
        await site(admin.app, "127.0.0.1", settings.admin_port, "admin port")
    await server.start()

    async def watch_health() -> None:
        status = None
        while True:
            ready = await dataplane.ready()
            metrics.ready.labels(settings.region).set(1 if ready else 0)
            wanted = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
            if wanted != status:
                for service in ("", "inference.GRPCInferenceService"):
                    await health_servicer.set(service, wanted)
                status = wanted
            await asyncio.sleep(HEALTH_POLL_S)

    watcher = asyncio.get_running_loop().create_task(watch_health())
    print(
        f"edgeinfer gateway region={settings.region} grpc={settings.host}:{bound}"
        + (f" rest={settings.host}:{settings.rest_port}" if settings.rest_port is not None else "")
        + (f" admin=127.0.0.1:{settings.admin_port}" if settings.admin_port is not None else ""),
        flush=True,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining: refusing new calls, finishing those in flight")
    admin.draining = True
    watcher.cancel()
    await health_servicer.enter_graceful_shutdown()
    await server.stop(grace=DRAIN_GRACE_S)
    for runner in runners:
        await runner.cleanup()
    await dataplane.close()
    if cache is not None:
        await cache.close()
    await backend.close()
    tracing.shutdown()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"edgeinfer gateway: {exc}", file=sys.stderr)
        return 2
    local = None
    if args.backend == "local":
        if args.model_repo is None:
            print("edgeinfer gateway: --backend local needs --model-repo DIR", file=sys.stderr)
            return 2
        state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix=f"edgeinfer-{settings.region}-"))
        local = LocalPoolOptions(
            args.model_repo, state_dir, args.max_instances, args.autoscale_tick, args.pool_max_queue
        )
    elif not settings.routes:
        print("edgeinfer gateway: no --route given; add --route MODEL=HOST:PORT for each model", file=sys.stderr)
        return 2
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    trace_out = args.trace_file.open("a", buffering=1) if args.trace_file else None
    try:
        asyncio.run(serve(settings, trace_out, local=local))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"edgeinfer gateway: {exc.code}", file=sys.stderr)
            return 2
        raise
    finally:
        if trace_out is not None:
            trace_out.close()
    return 0
