"""`edgeinfer gateway`: the regional gateway (gRPC and REST v2 fronts, admin port, prediction cache).

The composer: the data plane (gateway/dataplane.py over a backend and the prediction cache), then its fronts:
gRPC (edgeinfer/serving.py's GrpcFront with the servicer), REST and admin (gateway/rest.py). With `--workers N`
above 1 this process is the parent of N such gateways on the same ports instead (gateway/workers.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from edgeinfer import serving
from edgeinfer.cache.key import cache_key, key_parts_from_request
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_store import RedisStore
from edgeinfer.cache.singleflight import SingleFlight
from edgeinfer.exposure import is_loopback, read_secret
from edgeinfer.gateway.auth import Authenticator, GrpcAuthInterceptor, KeysFileError, admin_middleware, rest_middleware
from edgeinfer.gateway.backends.base import Backend
from edgeinfer.gateway.backends.knative import KnativeBackend, KnativeRoute, knative_routes
from edgeinfer.gateway.backends.local import LocalBackend
from edgeinfer.gateway.backends.static import StaticBackend
from edgeinfer.gateway.dataplane import GatewayDataPlane, KeyFunction
from edgeinfer.gateway.metrics import GatewayMetrics
from edgeinfer.gateway.rest import AdminFront, RestFront
from edgeinfer.gateway.servicer import GatewayServicer
from edgeinfer.gateway.settings import DRAIN_DELAY_S, GatewaySettings, parse_route, parse_workers
from edgeinfer.gateway.traffic import TRAFFIC_FILE, TrafficTable
from edgeinfer.gateway.workers import run_group, usable_cpus
from edgeinfer.knative_names import service_name
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.shared_memory import SharedMemoryRPCs, SystemSharedMemory
from edgeinfer.protocol.tensors import Array
from edgeinfer.protocol.tracing import Tracing
from edgeinfer.runtime_settings import RuntimeSettings, SettingsRPCs
from edgeinfer.tls import ClientTLS, ServerTLS, TLSConfigError

log = logging.getLogger("edgeinfer.gateway")

HEALTH_POLL_S = 1.0
DRAIN_GRACE_S = 10.0


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
        help="redis://[:password@]host:port[/db] or rediss://...; a Redis Cluster: redis+cluster://h:p,h:p,... "
        "(or ?cluster=true); without it only the L1 cache runs",
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
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="traffic policies (traffic.json, any backend; without it they live in memory only), and with "
        "--backend local: logs and per-model repositories",
    )
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
    parser.add_argument(
        "--workers",
        type=_workers_flag,
        default=env("EDGEINFER_GATEWAY_WORKERS", "1"),
        metavar="N|auto",
        help="gateway processes on the same ports (SO_REUSEPORT), each with its own L1, all sharing --redis; "
        "auto: one per CPU this process may use (affinity and cgroup quota). Default 1: this process serves",
    )
    # A worker of a group (gateway/workers.py): its settings come on stdin, from the group's parent.
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)


def _workers_flag(text: str) -> int:
    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def settings_from(args: argparse.Namespace) -> GatewaySettings:
    """The flags as settings, once, at the CLI edge; ValueError naming what to fix."""
    # Without a file, pydantic-settings reads EDGEINFER_GATEWAY_ADMIN_TOKEN.
    secrets: dict[str, Any] = {}
    if args.admin_token_file is not None:
        secrets["admin_token"] = read_secret(args.admin_token_file, "--admin-token-file")
    routes: dict[str, list[str]] = {}
    for text in args.route:
        model, endpoints = parse_route(text)
        routes.setdefault(model, []).extend(endpoints)
    services: dict[str, str] = {}
    for text in args.knative_service:
        model, _, service = text.partition("=")
        services[model] = service or service_name(model)
    # Every flag named like its setting passes as it is; the rest were turned into settings above.
    values: dict[str, Any] = {name: getattr(args, name) for name in GatewaySettings.model_fields if name in vars(args)}
    values.update(routes=routes, knative_services=services, drain_delay=max(0.0, args.drain_delay), **secrets)
    values["workers"] = args.workers or usable_cpus()
    return GatewaySettings(**values)


@dataclass(frozen=True)
class Security:
    """TLS credentials and authentication, loaded (and checked) before anything listens."""

    server_tls: ServerTLS | None
    function_tls: ClientTLS | None
    auth: Authenticator | None


def load_security(settings: GatewaySettings) -> Security:
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


@dataclass(frozen=True)
class CachePlan:
    """The prediction cache, its single-flight table and key function."""

    cache: PredictionCache
    flights: SingleFlight[bytes]
    key: KeyFunction


def _key(request: pb.ModelInferRequest, decoded: dict[str, Array], tenant: str, version: str) -> bytes:
    return cache_key(key_parts_from_request(request, decoded, tenant=tenant, version=version))


def build_cache(settings: GatewaySettings, metrics: GatewayMetrics) -> CachePlan | None:
    """None when caching is off (no L1, no Redis)."""
    if settings.l1_max_bytes == 0 and settings.redis_url is None:
        return None
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
    # The shared call is cancelled only when every caller has given up on it.
    return CachePlan(cache, SingleFlight[bytes](), _key)


def traffic_path(settings: GatewaySettings) -> Path | None:
    """Where the traffic policies persist: `<state-dir>/traffic.json`, None without a state dir (memory only). A
    worker's state dir is its own subfolder of the group's (gateway/workers.py worker_settings): the workers share
    the group's file, so a restarted worker reads the policies its siblings hold."""
    if settings.state_dir is None:
        return None
    folder = settings.state_dir.parent if settings.worker_index is not None else settings.state_dir
    return folder / TRAFFIC_FILE


