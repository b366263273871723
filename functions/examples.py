"""`edgeinfer examples DIR`: build the example model repository locally, nothing downloaded.

- fraud: a scikit-learn pipeline (scaler + logistic regression) trained on the
  bundled breast-cancer data and converted with skl2onnx,
  input `features` FP32 [-1, 30], output `probabilities` FP32 [-1, 2].
- ranker: an MLP 512 → 2048 → 2048 → 2048 → 1000 with seeded random weights,
  input `embedding` FP32 [-1, 512], output `scores` FP32 [-1, 1000].

`--pytorch` also writes both as PyTorch models from the same weights (torch.export programs, `model.pt2`):
`fraud-pt` (the scaler and logistic regression as torch ops, probabilities [p0, p1]) and `ranker-pt` (the seeded
MLP), with config.yaml's inputs and outputs; skipped, saying so, when torch is not installed (docs/pytorch.md).

`--canary KIND [--canary-version 2]` also writes a candidate version of fraud beside version 1, for rollouts and
their drills (`write_canary`): good, slow, errors, wrong, incompatible (CANARIES says what each is).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import itertools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

FRAUD_CONFIG = {
    "max_batch_size": 64,
    "dynamic_batching": {"enabled": True, "max_queue_delay_microseconds": 200, "max_queue_size": 2048},
    "intra_op_threads": 1,
    "cache": {"enabled": True, "ttl_seconds": 300},
}
RANKER_CONFIG = {
    "max_batch_size": 64,
    "dynamic_batching": {"enabled": True, "max_queue_delay_microseconds": 1000, "max_queue_size": 1024},
    "intra_op_threads": 1,
    "cache": {"enabled": True, "ttl_seconds": 60},
    "warmup": {"enabled": True, "batch_sizes": [1, 8, 64]},
}
# Big enough that one batch-1 inference takes over 2 ms on one CPU thread.
RANKER_LAYERS = (512, 2048, 2048, 2048, 1000)
CANARY_MODEL = "fraud"
# Candidate versions of fraud: kind -> what it is.
CANARIES = {
    "good": "the same model as version 1",
    "slow": "the same model; faults.yaml delays every request 200 ms",
    "errors": "the same model; faults.yaml fails 20 % of requests with INTERNAL",
    "wrong": "probabilities flipped ([p1, p0]); the same inputs and outputs as version 1",
    "incompatible": "input features FP32 [-1, 31]: inputs differ from version 1",
}
# faults.yaml of the kinds that have one (functions/config.py's Faults); seeded so a drill fails the same requests.
CANARY_FAULTS: dict[str, dict[str, float | int]] = {
    "slow": {"delay_ms": 200},
    "errors": {"error_rate": 0.2},
}
FRAUD_WIDTH = 30


def train_fraud() -> Any:
    """The fraud pipeline, trained on the bundled breast-cancer data (deterministic: lbfgs on fixed data)."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(data.data.astype(np.float32), data.target)
    return pipeline


