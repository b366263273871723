"""Triton's system shared memory extension, server side: a registry of mapped POSIX shared-memory regions, and the
resolution of ModelInfer tensors that name them.

A client co-located with a server creates /dev/shm/<key> (tritonclient.utils.shared_memory), registers it under a
name, and then sends inputs and requests outputs with the `shared_memory_region`, `shared_memory_byte_size` and
`shared_memory_offset` parameters instead of tensor bytes. `resolve` copies such inputs into the request as raw
contents (a copy, so a client rewriting its region cannot change a request in flight) and strips the parameters, so
the data plane and the gateway's cache key see a plain request; `place` writes the outputs bound for a region into
it and leaves them an empty raw entry in the reply, as Triton does, so tritonclient's InferResult still lines up.

Every region, offset and size is checked (bounds, and the file's current size: a client that truncates its file
after registering would otherwise crash the server with SIGBUS on the next access); errors name the region.
"""

from __future__ import annotations

import mmap
import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.datatypes import CONTENTS_FIELD, NUMPY_DTYPES
from edgeinfer.protocol.errors import (
    AlreadyExists,
    InferenceError,
    InvalidArgument,
    ResourceExhausted,
    Unimplemented,
)
from edgeinfer.protocol.tensors import _from_contents, element_count, output_arrays, raw_bytes

REGION = "shared_memory_region"
BYTE_SIZE = "shared_memory_byte_size"
OFFSET = "shared_memory_offset"
_PARAMETERS = (REGION, BYTE_SIZE, OFFSET)
SHM_DIR = "/dev/shm"
# Triton refuses keys with this prefix (its Python backend's own regions); so do we, so clients behave the same.
RESERVED_KEY_PREFIX = "triton_python_backend_shm_region_"
# One tensor read out of a region at most (the gRPC message limit bounds the other path).
DEFAULT_MAX_TENSOR_BYTES = 1 << 31
CUDA_UNIMPLEMENTED = (
    "CUDA shared memory needs a GPU build of edgeinfer; register system shared memory (SystemSharedMemoryRegister) "
    "instead"
)


class RegionNotFound(InferenceError):
    """A status or region lookup for a name that is not registered (Triton answers NOT_FOUND)."""

    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


@dataclass(frozen=True)
class RegionStatus:
    name: str
    key: str
    offset: int
    byte_size: int


class _Region:
    """One registered region: its file kept open (to fstat before each access) and its mapping."""

    __slots__ = ("_fd", "_map", "_shift", "byte_size", "key", "name", "offset")

    def __init__(self, name: str, key: str, offset: int, byte_size: int, fd: int, mapping: mmap.mmap, shift: int):
        self.name = name
        self.key = key
        self.offset = offset
        self.byte_size = byte_size
        self._fd = fd
        self._map = mapping
        self._shift = shift  # offset minus the page-aligned offset the mapping starts at

    @property
    def closed(self) -> bool:
        return self._map.closed

    def span(self, offset: int, byte_size: int) -> tuple[int, int]:
        """Check `offset`/`byte_size` against the region (Triton's checks) and its file now; the mapping's slice."""
        name = self.name
        if self._map.closed:
            raise InvalidArgument(
                f"shared memory region '{name}' was unregistered while the request was in flight; register it again"
            )
        if offset < 0 or offset >= self.byte_size:
            raise InvalidArgument(
                f"invalid offset {offset} for shared memory region '{name}' of {self.byte_size} bytes "
                f"(it must be in 0..{self.byte_size - 1})"
            )
        if byte_size < 0 or offset + byte_size > self.byte_size:
            raise InvalidArgument(
                f"invalid offset + byte size ({offset} + {byte_size}) for shared memory region '{name}' of "
                f"{self.byte_size} bytes"
            )
        end = self.offset + offset + byte_size
        size = os.fstat(self._fd).st_size
        if size < end:
            # Touching pages past the end of the file would raise SIGBUS and kill the server.
            raise InvalidArgument(
                f"shared memory region '{name}': its file /dev/shm/{_file_name(self.key)} is now {size} bytes, "
                f"shorter than the registered region (the client truncated it); register it again"
            )
        start = self._shift + offset
        return start, start + byte_size

    def read(self, offset: int, byte_size: int) -> bytes:
        start, end = self.span(offset, byte_size)
        return self._map[start:end]  # slicing an mmap copies: the request cannot change under the data plane

    def write(self, offset: int, data: bytes | memoryview) -> None:
        start, end = self.span(offset, len(data))
        self._map[start:end] = data

    def close(self) -> None:
        if not self._map.closed:
            self._map.close()
            os.close(self._fd)


