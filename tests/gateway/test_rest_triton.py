"""The gateway's REST port as Triton's HTTP/REST API, driven by tritonclient.http and tritonclient.http.aio with
their defaults (binary tensors), against a real gateway in front of a real function; results are compared with
ONNX Runtime called directly.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
import tritonclient.utils.shared_memory as shmlib
from aiohttp import ClientSession, ClientTimeout
from testkit import hostile
from testkit.procs import Proc, start_function, start_gateway
from tritonclient.utils import InferenceServerException

from edgeinfer.gateway.rest_binary import INFERENCE_HEADER

MODELS = ("fraud", "ranker", "echo_text")
LABELS = ("legit", "fraud")
TIMEOUT = 30.0
BODY_LIMIT = 4 << 20
Ort = Callable[[str, dict[str, np.ndarray]], dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fraud (with labels.txt), ranker and echo_text (a BYTES identity model)."""
    root = hostile.write_fuzz_repo(tmp_path_factory.mktemp("rest-models"))
    (root / "fraud" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return root


@pytest.fixture(scope="module")
def stack(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    logs = tmp_path_factory.mktemp("rest-logs")
    function, address = start_function(repo, logs)
    try:
        routes = {m: [address] for m in MODELS}
        limit = ("--max-message-bytes", str(BODY_LIMIT))
        gateway, addresses = start_gateway(logs, routes, *limit, rest=True, region="rest")
    except BaseException:
        function.stop()
        raise
    yield {"proc": gateway, "url": addresses["rest"], "host": addresses["rest"].removeprefix("http://")}
    for proc in (gateway, function):
        proc.stop()


@pytest.fixture(scope="module")
def client(stack: dict[str, Any]) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(stack["host"], connection_timeout=TIMEOUT, network_timeout=TIMEOUT)
    yield client
    client.close()


@pytest.fixture(scope="module")
def onnx(repo: Path) -> Ort:
    sessions: dict[str, ort.InferenceSession] = {}

    def run(model: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if model not in sessions:
            path = str(repo / model / "1" / "model.onnx")
            sessions[model] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        session = sessions[model]
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, feeds), strict=True))

    return run


def features(batch: int, rng: np.random.Generator | None = None) -> np.ndarray:
    # Fresh values each call: a cache hit from another test must not be what is compared.
    return (rng or np.random.default_rng()).standard_normal((batch, hostile.FEATURES)).astype(np.float32)


def fraud_input(x: np.ndarray, binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)


# -- inference ---------------------------------------------------------------------------------------------------


def test_defaults_send_and_get_binary_tensors(client: httpclient.InferenceServerClient, onnx: Ort) -> None:
    x = features(3)
    result = client.infer("fraud", [fraud_input(x)])
    close(result.as_numpy("probabilities"), onnx("fraud", {"features": x})["probabilities"])
    output = result.get_output("probabilities")
    assert output["parameters"] == {"binary_data_size": 3 * 2 * 4} and "data" not in output
    assert output["datatype"] == "FP32" and output["shape"] == [3, 2]

    embedding = np.random.default_rng().standard_normal((2, 512)).astype(np.float32)
    tensor = httpclient.InferInput("embedding", [2, 512], "FP32")
    tensor.set_data_from_numpy(embedding)
    result = client.infer("ranker", [tensor], model_version="1", request_id="r-1")
    close(result.as_numpy("scores"), onnx("ranker", {"embedding": embedding})["scores"])
    assert result.get_response()["id"] == "r-1" and result.get_response()["model_version"] == "1"


def test_json_tensors_both_ways(client: httpclient.InferenceServerClient, onnx: Ort) -> None:
    x = features(2)
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=False)]
    result = client.infer("fraud", [fraud_input(x, binary=False)], outputs=outputs)
    output = result.get_output("probabilities")
    assert "parameters" not in output and len(output["data"]) == 4
    close(result.as_numpy("probabilities"), onnx("fraud", {"features": x})["probabilities"])