def load_traffic(settings: GatewaySettings) -> TrafficTable:
    table = TrafficTable(traffic_path(settings))
    try:
        table.load()
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return table


def knative_routes_for(settings: GatewaySettings) -> dict[str, KnativeRoute]:
    """--backend knative: model -> KnativeRoute; ValueError naming the flag to fix."""
    return knative_routes(
        settings.knative_services,
        settings.knative_namespace,
        ingress=settings.knative_ingress,
        domain=settings.knative_domain,
    )


def build_backend(
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    function_tls: ClientTLS | None,
    knative: dict[str, KnativeRoute] | None,
) -> Backend:
    if settings.backend == "local":
        assert settings.model_repo is not None  # GatewaySettings.check_backend
        state_dir = settings.state_dir or Path(tempfile.mkdtemp(prefix=f"edgeinfer-{settings.region}-"))
        return LocalBackend(
            settings.model_repo,
            region=settings.region,
            state_dir=state_dir,
            metrics=metrics,
            max_instances=settings.max_instances,
            max_queue=settings.pool_max_queue,
            tick_seconds=settings.autoscale_tick,
            max_message_bytes=settings.max_message_bytes,
        )
    if settings.backend == "knative":
        assert knative is not None
        return KnativeBackend(knative, settings.max_message_bytes)
    return StaticBackend(settings.routes, settings.max_message_bytes, function_tls)


