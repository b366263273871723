"""The `knative` backend: a model's misses go to its Knative Service in this gateway's region, over h2c.

Each model has one Service (`edgeinfer deploy`), reached one of two ways:

- cluster-local (the gateway runs in the cluster): `<service>.<namespace>.svc.cluster.local:80`, the
  Service's private route;
- through the ingress (`--knative-ingress HOST:PORT`, the gateway runs elsewhere): the ingress address, with
  `:authority` set to `<service>.<namespace>.<knative_domain>`, the host the ingress routes by.

The authority never carries a port: Knative's ingresses match the bare hostname. Knative's activator holds a
request while a Service scales from zero, so a cold model costs latency within the caller's deadline, not an
error; UNAVAILABLE (a connection closed by a revision swap) is retried once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import grpc

from edgeinfer.gateway.backends.base import (
    DEFAULT_CONNECTIONS,
    BackendError,
    FunctionEndpoint,
    Metadata,
    error_from_rpc,
)
from edgeinfer.gateway.backends.retry import call_with_retry, time_left
from edgeinfer.knative_names import cluster_local_host, external_host
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import ModelNotFound

T = TypeVar("T")
KNATIVE_PORT = 80  # Knative Services listen on 80 for cleartext (h2c included)


@dataclass(frozen=True)
class KnativeRoute:
    model: str
    service: str
    target: str  # what the channel dials: HOST:PORT
    authority: str  # the Host / :authority the request carries

    @property
    def description(self) -> str:
        via = "" if self.target.startswith(f"{self.authority}:") else f" via {self.target}"
        return f"Knative Service '{self.service}' ({self.authority}{via})"


def knative_routes(
    services: Mapping[str, str],
    namespace: str,
    *,
    ingress: str | None = None,
    domain: str | None = None,
    cluster_domain: str = "cluster.local",
) -> dict[str, KnativeRoute]:
    """model → route; ValueError naming the flag when the ingress has no domain to route by."""
    if ingress is not None and not domain:
        raise ValueError(
            "--knative-ingress needs --knative-domain (the region's knative_domain): the ingress routes by host"
        )
    routes = {}
    for model, service in services.items():
        if ingress is None:
            host = cluster_local_host(service, namespace, cluster_domain)
            routes[model] = KnativeRoute(model, service, f"{host}:{KNATIVE_PORT}", host)
        else:
            assert domain is not None
            routes[model] = KnativeRoute(model, service, ingress, external_host(service, namespace, domain))
    return routes


class KnativeBackend:
    def __init__(
        self,
        routes: Mapping[str, KnativeRoute],
        max_message_bytes: int = 64 * 1024 * 1024,
        connections_per_endpoint: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self._routes = dict(routes)
        self._endpoints = {
            model: FunctionEndpoint(
                route.target, max_message_bytes, authority=route.authority, connections=connections_per_endpoint
            )
            for model, route in routes.items()
        }

    def models(self) -> list[str]:
        return sorted(self._endpoints)

    def _endpoint(self, model: str) -> FunctionEndpoint:
        endpoint = self._endpoints.get(model)
        if endpoint is None:
            known = ", ".join(self.models()) or "(none)"
            raise ModelNotFound(f"unknown model '{model}'; this gateway routes to Knative Services of: {known}")
        return endpoint

    def _error(self, error: grpc.aio.AioRpcError, model: str) -> BackendError:
        route = self._routes[model]
        said = error.details() or "no details"
        # An ingress answers a host it has no route for with 404, which gRPC reads as UNIMPLEMENTED; a function
        # says UNIMPLEMENTED itself only for an RPC its version does not serve (grpc_service's message).
        if error.code() == grpc.StatusCode.UNIMPLEMENTED and "is not served by the edgeinfer" not in said:
            return BackendError(
                grpc.StatusCode.UNAVAILABLE,
                f"{route.description} has no route for model '{route.model}' (UNIMPLEMENTED: {said}): is it "
                "deployed (`edgeinfer services list`), and is the domain the cluster's?",
            )
        return error_from_rpc(error, route.description, route.model)

    async def _call(self, model: str, timeout: float, call: Callable[[FunctionEndpoint, float], Awaitable[T]]) -> T:
        endpoint = self._endpoint(model)
        deadline = time.monotonic() + timeout
        return await call_with_retry(
            lambda _: call(endpoint, time_left(deadline)),
            lambda error, _: self._error(error, model),
            deadline=deadline,
            retries=1,
        )

    async def infer(self, model: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        return await self._call(model, timeout, lambda e, t: e.infer(request, t, metadata))

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse:
        return await self._call(model, timeout, lambda e, t: e.model_metadata(model, version, t))

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        return await self._call(model, timeout, lambda e, t: e.model_config(model, version, t))

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        # No probe: the gateway asks every second, and a probe would keep a scaled-to-zero Service awake.
        # A routed model is ready; the first request wakes it through Knative's activator.
        return model in self._endpoints

    async def close(self) -> None:
        for endpoint in self._endpoints.values():
            await endpoint.close()