@pytest.mark.parametrize(("binary_in", "binary_out"), [(False, True), (True, False)])
def test_json_and_binary_mixed(
    client: httpclient.InferenceServerClient, onnx: Ort, binary_in: bool, binary_out: bool
) -> None:
    x = features(4)
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary_out)]
    result = client.infer("fraud", [fraud_input(x, binary=binary_in)], outputs=outputs)
    assert ("data" in result.get_output("probabilities")) is not binary_out
    close(result.as_numpy("probabilities"), onnx("fraud", {"features": x})["probabilities"])


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_tensors(client: httpclient.InferenceServerClient, onnx: Ort, binary: bool) -> None:
    texts = [["héllo", ""], [uuid.uuid4().hex, "a:b"], ["x" * 300, "\u2603"]]
    tensor = httpclient.InferInput("text", [3, 2], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=np.object_), binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("same", binary_data=binary)]
    result = client.infer("echo_text", [tensor], outputs=outputs)
    want = onnx("echo_text", {"text": np.array(texts, dtype=np.str_)})["same"]
    got = result.as_numpy("same")
    assert got.shape == (3, 2)
    decoded = [[v.decode() if isinstance(v, bytes) else v for v in row] for row in got.tolist()]
    assert decoded == want.tolist() == texts
    if binary:  # 4-byte little-endian length, then the UTF-8 bytes, per element
        size = sum(4 + len(t.encode()) for row in texts for t in row)
        assert result.get_output("same")["parameters"] == {"binary_data_size": size}


@pytest.mark.parametrize(("request_encoding", "reply_encoding"), [("gzip", "deflate"), ("deflate", "gzip")])
def test_compressed_bodies(
    client: httpclient.InferenceServerClient, onnx: Ort, request_encoding: str, reply_encoding: str
) -> None:
    x = features(5)
    result = client.infer(
        "fraud",
        [fraud_input(x)],
        request_compression_algorithm=request_encoding,
        response_compression_algorithm=reply_encoding,
    )
    close(result.as_numpy("probabilities"), onnx("fraud", {"features": x})["probabilities"])


