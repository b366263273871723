"""Triton's TraceSetting and LogSettings (edgeinfer/runtime_settings.py): tritonclient's calls over a real grpc.aio
server on 127.0.0.1, Triton's HTTP JSON shapes, and their effect: spans exported to a console exporter at the rate
set, the logger's level and its handlers' format."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.grpc_service import add_inference_service
from edgeinfer.protocol.tracing import Tracing
from edgeinfer.runtime_settings import RuntimeSettings, SettingsRPCs
from edgeinfer.serving import ErrorMapping

TIMEOUT = 20.0


class NoServicer:
    pass


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("edgeinfer.test.runtime_settings")
    log.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield log
    log.removeHandler(handler)


def log_text(log: logging.Logger) -> str:
    stream = log.handlers[0].stream  # type: ignore[attr-defined]
    return str(stream.getvalue())


class Spans:
    """A console-exporting Tracing whose spans are counted by name."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.tracing = Tracing("console", self.out, service="test")

    def names(self) -> list[str]:
        self.tracing._provider.force_flush()
        return [json.loads(line)["name"] for line in self.out.getvalue().splitlines() if line.strip()]

    def requests(self, count: int, model: str = "m") -> None:
        for _ in range(count):
            with (
                self.tracing.server_span("ModelInfer", None, {"model": model}),
                self.tracing.child_span("inner", {"model": model}),
            ):
                pass


@pytest_asyncio.fixture
async def served(
    logger: logging.Logger,
) -> AsyncIterator[tuple[grpcclient.InferenceServerClient, RuntimeSettings, Spans]]:
    spans = Spans()
    settings = RuntimeSettings(spans.tracing, logger, known_model=lambda m: m in ("m", "other"))
    async with _serve(settings) as client:
        yield client, settings, spans
    spans.tracing.shutdown()


class _serve:
    def __init__(self, settings: RuntimeSettings) -> None:
        self._server = grpc.aio.server()
        errors = ErrorMapping("test server", logging.getLogger("test"))
        add_inference_service(NoServicer(), self._server, errors.wrap, providers=[SettingsRPCs(settings)])
        self._port = self._server.add_insecure_port("127.0.0.1:0")

    async def __aenter__(self) -> grpcclient.InferenceServerClient:
        await self._server.start()
        self._client = grpcclient.InferenceServerClient(f"127.0.0.1:{self._port}")
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()
        await self._server.stop(None)


async def expect(code: grpc.StatusCode, call: Any, *words: str) -> None:
    with pytest.raises(InferenceServerException) as caught:
        await call
    assert caught.value.status() == str(code), caught.value
    for word in words:
        assert word in caught.value.message(), caught.value.message()


def values(reply: Any) -> dict[str, list[str]]:
    return {k: list(v.value) for k, v in reply.settings.items()}


@pytest.mark.asyncio
async def test_trace_settings_get_update_and_sampling(served: Any) -> None:
    client, settings, spans = served
    got = values(await client.get_trace_settings(client_timeout=TIMEOUT))
    assert got == {
        "trace_level": ["TIMESTAMPS"],
        "trace_rate": ["1"],
        "trace_count": ["-1"],
        "trace_mode": ["opentelemetry"],
    }
    spans.requests(2)
    assert spans.names().count("ModelInfer") == 2

    got = values(await client.update_trace_settings(settings={"trace_rate": "3"}, client_timeout=TIMEOUT))
    assert got["trace_rate"] == ["3"]
    spans.requests(9)
    assert spans.names().count("ModelInfer") == 2 + 3
    assert spans.names().count("inner") == 2 + 3  # unsampled requests leave no orphan child spans

    got = values(await client.update_trace_settings(settings={"trace_level": ["OFF"]}, client_timeout=TIMEOUT))
    assert got["trace_level"] == ["OFF"]
    assert spans.tracing.enabled is False  # the hot path is one boolean test again
    spans.requests(6)
    assert spans.names().count("ModelInfer") == 5

    # One model traced on its own; the other follows the global settings (off).
    update = {"trace_level": ["TIMESTAMPS", "TENSORS"], "trace_rate": "1", "trace_count": "2"}
    got = values(await client.update_trace_settings("m", settings=update, client_timeout=TIMEOUT))
    assert got["trace_level"] == ["TIMESTAMPS", "TENSORS"] and got["trace_count"] == ["2"]
    spans.requests(4, model="m")
    spans.requests(4, model="other")
    assert spans.names().count("ModelInfer") == 5 + 2  # trace_count 2, then no more
    assert values(await client.get_trace_settings("m", client_timeout=TIMEOUT))["trace_count"] == ["0"]
    assert values(await client.get_trace_settings("other", client_timeout=TIMEOUT))["trace_level"] == ["OFF"]

    # Clearing a model's settings (None): it follows the global ones again.
    got = values(
        await client.update_trace_settings("m", settings={"trace_level": None, "trace_count": None, "trace_rate": None})
    )
    assert got["trace_level"] == ["OFF"]
    assert settings.trace_json("m") == {
        "trace_level": ["OFF"],
        "trace_rate": "3",
        "trace_count": "-1",
        "trace_mode": "opentelemetry",
    }


