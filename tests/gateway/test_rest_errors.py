"""The one aiohttp error mapping (gateway/rest.py `json_errors`), shared by the REST front and the admin front.

In-process: each front's real application on 127.0.0.1, over a stand-in data plane.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession

from edgeinfer.gateway.rest import REGION_HEADER, AdminFront, HttpFront, RestFront
from edgeinfer.protocol.errors import ModelNotFound


class StandInPlane:
    fault_delay = 0.0

    async def ready(self) -> bool:
        return True

    async def model_metadata(self, name: str, version: str) -> Any:
        if name == "broken":
            raise RuntimeError("a bug")
        raise ModelNotFound(f"unknown model '{name}'")


class Pools:
    def status(self) -> dict[str, Any]:
        return {}

    async def update(self, model: str, changes: dict[str, Any]) -> Any:
        raise ValueError("min-scale: Input should be greater than or equal to 0")


def serve(front: HttpFront, check: Callable[[str], Awaitable[None]]) -> None:
    async def run() -> None:
        await front.start()
        try:
            await check(f"http://127.0.0.1:{front.port}")
        finally:
            await front.stop()

    asyncio.run(run())


def test_rest_errors_are_json_with_their_status_and_the_region() -> None:
    async def check(base: str) -> None:
        async with ClientSession() as http:
            async with http.get(f"{base}/v2/models/nope") as reply:
                assert reply.status == 404 and reply.headers[REGION_HEADER] == "us-east"
                assert await reply.json() == {"error": "unknown model 'nope'"}
            async with http.get(f"{base}/v2/models/broken") as reply:
                assert reply.status == 500 and reply.headers[REGION_HEADER] == "us-east"
                assert await reply.json() == {"error": "internal error; see the gateway's log"}
            async with http.post(f"{base}/v2/models/fraud/infer", data=b"{") as reply:
                assert reply.status == 400
                assert (await reply.json())["error"].startswith("request body is not valid JSON")
            async with http.get(f"{base}/v3") as reply:
                assert reply.status == 404 and reply.headers[REGION_HEADER] == "us-east"
                assert "error" in await reply.json()

    serve(RestFront(StandInPlane(), "us-east", 1 << 20), check)  # type: ignore[arg-type]


def test_admin_errors_go_through_the_same_mapping() -> None:
    async def check(base: str) -> None:
        async with ClientSession() as http:
            async with http.put(f"{base}/v1/fault", data=b"not json") as reply:
                assert reply.status == 400
                assert (await reply.json())["error"].startswith("body is not valid JSON: ")
            async with http.put(f"{base}/v1/fault", json={"delay_ms": -1}) as reply:
                assert reply.status == 400
                assert await reply.json() == {"error": 'body must be {"delay_ms": N} with 0 <= N <= 60000'}
            async with http.patch(f"{base}/v1/pools/fraud", json=[1]) as reply:
                assert reply.status == 400
                assert await reply.json() == {"error": 'body must be an object of Knative knobs, e.g. {"min-scale": 2}'}
            async with http.patch(f"{base}/v1/pools/fraud", json={"min-scale": -1}) as reply:
                assert reply.status == 400
                assert await reply.json() == {"error": "min-scale: Input should be greater than or equal to 0"}
            async with http.put(f"{base}/v1/fault", json={"delay_ms": 5}) as reply:
                assert reply.status == 200 and (await reply.json())["delay_ms"] == 5

    serve(AdminFront(StandInPlane(), "us-east", Pools()), check)  # type: ignore[arg-type]