def build_fraud() -> bytes:
    from onnx import checker
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    pipeline = train_fraud()
    onx = to_onnx(
        pipeline,
        initial_types=[("features", FloatTensorType([None, 30]))],
        options={id(pipeline[-1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    # Keep only `probabilities`; the converter also emits a `label` output.
    for output in list(onx.graph.output):
        if output.name != "probabilities":
            onx.graph.output.remove(output)
    onx.doc_string = "scikit-learn StandardScaler + LogisticRegression on the breast-cancer data set"
    checker.check_model(onx)
    return bytes(onx.SerializeToString())


def ranker_weights(seed: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ranker's seeded layers, (W [fan_in, fan_out], b) each: the ONNX and PyTorch rankers share them."""
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in itertools.pairwise(RANKER_LAYERS):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        layers.append((w, np.zeros(fan_out, dtype=np.float32)))
    return layers


def build_ranker(seed: int = 7) -> bytes:
    from onnx import helper, numpy_helper

    nodes, initializers = [], []
    current = "embedding"
    for i, (w, b) in enumerate(ranker_weights(seed)):
        initializers += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        last = i == len(RANKER_LAYERS) - 2
        out = "scores" if last else f"h{i}"
        gemm_out = out if last else f"g{i}"
        nodes.append(helper.make_node("Gemm", [current, f"W{i}", f"B{i}"], [gemm_out]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm_out], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "ranker",
        [helper.make_tensor_value_info("embedding", 1, ["batch", RANKER_LAYERS[0]])],
        [helper.make_tensor_value_info("scores", 1, ["batch", RANKER_LAYERS[-1]])],
        initializers,
    )
    return _serialize(graph, "MLP 512-2048-2048-2048-1000, seeded random weights")


def _serialize(graph: Any, doc: str) -> bytes:
    from onnx import checker, helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeinfer")
    model.ir_version = 8  # readable by every ONNX Runtime from 1.10 on
    model.doc_string = doc
    checker.check_model(model)
    return bytes(model.SerializeToString())


def flip_probabilities(model: bytes) -> bytes:
    """The fraud model with its `probabilities` columns swapped ([p1, p0]): a Gather on axis 1 with indices [1, 0]
    appended to the graph, so the inputs and outputs (names, types, shapes) are version 1's."""
    import onnx
    from onnx import checker, helper, numpy_helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    inner = "probabilities_unflipped"
    for node in graph.node:
        _rename(node.output, "probabilities", inner)
        _rename(node.input, "probabilities", inner)
    graph.initializer.append(numpy_helper.from_array(np.array([1, 0], dtype=np.int64), "flip_order"))
    graph.node.append(helper.make_node("Gather", [inner, "flip_order"], ["probabilities"], axis=1, name="flip"))
    proto.doc_string = "fraud with flipped probabilities ([p1, p0]): a wrong canary for rollout drills"
    checker.check_model(proto)
    return bytes(proto.SerializeToString())


def widen_features(model: bytes, width: int = FRAUD_WIDTH + 1) -> bytes:
    """The fraud model taking `features` [-1, width] (a Slice keeps the first 30): a candidate whose inputs differ
    from version 1's, which a rollout must refuse before sending it any traffic."""
    import onnx
    from onnx import checker, helper, numpy_helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    inner = "features_used"
    for node in graph.node:
        _rename(node.input, "features", inner)
    (features,) = [i for i in graph.input if i.name == "features"]
    features.type.tensor_type.shape.dim[1].dim_value = width
    for name, value in (("slice_starts", 0), ("slice_ends", FRAUD_WIDTH), ("slice_axes", 1)):
        graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.int64), name))
    cut = helper.make_node("Slice", ["features", "slice_starts", "slice_ends", "slice_axes"], [inner], name="cut")
    nodes = [cut, *graph.node]  # the graph must stay topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    proto.doc_string = f"fraud taking {width} features: an incompatible canary (inputs differ from version 1)"
    checker.check_model(proto)
    return bytes(proto.SerializeToString())


def _rename(names: Any, old: str, new: str) -> None:
    replaced = [new if n == old else n for n in names]
    del names[:]
    names.extend(replaced)


EXAMPLES = {"fraud": (build_fraud, FRAUD_CONFIG), "ranker": (build_ranker, RANKER_CONFIG)}

# -- the same models as PyTorch programs (`--pytorch`) -----------------------------------------------------------

PYTORCH_SUFFIX = "-pt"
PYTORCH_FILE = "model.pt2"
TORCH_MISSING = "torch is not installed (pip install 'edgeinfer[torch]')"


def _pytorch_config(
    base: dict[str, Any], inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]
) -> dict[str, Any]:
    return {**base, "platform": "pytorch", "device": "cpu", "inputs": inputs, "outputs": outputs}


FRAUD_PT_CONFIG = _pytorch_config(
    FRAUD_CONFIG,
    [{"name": "features", "datatype": "FP32", "dims": [FRAUD_WIDTH]}],
    [{"name": "probabilities", "datatype": "FP32", "dims": [2]}],
)
RANKER_PT_CONFIG = _pytorch_config(
    RANKER_CONFIG,
    [{"name": "embedding", "datatype": "FP32", "dims": [RANKER_LAYERS[0]]}],
    [{"name": "scores", "datatype": "FP32", "dims": [RANKER_LAYERS[-1]]}],
)


def _export(module: Any, example: Any) -> bytes:
    """A torch.export program of `module` (batch dimension dynamic), as model.pt2 bytes."""
    import torch

    program = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def build_fraud_pt() -> bytes:
    """fraud as torch ops from the same trained pipeline: (x - mean) * 1/scale (skl2onnx's Scaler), then the
    logistic regression's sigmoid, as probabilities [p0, p1]."""
    import torch

    pipeline = train_fraud()
    scaler, regression = pipeline[0], pipeline[-1]

    class Fraud(torch.nn.Module):
        mean: torch.Tensor
        inv_scale: torch.Tensor
        coef: torch.Tensor
        intercept: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(scaler.mean_, dtype=torch.float32))
            self.register_buffer("inv_scale", torch.tensor(1.0 / scaler.scale_, dtype=torch.float32))
            self.register_buffer("coef", torch.tensor(regression.coef_[0], dtype=torch.float32))
            self.register_buffer("intercept", torch.tensor(regression.intercept_[0], dtype=torch.float32))

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            scaled = (features - self.mean) * self.inv_scale
            p1 = torch.sigmoid(scaled @ self.coef + self.intercept)
            return torch.stack([1.0 - p1, p1], dim=1)

    return _export(Fraud(), torch.zeros(2, FRAUD_WIDTH))


