"""`edgeinfer gateway`: the regional gateway (gRPC and REST v2 fronts, admin port, prediction cache)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edgeinfer.exposure import is_loopback, read_secret
from edgeinfer.gateway.metrics import GatewayMetrics
from edgeinfer.gateway.settings import GatewaySettings, parse_route

log = logging.getLogger("edgeinfer.gateway")

HEALTH_POLL_S = 1.0
DRAIN_GRACE_S = 10.0
# On SIGTERM, how long NOT_SERVING is reported before new calls are refused: a few of Envoy's 0.2 s checks.
DRAIN_DELAY_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--region", default=env("EDGEINFER_GATEWAY_REGION", "local"), help="region name")
    parser.add_argument("--host", default=env("EDGEINFER_GATEWAY_HOST", "127.0.0.1"), help="bind address")
    parser.add_argument("--port", type=int, default=int(env("EDGEINFER_GATEWAY_PORT", "8001")), help="gRPC port")
    parser.add_argument("--rest-port", type=int, help="REST v2 (HTTP/JSON) port (default: off)")
    parser.add_argument("--admin-port", type=int, help="/metrics, /healthz, /readyz on --admin-host (default: off)")
    parser.add_argument(
        "--admin-host",
        default=env("EDGEINFER_GATEWAY_ADMIN_HOST", "127.0.0.1"),
        help="admin port's address (default 127.0.0.1); any other needs an admin token",
    )
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        help="file holding the admin port's bearer token (or set EDGEINFER_GATEWAY_ADMIN_TOKEN); not a flag value, "
        "so it never shows in `ps`",
    )
    tls = parser.add_argument_group("TLS and authentication (docs/security.md)")
    tls.add_argument("--tls-cert", type=Path, help="PEM certificate (chain): serve gRPC and REST over TLS")
    tls.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    tls.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates it signed (mutual TLS)")
    tls.add_argument(
        "--function-tls-ca", type=Path, help="PEM CA that signed the functions' certificates: call them over TLS"
    )
    tls.add_argument("--function-tls-cert", type=Path, help="client certificate for mutual TLS to the functions")
    tls.add_argument("--function-tls-key", type=Path, help="private key of --function-tls-cert")
    tls.add_argument("--function-tls-server-name", help="name the functions' certificates carry, if not their address")
    tls.add_argument(
        "--api-keys",
        type=Path,
        default=env("EDGEINFER_GATEWAY_API_KEYS"),
        help="YAML of tenants with SHA-256 digests of their API keys and rate limits; without it the gateway is open "
        "and every caller is tenant 'default'",
    )
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
        choices=("static", "local", "knative"),
        default="static",
        help="static: --route endpoints; local: a scale-to-zero pool of functions per model; "
        "knative: each model's Knative Service in this region (docs/knative.md)",
    )
    parser.add_argument(
        "--knative-service",
        action="append",
        default=[],
        metavar="MODEL[=SERVICE]",
        help="with --backend knative: a model and its Knative Service (default: the model's name); repeat per model",
    )
    parser.add_argument("--knative-namespace", default="default", help="with --backend knative: Services' namespace")
    parser.add_argument(
        "--knative-ingress",
        metavar="HOST:PORT",
        help="with --backend knative: reach the Services through this ingress by Host header (default: their "
        "cluster-local addresses, from inside the cluster)",
    )
    parser.add_argument("--knative-domain", help="with --knative-ingress: the region's knative_domain")
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
    parser.add_argument(
        "--drain-delay",
        type=float,
        default=DRAIN_DELAY_S,
        help="on SIGTERM: seconds of NOT_SERVING, still answering, before new calls are refused",
    )


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    # Without a file, pydantic-settings reads EDGEINFER_GATEWAY_ADMIN_TOKEN.
    secrets: dict[str, Any] = {}
    if args.admin_token_file is not None:
        secrets["admin_token"] = read_secret(args.admin_token_file, "--admin-token-file")
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
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        function_tls_ca=args.function_tls_ca,
        function_tls_cert=args.function_tls_cert,
        function_tls_key=args.function_tls_key,
        function_tls_server_name=args.function_tls_server_name,
        api_keys=args.api_keys,
        admin_host=args.admin_host,
        **secrets,
    )


@dataclass(frozen=True)
class Security:
    """TLS credentials and authentication, loaded (and checked) before anything listens."""

    server_tls: Any  # edgeinfer.tls.ServerTLS | None
    function_tls: Any  # edgeinfer.tls.ClientTLS | None
    auth: Any  # gateway.auth.Authenticator | None


def load_security(settings: GatewaySettings) -> Security:
    from edgeinfer.gateway.auth import Authenticator, KeysFileError
    from edgeinfer.tls import ClientTLS, ServerTLS, TLSConfigError

    try:
        server_tls = None
        if settings.tls_cert is not None and settings.tls_key is not None:
            server_tls = ServerTLS.load(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        function_tls = None
        if settings.function_tls:
            function_tls = ClientTLS.load(
                settings.function_tls_ca,
                settings.function_tls_cert,
                settings.function_tls_key,
                settings.function_tls_server_name,
            )
        auth = Authenticator.from_file(settings.api_keys) if settings.api_keys is not None else None
    except (TLSConfigError, KeysFileError) as exc:
        raise SystemExit(str(exc)) from None
    return Security(server_tls, function_tls, auth)


def build_cache(settings: GatewaySettings, metrics: GatewayMetrics) -> tuple[Any, Any, Any]:
    """The prediction cache, its single-flight table and key function (None when caching is off)."""
    if settings.l1_max_bytes == 0 and settings.redis_url is None:
        return None, None, None
    from edgeinfer.cache.key import cache_key, key_parts_from_request
    from edgeinfer.cache.l1 import L1Cache
    from edgeinfer.cache.prediction_cache import PredictionCache
    from edgeinfer.cache.redis_store import RedisStore
    from edgeinfer.cache.singleflight import SingleFlight

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
    drain_delay: float = DRAIN_DELAY_S,
    knative: Any = None,  # model -> gateway.backends.knative.KnativeRoute
) -> None:
    import grpc
    from aiohttp import web
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from edgeinfer.gateway.auth import GrpcAuthInterceptor, admin_middleware, rest_middleware
    from edgeinfer.gateway.backends.local import LocalBackend
    from edgeinfer.gateway.backends.static import StaticBackend
    from edgeinfer.gateway.dataplane import GatewayDataPlane
    from edgeinfer.gateway.rest import AdminFront, RestFront
    from edgeinfer.gateway.servicer import GatewayServicer
    from edgeinfer.protocol.grpc_service import add_inference_service
    from edgeinfer.protocol.tracing import Tracing

    security = load_security(settings)
    metrics = GatewayMetrics(settings.region)
    if security.auth is not None:
        security.auth.observe = metrics.auth_outcome
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
    elif knative is not None:
        from edgeinfer.gateway.backends.knative import KnativeBackend

        backend = KnativeBackend(knative, settings.max_message_bytes)
    else:
        backend = StaticBackend(settings.routes, settings.max_message_bytes, security.function_tls)
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
        ],
        interceptors=[GrpcAuthInterceptor(security.auth)] if security.auth is not None else None,
    )
    add_inference_service(GatewayServicer(dataplane, settings.region), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = f"{settings.host}:{settings.port}"
    try:
        if security.server_tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, security.server_tls.grpc_credentials())
    except RuntimeError as exc:
        raise SystemExit(f"cannot listen on {address}: {exc}; is the port in use?") from exc
    if bound == 0:
        raise SystemExit(f"cannot listen on {address}; is the port in use?")

    runners: list[web.AppRunner] = []
    admin_token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
    admin = AdminFront(
        dataplane, settings.region, backend, [admin_middleware(admin_token)] if admin_token is not None else ()
    )

    async def site(app: web.Application, host: str, port: int, what: str, tls: ssl.SSLContext | None = None) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, ssl_context=tls).start()
        except OSError as exc:
            message = f"cannot listen on {host}:{port} for the {what}: {exc.strerror}; is the port in use?"
            raise SystemExit(message) from None
        runners.append(runner)

    if settings.rest_port is not None:
        await site(
            RestFront(
                dataplane,
                settings.region,
                settings.max_message_bytes,
                [rest_middleware(security.auth)] if security.auth is not None else (),
            ).app,
            settings.host,
            settings.rest_port,
            "REST front",
            security.server_tls.ssl_context() if security.server_tls is not None else None,
        )
    if settings.admin_port is not None:
        # Loopback unless --admin-host says otherwise (then with a token, and TLS when the fronts have it).
        admin_tls = None
        if security.server_tls is not None and not is_loopback(settings.admin_host):
            admin_tls = security.server_tls.ssl_context(mutual=False)
        await site(admin.app, settings.admin_host, settings.admin_port, "admin port", admin_tls)
    # What start-up built (~80k objects: modules, gRPC, aiohttp, redis) lives as long as the process. Out of
    # the collector's sight, a full collection no longer stalls the event loop for ~60 ms.
    gc.collect()
    gc.freeze()
    # grpc's health servicer starts out SERVING; nothing may say so before the first look at the backends.
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", "inference.GRPCInferenceService"):
        await health_servicer.set(service, not_serving)
    await server.start()

    async def watch_health() -> None:
        status = not_serving
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
        + (f" admin={settings.admin_host}:{settings.admin_port}" if settings.admin_port is not None else "")
        + (" tls" + ("+mtls" if security.server_tls.mutual else "") if security.server_tls is not None else "")
        + (f" tenants={len(security.auth.tenants)}" if security.auth is not None else ""),
        flush=True,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("draining: NOT_SERVING for %.1fs so load balancers move away, then finishing calls in flight", drain_delay)
    admin.draining = True
    watcher.cancel()
    await health_servicer.enter_graceful_shutdown()
    # Keep serving while health checkers notice NOT_SERVING (Knative's queue-proxy does the same): a call
    # that arrives now is still answered, not refused.
    await asyncio.sleep(drain_delay)
    await server.stop(grace=DRAIN_GRACE_S)
    for runner in runners:
        await runner.cleanup()
    await dataplane.close()
    if cache is not None:
        await cache.close()
    await backend.close()
    tracing.shutdown()


def knative_routes_from(args: argparse.Namespace) -> Any:
    """--backend knative: model -> KnativeRoute; ValueError naming the flag to fix."""
    from edgeinfer.gateway.backends.knative import knative_routes
    from edgeinfer.knative_names import service_name

    if args.function_tls_ca is not None:
        raise ValueError("--function-tls-* applies to --backend static; Knative Services are reached over h2c")
    if not args.knative_service:
        raise ValueError("--backend knative needs --knative-service MODEL[=SERVICE] for each model")
    services = {}
    for text in args.knative_service:
        model, _, service = text.partition("=")
        services[model] = service or service_name(model)
    return knative_routes(services, args.knative_namespace, ingress=args.knative_ingress, domain=args.knative_domain)


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
    knative = None
    if args.backend == "local" and settings.function_tls:
        print(
            "edgeinfer gateway: --function-tls-* applies to --backend static; the local pool's functions "
            "are its own children on loopback",
            file=sys.stderr,
        )
        return 2
    if args.backend == "local":
        if args.model_repo is None:
            print("edgeinfer gateway: --backend local needs --model-repo DIR", file=sys.stderr)
            return 2
        state_dir = args.state_dir or Path(tempfile.mkdtemp(prefix=f"edgeinfer-{settings.region}-"))
        local = LocalPoolOptions(
            args.model_repo, state_dir, args.max_instances, args.autoscale_tick, args.pool_max_queue
        )
    elif args.backend == "knative":
        try:
            knative = knative_routes_from(args)
        except ValueError as exc:
            print(f"edgeinfer gateway: {exc}", file=sys.stderr)
            return 2
    elif not settings.routes:
        print("edgeinfer gateway: no --route given; add --route MODEL=HOST:PORT for each model", file=sys.stderr)
        return 2
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    trace_out = args.trace_file.open("a", buffering=1) if args.trace_file else None
    try:
        asyncio.run(serve(settings, trace_out, local=local, drain_delay=max(0.0, args.drain_delay), knative=knative))
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"edgeinfer gateway: {exc.code}", file=sys.stderr)
            return 2
        raise
    finally:
        if trace_out is not None:
            trace_out.close()
    return 0