def test_reply_is_compressed_when_asked(stack: dict[str, Any], onnx: Ort) -> None:
    x = features(2)
    header = json.dumps(
        {
            "inputs": [
                {"name": "features", "shape": [2, 30], "datatype": "FP32", "parameters": {"binary_data_size": 240}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    headers = {INFERENCE_HEADER: str(len(header)), "Accept-Encoding": "br;q=0, gzip;q=0, deflate"}

    async def check() -> None:
        async with ClientSession(timeout=ClientTimeout(total=TIMEOUT), auto_decompress=False) as http:
            url = f"{stack['url']}/v2/models/fraud/infer"
            async with http.post(
                url, data=gzip.compress(header + x.tobytes()), headers={**headers, "Content-Encoding": "gzip"}
            ) as reply:
                assert reply.status == 200, await reply.text()
                assert reply.headers["Content-Encoding"] == "deflate"
                assert reply.headers["Content-Type"] == "application/octet-stream"
                body = zlib.decompress(await reply.read())
        length = int(reply.headers[INFERENCE_HEADER])
        document = json.loads(body[:length])
        assert document["outputs"][0]["parameters"] == {"binary_data_size": 16}
        got = np.frombuffer(body[length:], dtype="<f4").reshape(2, 2)
        close(got, onnx("fraud", {"features": x})["probabilities"])

    asyncio.run(check())


def test_aio_client(stack: dict[str, Any], onnx: Ort) -> None:
    x = features(3)

    async def check() -> None:
        client = aiohttpclient.InferenceServerClient(stack["host"], conn_timeout=TIMEOUT)
        try:
            tensor = aiohttpclient.InferInput("features", [3, 30], "FP32")
            tensor.set_data_from_numpy(x)
            result = await client.infer("fraud", [tensor], timeout=int(TIMEOUT * 1000))
            close(result.as_numpy("probabilities"), onnx("fraud", {"features": x})["probabilities"])
            tensor.set_data_from_numpy(x, binary_data=False)
            outputs = [aiohttpclient.InferRequestedOutput("probabilities", binary_data=False)]
            result = await client.infer("fraud", [tensor], outputs=outputs, response_compression_algorithm="gzip")
            close(result.as_numpy("probabilities"), onnx("fraud", {"features": x})["probabilities"])
            config = await client.get_model_config("ranker")
            assert config["name"] == "ranker" and config["input"][0]["dims"] == [512]
            stats = await client.get_inference_statistics("fraud")
            assert stats["model_stats"][0]["name"] == "fraud"
            index = await client.get_model_repository_index()
            assert {m["name"] for m in index} >= set(MODELS)
            assert await client.is_server_ready() and await client.is_model_ready("fraud")
        finally:
            await client.close()

    asyncio.run(check())


def test_classification(client: httpclient.InferenceServerClient, onnx: Ort) -> None:
    x = features(3)
    want = onnx("fraud", {"features": x})["probabilities"]
    plain = client.infer("fraud", [fraud_input(x)])  # the same input unclassified first: no shared cache entry
    close(plain.as_numpy("probabilities"), want)
    for binary in (True, False):
        outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=binary, class_count=1)]
        result = client.infer("fraud", [fraud_input(x)], outputs=outputs)
        output = result.get_output("probabilities")
        assert output["datatype"] == "BYTES" and output["shape"] == [3, 1]
        for row, values in zip(result.as_numpy("probabilities").tolist(), want.tolist(), strict=True):
            text = row[0].decode() if isinstance(row[0], bytes) else row[0]
            score, index, label = text.split(":")
            best = int(np.argmax(values))
            assert int(index) == best and label == LABELS[best]
            assert float(score) == pytest.approx(values[best], rel=1e-6, abs=1e-6)


# -- configuration, statistics, repository ----------------------------------------------------------------------


def test_model_config(client: httpclient.InferenceServerClient) -> None:
    for version in ("", "1"):
        config = client.get_model_config("fraud", version)
        assert config["name"] == "fraud"
        assert (config["platform"], config["backend"]) == ("onnxruntime_onnx", "onnxruntime")
        assert config["max_batch_size"] > 0
        [tensor] = config["input"]
        assert (tensor["name"], tensor["data_type"], tensor["dims"]) == ("features", "TYPE_FP32", [30])
        assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
            ("probabilities", "TYPE_FP32", [2])
        ]
        assert config["response_cache"] == {"enable": True}
        batching = config["dynamic_batching"]
        assert isinstance(batching["max_queue_delay_microseconds"], int)  # a number, as Triton writes it
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_config("nope")
    assert caught.value.status() == "404" and "nope" in caught.value.message()


def test_statistics(client: httpclient.InferenceServerClient) -> None:
    before = client.get_inference_statistics("fraud")["model_stats"]
    count = sum(s["inference_count"] for s in before)
    for _ in range(3):
        client.infer("fraud", [fraud_input(features(2))])
    [stats] = client.get_inference_statistics("fraud", "1")["model_stats"]
    assert (stats["name"], stats["version"]) == ("fraud", "1")
    assert stats["inference_count"] >= count + 6 and isinstance(stats["last_inference"], int)
    durations = stats["inference_stats"]
    assert set(durations) == {
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    }
    assert durations["success"]["count"] >= 3 and durations["success"]["ns"] > 0
    names = {s["name"] for s in client.get_inference_statistics()["model_stats"]}
    assert names >= set(MODELS)
    with pytest.raises(InferenceServerException) as caught:
        client.get_inference_statistics("nope")
    assert caught.value.status() == "404"


def test_repository_index_and_refused_changes(client: httpclient.InferenceServerClient) -> None:
    client.infer("fraud", [fraud_input(features(1))])
    index = client.get_model_repository_index()
    fraud = [m for m in index if m["name"] == "fraud"]
    assert fraud and all(m["state"] == "READY" for m in fraud)
    assert {m["name"] for m in index} >= set(MODELS)
    for change in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException) as caught:
            change("fraud")
        assert caught.value.status() == "400"
        assert "edgeinfer deploy" in caught.value.message() and "fraud" in caught.value.message()


# -- shared memory, trace and log settings ----------------------------------------------------------------------


