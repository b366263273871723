"""Fakes for the rollout's unit tests: a clock that only moves when slept on, and a gateway admin that keeps a
traffic policy as gateway/traffic.py does (generation, expect_generation, lease) and serves /metrics of simulated
traffic, driven by that clock. The controller runs against them through its real LocalTraffic and
EmbeddedSource, so the Prometheus text is parsed as a real gateway's would be."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeinfer.gateway.admin_client import AdminError
from edgeinfer.rollout.analysis import EmbeddedSource
from edgeinfer.rollout.backends import LocalTraffic, Plan
from edgeinfer.rollout.controller import RegionEnv
from edgeinfer.rollout.preflight import Signature

BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FRAUD_IN = (("input", "FP32", (-1, 30)),)
FRAUD_OUT = (("probabilities", "FP32", (-1, 2)), ("label", "INT64", (-1,)))


class FakeClock:
    """monotonic and wall move together, only in sleep(); `on_sleep` hooks run after each move."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.hooks: list[Callable[[float], None]] = []
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds
        self.slept += seconds
        for hook in list(self.hooks):
            hook(self.now)


class RealClock(FakeClock):
    """Real time, for the tests that run the CLI: `now` is time.monotonic(); nothing is slept on by the fakes."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def now(self) -> float:
        import time

        return time.monotonic()

    @now.setter
    def now(self, value: float) -> None:
        pass

    def wall(self) -> float:
        import time

        return time.time()

    def sleep(self, seconds: float) -> None:
        import time

        time.sleep(seconds)


@dataclass
class Behaviour:
    """How a version answers: latency (s), share of INTERNAL, share of INVALID_ARGUMENT, share of shadow answers
    that disagree with the baseline's."""

    latency_s: float = 0.004
    server_errors: float = 0.0
    client_errors: float = 0.0
    disagree: float = 0.0


GOOD = Behaviour()
SLOW = Behaviour(latency_s=0.2)
ERRORS = Behaviour(server_errors=0.2)
WRONG = Behaviour(disagree=1.0)
CLIENT = Behaviour(client_errors=0.5)


