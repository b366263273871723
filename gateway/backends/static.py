"""The `static` backend: fixed function endpoints per model, from `--route MODEL=HOST:PORT,...`.

Load goes to the endpoint with the fewest outstanding requests; after
UNAVAILABLE a request is retried once on another endpoint.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from edgeinfer.gateway.backends.base import DEFAULT_CONNECTIONS, FunctionEndpoint, Metadata, error_from_rpc
from edgeinfer.gateway.backends.retry import call_with_retry, time_left
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import ModelNotFound
from edgeinfer.tls import ClientTLS

T = TypeVar("T")


class StaticBackend:
    def __init__(
        self,
        routes: Mapping[str, Sequence[str]],
        max_message_bytes: int = 64 * 1024 * 1024,
        tls: ClientTLS | None = None,
        connections_per_endpoint: int = DEFAULT_CONNECTIONS,
    ) -> None:
        # One pool of connections per address, shared by the models it serves.
        self._endpoints: dict[str, FunctionEndpoint] = {}
        self._routes: dict[str, list[FunctionEndpoint]] = {}
        for model, addresses in routes.items():
            self._routes[model] = [
                self._endpoints.get(a)
                or self._endpoints.setdefault(
                    a, FunctionEndpoint(a, max_message_bytes, tls, connections=connections_per_endpoint)
                )
                for a in addresses
            ]
        self._tiebreak = itertools.count()

    def models(self) -> list[str]:
        return sorted(self._routes)

    def _candidates(self, model: str) -> list[FunctionEndpoint]:
        endpoints = self._routes.get(model)
        if not endpoints:
            known = ", ".join(self.models()) or "(none)"
            raise ModelNotFound(f"unknown model '{model}'; this gateway routes: {known}")
        if len(endpoints) == 1:
            return endpoints
        # Least outstanding first; rotate among equals so idle endpoints share the load.
        turn = next(self._tiebreak)
        order = sorted(range(len(endpoints)), key=lambda i: (endpoints[i].outstanding, (i - turn) % len(endpoints)))
        return [endpoints[i] for i in order]

    async def _with_retry(
        self, model: str, timeout: float, call: Callable[[FunctionEndpoint, float], Awaitable[T]]
    ) -> T:
        candidates = self._candidates(model)
        attempts = candidates[:2] if len(candidates) > 1 else candidates * 2
        deadline = time.monotonic() + timeout
        return await call_with_retry(
            lambda i: call(attempts[i], time_left(deadline)),
            lambda error, i: error_from_rpc(error, attempts[i].address, model),
            deadline=deadline,
            retries=len(attempts) - 1,
        )

    async def infer(self, model: str, version: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        # The endpoints of a model serve all its versions: the version in the request bytes selects one.
        return await self._with_retry(model, timeout, lambda e, t: e.infer(request, t, metadata))

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse:
        return await self._with_retry(model, timeout, lambda e, t: e.model_metadata(model, version, t))

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        return await self._with_retry(model, timeout, lambda e, t: e.model_config(model, version, t))

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        try:
            return await self._with_retry(model, timeout, lambda e, t: e.model_ready(model, version, t))
        except Exception:
            return False

    async def close(self) -> None:
        for endpoint in self._endpoints.values():
            await endpoint.close()
