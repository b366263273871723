"""A model's Open Inference metadata, from a loaded session or straight from its files.

The gateway's local pool reads it from the files so that a model scaled to
zero can be validated against without waking an instance.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from edgeinfer.functions.config import ModelConfig, Platform, load_config, platform_of
from edgeinfer.functions.repository import CONFIG_FILE, ModelEntry
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.tensors import TensorSpec

PLATFORM = "onnxruntime_onnx"
# Triton's platform names, by runtime (Triton's PyTorch backend reports pytorch_libtorch).
PLATFORMS: dict[Platform, str] = {"onnxruntime": PLATFORM, "pytorch": "pytorch_libtorch"}

# onnx.TensorProto element types.
_ONNX_ELEMENT_TYPES = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
}


def build_metadata(
    name: str,
    versions: Iterable[str],
    inputs: Iterable[TensorSpec],
    outputs: Iterable[TensorSpec],
    config: ModelConfig,
    *,
    provider: str = "",
    inline: bool = False,
    platform: Platform | None = None,
) -> pb.ModelMetadataResponse:
    """`platform`: the runtime serving the version (None: config.yaml's, else onnxruntime)."""
    platform = platform or config.platform or "onnxruntime"
    joins = config.max_batch_size > 0 and config.dynamic_batching.enabled
    metadata = pb.ModelMetadataResponse(
        name=name,
        versions=list(versions),
        platform=PLATFORMS[platform],
        inputs=[s.to_proto() for s in inputs],
        outputs=[s.to_proto() for s in outputs],
    )
    properties = {
        "max_batch_size": str(config.max_batch_size),
        "dynamic_batching": str(joins).lower(),
        "max_queue_delay_microseconds": str(config.dynamic_batching.max_queue_delay_microseconds),
        "cache_enabled": str(config.cache.enabled).lower(),
        "inline_compute": str(inline).lower(),
    }
    if provider:
        properties["execution_provider"] = provider
    if platform == "pytorch":
        properties["device"] = config.device
        properties["cuda_graphs"] = str(config.cuda_graphs).lower()
    for key, value in properties.items():
        metadata.properties[key].string_param = value
    metadata.properties["cache_ttl_seconds"].double_param = config.cache.ttl_seconds
    metadata.properties["timeout_ms"].int64_param = config.timeout_ms
    return metadata


def _specs(values: Iterable[object]) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type  # type: ignore[attr-defined]
        datatype = _ONNX_ELEMENT_TYPES.get(tensor.elem_type)
        if datatype is None:
            raise ValueError(f"tensor '{value.name}' has an element type edgeinfer does not serve")  # type: ignore[attr-defined]
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        specs.append(TensorSpec(value.name, datatype, shape))  # type: ignore[attr-defined]
    return specs


def declared_specs(config: ModelConfig) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """A PyTorch model's inputs and outputs as config.yaml declares them, with the batch dimension (-1) first
    when max_batch_size > 0."""
    batch = (-1,) if config.max_batch_size > 0 else ()
    return (
        [TensorSpec(t.name, t.datatype, (*batch, *t.dims)) for t in config.inputs],
        [TensorSpec(t.name, t.datatype, (*batch, *t.dims)) for t in config.outputs],
    )


def graph_specs(path: Path, config: ModelConfig | None = None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs (initializers left out) and outputs of an ONNX file, read without ONNX Runtime; of a PyTorch
    model file (model.pt2, model.pt), those its config.yaml declares (`config`, else read from the model's
    directory), read without torch."""
    if (config.resolved_platform(path) if config is not None else platform_of(path)) == "pytorch":
        return declared_specs(config if config is not None else load_config(path.parent.parent / CONFIG_FILE))
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    return _specs(i for i in graph.input if i.name not in initializers), _specs(graph.output)


def metadata_from_files(entry: ModelEntry) -> pb.ModelMetadataResponse:
    """Metadata of the latest version read from the ONNX graph (or, for PyTorch, config.yaml) and config.yaml,
    without ONNX Runtime or torch."""
    inputs, outputs = graph_specs(entry.versions[entry.latest], entry.config)
    return build_metadata(
        entry.name, entry.versions, inputs, outputs, entry.config, platform=entry.platform(entry.latest)
    )