def _file_name(key: str) -> str:
    return key.lstrip("/")


@dataclass(frozen=True)
class Placement:
    """The outputs of one request bound for regions: (output name, region, offset in it, byte size)."""

    outputs: tuple[tuple[str, _Region, int, int], ...]


def _shm_parameters(tensor: Any, what: str) -> tuple[str, int, int] | None:
    """(region, offset, byte_size) of a tensor's shared-memory parameters, checked as Triton checks them."""
    params = tensor.parameters
    if REGION not in params:
        for key in (OFFSET, BYTE_SIZE):
            if key in params:
                raise InvalidArgument(
                    f"{what} '{tensor.name}': '{key}' can not be specified without the '{REGION}' parameter"
                )
        return None
    region = params[REGION]
    if region.WhichOneof("parameter_choice") != "string_param":
        raise InvalidArgument(f"{what} '{tensor.name}': '{REGION}' must be a string_param (the region's name)")
    offset = 0
    if OFFSET in params:
        value = params[OFFSET]
        if value.WhichOneof("parameter_choice") != "int64_param":
            raise InvalidArgument(f"{what} '{tensor.name}': '{OFFSET}' must be an int64_param")
        offset = value.int64_param
    if BYTE_SIZE not in params:
        raise InvalidArgument(
            f"{what} '{tensor.name}': '{BYTE_SIZE}' must be specified along with the '{REGION}' parameter"
        )
    size = params[BYTE_SIZE]
    if size.WhichOneof("parameter_choice") != "int64_param":
        raise InvalidArgument(f"{what} '{tensor.name}': '{BYTE_SIZE}' must be an int64_param")
    return region.string_param, offset, size.int64_param


def _strip(tensor: Any) -> None:
    for key in _PARAMETERS:
        if key in tensor.parameters:
            del tensor.parameters[key]


def _contents_to_raw(tensor: pb.ModelInferRequest.InferInputTensor) -> bytes:
    datatype = tensor.datatype
    if datatype not in NUMPY_DTYPES or datatype not in CONTENTS_FIELD:
        raise InvalidArgument(f"input '{tensor.name}': datatype '{datatype}' cannot be sent as typed contents")
    shape = tuple(tensor.shape)
    array = _from_contents(tensor.name, datatype, shape, element_count(tensor.name, shape), tensor.contents)
    return raw_bytes(array, datatype)


