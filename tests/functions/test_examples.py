from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from edgeinfer.functions.config import Faults, load_config, load_faults
from edgeinfer.functions.examples import CANARIES, write_canary
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


# -- canary versions of fraud (write_canary, `edgeinfer examples --canary`) ---------------------------------


def copy_examples(model_repo: Path, root: Path) -> Path:
    """The session's examples copied (write_examples then skips them: no retraining, no ranker rebuild)."""
    shutil.copytree(model_repo, root)
    return root


def signature(model_file: Path) -> tuple[list[tuple[str, str, list[object]]], list[tuple[str, str, list[object]]]]:
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    return (
        [(i.name, i.type, list(i.shape)) for i in session.get_inputs()],
        [(o.name, o.type, list(o.shape)) for o in session.get_outputs()],
    )


def run_fraud(model_file: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"features": x})[0]
    return result


@pytest.mark.parametrize("kind", list(CANARIES))
def test_each_canary_writes_a_version_onnx_runtime_loads(model_repo: Path, tmp_path: Path, kind: str) -> None:
    root = copy_examples(model_repo, tmp_path / "models")
    directory = write_canary(root, kind)
    assert directory == root / "fraud" / "2"
    baseline = root / "fraud" / "1" / "model.onnx"
    inputs, outputs = signature(directory / "model.onnx")
    v1_inputs, v1_outputs = signature(baseline)
    assert outputs == v1_outputs == [("probabilities", "tensor(float)", [None, 2])]
    if kind == "incompatible":
        assert inputs == [("features", "tensor(float)", [None, 31])] != v1_inputs
    else:
        assert inputs == v1_inputs
    same_bytes = (directory / "model.onnx").read_bytes() == baseline.read_bytes()
    assert same_bytes == (kind in ("good", "slow", "errors"))
    expected = {"slow": Faults(delay_ms=200.0), "errors": Faults(error_rate=0.2)}.get(kind)
    assert load_faults(directory / "faults.yaml") == expected
    # The repository serves it as fraud's latest version, beside version 1.
    (entry,) = [e for e in scan(root) if e.name == "fraud"]
    assert list(entry.versions) == ["1", "2"]


def test_the_wrong_canary_flips_probabilities_exactly(model_repo: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    root = copy_examples(model_repo, tmp_path / "models")
    directory = write_canary(root, "wrong", "5")
    x = load_breast_cancer().data.astype(np.float32)
    right = run_fraud(root / "fraud" / "1" / "model.onnx", x)
    wrong = run_fraud(directory / "model.onnx", x)
    np.testing.assert_array_equal(wrong, right[:, ::-1])
    # Healthy to look at (a distribution per row), wrong in every decision.
    np.testing.assert_allclose(wrong.sum(axis=1), 1.0, rtol=1e-5)
    decided = right[:, 0] != right[:, 1]
    assert decided.all() and (wrong.argmax(axis=1) != right.argmax(axis=1)).all()


def test_the_incompatible_canary_takes_31_features(model_repo: Path, tmp_path: Path) -> None:
    root = copy_examples(model_repo, tmp_path / "models")
    directory = write_canary(root, "incompatible")
    x = np.random.default_rng(1).random((4, 30)).astype(np.float32) * 100
    wide = np.hstack([x, np.ones((4, 1), np.float32)])
    np.testing.assert_array_equal(run_fraud(directory / "model.onnx", wide), run_fraud(root / "fraud/1/model.onnx", x))
    session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="features"):
        session.run(None, {"features": x})  # version 1's inputs do not fit


def test_rewriting_a_canary_replaces_its_faults(model_repo: Path, tmp_path: Path) -> None:
    root = copy_examples(model_repo, tmp_path / "models")
    directory = write_canary(root, "slow")
    assert (directory / "faults.yaml").exists()
    assert write_canary(root, "good") == directory
    assert not (directory / "faults.yaml").exists()
    write_canary(root, "errors")
    assert load_faults(directory / "faults.yaml") == Faults(error_rate=0.2)


def test_write_canary_writes_fraud_first_when_missing(tmp_path: Path) -> None:
    directory = write_canary(tmp_path, "good", "3")
    assert (tmp_path / "fraud" / "1" / "model.onnx").read_bytes() == (directory / "model.onnx").read_bytes()
    assert (tmp_path / "fraud" / "config.yaml").exists()
    assert not (tmp_path / "ranker").exists()  # only what the canary needs


@pytest.mark.parametrize(
    ("kind", "version", "message"),
    [
        ("bad", "2", "unknown canary kind 'bad'; choose one of: good, slow, errors, wrong, incompatible"),
        ("good", "1", "canary version '1' must be a whole number above 1"),
        ("good", "v2", "canary version 'v2' must be a whole number above 1"),
        ("good", "../2", "canary version '../2' must be a whole number above 1"),
    ],
)
def test_write_canary_refuses_bad_input_and_writes_nothing(
    tmp_path: Path, kind: str, version: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        write_canary(tmp_path / "models", kind, version)
    assert not (tmp_path / "models").exists()


def test_examples_command_writes_a_canary(model_repo: Path, tmp_path: Path) -> None:
    root = copy_examples(model_repo, tmp_path / "models")
    done = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "examples", str(root), "--canary", "slow", "--canary-version", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {root / 'fraud' / '3'} (canary 'slow'" in done.stdout
    assert load_faults(root / "fraud" / "3" / "faults.yaml") == Faults(delay_ms=200.0)
    assert {e.name: list(e.versions) for e in scan(root)} == {"fraud": ["1", "3"], "ranker": ["1"]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--canary", "good", "--canary-version", "1"], "canary version '1' must be a whole number above 1"),
        (["--canary-version", "2"], "--canary-version needs --canary KIND"),
    ],
)
def test_examples_command_refuses_a_bad_canary_and_writes_nothing(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    root = tmp_path / "models"
    done = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "examples", str(root), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert not root.exists()