def build_ranker_pt(seed: int = 7) -> bytes:
    """ranker as torch ops with the ONNX ranker's seeded weights: (x @ W + b), ReLU between the layers."""
    import torch

    class Ranker(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for i, (w, b) in enumerate(ranker_weights(seed)):
                self.register_buffer(f"w{i}", torch.from_numpy(w))
                self.register_buffer(f"b{i}", torch.from_numpy(b))
            self.depth = len(RANKER_LAYERS) - 1

        def forward(self, embedding: torch.Tensor) -> torch.Tensor:
            x = embedding
            for i in range(self.depth):
                x = x @ getattr(self, f"w{i}") + getattr(self, f"b{i}")
                if i < self.depth - 1:
                    x = torch.relu(x)
            return x

    return _export(Ranker(), torch.zeros(2, RANKER_LAYERS[0]))


PYTORCH_EXAMPLES = {
    f"fraud{PYTORCH_SUFFIX}": (build_fraud_pt, FRAUD_PT_CONFIG),
    f"ranker{PYTORCH_SUFFIX}": (build_ranker_pt, RANKER_PT_CONFIG),
}


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def write_pytorch_examples(root: Path, force: bool = False, only: tuple[str, ...] | None = None) -> list[Path]:
    """Write fraud-pt and ranker-pt (version 1, model.pt2) and their config.yaml; return the files written.
    Needs torch (check torch_installed() first)."""
    return _write_models(root, PYTORCH_EXAMPLES, PYTORCH_FILE, force, only)


def _write_atomic(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file


def _write_models(
    root: Path,
    models: dict[str, tuple[Callable[[], bytes], dict[str, Any]]],
    file_name: str,
    force: bool,
    only: tuple[str, ...] | None,
) -> list[Path]:
    """Each model's version 1 (`file_name`) and its config.yaml, unless already there; the model files written."""
    written = []
    for name, (build, config) in models.items():
        if only is not None and name not in only:
            continue
        model_file = root / name / "1" / file_name
        if model_file.exists() and not force:
            continue
        model_file.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(model_file, build())
        (root / name / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        written.append(model_file)
    return written


def write_examples(root: Path, force: bool = False, only: tuple[str, ...] | None = None) -> list[Path]:
    """Write each example model (version 1) and its config.yaml; return the model files written."""
    return _write_models(root, EXAMPLES, "model.onnx", force, only)


def check_canary(kind: str, version: str) -> None:
    """ValueError, saying what to use, for a kind or version label write_canary would refuse."""
    if kind not in CANARIES:
        raise ValueError(f"unknown canary kind {kind!r}; choose one of: {', '.join(CANARIES)}")
    if not re.fullmatch(r"[1-9][0-9]*", version) or version == "1":
        raise ValueError(
            f"canary version {version!r} must be a whole number above 1 (version 1 is the baseline it is compared with)"
        )


def write_canary(root: Path, kind: str, version: str = "2") -> Path:
    """Write `root/fraud/<version>`, a candidate of the given kind (CANARIES) beside version 1, which is written
    first if missing; replaces what that version held (a faults.yaml of another kind too). Returns its directory."""
    check_canary(kind, version)
    write_examples(root, only=(CANARY_MODEL,))
    baseline = (root / CANARY_MODEL / "1" / "model.onnx").read_bytes()
    if kind == "wrong":
        model = flip_probabilities(baseline)
    elif kind == "incompatible":
        model = widen_features(baseline)
    else:
        model = baseline  # the same bytes: only a faults.yaml (if any) tells them apart
    directory = root / CANARY_MODEL / version
    directory.mkdir(parents=True, exist_ok=True)
    faults_file = directory / "faults.yaml"
    faults = CANARY_FAULTS.get(kind)
    # The faults first: a function polling the repository never loads this model without them.
    if faults is not None:
        header = f"# edgeinfer canary '{kind}': {CANARIES[kind]} (a drill feature; docs/drills.md)\n"
        _write_atomic(faults_file, (header + yaml.safe_dump(faults, sort_keys=False)).encode())
    else:
        faults_file.unlink(missing_ok=True)
    _write_atomic(directory / "model.onnx", model)
    return directory


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="where to write the repository")
    parser.add_argument("--force", action="store_true", help="overwrite models that already exist")
    parser.add_argument(
        "--pytorch",
        action="store_true",
        help="also write fraud-pt and ranker-pt: the same models, from the same weights, as torch.export programs "
        "(model.pt2); skipped, saying so, without torch",
    )
    kinds = "; ".join(f"{kind}: {what}" for kind, what in CANARIES.items())
    parser.add_argument(
        "--canary",
        choices=list(CANARIES),
        help=f"also write a candidate version of fraud beside version 1, for rollout drills ({kinds})",
    )
    parser.add_argument(
        "--canary-version", default=None, metavar="V", help="the candidate's version label (default 2); needs --canary"
    )


def run(args: argparse.Namespace) -> int:
    root = Path(args.directory)
    if args.canary_version is not None and args.canary is None:
        print("edgeinfer examples: --canary-version needs --canary KIND", file=sys.stderr)
        return 1
    if args.canary is not None:
        try:  # before anything is written: bad input changes nothing
            check_canary(args.canary, args.canary_version or "2")
        except ValueError as exc:
            print(f"edgeinfer examples: {exc}", file=sys.stderr)
            return 1
    written = write_examples(root, force=args.force)
    if args.pytorch:
        if torch_installed():
            written += write_pytorch_examples(root, force=args.force)
        else:
            print(f"edgeinfer examples: skipped {', '.join(PYTORCH_EXAMPLES)}: {TORCH_MISSING}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    if not written and args.canary is None:
        print(f"{root}: every example model already exists (use --force to rebuild)")
    if args.canary is not None:
        directory = write_canary(root, args.canary, args.canary_version or "2")
        print(f"wrote {directory} (canary '{args.canary}': {CANARIES[args.canary]})")
    return 0
