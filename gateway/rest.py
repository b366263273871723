"""REST v2 front (Triton's HTTP/REST API: the Open Inference Protocol with Triton's extensions) on aiohttp, and
the admin front.

The REST front speaks what tritonclient.http and the KServe SDK send: JSON or binary tensors (rest_binary.py),
compressed bodies, Triton's routes for configuration, statistics, the repository, system shared memory, and trace
and log settings, with Triton's JSON shapes (rest_json.py).

Both map errors to JSON replies in one middleware (`json_errors`), and each is a front: it owns its port from
start() to stop().
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edgeinfer.gateway.dataplane import DEFAULT_TENANT, GatewayDataPlane
from edgeinfer.gateway.rest_binary import (
    BINARY_CONTENT_TYPE,
    INFERENCE_HEADER,
    BinarySection,
    BodyTooLarge,
    compress,
    decode_body,
    reply_encoding,
    split_body,
)
from edgeinfer.gateway.rest_json import (
    brief,
    metadata_to_json,
    model_config_json,
    optional_json_object,
    parse_json_body,
    reply_body,
    repository_index_json,
    request_from_json,
    statistics_json,
)
from edgeinfer.gateway.servicer import EXTENSIONS, SERVER_NAME, SERVER_VERSION
from edgeinfer.gateway.traffic_admin import add_traffic_routes
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InferenceError, InvalidArgument, Unimplemented
from edgeinfer.protocol.shared_memory import SystemSharedMemory, cuda_status, regions_json
from edgeinfer.runtime_settings import RuntimeSettings

log = logging.getLogger(__name__)

REGION_HEADER = "x-edgeinfer-region"
CACHE_HEADER = "x-edgeinfer-cache"
# Request bodies are decoded by the front itself (rest_binary.decode_body), not by aiohttp: these, as tritonclient
# sends them.
REQUEST_ENCODINGS = frozenset(("identity", "", "gzip", "deflate"))
# Bodies above this are decompressed on a worker thread, off the event loop.
_DECODE_INLINE_MAX_BYTES = 256 * 1024


def json_errors(headers: Mapping[str, str] | None = None) -> Middleware:
    """The one mapping of errors to replies on aiohttp: `{"error": message}` with the error's HTTP status.

    An InferenceError carries its status; aiohttp's own (404, 405, 413) keep theirs; anything else is a 500
    that names nothing but the log. `headers` go on every error reply (the REST front's region).
    """

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except InferenceError as exc:
            return web.json_response({"error": exc.message}, status=exc.http_status, headers=headers)
        except web.HTTPRequestEntityTooLarge as exc:
            return web.json_response({"error": f"request body is too large: {exc.text}"}, status=413, headers=headers)
        except web.HTTPException as exc:
            return web.json_response({"error": exc.text or exc.reason}, status=exc.status, headers=headers)
        except (HttpProcessingError, RequestPayloadError) as exc:  # a body aiohttp cannot decode (gzip that lies)
            cause = exc if isinstance(exc, HttpProcessingError) else exc.__cause__
            detail = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
            message = f"request body cannot be read: {detail.strip()}"
            return web.json_response({"error": message}, status=400, headers=headers)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return web.json_response({"error": "internal error; see the gateway's log"}, status=500, headers=headers)

    return errors


class HttpFront:
    """An aiohttp application on one port, from start() to stop(); SystemExit naming the port when it is taken.

    `reuse_port`: share the port with the other workers of one gateway (SO_REUSEPORT)."""

    what = "HTTP front"

    def __init__(
        self, app: web.Application, host: str, port: int, tls: ssl.SSLContext | None, reuse_port: bool = False
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._tls = tls
        self._reuse_port = reuse_port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, ssl_context=self._tls, reuse_port=self._reuse_port or None)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            message = (
                f"cannot listen on {self.host}:{self.port} for the {self.what}: {exc.strerror}; is the port in use?"
            )
            raise SystemExit(message) from None
        self._runner = runner
        self.port = runner.addresses[0][1]  # the port bound, when asked for port 0

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


_MODEL = "/v2/models/{model}"
_VERSIONED = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
_SYSTEM = "/v2/systemsharedmemory"
_CUDA = "/v2/cudasharedmemory"


class RestFront(HttpFront):
    """Triton's HTTP/REST API (KServe's v2 with Triton's extensions) over the gateway's data plane."""

    what = "REST front"

    def __init__(
        self,
        dataplane: GatewayDataPlane,
        region: str,
        max_body_bytes: int,
        middlewares: Sequence[Any] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        shared_memory: SystemSharedMemory | None = None,
        runtime_settings: RuntimeSettings | None = None,
        reuse_port: bool = False,
    ) -> None:
        """`middlewares` (e.g. authentication) run inside the error mapping, before the handlers.

        Without `shared_memory` (or `runtime_settings`) their routes, and inference naming a region, answer 501.
        """
        self._dp = dataplane
        self._region = region
        self._headers = {REGION_HEADER: region}
        self._shm = shared_memory
        self._settings = runtime_settings
        self._max_body_bytes = max_body_bytes
        errors = json_errors(self._headers)
        app = web.Application(
            client_max_size=max_body_bytes,
            middlewares=[errors, *middlewares],
            handler_args={"auto_decompress": False},  # see _body
        )
        super().__init__(app, host, port, tls, reuse_port)
        add = self.app.router.add_route
        add("GET", "/v2/health/live", self.live)
        add("GET", "/v2/health/ready", self.ready)
        add("GET", "/v2", self.server_metadata)
        # Before /v2/models/{model}: a model named "stats" is shadowed, as in Triton.
        add("GET", "/v2/models/stats", self.statistics)
        for prefix in _VERSIONED:
            add("GET", prefix, self.model_metadata)
            add("GET", prefix + "/ready", self.model_ready)
            add("POST", prefix + "/infer", self.infer)
            add("GET", prefix + "/config", self.model_config)
            add("GET", prefix + "/stats", self.statistics)
        add("POST", "/v2/repository/index", self.repository_index)
        add("POST", "/v2/repository/models/{model}/load", self.load)
        add("POST", "/v2/repository/models/{model}/unload", self.unload)
        add("GET", _SYSTEM + "/status", self.region_status)
        add("GET", _SYSTEM + "/region/{name}/status", self.region_status)
        add("POST", _SYSTEM + "/region/{name}/register", self.register_region)
        add("POST", _SYSTEM + "/unregister", self.unregister_region)
        add("POST", _SYSTEM + "/region/{name}/unregister", self.unregister_region)
        add("GET", _CUDA + "/status", self.cuda_status)
        add("GET", _CUDA + "/region/{name}/status", self.cuda_status)
        add("POST", _CUDA + "/region/{name}/register", self.cuda_register)
        add("POST", _CUDA + "/unregister", self.cuda_unregister)
        add("POST", _CUDA + "/region/{name}/unregister", self.cuda_unregister)
        for path in ("/v2/trace/setting", _MODEL + "/trace/setting"):
            add("GET", path, self.trace_setting)
            add("POST", path, self.update_trace_setting)
        add("GET", "/v2/logging", self.log_settings)
        add("POST", "/v2/logging", self.update_log_settings)

    def _json(self, body: Any, status: int = 200, cache: str | None = None) -> web.Response:
        headers = self._headers
        if cache is not None:
            headers = {**headers, CACHE_HEADER: cache}
        return web.json_response(body, status=status, headers=headers)

    def _empty(self) -> web.Response:
        """Triton's reply to a register, unregister, load or unload that worked: 200 and no body."""
        return web.Response(status=200, content_type="application/json", headers=self._headers)

    # -- health and metadata -----------------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return self._json({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        ready = await self._dp.ready()
        return self._json({"ready": ready}, status=200 if ready else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return self._json({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)})

    async def model_metadata(self, request: web.Request) -> web.Response:
        info = request.match_info
        metadata = await self._dp.model_metadata(info["model"], info.get("version", ""))
        return self._json(metadata_to_json(metadata))

    async def model_ready(self, request: web.Request) -> web.Response:
        info = request.match_info
        ready = await self._dp.model_ready(info["model"], info.get("version", ""))
        return self._json({"name": info["model"], "ready": ready}, status=200 if ready else 503)

    async def model_config(self, request: web.Request) -> web.Response:
        info = request.match_info
        reply = await self._dp.model_config(info["model"], info.get("version", ""))
        return self._json(model_config_json(reply.config))

    async def statistics(self, request: web.Request) -> web.Response:
        info = request.match_info
        stats = await self._dp.statistics_of(info.get("model", ""), info.get("version", ""))
        return self._json(statistics_json(stats))

    # -- inference ---------------------------------------------------------------------------------------------

    async def infer(self, request: web.Request) -> web.Response:
        info = request.match_info
        header_length = request.headers.get(INFERENCE_HEADER)
        header, binary = split_body(await self._body(request), header_length)
        body = parse_json_body(header)
        section = BinarySection(binary, header_given=header_length is not None)
        infer_request, form = request_from_json(info["model"], info.get("version", ""), body, section)
        shm = self._require_shm("inference with tensors in shared memory") if form.uses_regions else None
        # Inputs in regions are read into the request before the data plane, so its cache sees plain tensors.
        placement = shm.resolve(infer_request) if shm is not None else None
        outcome = await self._dp.infer(infer_request, tenant=DEFAULT_TENANT)
        reply = pb.ModelInferResponse.FromString(outcome.payload)
        if shm is not None and placement is not None:
            shm.place(reply, placement)
        payload, json_length = reply_body(reply, form)
        headers = {**self._headers, CACHE_HEADER: outcome.cache}
        if json_length is None:
            headers["Content-Type"] = "application/json"
        else:
            headers["Content-Type"] = BINARY_CONTENT_TYPE
            headers[INFERENCE_HEADER] = str(json_length)
        encoding = reply_encoding(request.headers.get("Accept-Encoding"))
        if encoding is not None:
            payload = await compress(payload, encoding)
            headers["Content-Encoding"] = encoding
        return web.Response(body=payload, headers=headers)

    async def _body(self, request: web.Request) -> bytes:
        """The request body with its Content-Encoding undone, within the body limit: a corrupt or cut stream is a
        400 naming the encoding, a bomb a 413, and the connection stays usable."""
        sent = request.headers.get("Content-Encoding", "identity").strip().lower()
        if sent not in REQUEST_ENCODINGS:
            raise InvalidArgument(f"Content-Encoding {sent[:40]!r} is not supported; send gzip, deflate or none")
        body = await request.read()
        if sent in ("identity", ""):
            return body
        try:
            if len(body) <= _DECODE_INLINE_MAX_BYTES:
                return decode_body(body, sent, self._max_body_bytes)
            return await asyncio.to_thread(decode_body, body, sent, self._max_body_bytes)
        except BodyTooLarge as exc:
            raise web.HTTPRequestEntityTooLarge(
                max_size=self._max_body_bytes, actual_size=self._max_body_bytes + 1, text=str(exc)
            ) from None

    # -- model repository --------------------------------------------------------------------------------------

    async def repository_index(self, request: web.Request) -> web.Response:
        body = optional_json_object(await self._body(request), "repository index request")
        ready = body.get("ready", False)
        if not isinstance(ready, bool):
            raise InvalidArgument(f"'ready' must be true or false, got {brief(ready)}")
        index = await self._dp.repository_index(ready)
        return self._json(repository_index_json(index))

    async def load(self, request: web.Request) -> web.Response:
        self._dp.refuse_repository_change("load", request.match_info["model"])

    async def unload(self, request: web.Request) -> web.Response:
        self._dp.refuse_repository_change("unload", request.match_info["model"])

    # -- shared memory -----------------------------------------------------------------------------------------

    def _require_shm(self, what: str) -> SystemSharedMemory:
        if self._shm is None:
            raise Unimplemented(f"{what} is not enabled on this gateway: it was started without system shared memory")
        return self._shm

    async def region_status(self, request: web.Request) -> web.Response:
        shm = self._require_shm("system shared memory")
        return self._json(regions_json(shm.status(request.match_info.get("name", ""))))

    async def register_region(self, request: web.Request) -> web.Response:
        shm = self._require_shm("system shared memory")
        name = request.match_info["name"]
        body = optional_json_object(await self._body(request), "shared memory register request")
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"registering region '{name}': 'key' must name the shared-memory object")
        offset = body.get("offset", 0)
        byte_size = body.get("byte_size")
        for field, value in (("offset", offset), ("byte_size", byte_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgument(
                    f"registering region '{name}': '{field}' must be a non-negative integer, got {brief(value)}"
                )
        assert isinstance(byte_size, int)
        shm.register(name, key, offset, byte_size)
        return self._empty()

    async def unregister_region(self, request: web.Request) -> web.Response:
        self._require_shm("system shared memory").unregister(request.match_info.get("name", ""))
        return self._empty()

    # As a CPU build of Triton: registering a CUDA region is refused; the status and unregistering of none succeed.
    async def cuda_register(self, request: web.Request) -> web.Response:
        raise Unimplemented(
            "CUDA shared memory is not served by the edgeinfer gateway (no GPU build); "
            "use system shared memory (/v2/systemsharedmemory) instead"
        )

    async def cuda_status(self, request: web.Request) -> web.Response:
        return self._json(cuda_status(request.match_info.get("name", "")))

    async def cuda_unregister(self, request: web.Request) -> web.Response:
        return self._empty()

    # -- trace and log settings --------------------------------------------------------------------------------

    def _require_settings(self, what: str) -> RuntimeSettings:
        if self._settings is None:
            raise Unimplemented(f"{what} cannot be read or changed on this gateway: it has no runtime settings")
        return self._settings

    async def trace_setting(self, request: web.Request) -> web.Response:
        settings = self._require_settings("trace settings")
        return self._json(settings.trace_json(request.match_info.get("model", "")))

    async def update_trace_setting(self, request: web.Request) -> web.Response:
        settings = self._require_settings("trace settings")
        body = optional_json_object(await self._body(request), "trace setting request")
        return self._json(settings.update_trace_json(body, request.match_info.get("model", "")))

    async def log_settings(self, request: web.Request) -> web.Response:
        return self._json(self._require_settings("log settings").log_json())

    async def update_log_settings(self, request: web.Request) -> web.Response:
        settings = self._require_settings("log settings")
        body = optional_json_object(await self._body(request), "log settings request")
        return self._json(settings.update_log_json(body))


class AdminFront(HttpFront):
    """/metrics (Prometheus), /healthz (the process is up), /readyz (it can serve), and with the local
    backend /v1/pools (GET: instances and knobs, per model and per version; PATCH /v1/pools/{model}[/{version}]:
    change Knative knobs at run time, of every version or of one; POST /v1/pools/{model}/{version}/drain: stop a
    version's instances gracefully and hold it at zero until a request names it).
    """

    what = "admin port"

    def __init__(
        self,
        dataplane: GatewayDataPlane,
        region: str,
        backend: Any = None,
        middlewares: Sequence[Any] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> None:
        self._dp = dataplane
        self._region = region
        self._backend = backend
        self.draining = False
        super().__init__(web.Application(middlewares=[json_errors(), *middlewares]), host, port, tls, reuse_port)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        if hasattr(backend, "update"):
            self.app.router.add_get("/v1/pools", self.pools)
            self.app.router.add_patch("/v1/pools/{model}", self.update_pool)
            self.app.router.add_patch("/v1/pools/{model}/{version}", self.update_pool)
            self.app.router.add_post("/v1/pools/{model}/{version}/drain", self.drain_pool)
        self.app.router.add_get("/v1/fault", self.fault)
        self.app.router.add_put("/v1/fault", self.set_fault)
        self.app.router.add_delete("/v1/fault", self.clear_fault)
        add_traffic_routes(self.app, dataplane, region)

    # Drills make a region slow through these: {"delay_ms": N} delays every inference it serves.
    async def fault(self, request: web.Request) -> web.Response:
        return web.json_response({"region": self._region, "delay_ms": self._dp.fault_delay * 1000})

    async def set_fault(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        delay = body.get("delay_ms") if isinstance(body, dict) else None
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 60_000:
            raise InvalidArgument('body must be {"delay_ms": N} with 0 <= N <= 60000')
        self._dp.fault_delay = delay / 1000
        return await self.fault(request)

    async def clear_fault(self, request: web.Request) -> web.Response:
        self._dp.fault_delay = 0.0
        return await self.fault(request)

    async def pools(self, request: web.Request) -> web.Response:
        return web.json_response({"region": self._region, "pools": self._backend.status()})

    async def update_pool(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        version = request.match_info.get("version")  # None: every version of the model
        changes = await _json_body(request)
        if not isinstance(changes, dict):
            raise InvalidArgument('body must be an object of Knative knobs, e.g. {"min-scale": 2}')
        try:
            applied = await self._backend.update(model, changes, version=version)
        except ValueError as exc:  # pydantic's ValidationError names the knob and the rule
            raise InvalidArgument(str(exc)) from None
        knobs = {v: k.model_dump(by_alias=True) for v, k in applied.items()}
        if version is not None:
            return web.json_response({"model": model, "version": version, "knobs": knobs[version]})
        # "knobs": the default (latest) version's, as GET /v1/pools shows them per model.
        return web.json_response({"model": model, "knobs": list(knobs.values())[-1], "versions": knobs})

    async def drain_pool(self, request: web.Request) -> web.Response:
        model, version = request.match_info["model"], request.match_info["version"]
        drained = await self._backend.drain(model, version)
        return web.json_response({"model": model, "version": version, "drained": drained})

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._dp.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True, "region": self._region, "pid": os.getpid()})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = not self.draining and await self._dp.ready()
        return web.json_response({"ready": ready, "region": self._region}, status=200 if ready else 503)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"body is not valid JSON: {exc}") from None