def test_system_shared_memory(client: httpclient.InferenceServerClient, onnx: Ort) -> None:
    x = features(3)
    key = f"/edgeinfer-rest-{uuid.uuid4().hex[:8]}"
    inputs = shmlib.create_shared_memory_region("rest_in", key + "-in", x.nbytes)
    outputs = shmlib.create_shared_memory_region("rest_out", key + "-out", 64)
    try:
        shmlib.set_shared_memory_region(inputs, [x])
        client.register_system_shared_memory("rest_in", key + "-in", x.nbytes)
        client.register_system_shared_memory("rest_out", key + "-out", 64)
        status = {r["name"]: r for r in client.get_system_shared_memory_status()}
        assert status["rest_in"] == {"name": "rest_in", "key": key + "-in", "offset": 0, "byte_size": x.nbytes}
        assert client.get_system_shared_memory_status("rest_out")[0]["byte_size"] == 64
        with pytest.raises(InferenceServerException):
            client.register_system_shared_memory("rest_in", key + "-in", x.nbytes)

        tensor = httpclient.InferInput("features", [3, 30], "FP32")
        tensor.set_shared_memory("rest_in", x.nbytes)
        output = httpclient.InferRequestedOutput("probabilities", binary_data=True)
        output.set_shared_memory("rest_out", 24, offset=8)
        result = client.infer("fraud", [tensor], outputs=[output])
        placed = result.get_output("probabilities")
        assert placed["shape"] == [3, 2] and "data" not in placed
        got = shmlib.get_contents_as_numpy(outputs, np.float32, [3, 2], offset=8)
        close(got, onnx("fraud", {"features": x})["probabilities"])

        small = httpclient.InferRequestedOutput("probabilities")
        small.set_shared_memory("rest_out", 8)
        with pytest.raises(InferenceServerException) as caught:
            client.infer("fraud", [tensor], outputs=[small])
        assert caught.value.status() == "400" and "rest_out" in caught.value.message()
    finally:
        client.unregister_system_shared_memory("rest_in")
        client.unregister_system_shared_memory()
        shmlib.destroy_shared_memory_region(inputs)
        shmlib.destroy_shared_memory_region(outputs)
    assert client.get_system_shared_memory_status() == []
    with pytest.raises(InferenceServerException) as caught:
        client.get_system_shared_memory_status("rest_in")
    assert caught.value.status() == "404"


def test_cuda_shared_memory_answers_as_a_cpu_build_of_triton(client: httpclient.InferenceServerClient) -> None:
    """Registering is refused (501, naming system shared memory); the status and unregistering of no regions
    succeed, so clients that clean up CUDA regions too (perf_analyzer) see no error."""
    with pytest.raises(InferenceServerException) as caught:
        client.register_cuda_shared_memory("c", b"\0" * 64, 0, 16)
    assert caught.value.status() == "501" and "system shared memory" in caught.value.message()
    assert client.get_cuda_shared_memory_status() == []
    client.unregister_cuda_shared_memory()
    client.unregister_cuda_shared_memory("c")
    with pytest.raises(InferenceServerException) as missing:
        client.get_cuda_shared_memory_status("c")
    assert missing.value.status() == "404" and "no CUDA shared memory region 'c'" in missing.value.message()


def test_trace_and_log_settings(client: httpclient.InferenceServerClient) -> None:
    trace = client.get_trace_settings()
    assert "trace_rate" in trace and isinstance(trace["trace_level"], list)
    try:
        assert client.update_trace_settings(settings={"trace_rate": "5"})["trace_rate"] == "5"
        assert client.update_trace_settings("fraud", {"trace_rate": "7"})["trace_rate"] == "7"
        assert client.get_trace_settings("fraud")["trace_rate"] == "7"
        assert client.get_trace_settings()["trace_rate"] == "5"
        with pytest.raises(InferenceServerException) as caught:
            client.update_trace_settings(settings={"trace_rate": "often"})
        assert caught.value.status() == "400"
    finally:
        client.update_trace_settings("fraud", {"trace_rate": None})
        client.update_trace_settings(settings={"trace_rate": trace["trace_rate"]})
    assert client.get_trace_settings("fraud")["trace_rate"] == trace["trace_rate"]

    log = client.get_log_settings()
    assert {"log_info", "log_warning", "log_error", "log_verbose_level", "log_format"} <= set(log)
    try:
        assert client.update_log_settings({"log_format": "ISO8601"})["log_format"] == "ISO8601"
        with pytest.raises(InferenceServerException) as caught:
            client.update_log_settings({"log_info": "yes"})
        assert caught.value.status() == "400"
    finally:
        client.update_log_settings({"log_format": log["log_format"]})


# -- hostile bodies ----------------------------------------------------------------------------------------------


