"""Triton's system shared memory extension (edgeinfer/protocol/shared_memory.py), driven by tritonclient unchanged.

A real grpc.aio server on 127.0.0.1 registers every RPC with add_inference_service and the shared-memory provider;
its data plane is a small echo servicer (each INPUTn comes back as OUTPUTn), since what is under test is how
tensors move between regions and requests. Regions are created with tritonclient.utils.shared_memory, as a
client does. Every bad region, offset or size is INVALID_ARGUMENT naming the region, and the server still serves.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio
import tritonclient.grpc.aio as grpcclient
import tritonclient.utils.shared_memory as shm_util
from tritonclient.utils import InferenceServerException

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.grpc_service import add_inference_service
from edgeinfer.protocol.shared_memory import (
    CUDA_UNIMPLEMENTED,
    RegionStatus,
    SharedMemoryRPCs,
    SystemSharedMemory,
    regions_json,
)
from edgeinfer.protocol.tensors import decode_inputs, encode_outputs
from edgeinfer.serving import ErrorMapping

TIMEOUT = 20.0


class EchoServicer:
    """Each input INPUTn comes back as OUTPUTn (only the requested ones, if any), in the request's form."""

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        arrays, raw = decode_inputs(request)
        wanted = {o.name for o in request.outputs}
        outputs = [(name.replace("INPUT", "OUTPUT"), array) for name, array in arrays.items()]
        reply = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        encode_outputs(reply, [(n, a) for n, a in outputs if not wanted or n in wanted], raw)
        return reply


class Server:
    def __init__(self, address: str, shm: SystemSharedMemory, server: grpc.aio.Server) -> None:
        self.address = address
        self.shm = shm
        self.server = server


@pytest_asyncio.fixture
async def server() -> AsyncIterator[Server]:
    shm = SystemSharedMemory(max_regions=4)
    aio = grpc.aio.server()
    errors = ErrorMapping("test server", logging.getLogger("test"))
    add_inference_service(EchoServicer(), aio, errors.wrap, providers=[SharedMemoryRPCs(shm)], shared_memory=shm)
    port = aio.add_insecure_port("127.0.0.1:0")
    await aio.start()
    try:
        yield Server(f"127.0.0.1:{port}", shm, aio)
    finally:
        await aio.stop(None)
        shm.close()


@pytest_asyncio.fixture
async def client(server: Server) -> AsyncIterator[grpcclient.InferenceServerClient]:
    c = grpcclient.InferenceServerClient(server.address)
    try:
        yield c
    finally:
        await c.close()