class GatewayServer:
    """Data plane, then fronts: REST and admin first, then (the heap frozen) gRPC, reporting NOT_SERVING until
    the first look at the backends says it can serve. stop() drains: NOT_SERVING for `drain_delay` while still
    answering, then the calls in flight, then the fronts, the data plane, the cache and the backend, in order.

    Construction checks the backend's flags (ValueError); nothing listens before start().
    """

    def __init__(self, settings: GatewaySettings) -> None:
        settings.check_backend()
        self.settings = settings
        self._knative = knative_routes_for(settings) if settings.backend == "knative" else None
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        try:
            await self._start(self._stack)
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        settings = self.settings
        # What is stopped last is pushed first: the stack unwinds the fronts, then the data plane, the cache,
        # the backend and tracing.
        security = load_security(settings)
        trace_out: IO[str] | None = None
        if settings.trace_file is not None:
            trace_out = stack.enter_context(settings.trace_file.open("a", buffering=1))
        metrics = GatewayMetrics(settings.region)
        if security.auth is not None:
            security.auth.observe = metrics.auth_outcome
        tracing = Tracing(settings.trace, trace_out, service=f"edgeinfer-gateway-{settings.region}")
        stack.callback(tracing.shutdown)
        backend = build_backend(settings, metrics, security.function_tls, self._knative)
        stack.push_async_callback(backend.close)
        if isinstance(backend, LocalBackend):
            await backend.start()
        plan = build_cache(settings, metrics)
        if plan is not None:
            stack.push_async_callback(plan.cache.close)
            if settings.redis_url is not None and not await plan.cache.start():
                log.warning("Redis is not answering yet; serving from L1 and functions until it does")
        # Read before the data plane serves: a lease that ran out while the gateway was down is applied first.
        traffic = load_traffic(settings)
        traffic.start()  # its lease watcher
        stack.push_async_callback(traffic.close)
        dataplane = GatewayDataPlane(
            backend,
            metrics,
            tracing,
            cache=plan.cache if plan is not None else None,
            flights=plan.flights if plan is not None else None,
            key_function=plan.key if plan is not None else None,
            metadata_ttl_seconds=settings.metadata_ttl_seconds,
            default_timeout_seconds=settings.default_timeout_ms / 1000,
            traffic=traffic,
        )
        stack.push_async_callback(dataplane.close)
        # One registry of shared-memory regions and one set of trace/log settings per process, shared by both
        # fronts: a region registered over REST serves gRPC inference too. Tensors are read from a region before
        # the data plane (the gateway forwards bytes, and its cache sees plain requests); the regions are unmapped
        # at stop, after the fronts.
        shm = SystemSharedMemory(max_tensor_bytes=settings.max_message_bytes)
        stack.callback(shm.close)
        runtime = RuntimeSettings(tracing, known_model=lambda name: name in backend.models())
        servicer = GatewayServicer(
            dataplane,
            settings.region,
            providers=(SharedMemoryRPCs(shm), SettingsRPCs(runtime)),
            shared_memory=shm,
        )
        grpc_front = serving.GrpcFront(
            settings.host,
            settings.port,
            max_message_bytes=settings.max_message_bytes,
            register=servicer.register,
            credentials=security.server_tls.grpc_credentials() if security.server_tls is not None else None,
            interceptors=[GrpcAuthInterceptor(security.auth)] if security.auth is not None else None,
            grace=DRAIN_GRACE_S,
            drain_delay=settings.drain_delay,
            reuse_port=settings.reuse_port,
        )
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
        # Loopback unless --admin-host says otherwise (then with a token, and TLS when the fronts have it).
        admin_tls = None
        if security.server_tls is not None and not is_loopback(settings.admin_host):
            admin_tls = security.server_tls.ssl_context(mutual=False)
        admin = AdminFront(
            dataplane,
            settings.region,
            backend,
            [admin_middleware(admin_token)] if admin_token is not None else (),
            host=settings.admin_host,
            port=settings.admin_port or 0,
            tls=admin_tls,
            reuse_port=settings.reuse_port,
        )
        if settings.rest_port is not None:
            rest = RestFront(
                dataplane,
                settings.region,
                settings.max_message_bytes,
                [rest_middleware(security.auth)] if security.auth is not None else (),
                host=settings.host,
                port=settings.rest_port,
                tls=security.server_tls.ssl_context() if security.server_tls is not None else None,
                shared_memory=shm,
                runtime_settings=runtime,
                reuse_port=settings.reuse_port,
            )
            await rest.start()
            stack.push_async_callback(rest.stop)
        # A worker's admin answers only once its gRPC front is open: its parent reads that as "this worker serves".
        worker = settings.worker_index is not None
        if settings.admin_port is not None and not worker:
            await admin.start()
            stack.push_async_callback(admin.stop)
        # What start-up built (~80k objects: modules, gRPC, aiohttp, redis) lives as long as the process.
        serving.freeze_heap()
        await grpc_front.start()
        stack.push_async_callback(grpc_front.stop)
        if settings.admin_port is not None and worker:
            await admin.start()
            stack.push_async_callback(admin.stop)
        watcher = asyncio.get_running_loop().create_task(self._watch_health(dataplane, metrics, grpc_front))
        stack.push_async_callback(self._drain, admin, watcher)
        print(
            f"edgeinfer gateway region={settings.region} grpc={settings.host}:{grpc_front.port}"
            + (f" rest={settings.host}:{settings.rest_port}" if settings.rest_port is not None else "")
            + (f" admin={settings.admin_host}:{settings.admin_port}" if settings.admin_port is not None else "")
            + (" tls" + ("+mtls" if security.server_tls.mutual else "") if security.server_tls is not None else "")
            + (f" tenants={len(security.auth.tenants)}" if security.auth is not None else "")
            + (f" worker={settings.worker_index} pid={os.getpid()}" if worker else ""),
            flush=True,
        )

    async def _watch_health(
        self, dataplane: GatewayDataPlane, metrics: GatewayMetrics, grpc_front: serving.GrpcFront
    ) -> None:
        gauge = metrics.ready.labels(self.settings.region)
        while True:
            ready = await dataplane.ready()
            gauge.set(1 if ready else 0)
            await grpc_front.set_serving(ready)
            await asyncio.sleep(HEALTH_POLL_S)

    async def _drain(self, admin: AdminFront, watcher: asyncio.Task[None]) -> None:
        log.info(
            "draining: NOT_SERVING for %.1fs so load balancers move away, then finishing calls in flight",
            self.settings.drain_delay,
        )
        admin.draining = True
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        # Then the gRPC front's stop: NOT_SERVING while still answering (Knative's queue-proxy does the same),
        # so a call that arrives now is answered, not refused; then the calls in flight.

    async def stop(self) -> None:
        await self._stack.aclose()


def run(args: argparse.Namespace) -> int:
    if args.worker is not None:
        return run_worker(args.worker)
    serving.configure_logging(args.log_level)
    try:
        settings = settings_from(args)
        server = GatewayServer(settings)
    except ValueError as exc:
        print(f"edgeinfer gateway: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        try:
            load_security(settings)  # a bad certificate or keys file: one message here, not one per worker
        except SystemExit as exc:
            print(f"edgeinfer gateway: {exc.code}", file=sys.stderr)
            return 2
        return run_group(settings)
    serving.install_uvloop()
    return serving.run_main("edgeinfer gateway", serving.serve_until_signalled(server))


def run_worker(index: int) -> int:
    """One worker of a group: the parent's settings (validated there) as JSON on stdin."""
    try:
        settings = GatewaySettings.model_validate_json(sys.stdin.buffer.read())
        server = GatewayServer(settings)
    except ValueError as exc:
        print(f"edgeinfer gateway worker {index}: {exc}", file=sys.stderr)
        return 2
    serving.configure_logging(settings.log_level, tag=f"worker {index}")
    serving.install_uvloop()
    return serving.run_main(f"edgeinfer gateway worker {index}", serving.serve_until_signalled(server))