def _header(inputs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def _fraud_binary(size: int = 120, shape: list[int] | None = None) -> bytes:
    return _header(
        [{"name": "features", "shape": shape or [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": size}}]
    )


HOSTILE: list[tuple[str, str, bytes, dict[str, str], str, int]] = []


def _case(name: str, model: str, body: bytes, headers: dict[str, str], message: str, status: int = 400) -> None:
    HOSTILE.append((name, model, body, headers, message, status))


def _length(header: bytes, extra: int = 0) -> dict[str, str]:
    return {INFERENCE_HEADER: str(len(header) + extra)}


_h = _fraud_binary()
_case("header past the body", "fraud", _h + b"\0" * 120, _length(_h, 121), "the body has only")
_case("header length not a number", "fraud", _h + b"\0" * 120, {INFERENCE_HEADER: "12x"}, "must be a byte count")
_case("header length huge", "fraud", _h, {INFERENCE_HEADER: "9" * 30}, "the body has only")
_case("header length zero", "fraud", _h, {INFERENCE_HEADER: "0"}, "not supported")
_case("header cuts the JSON", "fraud", _h + b"\0" * 120, _length(_h, -5), "not valid JSON")
_case("binary part short", "fraud", _h + b"\0" * 100, _length(_h), "input 'features': binary_data_size is 120")
_case("bytes nobody claims", "fraud", _h + b"\0" * 130, _length(_h), "10 bytes after the JSON header")
_h2 = _fraud_binary(100)
_case("size not the tensor's", "fraud", _h2 + b"\0" * 100, _length(_h2), "input 'features': binary_data_size is 100")
_h3 = _fraud_binary(-1)
_case("negative size", "fraud", _h3, _length(_h3), "input 'features': binary_data_size must be")
_case("binary without the header", "fraud", _h + b"\xff" * 120, {}, "Inference-Header-Content-Length")
_h4 = _header(
    [
        {
            "name": "features",
            "shape": [1, 30],
            "datatype": "FP32",
            "data": [0.0] * 30,
            "parameters": {"binary_data_size": 120},
        }
    ]
)
_case("data and binary both", "fraud", _h4 + b"\0" * 120, _length(_h4), "exactly one of")
_h5 = _header([{"name": "text", "shape": [1, 2], "datatype": "BYTES", "parameters": {"binary_data_size": 9}}])
_case(
    "BYTES framing lies",
    "echo_text",
    _h5 + b"\x01\x00\x00\x00a" + b"\xe8\x03\x00\x00",
    _length(_h5),
    "input 'text': BYTES element 1 claims 1000 bytes",
)
_case(
    "BYTES too few elements",
    "echo_text",
    _h5 + b"\x05\x00\x00\x00abcde",
    _length(_h5),
    "input 'text': BYTES data ends after 1 of 2",
)
_case(
    "BYTES leftover",
    "echo_text",
    _h5 + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00" + b"z",
    _length(_h5),
    "input 'text': 1 bytes left over",
)
_h6 = _fraud_binary(116, [1, 29])
_case("shape not the model's", "fraud", _h6 + b"\0" * 116, _length(_h6), "input 'features': dimension 1 must be 30")
_case("encoding unknown", "fraud", _h + b"\0" * 120, {**_length(_h), "Content-Encoding": "compress"}, "not supported")
_case("gzip bomb", "fraud", gzip.compress(b" " * (BODY_LIMIT + 1)), {"Content-Encoding": "gzip"}, "too large", 413)
_case("gzip that is not gzip", "fraud", b"\x1f\x8b not really", {"Content-Encoding": "gzip"}, "not valid gzip data")


@pytest.mark.parametrize(
    ("model", "body", "headers", "message", "expected"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE]
)
def test_hostile_bodies_get_4xx_and_the_next_request_is_served(
    stack: dict[str, Any],
    client: httpclient.InferenceServerClient,
    onnx: Ort,
    model: str,
    body: bytes,
    headers: dict[str, str],
    message: str,
    expected: int,
) -> None:
    async def send() -> tuple[int, dict[str, Any]]:
        url = f"{stack['url']}/v2/models/{model}/infer"
        async with (
            ClientSession(timeout=ClientTimeout(total=TIMEOUT)) as http,
            http.post(url, data=body, headers=headers) as reply,
        ):
            return reply.status, json.loads(await reply.read() or b"{}")

    status, document = asyncio.run(send())
    assert status == expected, document
    assert message in document["error"], document
    proc: Proc = stack["proc"]
    assert proc.popen.poll() is None
    x = features(1)
    close(
        client.infer("fraud", [fraud_input(x)]).as_numpy("probabilities"),
        onnx("fraud", {"features": x})["probabilities"],
    )
