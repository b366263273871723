"""REST v2 front (Open Inference Protocol over HTTP/JSON) on aiohttp, and the admin front.

Both map errors to JSON replies in one middleware (`json_errors`), and each is a front: it owns its port from
start() to stop().
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edgeinfer.gateway.dataplane import DEFAULT_TENANT, GatewayDataPlane
from edgeinfer.gateway.servicer import EXTENSIONS, SERVER_NAME, SERVER_VERSION
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.datatypes import NUMPY_DTYPES
from edgeinfer.protocol.errors import InferenceError, InvalidArgument
from edgeinfer.protocol.tensors import Array, build_request, element_count, output_arrays, shape_text

log = logging.getLogger(__name__)

REGION_HEADER = "x-edgeinfer-region"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
CACHE_HEADER = "x-edgeinfer-cache"


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
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            return web.json_response({"error": "internal error; see the gateway's log"}, status=500, headers=headers)

    return errors


class HttpFront:
    """An aiohttp application on one port, from start() to stop(); SystemExit naming the port when it is taken."""

    what = "HTTP front"

    def __init__(self, app: web.Application, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._tls = tls
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, ssl_context=self._tls).start()
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


def _parameter(value: Any) -> pb.InferParameter:
    param = pb.InferParameter()
    if isinstance(value, bool):
        param.bool_param = value
    elif isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise InvalidArgument(f"parameter value {value} is outside the int64 range")
        param.int64_param = value
    elif isinstance(value, float):
        param.double_param = value
    elif isinstance(value, str):
        param.string_param = value
    else:
        raise InvalidArgument(f"parameter value {_brief(value)} must be a bool, integer, number or string")
    return param


def _brief(value: Any) -> str:
    """A short repr of a client's value for an error message (never the whole of a large one)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bytes_elements(name: str, data: Any) -> Array:
    """BYTES data: (nested lists of) strings, each sent as its UTF-8 bytes."""
    flat = np.array(data, dtype=np.object_).reshape(-1)
    out = np.empty(flat.size, dtype=np.object_)
    for i, item in enumerate(flat):
        if not isinstance(item, str):
            raise InvalidArgument(f"input '{name}': BYTES data must be strings, got {_brief(item)}")
        out[i] = item.encode("utf-8", "surrogatepass")
    return out


def _parameter_value(param: pb.InferParameter) -> Any:
    choice = param.WhichOneof("parameter_choice")
    return getattr(param, choice) if choice else None