class Regions:
    """Client-side regions (tritonclient.utils.shared_memory), destroyed at the end."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def create(self, byte_size: int) -> tuple[str, Any]:
        key = f"/edgeinfer-test-{uuid.uuid4().hex[:12]}"
        handle = shm_util.create_shared_memory_region(key.lstrip("/"), key, byte_size)
        self.handles.append(handle)
        return key, handle


@pytest.fixture
def regions() -> Iterator[Regions]:
    made = Regions()
    yield made
    for handle in made.handles:
        shm_util.destroy_shared_memory_region(handle)


async def expect(code: grpc.StatusCode, call: Any, *words: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        await call
    assert caught.value.status() == str(code), caught.value
    message = caught.value.message()
    for word in words:
        assert word in message, message
    return str(message)


X = np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5
Y = np.array([[7, -1, 3]], dtype=np.int64)


async def still_serves(client: grpcclient.InferenceServerClient) -> None:
    """A plain request right after, answered with the right values."""
    inp = grpcclient.InferInput("INPUT0", list(X.shape), "FP32")
    inp.set_data_from_numpy(X)
    result = await client.infer("echo", [inp], client_timeout=TIMEOUT)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), X)


# -- registry -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_register_status_unregister(
    client: grpcclient.InferenceServerClient, server: Server, regions: Regions
) -> None:
    key_a, _ = regions.create(256)
    key_b, _ = regions.create(8192)
    await client.register_system_shared_memory("a", key_a, 256, client_timeout=TIMEOUT)
    await client.register_system_shared_memory("b", key_b, 100, offset=4096 + 7, client_timeout=TIMEOUT)

    status = await client.get_system_shared_memory_status(as_json=True, client_timeout=TIMEOUT)
    got = {name: (r["key"], int(r.get("offset", 0)), int(r["byte_size"])) for name, r in status["regions"].items()}
    assert got == {"a": (key_a, 0, 256), "b": (key_b, 4103, 100)}
    one = await client.get_system_shared_memory_status("b", client_timeout=TIMEOUT)
    assert list(one.regions) == ["b"]
    assert regions_json(server.shm.status("b")) == [{"name": "b", "key": key_b, "offset": 4103, "byte_size": 100}]

    await expect(grpc.StatusCode.NOT_FOUND, client.get_system_shared_memory_status("nope"), "'nope'")
    await client.unregister_system_shared_memory("nope", client_timeout=TIMEOUT)  # Triton: not an error
    await client.unregister_system_shared_memory("a", client_timeout=TIMEOUT)
    assert [s.name for s in server.shm.status()] == ["b"]
    await client.unregister_system_shared_memory(client_timeout=TIMEOUT)  # all
    assert server.shm.status() == []
    # A name is free again once unregistered.
    await client.register_system_shared_memory("a", key_a, 256, client_timeout=TIMEOUT)
    assert server.shm.status("a") == [RegionStatus("a", key_a, 0, 256)]


@pytest.mark.asyncio
async def test_bad_registrations_are_invalid_argument_naming_the_region(
    client: grpcclient.InferenceServerClient, server: Server, regions: Regions
) -> None:
    key, _ = regions.create(1024)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await expect(invalid, client.register_system_shared_memory("r", "/edgeinfer-missing-key", 16), "'r'", "missing")
    await expect(invalid, client.register_system_shared_memory("r", key, 2048), "'r'")
    await expect(invalid, client.register_system_shared_memory("r", key, 16, offset=1020), "'r'")
    await expect(invalid, client.register_system_shared_memory("r", key, 16, offset=1 << 62), "'r'")
    await expect(invalid, client.register_system_shared_memory("r", key, 0), "'r'")
    await expect(invalid, client.register_system_shared_memory("r", "/../etc/passwd", 16), "'r'")
    await expect(invalid, client.register_system_shared_memory("r", "///", 16), "'r'")
    reserved = "/triton_python_backend_shm_region_x"
    await expect(invalid, client.register_system_shared_memory("r", reserved, 16), "reserved prefix")
    assert server.shm.status() == []

    await client.register_system_shared_memory("r", key, 1024, client_timeout=TIMEOUT)
    await expect(grpc.StatusCode.ALREADY_EXISTS, client.register_system_shared_memory("r", key, 16), "'r'")
    for name in ("s1", "s2", "s3"):
        await client.register_system_shared_memory(name, key, 8, client_timeout=TIMEOUT)
    await expect(grpc.StatusCode.RESOURCE_EXHAUSTED, client.register_system_shared_memory("s4", key, 8), "'s4'")
    await still_serves(client)


@pytest.mark.asyncio
async def test_cuda_shared_memory_answers_as_a_cpu_build_of_triton(
    client: grpcclient.InferenceServerClient,
) -> None:
    """Registering is UNIMPLEMENTED naming system shared memory; no region can exist, so the status of all is empty,
    a named one is NOT_FOUND, and unregistering succeeds (perf_analyzer's clean-up calls it)."""
    unimplemented = grpc.StatusCode.UNIMPLEMENTED
    await expect(
        unimplemented, client.register_cuda_shared_memory("c", b"\0" * 64, 0, 16), "SystemSharedMemoryRegister"
    )
    assert not (await client.get_cuda_shared_memory_status()).regions
    await expect(grpc.StatusCode.NOT_FOUND, client.get_cuda_shared_memory_status("c"), CUDA_UNIMPLEMENTED)
    await client.unregister_cuda_shared_memory("c")
    await client.unregister_cuda_shared_memory()


# -- inference ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_inputs_and_outputs_in_shared_memory(client: grpcclient.InferenceServerClient, regions: Regions) -> None:
    key_in, handle_in = regions.create(X.nbytes + Y.nbytes)
    key_out, handle_out = regions.create(64 + X.nbytes + Y.nbytes)
    shm_util.set_shared_memory_region(handle_in, [X])
    shm_util.set_shared_memory_region(handle_in, [Y], offset=X.nbytes)
    await client.register_system_shared_memory("in", key_in, X.nbytes + Y.nbytes, client_timeout=TIMEOUT)
    await client.register_system_shared_memory("out", key_out, 64 + X.nbytes + Y.nbytes, client_timeout=TIMEOUT)

    inputs = [grpcclient.InferInput("INPUT0", [3, 4], "FP32"), grpcclient.InferInput("INPUT1", [1, 3], "INT64")]
    inputs[0].set_shared_memory("in", X.nbytes)
    inputs[1].set_shared_memory("in", Y.nbytes, offset=X.nbytes)
    outputs = [grpcclient.InferRequestedOutput("OUTPUT0"), grpcclient.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory("out", X.nbytes, offset=64)
    outputs[1].set_shared_memory("out", Y.nbytes, offset=64 + X.nbytes)
    result = await client.infer("echo", inputs, outputs=outputs, client_timeout=TIMEOUT)

    reply = result.get_response()
    # Triton's reply: each output keeps name, datatype and shape, with an empty raw entry and no region parameters.
    assert [(o.name, o.datatype, list(o.shape)) for o in reply.outputs] == [
        ("OUTPUT0", "FP32", [3, 4]),
        ("OUTPUT1", "INT64", [1, 3]),
    ]
    assert list(reply.raw_output_contents) == [b"", b""]
    assert all(not o.parameters for o in reply.outputs)
    out0 = result.get_output("OUTPUT0")
    got0 = shm_util.get_contents_as_numpy(handle_out, np.float32, list(out0.shape), offset=64)
    got1 = shm_util.get_contents_as_numpy(handle_out, np.int64, [1, 3], offset=64 + X.nbytes)
    np.testing.assert_array_equal(got0, X)
    np.testing.assert_array_equal(got1, Y)

    # The request read a copy: rewriting the input region changes the next request, as it should.
    shm_util.set_shared_memory_region(handle_in, [X * 2])
    result = await client.infer("echo", inputs[:1], outputs=outputs[:1], client_timeout=TIMEOUT)
    np.testing.assert_array_equal(shm_util.get_contents_as_numpy(handle_out, np.float32, [3, 4], offset=64), X * 2)


@pytest.mark.asyncio
async def test_shared_memory_and_raw_inputs_mixed(client: grpcclient.InferenceServerClient, regions: Regions) -> None:
    key, handle = regions.create(Y.nbytes)
    shm_util.set_shared_memory_region(handle, [Y])
    await client.register_system_shared_memory("y", key, Y.nbytes, client_timeout=TIMEOUT)
    x = grpcclient.InferInput("INPUT0", [3, 4], "FP32")
    x.set_data_from_numpy(X)
    y = grpcclient.InferInput("INPUT1", [1, 3], "INT64")
    y.set_shared_memory("y", Y.nbytes)
    z = grpcclient.InferInput("INPUT2", [2], "FP32")
    z.set_data_from_numpy(np.array([1.5, -2.0], dtype=np.float32))
    # Only the non-shm inputs carry raw contents (two entries for three inputs): indexes must line up.
    result = await client.infer("echo", [x, y, z], client_timeout=TIMEOUT)
    assert len(result.get_response().raw_output_contents) == 3
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), X)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), Y)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT2"), np.array([1.5, -2.0], dtype=np.float32))

    # An output in shm next to a plain one: the plain one is still read by index.
    out_key, out_handle = regions.create(X.nbytes)
    await client.register_system_shared_memory("o", out_key, X.nbytes, client_timeout=TIMEOUT)
    o0 = grpcclient.InferRequestedOutput("OUTPUT0")
    o0.set_shared_memory("o", X.nbytes)
    result = await client.infer(
        "echo", [x, y], outputs=[o0, grpcclient.InferRequestedOutput("OUTPUT1")], client_timeout=TIMEOUT
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), Y)
    np.testing.assert_array_equal(shm_util.get_contents_as_numpy(out_handle, np.float32, [3, 4]), X)