@pytest.mark.asyncio
async def test_bad_trace_settings_are_refused_naming_the_key(served: Any) -> None:
    client, settings, _ = served
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await expect(invalid, client.update_trace_settings(settings={"trace_level": ["LOUD"]}), "trace_level", "TIMESTAMPS")
    await expect(invalid, client.update_trace_settings(settings={"trace_level": ["OFF", "TENSORS"]}), "OFF")
    await expect(invalid, client.update_trace_settings(settings={"trace_rate": "often"}), "trace_rate", "often")
    await expect(invalid, client.update_trace_settings(settings={"trace_rate": "0"}), "trace_rate", "range")
    await expect(invalid, client.update_trace_settings(settings={"trace_rate": ["1", "2"]}), "trace_rate")
    await expect(invalid, client.update_trace_settings(settings={"trace_count": "-2"}), "trace_count")
    await expect(
        invalid, client.update_trace_settings(settings={"trace_mode": "triton"}), "trace_mode", "opentelemetry"
    )
    await expect(invalid, client.update_trace_settings(settings={"colour": "red"}), "colour", "trace_rate")
    await expect(invalid, client.update_trace_settings("nope", settings={"trace_rate": "2"}), "nope")
    await expect(
        grpc.StatusCode.UNIMPLEMENTED, client.update_trace_settings(settings={"trace_file": "/tmp/x"}), "trace file"
    )
    # None of it changed anything (a request is applied whole or not at all).
    bad_then_good = {"trace_rate": "7", "trace_level": ["LOUD"]}
    await expect(invalid, client.update_trace_settings(settings=bad_then_good), "trace_level")
    assert settings.trace()["trace_rate"] == ["1"]

    # JSON bodies as Triton's HTTP endpoint takes them.
    assert settings.update_trace_json({"trace_rate": "4", "log_frequency": "10"})["trace_rate"] == "4"
    assert settings.update_trace_json({"trace_rate": None})["trace_rate"] == "1"
    bodies: list[Any] = [[1, 2], {"trace_rate": 2.5}, {"trace_level": [1]}, "x"]
    for body in bodies:
        with pytest.raises(InvalidArgument, match="trace"):
            settings.update_trace_json(body)


@pytest.mark.asyncio
async def test_turning_tracing_on_without_an_exporter_is_failed_precondition(logger: logging.Logger) -> None:
    tracing = Tracing("none")
    settings = RuntimeSettings(tracing, logger)
    async with _serve(settings) as client:
        got = values(await client.get_trace_settings(client_timeout=TIMEOUT))
        assert got["trace_level"] == ["OFF"]
        await expect(
            grpc.StatusCode.FAILED_PRECONDITION,
            client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}),
            "--trace console",
        )
        await client.update_trace_settings(settings={"trace_rate": "10", "trace_level": ["OFF"]})
        assert tracing.enabled is False


@pytest.mark.asyncio
async def test_log_settings_get_update(served: Any, logger: logging.Logger) -> None:
    client, settings, _ = served
    got = await client.get_log_settings(as_json=True, client_timeout=TIMEOUT)
    assert got["settings"] == {
        "log_file": {"string_param": ""},
        "log_info": {"bool_param": True},
        "log_warning": {"bool_param": True},
        "log_error": {"bool_param": True},
        "log_verbose_level": {"uint32_param": 0},
        "log_format": {"string_param": "default"},
    }

    await client.update_log_settings({"log_verbose_level": 2}, client_timeout=TIMEOUT)
    assert logger.level == logging.DEBUG
    assert settings.log()["log_verbose_level"] == 2
    await client.update_log_settings({"log_verbose_level": 0, "log_info": False}, client_timeout=TIMEOUT)
    assert logger.level == logging.WARNING
    logger.info("hidden")
    logger.warning("shown")
    assert "hidden" not in log_text(logger) and "shown" in log_text(logger)

    reply = await client.update_log_settings({"log_format": "ISO8601"}, client_timeout=TIMEOUT)
    assert reply.settings["log_format"].string_param == "ISO8601"
    logger.warning("stamped")
    line = log_text(logger).splitlines()[-1]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING ", line), line
    await client.update_log_settings({"log_format": "default"}, client_timeout=TIMEOUT)
    logger.warning("plain")
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING ", log_text(logger).splitlines()[-1])

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await expect(invalid, client.update_log_settings({"log_format": "json"}), "log_format", "ISO8601")
    await expect(invalid, client.update_log_settings({"log_info": None}), "log_info")
    await expect(invalid, client.update_log_settings({"log_volume": True}), "log_volume", "log_verbose_level")
    await expect(grpc.StatusCode.UNIMPLEMENTED, client.update_log_settings({"log_file": "/tmp/x"}), "log file")

    assert settings.log_json()["log_info"] is False
    assert settings.update_log_json({"log_info": True})["log_info"] is True
    assert logger.level == logging.INFO
    bodies: list[Any] = [{"log_verbose_level": -1}, {"log_verbose_level": True}, {"log_error": "yes"}, []]
    for body in bodies:
        with pytest.raises(InvalidArgument, match="log"):
            settings.update_log_json(body)
