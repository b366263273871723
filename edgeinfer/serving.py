"""What every edgeinfer server shares: fronts with start() and stop(), the gRPC front (options, binding, health,
drain), one mapping of errors to gRPC statuses, signals, gc.freeze, and the process edge (logging, uvloop, exits).

A server (functions/server.py, gateway/server.py) builds its data plane, then its fronts, and starts them in its
own order; `serve_until_signalled` runs it until SIGTERM or SIGINT, then stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic import ValidationError

from edgeinfer.protocol.errors import InferenceError
from edgeinfer.protocol.grpc_service import UnaryMethod

# The services grpc.health.v1 reports on: the server as a whole, and the inference service.
HEALTH_SERVICES = ("", "inference.GRPCInferenceService")
# A call with less time left than this cannot get an answer back before its deadline.
DEADLINE_PASSED_S = 0.001

Metadata = Sequence[tuple[str, str | bytes]]


class Front(Protocol):
    """A transport (gRPC, REST, admin, metrics) over a data plane: it owns its port from start() to stop()."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# -- gRPC ------------------------------------------------------------------------------------


def grpc_options(max_message_bytes: int, reuse_port: bool = False) -> list[tuple[str, Any]]:
    """`reuse_port`: share the port with the other workers of one gateway (SO_REUSEPORT; the kernel spreads the
    connections). Otherwise two servers on one port would split the calls between them: a port in use must be an
    error."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]


def bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    """Add the listening port (TLS when `credentials`); SystemExit naming the address when it is taken."""
    try:
        bound = (
            server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
        )
    except RuntimeError as exc:
        raise SystemExit(f"cannot listen on {address}: {exc}; is the port in use?") from exc
    if bound == 0:
        raise SystemExit(f"cannot listen on {address}; is the port in use?")
    return bound


class GrpcFront:
    """A gRPC server: the services `register` adds, grpc.health.v1, one port bound at construction.

    Health says NOT_SERVING from start() until `set_serving(True)`; stop() drains: NOT_SERVING, `drain_delay`
    seconds still answering (so load balancers move away first), then up to `grace` seconds for calls in flight.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_message_bytes: int,
        register: Callable[[grpc.aio.Server], None],
        credentials: grpc.ServerCredentials | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] | None = None,  # type: ignore[type-arg]
        grace: float = 5.0,
        drain_delay: float = 0.0,
        reuse_port: bool = False,
    ) -> None:
        self._server = grpc.aio.server(options=grpc_options(max_message_bytes, reuse_port), interceptors=interceptors)
        register(self._server)
        self._health: Any = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self.host = host
        self.port = bind(self._server, f"{host}:{port}", credentials)
        self._grace = grace
        self._drain_delay = drain_delay
        self._serving: bool | None = None

    async def set_serving(self, serving: bool) -> None:
        if serving == self._serving:
            return
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in HEALTH_SERVICES:
            await self._health.set(service, status)
        self._serving = serving

    async def start(self) -> None:
        # grpc's health servicer starts out SERVING; nothing may say so before the server says it is ready.
        await self.set_serving(False)
        await self._server.start()

    async def stop(self) -> None:
        await self._health.enter_graceful_shutdown()
        if self._drain_delay > 0:
            await asyncio.sleep(self._drain_delay)
        await self._server.stop(grace=self._grace)


class ErrorMapping:
    """Exceptions → gRPC statuses for one server, applied where handlers are registered (`wrap`).

    An InferenceError carries its status and message; anything else is INTERNAL, logged, and named by class
    only. A call whose deadline has passed is not answered: gRPC ends it with DEADLINE_EXCEEDED on both sides.
    """

    def __init__(self, server: str, log: logging.Logger, trailer: Metadata = ()) -> None:
        self._server = server
        self._log = log
        # Sent with every error: the abort is a trailers-only reply, so a proxy may retry it elsewhere.
        self._trailer = tuple(trailer)

    def status(self, exc: BaseException) -> tuple[grpc.StatusCode, str]:
        """The status and message a client sees for an exception."""
        if isinstance(exc, InferenceError):
            return exc.code, exc.message
        self._log.exception("unexpected error while serving a request", exc_info=exc)
        return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}; see the {self._server}'s log"

    def wrap(self, method: UnaryMethod) -> UnaryMethod:
        """`method` with its errors ended as statuses: a bare try/except around the call, nothing more."""
        status = self.status
        trailer = self._trailer

        async def mapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await method(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                code, message = status(exc)
            remaining = context.time_remaining()
            if remaining is not None and remaining < DEADLINE_PASSED_S:
                # The caller's deadline has passed (or passes before an answer could arrive): gRPC ends the call
                # with DEADLINE_EXCEEDED on both sides, and an abort now would only fail. Cancelling says
                # "nobody to answer".
                raise asyncio.CancelledError
            # Outside the except block, so gRPC's abort exception does not chain the handled one, whose traceback
            # holds every frame down to the batcher: less garbage for the collector per rejection under overload.
            if trailer:
                await context.abort(code, message, trailing_metadata=trailer)
            else:
                await context.abort(code, message)
            raise AssertionError("unreachable: abort raises")

        return mapped


# -- the process -----------------------------------------------------------------------------


def freeze_heap() -> None:
    """Move what start-up built (modules, gRPC, models: it lives as long as the process) out of the collector's
    sight, so a full collection no longer stalls the event loop for tens of milliseconds."""
    gc.collect()
    gc.freeze()


async def serve_until_signalled(server: Front, stop: asyncio.Event | None = None) -> None:
    """Start `server`, serve until SIGTERM or SIGINT (or `stop` is set), then stop it (it drains)."""
    await server.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def configure_logging(level: str, tag: str | None = None) -> None:
    """`tag` names the process among its siblings (a gateway's workers share one log)."""
    where = f"%(name)s[{tag}]" if tag else "%(name)s"
    fmt = f"%(asctime)s %(levelname)s {where}: %(message)s"
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=fmt)


def install_uvloop() -> None:
    # Lazy: uvloop is optional (absent on Windows), and only a server process wants it.
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


def settings_problem(exc: ValidationError) -> str:
    """A settings error as the lines a person reads: a validator's own message, or `field: what is wrong`."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        cause = error.get("ctx", {}).get("error")
        if error["type"] == "value_error" and cause is not None:
            lines.append(str(cause))
        else:
            where = ".".join(str(part) for part in error["loc"])
            lines.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(lines)


def run_main(program: str, main: Coroutine[Any, Any, None]) -> int:
    """Run a server's main coroutine; a SystemExit with a message (a port in use, a bad file) is one line, exit 2."""
    try:
        asyncio.run(main)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"{program}: {exc.code}", file=sys.stderr)
            return 2
        raise
    return 0