@pytest.mark.asyncio
async def test_typed_contents_next_to_shared_memory_become_raw(server: Server, regions: Regions) -> None:
    key, handle = regions.create(Y.nbytes + X.nbytes)
    shm_util.set_shared_memory_region(handle, [Y])
    server.shm.register("y", key, 0, Y.nbytes + X.nbytes)
    request = pb.ModelInferRequest(model_name="echo")
    typed = request.inputs.add(name="INPUT0", datatype="FP32", shape=[3, 4])
    typed.contents.fp32_contents.extend(X.reshape(-1).tolist())
    in_shm = request.inputs.add(name="INPUT1", datatype="INT64", shape=[1, 3])
    in_shm.parameters["shared_memory_region"].string_param = "y"
    in_shm.parameters["shared_memory_byte_size"].int64_param = Y.nbytes
    out = request.outputs.add(name="OUTPUT0")
    out.parameters["shared_memory_region"].string_param = "y"
    out.parameters["shared_memory_byte_size"].int64_param = X.nbytes
    out.parameters["shared_memory_offset"].int64_param = Y.nbytes
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        reply = await call(request, timeout=TIMEOUT)
    assert [o.name for o in reply.outputs] == ["OUTPUT0"]
    assert list(reply.raw_output_contents) == [b""]
    np.testing.assert_array_equal(shm_util.get_contents_as_numpy(handle, np.float32, [3, 4], offset=Y.nbytes), X)


