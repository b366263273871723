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

    async def update(self, model: str, changes: dict[str, Any], version: str | None = None) -> Any:
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


def test_rest_refusals_and_bad_binary_bodies_map_through_the_same_middleware() -> None:
    """A front without shared memory or runtime settings answers their routes 501; bodies whose binary framing
    lies are 400s naming the tensor, before any data plane is asked."""
    region_input = {
        "inputs": [
            {
                "name": "features",
                "shape": [1, 30],
                "datatype": "FP32",
                "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 120},
            }
        ]
    }
    header = b'{"inputs":[{"name":"features","shape":[1,30],"datatype":"FP32","parameters":{"binary_data_size":120}}]}'

    async def check(base: str) -> None:
        async with ClientSession() as http:
            for method, path, needle in (
                ("POST", "/v2/systemsharedmemory/region/r/register", "without system shared memory"),
                ("GET", "/v2/systemsharedmemory/status", "without system shared memory"),
                ("GET", "/v2/trace/setting", "no runtime settings"),
                ("POST", "/v2/logging", "no runtime settings"),
                ("POST", "/v2/cudasharedmemory/region/r/register", "use system shared memory"),
            ):
                async with http.request(method, f"{base}{path}", data=b"{}") as reply:
                    assert reply.status == 501 and reply.headers[REGION_HEADER] == "us-east", path
                    assert needle in (await reply.json())["error"], path
            async with http.post(f"{base}/v2/models/fraud/infer", json=region_input) as reply:
                assert reply.status == 501 and "shared memory" in (await reply.json())["error"]
            for body, length, needle in (
                (header + bytes(120), str(len(header) + 121), "but the body has only"),
                (header + bytes(119), str(len(header)), "input 'features': binary_data_size is 120 bytes but only 119"),
                (header + bytes(121), str(len(header)), "1 bytes after the JSON header belong to no input"),
                (header + bytes(120), "-3", "must be a byte count"),
            ):
                headers = {"Inference-Header-Content-Length": length}
                async with http.post(f"{base}/v2/models/fraud/infer", data=body, headers=headers) as reply:
                    assert reply.status == 400, needle
                    assert needle in (await reply.json())["error"]

    serve(RestFront(StandInPlane(), "us-east", 1 << 20), check)  # type: ignore[arg-type]


def test_bodies_the_fuzzing_found_crashing_are_400s_naming_the_cause() -> None:
    """Each once gave a 500 with a traceback (tests/testkit/hostile.py FOUND_CRASHES holds the route cases): a
    dimension past int64 beside a zero, numbers of thousands of digits in the body or the header length, and
    corrupt, cut or trailing-junk gzip/deflate streams."""
    import gzip
    import zlib

    good = b'{"inputs":[{"name":"features","shape":[1,30],"datatype":"FP32","data":[' + b",".join([b"0"] * 30) + b"]}]}"
    cases: list[tuple[bytes, dict[str, str], str]] = [
        (
            b'{"inputs":[{"name":"features","shape":[0,' + str(2**70).encode() + b'],"datatype":"FP32","data":[]}]}',
            {},
            "past the int64 range",
        ),
        (b'{"id": ' + b"9" * 5000 + b"}", {}, "a number too long to parse"),
        (good, {"Inference-Header-Content-Length": "9" * 5000}, "but the body has only"),
        (b"garbage", {"Content-Encoding": "gzip"}, "not valid gzip data"),
        (zlib.compress(good)[:-3], {"Content-Encoding": "deflate"}, "the stream is cut short"),
        (gzip.compress(good) + b"junk", {"Content-Encoding": "gzip"}, "bytes follow the end of the stream"),
        (good, {"Content-Encoding": "br"}, "is not supported; send gzip, deflate or none"),
    ]

    async def check(base: str) -> None:
        async with ClientSession() as http:
            for body, headers, needle in cases:
                async with http.post(f"{base}/v2/models/fraud/infer", data=body, headers=headers) as reply:
                    assert reply.status == 400, needle
                    assert needle in (await reply.json())["error"], needle

    serve(RestFront(StandInPlane(), "us-east", 1 << 20), check)  # type: ignore[arg-type]
