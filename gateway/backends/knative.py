"""The `knative` backend: a model's misses go to its Knative Service in this gateway's region, over h2c.

Each model has one Service (`edgeinfer deploy`), reached one of two ways:

- cluster-local (the gateway runs in the cluster): `<service>.<namespace>.svc.cluster.local:80`, the
  Service's private route;
- through the ingress (`--knative-ingress HOST:PORT`, the gateway runs elsewhere): the ingress address, with
  `:authority` set to `<service>.<namespace>.<knative_domain>`, the host the ingress routes by.

The authority never carries a port: Knative's ingresses match the bare hostname. Knative's activator holds a
request while a Service scales from zero, so a cold model costs latency within the caller's deadline, not an
error; UNAVAILABLE (a connection closed by a revision swap) is retried once.

Versions: the gateway's traffic policy may map a model version to a Knative traffic tag (`set_tags`, e.g.
{"2": "candidate"}); a request for that version then goes to the tag's own route, `<tag>-<service>.<namespace>...`
(Knative's default tagTemplate), which reaches exactly that revision whatever the Service's traffic split. An
untagged version, and the default one (""), use the Service's main route.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

import grpc

from edgeinfer.functions.repository import version_key
from edgeinfer.gateway.backends.base import (
    DEFAULT_CONNECTIONS,
    BackendError,
    FunctionEndpoint,
    Metadata,
    error_from_rpc,
)
from edgeinfer.gateway.backends.retry import call_with_retry, time_left
from edgeinfer.knative_names import cluster_local_host, external_host, tagged_name
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
    namespace: str
    domain: str = ""  # the ingress's domain (the region's knative_domain); "" = the cluster-local route
    cluster_domain: str = "cluster.local"
    tag: str = ""  # a traffic tag's route: only the revision with that tag answers

    @property
    def description(self) -> str:
        via = "" if self.target.startswith(f"{self.authority}:") else f" via {self.target}"
        tag = f" tag '{self.tag}'" if self.tag else ""
        return f"Knative Service '{self.service}'{tag} ({self.authority}{via})"

    def tagged(self, tag: str) -> KnativeRoute:
        """The route of traffic tag `tag` of this Service, the same way in (ingress or cluster-local); ValueError
        when the tag makes no valid host name."""
        name = tagged_name(tag, self.service)
        if self.domain:
            return replace(self, authority=external_host(name, self.namespace, self.domain), tag=tag)
        host = cluster_local_host(name, self.namespace, self.cluster_domain)
        return replace(self, target=f"{host}:{KNATIVE_PORT}", authority=host, tag=tag)


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
            routes[model] = KnativeRoute(
                model, service, f"{host}:{KNATIVE_PORT}", host, namespace, cluster_domain=cluster_domain
            )
        else:
            assert domain is not None
            authority = external_host(service, namespace, domain)
            routes[model] = KnativeRoute(model, service, ingress, authority, namespace, domain)
    return routes


class KnativeBackend:
    def __init__(
        self,
        routes: Mapping[str, KnativeRoute],
        max_message_bytes: int = 64 * 1024 * 1024,
        connections_per_endpoint: int = DEFAULT_CONNECTIONS,
    ) -> None:
        self._max_message_bytes = max_message_bytes
        self._connections = connections_per_endpoint
        self._routes = dict(routes)
        self._endpoints = {model: self._open(route) for model, route in routes.items()}
        self._tags: dict[str, dict[str, str]] = {}  # model -> version -> traffic tag
        self._tagged: dict[tuple[str, str], tuple[KnativeRoute, FunctionEndpoint]] = {}  # (model, tag) -> its route
        self._retiring: set[asyncio.Task[None]] = set()  # closes of endpoints no tag uses any more
        self._retired: list[FunctionEndpoint] = []  # dropped with no loop running: closed by close()

    def _open(self, route: KnativeRoute) -> FunctionEndpoint:
        return FunctionEndpoint(
            route.target, self._max_message_bytes, authority=route.authority, connections=self._connections
        )

    def models(self) -> list[str]:
        return sorted(self._endpoints)

    def _unknown(self, model: str) -> ModelNotFound:
        known = ", ".join(self.models()) or "(none)"
        return ModelNotFound(f"unknown model '{model}'; this gateway routes to Knative Services of: {known}")

    # -- traffic tags ------------------------------------------------------------------------

    def tags(self, model: str) -> dict[str, str]:
        """version -> traffic tag of `model` (empty: every version takes the main route)."""
        return dict(self._tags.get(model, {}))

    def set_tags(self, model: str, tags: Mapping[str, str]) -> None:
        """Send each version in `tags` to its Knative traffic tag's route from now on; the others (and the default
        version) to the Service's main route. Replaces the model's previous tags. ModelNotFound for a model this
        gateway does not route; ValueError, naming the rule, for a tag that makes no valid host (nothing changes
        then). Calls in flight on a dropped tag's route finish before its connections close."""
        route = self._routes.get(model)
        if route is None:
            raise self._unknown(model)
        wanted: dict[str, KnativeRoute] = {}
        for version, tag in tags.items():
            if not version:
                raise ValueError(f"a traffic tag of model '{model}' needs a version (tag '{tag}' has none)")
            if tag not in wanted:
                wanted[tag] = route.tagged(tag)  # every tag checked before anything changes
        for tag, tagged in wanted.items():
            if (model, tag) not in self._tagged:
                self._tagged[(model, tag)] = (tagged, self._open(tagged))
        for key in [k for k in self._tagged if k[0] == model and k[1] not in wanted]:
            self._retire(self._tagged.pop(key)[1])
        if tags:
            self._tags[model] = dict(tags)
        else:
            self._tags.pop(model, None)

    def _retire(self, endpoint: FunctionEndpoint) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing can be in flight on it
            self._retired.append(endpoint)
            return
        task = loop.create_task(_close_when_idle(endpoint))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _route(self, model: str, version: str) -> tuple[KnativeRoute, FunctionEndpoint]:
        if version:
            tags = self._tags.get(model)
            if tags:
                tag = tags.get(version)
                if tag is not None:
                    return self._tagged[(model, tag)]
        endpoint = self._endpoints.get(model)
        if endpoint is None:
            raise self._unknown(model)
        return self._routes[model], endpoint

    # -- calls -------------------------------------------------------------------------------

    @staticmethod
    def _error(error: grpc.aio.AioRpcError, route: KnativeRoute) -> BackendError:
        said = error.details() or "no details"
        # An ingress answers a host it has no route for with 404, which gRPC reads as UNIMPLEMENTED; a function
        # says UNIMPLEMENTED itself only for an RPC its version does not serve (grpc_service's message).
        if error.code() == grpc.StatusCode.UNIMPLEMENTED and "is not served by the edgeinfer" not in said:
            if route.tag:
                hint = (
                    f"does a revision carry tag '{route.tag}' in the Service's spec.traffic "
                    "(`kubectl get ksvc -o yaml`), and is the domain the cluster's?"
                )
            else:
                hint = "is it deployed (`edgeinfer services list`), and is the domain the cluster's?"
            return BackendError(
                grpc.StatusCode.UNAVAILABLE,
                f"{route.description} has no route for model '{route.model}' (UNIMPLEMENTED: {said}): {hint}",
            )
        return error_from_rpc(error, route.description, route.model)

    async def _call(
        self, model: str, version: str, timeout: float, call: Callable[[FunctionEndpoint, float], Awaitable[T]]
    ) -> T:
        route, endpoint = self._route(model, version)
        deadline = time.monotonic() + timeout
        return await call_with_retry(
            lambda _: call(endpoint, time_left(deadline)),
            lambda error, _: self._error(error, route),
            deadline=deadline,
            retries=1,
        )

    async def infer(self, model: str, version: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        return await self._call(model, version, timeout, lambda e, t: e.infer(request, t, metadata))

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse:
        # A tagged version's metadata comes from its own revision: the main route may not serve that version.
        reply = await self._call(model, version, timeout, lambda e, t: e.model_metadata(model, version, t))
        tags = self._tags.get(model)
        if version or not tags:
            return reply
        # Unversioned: the main route's answer, plus the tagged versions its revision lacks (this gateway routes
        # them too), put first so that the main route's latest stays last, the default (as Triton's "latest").
        extra = sorted((v for v in tags if v not in reply.versions), key=version_key)
        if not extra:
            return reply
        merged = pb.ModelMetadataResponse()
        merged.CopyFrom(reply)
        merged.versions[:] = [*extra, *reply.versions]
        return merged

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        return await self._call(model, version, timeout, lambda e, t: e.model_config(model, version, t))

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        # No probe: the gateway asks every second, and a probe would keep a scaled-to-zero Service awake.
        # A routed model is ready; the first request wakes it through Knative's activator.
        return model in self._endpoints

    async def close(self) -> None:
        await asyncio.gather(*self._retiring, return_exceptions=True)
        endpoints = [*self._endpoints.values(), *(e for _, e in self._tagged.values()), *self._retired]
        self._tagged.clear()
        self._retired.clear()
        for endpoint in endpoints:
            await endpoint.close()


async def _close_when_idle(endpoint: FunctionEndpoint, limit: float = 30.0) -> None:
    """Close an endpoint once its calls in flight are done (at most `limit` seconds: their deadlines)."""
    deadline = time.monotonic() + limit
    while endpoint.outstanding and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await endpoint.close()