@pytest.mark.asyncio
async def test_bad_regions_offsets_and_sizes_are_invalid_argument(
    client: grpcclient.InferenceServerClient, regions: Regions
) -> None:
    key, handle = regions.create(X.nbytes)
    shm_util.set_shared_memory_region(handle, [X])
    await client.register_system_shared_memory("r", key, X.nbytes, client_timeout=TIMEOUT)
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    def shm_input(region: str, byte_size: int, offset: int = 0) -> grpcclient.InferInput:
        inp = grpcclient.InferInput("INPUT0", [3, 4], "FP32")
        inp.set_shared_memory(region, byte_size, offset=offset)
        return inp

    cases = [
        (shm_input("missing", X.nbytes), "'missing'"),
        (shm_input("r", X.nbytes + 4), "'r'"),  # beyond the region
        (shm_input("r", 4, offset=X.nbytes), "'r'"),  # offset at the end
        (shm_input("r", 4, offset=-8), "'r'"),
        (shm_input("r", 4, offset=1 << 62), "'r'"),
        (shm_input("r", -4), "'r'"),
    ]
    for inp, word in cases:
        await expect(invalid, client.infer("echo", [inp], client_timeout=TIMEOUT), word)
    # The data plane checks what the bytes are: fewer than the shape needs.
    await expect(invalid, client.infer("echo", [shm_input("r", 8)], client_timeout=TIMEOUT), "INPUT0")

    plain = grpcclient.InferInput("INPUT0", [3, 4], "FP32")
    plain.set_data_from_numpy(X)
    for region, size, offset in (("missing", 48, 0), ("r", 4, 0), ("r", 48, 8), ("r", 8, -1)):
        out = grpcclient.InferRequestedOutput("OUTPUT0")
        out.set_shared_memory(region, size, offset=offset)
        await expect(invalid, client.infer("echo", [plain], outputs=[out], client_timeout=TIMEOUT), f"'{region}'")

    # Parameters Triton refuses: a wrong type, a size without a region, contents with a region.
    odd = grpcclient.InferInput("INPUT0", [3, 4], "FP32")
    odd.set_shared_memory("r", X.nbytes)
    odd._input.parameters["shared_memory_byte_size"].string_param = "48"
    await expect(invalid, client.infer("echo", [odd], client_timeout=TIMEOUT), "shared_memory_byte_size")

    # A client that truncates its file after registering must not crash the server (SIGBUS).
    fd = os.open("/dev/shm/" + key.lstrip("/"), os.O_RDWR)
    try:
        os.ftruncate(fd, 8)
        await expect(invalid, client.infer("echo", [shm_input("r", X.nbytes)], client_timeout=TIMEOUT), "'r'")
        os.ftruncate(fd, X.nbytes)
    finally:
        os.close(fd)
    await still_serves(client)


@pytest.mark.asyncio
async def test_unregistered_region_in_a_request_is_invalid_argument(
    client: grpcclient.InferenceServerClient, server: Server, regions: Regions
) -> None:
    key, handle = regions.create(X.nbytes)
    shm_util.set_shared_memory_region(handle, [X])
    server.shm.register("r", key, 0, X.nbytes)
    inp = grpcclient.InferInput("INPUT0", [3, 4], "FP32")
    inp.set_shared_memory("r", X.nbytes)
    result = await client.infer("echo", [inp], client_timeout=TIMEOUT)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), X)
    await client.unregister_system_shared_memory("r", client_timeout=TIMEOUT)
    await expect(grpc.StatusCode.INVALID_ARGUMENT, client.infer("echo", [inp], client_timeout=TIMEOUT), "'r'")
    await still_serves(client)


def test_reads_copy_and_writes_are_bounded(regions: Regions) -> None:
    key, handle = regions.create(4096 * 2)
    shm = SystemSharedMemory()
    try:
        shm.register("page", key, offset=4096 + 3, byte_size=16)
        shm.write("page", 0, b"0123456789abcdef")
        data = shm.read("page", 4, 8)
        assert data == b"456789ab" and isinstance(data, bytes)
        shm.write("page", 4, b"XXXXXXXX")
        assert data == b"456789ab"  # a copy, not a view of the region
        raw = shm_util.get_contents_as_numpy(handle, np.uint8, [16], offset=4096 + 3).tobytes()
        assert raw == b"0123XXXXXXXXcdef"
        with pytest.raises(InvalidArgument, match="'page'"):
            shm.write("page", 10, b"0123456789")
        with pytest.raises(InvalidArgument, match="'page'"):
            shm.read("page", 16, 1)
    finally:
        shm.close()
    assert shm.status() == []
