from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml

from edgeinfer.functions.config import load_config
from edgeinfer.functions.repository import scan


def test_fraud_is_a_real_trained_classifier(model_repo: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    session = ort.InferenceSession(str(model_repo / "fraud" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("features", [None, 30])]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    probabilities = session.run(None, {"features": data.data.astype(np.float32)})[0]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == data.target))
    assert accuracy > 0.95  # training accuracy of a scaled logistic regression on this set is ~0.98


def test_ranker_shapes(model_repo: Path) -> None:
    session = ort.InferenceSession(str(model_repo / "ranker" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"embedding": np.ones((3, 512), np.float32)})[0]
    assert scores.shape == (3, 1000) and np.isfinite(scores).all()


def test_examples_command_writes_a_servable_repository(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "examples", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    entries = {e.name: e for e in scan(tmp_path)}
    assert set(entries) == {"fraud", "ranker"}
    for name, entry in entries.items():
        assert entry.latest == "1"
        raw = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
        assert load_config(tmp_path / name / "config.yaml").max_batch_size == raw["max_batch_size"] == 64
    again = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "examples", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert "already exists" in again.stdout
