"""Triton's ModelConfig of a model, derived from config.yaml and the ONNX graph.

Field meanings follow Triton's model_config.proto and what its onnxruntime backend auto-completes: dims leave
out the batch dimension when max_batch_size > 0 (-1 is a variable size), one instance group named after the
model, every version served (version_policy `all`), TensorRT as a GPU execution accelerator when it is in the
provider chain. `model_config_from_files` needs no ONNX Runtime (the gateway answers for a model scaled to zero).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgeinfer.functions.config import ModelConfig, Platform
from edgeinfer.functions.metadata import PLATFORMS, graph_specs
from edgeinfer.functions.repository import PLATFORM_FILES, ModelEntry
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.tensors import TensorSpec

BACKEND = "onnxruntime"
# Triton's backend names, by runtime.
BACKENDS: dict[Platform, str] = {"onnxruntime": BACKEND, "pytorch": "pytorch"}
LABELS_FILE = "labels.txt"

# Open Inference datatypes -> Triton's TYPE_*; BYTES is TYPE_STRING in a model config.
DATA_TYPES: dict[str, pb.DataType] = {
    "BOOL": pb.TYPE_BOOL,
    "UINT8": pb.TYPE_UINT8,
    "UINT16": pb.TYPE_UINT16,
    "UINT32": pb.TYPE_UINT32,
    "UINT64": pb.TYPE_UINT64,
    "INT8": pb.TYPE_INT8,
    "INT16": pb.TYPE_INT16,
    "INT32": pb.TYPE_INT32,
    "INT64": pb.TYPE_INT64,
    "FP16": pb.TYPE_FP16,
    "FP32": pb.TYPE_FP32,
    "FP64": pb.TYPE_FP64,
    "BYTES": pb.TYPE_STRING,
    "BF16": pb.TYPE_BF16,
}

# ONNX Runtime provider names (a loaded session's) that run on a GPU.
_GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}


def _dims(spec: TensorSpec, batching: bool) -> list[int]:
    shape = spec.shape[1:] if batching and spec.shape else spec.shape
    return [d if d >= 0 else -1 for d in shape]


def _kind(config: ModelConfig, provider: str, platform: Platform = "onnxruntime") -> pb.ModelInstanceGroup.Kind:
    if platform == "pytorch":  # the device is config.yaml's, never a fallback
        return pb.ModelInstanceGroup.KIND_GPU if config.device == "cuda" else pb.ModelInstanceGroup.KIND_CPU
    if provider:
        return pb.ModelInstanceGroup.KIND_GPU if provider in _GPU_PROVIDERS else pb.ModelInstanceGroup.KIND_CPU
    # From the files alone the host is unknown: a chain with a GPU provider runs on a GPU when there is one,
    # which is Triton's KIND_AUTO.
    if any(p in ("tensorrt", "cuda") for p in config.execution_providers):
        return pb.ModelInstanceGroup.KIND_AUTO
    return pb.ModelInstanceGroup.KIND_CPU


def _uses_tensorrt(config: ModelConfig, provider: str, platform: Platform = "onnxruntime") -> bool:
    if platform == "pytorch":
        return False
    if provider:
        return provider == "TensorrtExecutionProvider"
    return "tensorrt" in config.execution_providers


def build_model_config(
    name: str,
    inputs: Iterable[TensorSpec],
    outputs: Iterable[TensorSpec],
    config: ModelConfig,
    *,
    provider: str = "",
    labels: bool = False,
    versions: Sequence[str] = (),
    platform: Platform | None = None,
    model_file: str = "",
) -> pb.ModelConfig:
    """Triton's ModelConfig. `provider`: the ONNX Runtime provider a loaded session runs on ("" from files);
    `labels`: the model directory has labels.txt (named as each numeric output's label_filename);
    `versions`: unused by the message (version_policy is `all`), accepted so callers can pass what they have;
    `platform`: the runtime (None: config.yaml's, else onnxruntime); `model_file`: the version's file name (a
    PyTorch model's default_model_filename: model.pt2 or model.pt)."""
    del versions  # every version is served: version_policy all
    platform = platform or config.platform or "onnxruntime"
    batching = config.max_batch_size > 0
    model = pb.ModelConfig(
        name=name,
        platform=PLATFORMS[platform],
        backend=BACKENDS[platform],
        max_batch_size=config.max_batch_size,
        default_model_filename=model_file or PLATFORM_FILES[platform][0],
    )
    model.version_policy.all.SetInParent()
    for spec in inputs:
        dims = _dims(spec, batching)
        model.input.append(pb.ModelInput(name=spec.name, data_type=DATA_TYPES[spec.datatype], dims=dims))
    for spec in outputs:
        output = pb.ModelOutput(name=spec.name, data_type=DATA_TYPES[spec.datatype], dims=_dims(spec, batching))
        if labels and spec.datatype != "BYTES":
            output.label_filename = LABELS_FILE
        model.output.append(output)
    if batching and config.dynamic_batching.enabled:
        model.dynamic_batching.max_queue_delay_microseconds = config.dynamic_batching.max_queue_delay_microseconds
        model.dynamic_batching.default_queue_policy.max_queue_size = config.dynamic_batching.max_queue_size
    model.instance_group.append(
        pb.ModelInstanceGroup(name=name, kind=_kind(config, provider, platform), count=config.instance_count)
    )
    model.response_cache.enable = config.cache.enabled
    if platform == "pytorch":
        # Triton's PyTorch backend parameter: runs under torch.inference_mode(), as edgeinfer always does.
        model.parameters["INFERENCE_MODE"].string_value = "true"
        if config.intra_op_threads:
            model.parameters["INTRA_OP_THREAD_COUNT"].string_value = str(config.intra_op_threads)
        if config.device == "cuda":  # inputs and outputs staged in pinned host memory
            model.optimization.input_pinned_memory.enable = True
            model.optimization.output_pinned_memory.enable = True
    if _uses_tensorrt(config, provider, platform):
        trt = config.tensorrt
        accelerator = model.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        # The parameter names of Triton's onnxruntime backend.
        accelerator.parameters["precision_mode"] = "FP16" if trt.fp16 else "FP32"
        accelerator.parameters["max_workspace_size_bytes"] = str(trt.max_workspace_bytes)
        accelerator.parameters["trt_engine_cache_enable"] = "true"
        accelerator.parameters["trt_engine_cache_path"] = trt.engine_cache_dir
    return model


def has_labels(model_dir: Path) -> bool:
    return (model_dir / LABELS_FILE).is_file()


def model_config_from_files(entry: ModelEntry) -> pb.ModelConfig:
    """The ModelConfig of the latest version, from its ONNX graph and config.yaml, without ONNX Runtime."""
    path = entry.versions[entry.latest]
    inputs, outputs = graph_specs(path, entry.config)
    return build_model_config(
        entry.name,
        inputs,
        outputs,
        entry.config,
        labels=has_labels(path.parent.parent),
        versions=list(entry.versions),
        platform=entry.platform(entry.latest),
        model_file=path.name,
    )


# -- a load's `config` parameter: Triton's ModelConfig as JSON, over config.yaml ---------------------------


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model to serve: Triton's version_policy (all, latest N, specific)."""

    kind: str = "all"
    num_versions: int = 1
    versions: tuple[str, ...] = ()

    def select(self, labels: Sequence[str]) -> list[str]:
        """The labels to serve, lowest first, from the repository's (lowest first)."""
        if self.kind == "latest":
            return list(labels[-self.num_versions :])
        if self.kind == "specific":
            return [label for label in labels if label in self.versions]
        return list(labels)


@dataclass(frozen=True)
class Override:
    """A load's config, mapped onto ours: the model config, the version policy, and the inputs and outputs the
    caller declared (checked against the ONNX graph once it is loaded)."""

    config: ModelConfig
    policy: VersionPolicy = VersionPolicy()
    inputs: tuple[dict[str, Any], ...] = ()
    outputs: tuple[dict[str, Any], ...] = ()


_TOP_LEVEL = {
    "name",
    "platform",
    "backend",
    "max_batch_size",
    "input",
    "output",
    "dynamic_batching",
    "instance_group",
    "response_cache",
    "version_policy",
    "optimization",
    "default_model_filename",
    "parameters",
    "model_transaction_policy",
    "runtime",
}
# ONNX Runtime backend parameters (Triton's names) we can honour, and our field for each.
_PARAMETERS = {"intra_op_thread_count": "intra_op_threads"}
# The PyTorch backend's (Triton's names); INFERENCE_MODE is accepted when true.
_TORCH_PARAMETERS = {"INTRA_OP_THREAD_COUNT": "intra_op_threads"}


def _fail(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"load config: field '{field}' {why}")


def _mapping(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, "must be a JSON object")
    return value


def _integer(value: object, field: str, *, minimum: int = 0) -> int:
    # Protobuf's JSON writes 64-bit integers as strings.
    if isinstance(value, bool):
        raise _fail(field, "must be an integer")
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int):
        raise _fail(field, "must be an integer")
    if value < minimum:
        raise _fail(field, f"must be at least {minimum}, got {value}")
    return value


def _boolean(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, "must be true or false")
    return value


def _only(block: dict[str, Any], allowed: set[str], field: str) -> None:
    for key in block:
        if key not in allowed:
            raise _fail(f"{field}.{key}" if field else key, "is not supported by edgeinfer (it cannot honour it)")


def parse_override(text: str, name: str, base: ModelConfig, platform: Platform = "onnxruntime") -> Override:
    """Triton's ModelConfig JSON (a load's `config` parameter) over `base` (the model's config.yaml): the
    fields it gives replace ours; one we cannot honour is InvalidArgument naming it. `platform`: the runtime of
    the files being loaded (their platform and backend names are the ones accepted)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"load config: not valid JSON: {exc}") from None
    data = _mapping(data, "config")
    # A field at its default is as good as absent (a config written out by a Triton client has them all).
    _only(data, _TOP_LEVEL, "")
    fields: dict[str, Any] = base.model_dump(by_alias=True)
    if data.get("name", name) not in ("", name):
        raise _fail("name", f"is '{data['name']}' but the model being loaded is '{name}'")
    triton_platform, backend, files = PLATFORMS[platform], BACKENDS[platform], PLATFORM_FILES[platform]
    if data.get("platform", triton_platform) not in ("", triton_platform):
        what = "ONNX" if platform == "onnxruntime" else "PyTorch"
        raise _fail(
            "platform",
            f"must be '{triton_platform}' (the files are a {what} model), got '{data['platform']}'",
        )
    if data.get("backend", backend) not in ("", backend):
        raise _fail("backend", f"must be '{backend}', got '{data['backend']}'")
    if data.get("runtime", "") != "":
        raise _fail("runtime", "is not supported by edgeinfer (it cannot honour it)")
    if data.get("default_model_filename", files[0]) not in ("", *files):
        raise _fail("default_model_filename", f"must be {' or '.join(repr(f) for f in files)}")
    if "max_batch_size" in data:
        fields["max_batch_size"] = _integer(data["max_batch_size"], "max_batch_size")
    if "dynamic_batching" in data:
        fields["dynamic_batching"] = _dynamic_batching(_mapping(data["dynamic_batching"], "dynamic_batching"))
    if "instance_group" in data:
        _instance_group(data["instance_group"], fields, platform)
    if "response_cache" in data:
        cache = _mapping(data["response_cache"], "response_cache")
        _only(cache, {"enable"}, "response_cache")
        fields["cache"] = {**fields["cache"], "enabled": _boolean(cache.get("enable", False), "response_cache.enable")}
    if "optimization" in data:
        _optimization(_mapping(data["optimization"], "optimization"), fields, platform)
    if "parameters" in data:
        for key, value in _mapping(data["parameters"], "parameters").items():
            ours = (_PARAMETERS if platform == "onnxruntime" else _TORCH_PARAMETERS).get(key)
            if platform == "pytorch" and key == "INFERENCE_MODE":
                raw = _mapping(value, f"parameters.{key}").get("string_value", "")
                if str(raw).lower() != "true":
                    raise _fail(f"parameters.{key}", "must be true: edgeinfer runs every model in inference mode")
                continue
            if ours is None:
                raise _fail(f"parameters.{key}", "is not supported by edgeinfer (it cannot honour it)")
            raw = _mapping(value, f"parameters.{key}").get("string_value", "")
            fields[ours] = _integer(raw, f"parameters.{key}.string_value")
    if "model_transaction_policy" in data:
        policy = _mapping(data["model_transaction_policy"], "model_transaction_policy")
        _only(policy, {"decoupled"}, "model_transaction_policy")
        if _boolean(policy.get("decoupled", False), "model_transaction_policy.decoupled"):
            raise _fail("model_transaction_policy.decoupled", "cannot be true: edgeinfer models are not decoupled")
    try:
        config = ModelConfig.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidArgument(f"load config: {problems}") from None
    return Override(
        config,
        _version_policy(data.get("version_policy")),
        _tensors(data.get("input", []), "input"),
        _tensors(data.get("output", []), "output"),
    )


def _dynamic_batching(block: dict[str, Any]) -> dict[str, Any]:
    _only(
        block,
        {"max_queue_delay_microseconds", "default_queue_policy", "preferred_batch_size", "preserve_ordering"},
        "dynamic_batching",
    )
    if block.get("preferred_batch_size"):
        raise _fail("dynamic_batching.preferred_batch_size", "is not supported by edgeinfer (it cannot honour it)")
    # preserve_ordering: each request gets its own rows back, so order is always preserved; either value holds.
    _boolean(block.get("preserve_ordering", False), "dynamic_batching.preserve_ordering")
    batching: dict[str, Any] = {"enabled": True}
    if "max_queue_delay_microseconds" in block:
        delay = _integer(block["max_queue_delay_microseconds"], "dynamic_batching.max_queue_delay_microseconds")
        batching["max_queue_delay_microseconds"] = delay
    if "default_queue_policy" in block:
        field = "dynamic_batching.default_queue_policy"
        policy = _mapping(block["default_queue_policy"], field)
        _only(policy, {"max_queue_size", "timeout_action", "default_timeout_microseconds"}, field)
        if policy.get("timeout_action", "REJECT") not in ("REJECT", 0):
            raise _fail(f"{field}.timeout_action", "must be REJECT (a request past its deadline is refused)")
        if _integer(policy.get("default_timeout_microseconds", 0), f"{field}.default_timeout_microseconds"):
            raise _fail(f"{field}.default_timeout_microseconds", "is not supported (use the model's timeout_ms)")
        size = _integer(policy.get("max_queue_size", 0), f"{field}.max_queue_size")
        if size:  # Triton's 0 is unbounded; our queue is always bounded, so 0 keeps the configured bound
            batching["max_queue_size"] = size
    return batching


_KINDS = {"KIND_AUTO": 0, "KIND_GPU": 1, "KIND_CPU": 2}


def _instance_group(value: object, fields: dict[str, Any], platform: Platform = "onnxruntime") -> None:
    if not isinstance(value, list):
        raise _fail("instance_group", "must be a list")
    if len(value) > 1:
        raise _fail("instance_group", f"has {len(value)} groups; edgeinfer serves one group per model")
    if not value:
        return
    group = _mapping(value[0], "instance_group[0]")
    _only(group, {"name", "kind", "count", "gpus"}, "instance_group[0]")
    if group.get("gpus"):
        raise _fail("instance_group[0].gpus", "is not supported by edgeinfer (it cannot honour it)")
    if "count" in group:
        fields["instance_count"] = _integer(group["count"], "instance_group[0].count", minimum=1)
    kind = group.get("kind", "KIND_AUTO")
    # Protobuf's JSON gives an enum by name, or by number.
    number = _KINDS.get(kind) if isinstance(kind, str) else kind
    if number not in _KINDS.values() or isinstance(number, bool):
        raise _fail("instance_group[0].kind", f"must be KIND_AUTO, KIND_GPU or KIND_CPU, got {kind!r}")
    if platform == "pytorch":
        # A PyTorch model's device is explicit: KIND_CPU is cpu, KIND_GPU is cuda, KIND_AUTO keeps config.yaml's.
        if number == _KINDS["KIND_CPU"]:
            fields.update(device="cpu", cuda_graphs=False, cuda_graph_batch_sizes=())
        elif number == _KINDS["KIND_GPU"]:
            fields["device"] = "cuda"
        return
    if number == _KINDS["KIND_CPU"]:
        fields["execution_providers"] = ("cpu",)
    elif number == _KINDS["KIND_GPU"]:
        gpu = tuple(p for p in fields["execution_providers"] if p != "cpu")
        fields["execution_providers"] = (*(gpu or ("cuda",)), "cpu")


def _optimization(block: dict[str, Any], fields: dict[str, Any], platform: Platform = "onnxruntime") -> None:
    if platform == "pytorch":
        # What a PyTorch model's config answers with: pinned host memory is how a CUDA model is fed, so a config
        # written back may keep it on; it cannot be turned off.
        _only(block, {"input_pinned_memory", "output_pinned_memory"}, "optimization")
        for key, pinned in block.items():
            enable = _mapping(pinned, f"optimization.{key}")
            _only(enable, {"enable"}, f"optimization.{key}")
            if not _boolean(enable.get("enable", True), f"optimization.{key}.enable"):
                raise _fail(f"optimization.{key}.enable", "cannot be false: a CUDA model is fed through pinned memory")
        return
    _only(block, {"execution_accelerators"}, "optimization")
    field = "optimization.execution_accelerators"
    accelerators = _mapping(block.get("execution_accelerators", {}), field)
    _only(accelerators, {"gpu_execution_accelerator", "cpu_execution_accelerator"}, field)
    if accelerators.get("cpu_execution_accelerator"):
        raise _fail(f"{field}.cpu_execution_accelerator", "is not supported by edgeinfer (it cannot honour it)")
    listed = accelerators.get("gpu_execution_accelerator", [])
    if not isinstance(listed, list):
        raise _fail(f"{field}.gpu_execution_accelerator", "must be a list")
    chain: list[str] = []
    tensorrt = dict(fields["tensorrt"])
    for i, item in enumerate(listed):
        where = f"{field}.gpu_execution_accelerator[{i}]"
        accelerator = _mapping(item, where)
        _only(accelerator, {"name", "parameters"}, where)
        name = accelerator.get("name")
        parameters = _mapping(accelerator.get("parameters", {}), f"{where}.parameters")
        if name == "tensorrt":
            for key, raw in parameters.items():
                if key == "precision_mode":
                    if raw not in ("FP16", "FP32"):
                        raise _fail(f"{where}.parameters.precision_mode", f"must be FP16 or FP32, got {raw!r}")
                    tensorrt["fp16"] = raw == "FP16"
                elif key == "max_workspace_size_bytes":
                    tensorrt["max_workspace_bytes"] = _integer(raw, f"{where}.parameters.{key}")
                elif key == "trt_engine_cache_path":
                    tensorrt["engine_cache_dir"] = str(raw)
                elif key != "trt_engine_cache_enable":
                    raise _fail(f"{where}.parameters.{key}", "is not supported by edgeinfer (it cannot honour it)")
            chain.append("tensorrt")
        elif name == "cuda":
            if parameters:
                raise _fail(f"{where}.parameters", "are not supported for cuda by edgeinfer")
            chain.append("cuda")
        else:
            raise _fail(f"{where}.name", f"must be tensorrt or cuda, got {name!r}")
    if chain:
        # TensorRT falls back to CUDA, then CPU, as in Triton's onnxruntime backend.
        rest = [p for p in ("tensorrt", "cuda", "cpu") if p not in chain and p != "tensorrt"]
        fields["execution_providers"] = (*chain, *rest)
    fields["tensorrt"] = tensorrt


def _version_policy(value: object) -> VersionPolicy:
    if value is None:
        return VersionPolicy()
    block = _mapping(value, "version_policy")
    _only(block, {"all", "latest", "specific"}, "version_policy")
    if len(block) > 1:
        raise _fail("version_policy", "must give one of all, latest, specific")
    if "latest" in block:
        latest = _mapping(block["latest"], "version_policy.latest")
        _only(latest, {"num_versions"}, "version_policy.latest")
        count = _integer(latest.get("num_versions", 1), "version_policy.latest.num_versions", minimum=1)
        return VersionPolicy("latest", num_versions=count)
    if "specific" in block:
        specific = _mapping(block["specific"], "version_policy.specific")
        _only(specific, {"versions"}, "version_policy.specific")
        listed = specific.get("versions", [])
        if not isinstance(listed, list) or not listed:
            raise _fail("version_policy.specific.versions", "must be a non-empty list of versions")
        versions = tuple(str(_integer(v, "version_policy.specific.versions")) for v in listed)
        return VersionPolicy("specific", versions=versions)
    return VersionPolicy()


def _tensors(value: object, field: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise _fail(field, "must be a list")
    tensors = []
    for i, item in enumerate(value):
        tensor = _mapping(item, f"{field}[{i}]")
        _only(tensor, {"name", "data_type", "dims", "label_filename", "format"}, f"{field}[{i}]")
        if not isinstance(tensor.get("name"), str):
            raise _fail(f"{field}[{i}].name", "must be the tensor's name")
        tensors.append(tensor)
    return tuple(tensors)


def check_declared(override: Override, actual: pb.ModelConfig) -> None:
    """The inputs and outputs a load's config declares must be the model's: InvalidArgument naming a mismatch."""
    for field, declared, tensors in (
        ("input", override.inputs, actual.input),
        ("output", override.outputs, actual.output),
    ):
        by_name = {t.name: t for t in tensors}
        for i, tensor in enumerate(declared):
            where = f"{field}[{i}]"
            real = by_name.get(tensor["name"])
            if real is None:
                raise _fail(f"{where}.name", f"names '{tensor['name']}', which the model has no {field} called")
            real_type = pb.DataType.Name(real.data_type)
            if "data_type" in tensor and tensor["data_type"] != real_type:
                raise _fail(f"{where}.data_type", f"is {tensor['data_type']} but the model's is {real_type}")
            if "dims" in tensor:
                dims = tensor["dims"]
                if not isinstance(dims, list) or [_integer(d, f"{where}.dims", minimum=-1) for d in dims] != list(
                    real.dims
                ):
                    raise _fail(f"{where}.dims", f"is {dims} but the model's are {list(real.dims)}")
            if tensor.get("format", "FORMAT_NONE") not in ("FORMAT_NONE", 0):
                raise _fail(f"{where}.format", "is not supported by edgeinfer (it cannot honour it)")