class SystemSharedMemory:
    """The registered system shared-memory regions of one server (bounded), and ModelInfer's use of them."""

    def __init__(self, max_regions: int = 256, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
        self._max_regions = max_regions
        self._max_tensor_bytes = max_tensor_bytes
        self._regions: dict[str, _Region] = {}
        # The RPCs and ModelInfer run on one event loop, but a REST front or a thread may share the registry.
        self._lock = threading.Lock()

    # -- the registry -------------------------------------------------------------------------

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Map `byte_size` bytes at `offset` of /dev/shm/<key> (what shm_open(key) opens) under `name`."""
        if not name:
            raise InvalidArgument("a shared memory region needs a name")
        file_name = _file_name(key)
        if not file_name or "/" in file_name or "\0" in file_name or file_name in (".", ".."):
            raise InvalidArgument(
                f"cannot register shared memory region '{name}': invalid shm key '{key}' (a POSIX shared memory "
                "name such as '/my_region', a file in /dev/shm)"
            )
        if file_name.startswith(RESERVED_KEY_PREFIX):
            raise InvalidArgument(
                f"cannot register shared memory region '{name}' with key '{key}': the key contains the reserved "
                f"prefix '{RESERVED_KEY_PREFIX}'"
            )
        if offset < 0 or byte_size <= 0:
            raise InvalidArgument(
                f"failed to register shared memory region '{name}': offset {offset} and byte_size {byte_size} "
                "must be >= 0 and > 0"
            )
        with self._lock:
            if name in self._regions:
                raise AlreadyExists(f"shared memory region '{name}' is already registered; unregister it first")
            if len(self._regions) >= self._max_regions:
                raise ResourceExhausted(
                    f"cannot register shared memory region '{name}': {self._max_regions} regions are registered, "
                    "the most this server keeps; unregister some first"
                )
            self._regions[name] = self._map(name, key, file_name, offset, byte_size)

    @staticmethod
    def _map(name: str, key: str, file_name: str, offset: int, byte_size: int) -> _Region:
        path = os.path.join(SHM_DIR, file_name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise InvalidArgument(
                f"cannot register shared memory region '{name}': unable to open shared memory key '{key}' "
                f"({path}: {exc.strerror}); create it first (tritonclient.utils.shared_memory)"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgument(f"cannot register shared memory region '{name}': {path} is not a regular file")
            if offset + byte_size > info.st_size:
                raise InvalidArgument(
                    f"failed to register shared memory region '{name}': offset {offset} + byte_size {byte_size} "
                    f"is beyond the {info.st_size} bytes of key '{key}'"
                )
            aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
            try:
                mapping = mmap.mmap(fd, byte_size + offset - aligned, mmap.MAP_SHARED, offset=aligned)
            except (OSError, ValueError, OverflowError) as exc:
                raise InvalidArgument(f"failed to register shared memory region '{name}': {exc}") from None
        except BaseException:
            os.close(fd)
            raise
        return _Region(name, key, offset, byte_size, fd, mapping, offset - aligned)

    def unregister(self, name: str = "") -> None:
        """Unmap `name` (all regions if ""). An unknown name is not an error, as in Triton."""
        with self._lock:
            if name:
                region = self._regions.pop(name, None)
                regions = [region] if region is not None else []
            else:
                regions = list(self._regions.values())
                self._regions.clear()
        for region in regions:
            region.close()

    def status(self, name: str = "") -> list[RegionStatus]:
        """Every region (name ""), or the one named; NOT_FOUND for an unknown name, as in Triton."""
        with self._lock:
            if not name:
                regions = list(self._regions.values())
            elif name in self._regions:
                regions = [self._regions[name]]
            else:
                raise RegionNotFound(f"unable to find system shared memory region: '{name}'")
        return [RegionStatus(r.name, r.key, r.offset, r.byte_size) for r in regions]

    def _region(self, name: str) -> _Region:
        region = self._regions.get(name)
        if region is None:
            raise InvalidArgument(
                f"unable to find shared memory region: '{name}'; register it first (SystemSharedMemoryRegister)"
            )
        return region

    def read(self, name: str, offset: int, byte_size: int) -> bytes:
        """A copy of `byte_size` bytes at `offset` of region `name`."""
        if byte_size > self._max_tensor_bytes:
            raise InvalidArgument(
                f"shared memory region '{name}': {byte_size} bytes is more than the {self._max_tensor_bytes} "
                "this server reads for one tensor"
            )
        with self._lock:
            return self._region(name).read(offset, byte_size)

    def write(self, name: str, offset: int, data: bytes | memoryview) -> None:
        with self._lock:
            self._region(name).write(offset, data)

    # -- ModelInfer ---------------------------------------------------------------------------

    def resolve(self, request: pb.ModelInferRequest) -> Placement | None:
        """Inputs in regions become raw contents (typed contents of the other inputs too); outputs bound for
        regions are remembered. Both lose their region parameters. None if no tensor names a region."""
        inputs = [(tensor, _shm_parameters(tensor, "input")) for tensor in request.inputs]
        outputs = [(tensor, _shm_parameters(tensor, "output")) for tensor in request.outputs]
        if all(p is None for _, p in inputs) and all(p is None for _, p in outputs):
            return None
        if any(p is not None for _, p in inputs):
            self._resolve_inputs(request, inputs)
        placed: list[tuple[str, _Region, int, int]] = []
        with self._lock:
            for tensor, params in outputs:
                if params is None:
                    continue
                if "classification" in tensor.parameters:
                    raise InvalidArgument(f"output '{tensor.name}': can't set both '{REGION}' and 'classification'")
                name, offset, byte_size = params
                region = self._region(name)
                region.span(offset, byte_size)  # bounds now, so a bad region fails before inference
                placed.append((tensor.name, region, offset, byte_size))
                _strip(tensor)
        return Placement(tuple(placed))

    def _resolve_inputs(
        self, request: pb.ModelInferRequest, inputs: list[tuple[Any, tuple[str, int, int] | None]]
    ) -> None:
        given = request.raw_input_contents
        raw: list[bytes] = []
        index = 0
        for tensor, params in inputs:
            has_contents = tensor.HasField("contents")
            if params is not None:
                if has_contents:
                    raise InvalidArgument(
                        f"input '{tensor.name}': unexpected 'contents' when the input is in shared memory region "
                        f"'{params[0]}'"
                    )
                raw.append(self.read(*params))
                _strip(tensor)
            elif has_contents:
                if len(given):
                    raise InvalidArgument(
                        f"input '{tensor.name}': contents must not be specified when using raw_input_contents"
                    )
                raw.append(_contents_to_raw(tensor))
                tensor.ClearField("contents")
            elif index < len(given):
                raw.append(given[index])
                index += 1
            else:
                raise InvalidArgument(f"unable to find data for input '{tensor.name}' in the request")
        if index != len(given):
            raise InvalidArgument(
                f"request has {len(given)} raw_input_contents for {index} inputs not in shared memory; send one "
                "raw entry per such input, in order"
            )
        del request.raw_input_contents[:]
        request.raw_input_contents.extend(raw)

    def place(self, reply: pb.ModelInferResponse, placement: Placement) -> None:
        """Write the outputs bound for regions into them; each keeps name, datatype and shape in the reply and an
        empty raw entry (Triton's reply)."""
        if not placement.outputs:
            return
        if len(reply.raw_output_contents) != len(reply.outputs):
            if len(reply.raw_output_contents):
                raise InferenceError(
                    f"the reply has {len(reply.outputs)} outputs but {len(reply.raw_output_contents)} raw contents"
                )
            # Typed contents: serialize every output raw, so the raw entries line up with the outputs.
            arrays = output_arrays(reply)
            del reply.raw_output_contents[:]
            for tensor in reply.outputs:
                reply.raw_output_contents.append(raw_bytes(arrays[tensor.name], tensor.datatype))
                tensor.ClearField("contents")
        positions = {tensor.name: i for i, tensor in enumerate(reply.outputs)}
        with self._lock:
            for output, region, offset, byte_size in placement.outputs:
                i = positions.get(output)
                if i is None:
                    continue
                data = reply.raw_output_contents[i]
                if len(data) > byte_size:
                    raise InvalidArgument(
                        f"output '{output}': shared memory region '{region.name}' was given "
                        f"{byte_size} bytes (shared_memory_byte_size) for it, it needs at least {len(data)}"
                    )
                region.write(offset, data)
                reply.raw_output_contents[i] = b""

    def close(self) -> None:
        self.unregister("")


def regions_json(statuses: Iterable[RegionStatus]) -> list[dict[str, Any]]:
    """Triton's HTTP JSON for /v2/systemsharedmemory/status."""
    return [{"name": s.name, "key": s.key, "offset": s.offset, "byte_size": s.byte_size} for s in statuses]


class SharedMemoryRPCs:
    """The shared-memory RPCs of inference.GRPCInferenceService: a provider for add_inference_service."""

    def __init__(self, shm: SystemSharedMemory) -> None:
        self._shm = shm

    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: Any
    ) -> pb.SystemSharedMemoryStatusResponse:
        reply = pb.SystemSharedMemoryStatusResponse()
        for s in self._shm.status(request.name):
            reply.regions[s.name].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(
                    name=s.name, key=s.key, offset=s.offset, byte_size=s.byte_size
                )
            )
        return reply

    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: Any
    ) -> pb.SystemSharedMemoryRegisterResponse:
        self._shm.register(request.name, request.key, request.offset, request.byte_size)
        return pb.SystemSharedMemoryRegisterResponse()

    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: Any
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self._shm.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    # As a CPU build of Triton answers: no CUDA region can exist, so registering one is refused, and the status and
    # unregistering of none succeed (perf_analyzer's clean-up unregisters CUDA regions too, and reports a failure).
    async def CudaSharedMemoryStatus(
        self, request: pb.CudaSharedMemoryStatusRequest, context: Any
    ) -> pb.CudaSharedMemoryStatusResponse:
        cuda_status(request.name)
        return pb.CudaSharedMemoryStatusResponse()

    async def CudaSharedMemoryRegister(
        self, request: pb.CudaSharedMemoryRegisterRequest, context: Any
    ) -> pb.CudaSharedMemoryRegisterResponse:
        raise Unimplemented(CUDA_UNIMPLEMENTED)

    async def CudaSharedMemoryUnregister(
        self, request: pb.CudaSharedMemoryUnregisterRequest, context: Any
    ) -> pb.CudaSharedMemoryUnregisterResponse:
        return pb.CudaSharedMemoryUnregisterResponse()


def cuda_status(name: str) -> list[dict[str, Any]]:
    """The CUDA regions named (none can be registered here): [] for all, RegionNotFound for a name."""
    if name:
        raise RegionNotFound(f"no CUDA shared memory region '{name}': {CUDA_UNIMPLEMENTED}")
    return []