@dataclass
class FakeGateway:
    """One region's gateway admin: /v1/traffic/{model}, /v1/pools/.../drain and /metrics (two workers)."""

    clock: FakeClock
    region: str = "us-east"
    model: str = "fraud"
    versions: tuple[str, ...] = ("1", "2")
    rps: float = 200.0
    behaviour: dict[str, Behaviour] = field(default_factory=lambda: {"1": GOOD, "2": GOOD})
    policy: dict[str, Any] = field(default_factory=dict)
    down: bool = False
    writes: list[dict[str, Any]] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    counters: dict[tuple[str, ...], float] = field(default_factory=dict)
    signatures: dict[str, Signature] = field(default_factory=dict)
    last: float = 0.0
    # rps as a function of time (overrides `rps` when set)
    rate: Callable[[float], float] | None = None

    def __post_init__(self) -> None:
        self.policy = self.default()
        self.last = self.clock.now
        self.clock.hooks.append(self.advance)
        for v in self.versions:
            self.signatures.setdefault(v, Signature(self.versions, FRAUD_IN, FRAUD_OUT))

    @staticmethod
    def default() -> dict[str, Any]:
        return {
            "weights": {},
            "shadow": None,
            "revert_to": None,
            "lease_seconds": None,
            "tags": {},
            "rollout": None,
            "generation": 0,
            "updated_at": 0.0,
            "lease_until": None,
        }

    # -- the admin API LocalTraffic calls --------------------------------------------------

    def _check(self, what: str) -> None:
        if self.down:
            raise AdminError(f"{what}: connection refused", reason="refused")

    def expire(self) -> None:
        lease = self.policy.get("lease_until")
        if lease is not None and lease <= self.clock.wall():
            revert = self.policy["revert_to"]
            self.policy.update(
                weights={revert: 100} if revert else {},
                shadow=None,
                lease_seconds=None,
                lease_until=None,
                generation=self.policy["generation"] + 1,
            )

    def traffic(self, model: str) -> dict[str, Any]:
        self._check("GET /v1/traffic")
        assert model == self.model
        self.expire()
        return copy.deepcopy(self.policy)

    def set_traffic(self, model: str, body: dict[str, Any], expect_generation: int | None = None) -> dict[str, Any]:
        self._check("PUT /v1/traffic")
        self.expire()
        if expect_generation is not None and expect_generation != self.policy["generation"]:
            raise AdminError("PUT /v1/traffic: HTTP 409: generation", status=409)
        weights = body.get("weights") or {}
        assert not weights or sum(weights.values()) == 100, weights
        for version in weights:
            assert version in self.versions
        stored = self.default()
        stored.update({k: copy.deepcopy(v) for k, v in body.items() if k in stored})
        stored["generation"] = self.policy["generation"] + 1
        stored["updated_at"] = self.clock.wall()
        lease = body.get("lease_seconds")
        stored["lease_until"] = self.clock.wall() + lease if lease else None
        self.policy = stored
        self.writes.append({"t": self.clock.now, **copy.deepcopy(stored)})
        return copy.deepcopy(stored)

    def drain(self, model: str, version: str) -> int:
        self._check("POST drain")
        self.drained.append(version)
        return 2

    # -- simulated traffic -----------------------------------------------------------------

    def weights_now(self) -> dict[str, float]:
        weights = self.policy["weights"]
        if not weights:
            latest = max(self.versions, key=int)
            return {latest: 1.0}
        return {v: w / 100 for v, w in weights.items()}

    def _add(self, key: tuple[str, ...], value: float) -> None:
        self.counters[key] = self.counters.get(key, 0.0) + value

    def advance(self, now: float) -> None:
        """Traffic from `last` to `now` at the current split, spread over two workers."""
        dt = now - self.last
        self.last = now
        if dt <= 0 or self.down:
            return
        self.expire()
        rps = self.rate(now) if self.rate is not None else self.rps
        shadow = self.policy.get("shadow")
        for version, share in self.weights_now().items():
            n = rps * dt * share
            if n <= 0:
                continue
            b = self.behaviour[version]
            for worker in ("0", "1"):
                part = n / 2
                internal = part * b.server_errors
                invalid = part * b.client_errors
                self._add(("req", version, "OK", worker), part - internal - invalid)
                if internal:
                    self._add(("req", version, "INTERNAL", worker), internal)
                if invalid:
                    self._add(("req", version, "INVALID_ARGUMENT", worker), invalid)
                self._add(("lat", version, repr(b.latency_s), worker), part)
            if shadow and shadow["version"] != version:
                copies = n * shadow["percent"] / 100
                target = self.behaviour[shadow["version"]]
                failed = copies * target.server_errors  # a copy answered INTERNAL is not compared
                answered = copies - failed
                if failed:
                    self._add(("shadow", version, shadow["version"], "error"), failed)
                self._add(("shadow", version, shadow["version"], "disagree"), answered * target.disagree)
                self._add(("shadow", version, shadow["version"], "agree"), answered * (1 - target.disagree))
                self._add(("slat", shadow["version"], repr(target.latency_s)), copies)

    def metrics(self, timeout: float | None = None) -> str:
        self._check("GET /metrics")
        r, m = self.region, self.model
        lines = [
            "# TYPE edgeinfer_gateway_ready gauge",
            f'edgeinfer_gateway_ready{{region="{r}"}} 1',
            "# TYPE edgeinfer_gateway_requests_total counter",
        ]
        for key, value in sorted(self.counters.items()):
            if key[0] == "req":
                _, version, code, worker = key
                lines.append(
                    f'edgeinfer_gateway_requests_total{{region="{r}",model="{m}",version="{version}",code="{code}",'
                    f'cache="miss",worker="{worker}"}} {value}'
                )
        lines.append("# TYPE edgeinfer_gateway_request_seconds histogram")
        by_series: dict[tuple[str, str], dict[float, float]] = {}
        for key, value in self.counters.items():
            if key[0] == "lat":
                _, version, latency, worker = key
                buckets = by_series.setdefault((version, worker), {})
                buckets[float(latency)] = buckets.get(float(latency), 0.0) + value
        for (version, worker), observed in sorted(by_series.items()):
            labels = f'region="{r}",model="{m}",version="{version}",cache="miss",worker="{worker}"'
            total = sum(observed.values())
            for bound in (*BOUNDS, math.inf):
                count = sum(n for lat, n in observed.items() if lat <= bound)
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(f'edgeinfer_gateway_request_seconds_bucket{{{labels},le="{le}"}} {count}')
            lines.append(f"edgeinfer_gateway_request_seconds_count{{{labels}}} {total}")
            lines.append(
                f"edgeinfer_gateway_request_seconds_sum{{{labels}}} {sum(lat * n for lat, n in observed.items())}"
            )
        lines.append("# TYPE edgeinfer_gateway_shadow_comparisons_total counter")
        for key, value in sorted(self.counters.items()):
            if key[0] == "shadow":
                _, baseline, version, result = key
                lines.append(
                    f'edgeinfer_gateway_shadow_comparisons_total{{region="{r}",model="{m}",baseline="{baseline}",'
                    f'version="{version}",result="{result}"}} {value}'
                )
        lines.append("# TYPE edgeinfer_gateway_shadow_seconds histogram")
        shadow_latency: dict[str, dict[float, float]] = {}
        for key, value in self.counters.items():
            if key[0] == "slat":
                _, version, latency = key
                observed = shadow_latency.setdefault(version, {})
                observed[float(latency)] = observed.get(float(latency), 0.0) + value
        for version, observed in sorted(shadow_latency.items()):
            labels = f'region="{r}",model="{m}",version="{version}"'
            for bound in (*BOUNDS, math.inf):
                count = sum(n for lat, n in observed.items() if lat <= bound)
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(f'edgeinfer_gateway_shadow_seconds_bucket{{{labels},le="{le}"}} {count}')
            lines.append(f"edgeinfer_gateway_shadow_seconds_count{{{labels}}} {sum(observed.values())}")
        return "\n".join(lines) + "\n"

    # -- metadata --------------------------------------------------------------------------

    def signature(self, model: str, version: str) -> Signature:
        from edgeinfer.rollout.errors import RolloutError

        if model != self.model:
            raise RolloutError(f"model '{model}' not found")
        if not version:
            return Signature(self.versions, FRAUD_IN, FRAUD_OUT)
        if version not in self.signatures:
            raise RolloutError(f"model '{model}' version {version} not found")
        return self.signatures[version]

    # -- as a region -----------------------------------------------------------------------

    def env(self) -> RegionEnv:
        admin: Any = self

        def policy() -> dict[str, Any]:
            return LocalTraffic(admin, Plan(self.model, "1", "2", 10.0)).read()

        return RegionEnv(
            self.region,
            policy,
            self,
            lambda plan: LocalTraffic(admin, plan),
            lambda baseline, candidate: EmbeddedSource(
                self.metrics, self.model, baseline, candidate, self.clock.monotonic
            ),
        )

    def weights_written(self) -> list[dict[str, int]]:
        return [w["weights"] for w in self.writes]


