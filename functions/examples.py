"""`edgeinfer examples DIR`: build the example model repository locally, nothing downloaded.

- fraud: a scikit-learn pipeline (scaler + logistic regression) trained on the
  bundled breast-cancer data and converted with skl2onnx,
  input `features` FP32 [-1, 30], output `probabilities` FP32 [-1, 2].
- ranker: an MLP 512 → 2048 → 2048 → 2048 → 1000 with seeded random weights,
  input `embedding` FP32 [-1, 512], output `scores` FP32 [-1, 1000].
"""

from __future__ import annotations

import argparse
import itertools
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


def build_fraud() -> bytes:
    from onnx import checker
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    pipeline.fit(data.data.astype(np.float32), data.target)
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


def build_ranker(seed: int = 7) -> bytes:
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, initializers = [], []
    current = "embedding"
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(RANKER_LAYERS)):
        w = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        b = np.zeros(fan_out, dtype=np.float32)
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


EXAMPLES = {"fraud": (build_fraud, FRAUD_CONFIG), "ranker": (build_ranker, RANKER_CONFIG)}


def write_examples(root: Path, force: bool = False) -> list[Path]:
    """Write each example model (version 1) and its config.yaml; return the model files written."""
    written = []
    for name, (build, config) in EXAMPLES.items():
        model_file = root / name / "1" / "model.onnx"
        if model_file.exists() and not force:
            continue
        model_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = model_file.with_suffix(".tmp")
        tmp.write_bytes(build())
        tmp.replace(model_file)  # atomic: a concurrent reader never sees half a model
        (root / name / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        written.append(model_file)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="where to write the repository")
    parser.add_argument("--force", action="store_true", help="overwrite models that already exist")


def run(args: argparse.Namespace) -> int:
    root = Path(args.directory)
    written = write_examples(root, force=args.force)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{root}: every example model already exists (use --force to rebuild)")
    return 0