def _tensor_from_json(tensor: Any) -> tuple[str, Array]:
    if not isinstance(tensor, dict):
        raise InvalidArgument("each input must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    datatype = tensor.get("datatype")
    shape = tensor.get("shape")
    if not isinstance(name, str) or not name:
        raise InvalidArgument("an input has no name")
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise InvalidArgument(f"input '{name}': unknown datatype {_brief(datatype)}; one of {', '.join(NUMPY_DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidArgument(f"input '{name}': shape must be a list of non-negative integers")
    expected = element_count(name, shape)  # refuses negative dimensions and sizes past MAX_ELEMENTS
    data = tensor.get("data")
    if data is None:
        raise InvalidArgument(f"input '{name}': no data")
    try:
        bytes_data = datatype == "BYTES"
        array = _bytes_elements(name, data) if bytes_data else np.asarray(data, dtype=NUMPY_DTYPES[datatype])
        if array.size != expected:
            raise InvalidArgument(
                f"input '{name}': {array.size} values do not fill shape {shape_text(shape)} ({expected} values)"
            )
        return name, array.reshape(shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"input '{name}': data is not valid {datatype}: {exc}") from None


def parse_json_body(data: bytes) -> Any:
    """The request body as JSON; a body that is not UTF-8, not JSON, or nested past the parser's limit is a 400."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"request body is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument("request body is nested too deeply to parse; tensors need at most a few levels") from None


def request_from_json(model: str, version: str, body: Any) -> pb.ModelInferRequest:
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidArgument("request body needs an 'inputs' list")
    arrays: dict[str, Array] = {}
    for tensor in inputs:
        name, array = _tensor_from_json(tensor)
        if name in arrays:
            raise InvalidArgument(f"input '{name}' appears more than once")
        arrays[name] = array
    request_id = body.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument(f"'id' must be a string, got {_brief(request_id)}")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidArgument("'parameters' must be an object of name: value")
    outputs = body.get("outputs") or []
    if not isinstance(outputs, list):
        raise InvalidArgument("'outputs' must be a list of objects with a name")
    # Datatypes and shapes are checked against the model's metadata downstream.
    request = build_request(model, arrays, version=version, request_id=request_id, raw=True)
    for key, value in parameters.items():
        request.parameters[key].CopyFrom(_parameter(value))
    for output in outputs:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidArgument("each requested output must be an object with a name")
        request.outputs.add(name=output["name"])
    return request


def response_to_json(payload: bytes) -> dict[str, Any]:
    reply = pb.ModelInferResponse.FromString(payload)
    arrays = output_arrays(reply)
    outputs = []
    for tensor in reply.outputs:
        array = arrays[tensor.name]
        if tensor.datatype == "BYTES":
            data: list[Any] = [bytes(b).decode("utf-8", "replace") for b in array.reshape(-1).tolist()]
        else:
            data = array.reshape(-1).tolist()
        outputs.append({"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape), "data": data})
    return {
        "model_name": reply.model_name,
        "model_version": reply.model_version,
        "id": reply.id,
        "parameters": {k: _parameter_value(v) for k, v in reply.parameters.items()},
        "outputs": outputs,
    }


def metadata_to_json(metadata: pb.ModelMetadataResponse) -> dict[str, Any]:
    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": tensors(metadata.inputs),
        "outputs": tensors(metadata.outputs),
        "properties": {k: _parameter_value(v) for k, v in metadata.properties.items()},
    }


class RestFront(HttpFront):
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
    ) -> None:
        """`middlewares` (e.g. authentication) run inside the error mapping, before the handlers."""
        self._dp = dataplane
        self._region = region
        errors = json_errors({REGION_HEADER: region})
        super().__init__(
            web.Application(client_max_size=max_body_bytes, middlewares=[errors, *middlewares]), host, port, tls
        )
        add = self.app.router.add_route
        add("GET", "/v2/health/live", self.live)
        add("GET", "/v2/health/ready", self.ready)
        add("GET", "/v2", self.server_metadata)
        for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            add("GET", prefix, self.model_metadata)
            add("GET", prefix + "/ready", self.model_ready)
            add("POST", prefix + "/infer", self.infer)

    def _json(self, body: Any, status: int = 200, cache: str | None = None) -> web.Response:
        headers = {REGION_HEADER: self._region}
        if cache is not None:
            headers[CACHE_HEADER] = cache
        return web.json_response(body, status=status, headers=headers)

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

    async def infer(self, request: web.Request) -> web.Response:
        info = request.match_info
        body = parse_json_body(await request.read())
        infer_request = request_from_json(info["model"], info.get("version", ""), body)
        outcome = await self._dp.infer(infer_request, tenant=DEFAULT_TENANT)
        return self._json(response_to_json(outcome.payload), cache=outcome.cache)


class AdminFront(HttpFront):
    """/metrics (Prometheus), /healthz (the process is up), /readyz (it can serve), and with the local
    backend /v1/pools (GET: instances and knobs; PATCH /v1/pools/{model}: change Knative knobs at run time).
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
    ) -> None:
        self._dp = dataplane
        self._region = region
        self._backend = backend
        self.draining = False
        super().__init__(web.Application(middlewares=[json_errors(), *middlewares]), host, port, tls)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        if hasattr(backend, "update"):
            self.app.router.add_get("/v1/pools", self.pools)
            self.app.router.add_patch("/v1/pools/{model}", self.update_pool)
        self.app.router.add_get("/v1/fault", self.fault)
        self.app.router.add_put("/v1/fault", self.set_fault)
        self.app.router.add_delete("/v1/fault", self.clear_fault)

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
        changes = await _json_body(request)
        if not isinstance(changes, dict):
            raise InvalidArgument('body must be an object of Knative knobs, e.g. {"min-scale": 2}')
        try:
            knobs = await self._backend.update(model, changes)
        except ValueError as exc:  # pydantic's ValidationError names the knob and the rule
            raise InvalidArgument(str(exc)) from None
        return web.json_response({"model": model, "knobs": knobs.model_dump(by_alias=True)})

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._dp.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True, "region": self._region})

    async def readyz(self, request: web.Request) -> web.Response:
        ready = not self.draining and await self._dp.ready()
        return web.json_response({"ready": ready, "region": self._region}, status=200 if ready else 503)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"body is not valid JSON: {exc}") from None