class FakeAdminServer:
    """A gateway's admin port over real HTTP on 127.0.0.1 (for the CLI): /metrics, GET/PUT /v1/traffic/{model} with
    expect_generation, POST /v1/pools/{model}/{version}/drain. Backed by a FakeGateway's policy."""

    def __init__(self, gateway: FakeGateway) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.gateway = gateway
        self.requests: list[tuple[str, str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, text: bool = False) -> None:
                data = body.encode() if text else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def do_GET(self) -> None:
                outer.requests.append(("GET", self.path, None))
                gateway.advance(gateway.clock.now)  # the traffic of the time that passed
                if self.path == "/metrics":
                    self._reply(200, gateway.metrics(), text=True)
                elif self.path == f"/v1/traffic/{gateway.model}":
                    self._reply(200, gateway.traffic(gateway.model))
                else:
                    self._reply(404, {"error": "not found"})

            def do_PUT(self) -> None:
                body = self._body()
                outer.requests.append(("PUT", self.path, body))
                expect = body.pop("expect_generation", None)
                try:
                    self._reply(200, gateway.set_traffic(gateway.model, body, expect))
                except AdminError as exc:
                    self._reply(exc.status or 500, {"error": str(exc)})

            def do_POST(self) -> None:
                outer.requests.append(("POST", self.path, None))
                parts = self.path.strip("/").split("/")
                if len(parts) == 5 and parts[:2] == ["v1", "pools"] and parts[4] == "drain":
                    self._reply(
                        200, {"model": parts[2], "version": parts[3], "drained": gateway.drain(parts[2], parts[3])}
                    )
                else:
                    self._reply(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAdminServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class FakeMetadataServer:
    """ModelMetadata over real gRPC on 127.0.0.1, answering from a FakeGateway's signatures."""

    def __init__(self, gateway: FakeGateway) -> None:
        from concurrent import futures

        import grpc

        from edgeinfer.protocol import open_inference_pb2 as pb

        def metadata(request: Any, context: Any) -> Any:
            if request.name != gateway.model or (request.version and request.version not in gateway.signatures):
                context.abort(grpc.StatusCode.NOT_FOUND, f"model '{request.name}' version '{request.version}' unknown")
            sig = gateway.signatures[request.version] if request.version else gateway.signature(request.name, "")
            reply = pb.ModelMetadataResponse(name=request.name, versions=list(gateway.versions), platform="onnx")
            for name, datatype, shape in sig.inputs:
                reply.inputs.add(name=name, datatype=datatype, shape=list(shape))
            for name, datatype, shape in sig.outputs:
                reply.outputs.add(name=name, datatype=datatype, shape=list(shape))
            return reply

        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService",
            {
                "ModelMetadata": grpc.unary_unary_rpc_method_handler(
                    metadata,
                    request_deserializer=pb.ModelMetadataRequest.FromString,
                    response_serializer=pb.ModelMetadataResponse.SerializeToString,
                )
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((handler,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"

    def __enter__(self) -> FakeMetadataServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(None).wait(5)
