"""The provider chain: TensorRT → CUDA → CPU, taking what this ONNX Runtime build has; CPU is the last resort."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from edgeinfer.functions.config import ModelConfig
from edgeinfer.functions.runtime import OnnxModel, provider_chain, trt_profiles


def test_gpu_providers_fall_back_to_cpu_on_a_cpu_build(model_repo: Path, tmp_path: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA: the fallback is not exercised here")
    config = ModelConfig.model_validate(
        {
            "max_batch_size": 64,
            "execution_providers": ["tensorrt", "cuda"],
            "tensorrt": {"fp16": True, "engine_cache_dir": str(tmp_path / "engines")},
        }
    )
    path = model_repo / "ranker" / "1" / "model.onnx"
    assert [p for p, _ in provider_chain(config, path)] == ["CPUExecutionProvider"]
    model = OnnxModel.load("ranker", "1", path, config)
    assert model.provider == "CPUExecutionProvider"
    assert model.run(model.example_inputs(8))[0].shape == (8, 1000)


def test_tensorrt_profiles_cover_every_batch_size_with_one_engine(model_repo: Path) -> None:
    path = model_repo / "ranker" / "1" / "model.onnx"
    assert trt_profiles(path, 64) == {
        "trt_profile_min_shapes": "embedding:1x512",
        "trt_profile_opt_shapes": "embedding:8x512",
        "trt_profile_max_shapes": "embedding:64x512",
    }
    assert trt_profiles(path, 0) == {}  # no batch dimension: TensorRT profiles what it sees


def test_an_unwritable_engine_cache_keeps_tensorrt_without_its_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edgeinfer.functions.runtime import _usable_engine_cache

    chain = [
        (
            "TensorrtExecutionProvider",
            {"trt_engine_cache_enable": True, "trt_engine_cache_path": "x", "trt_fp16_enable": True},
        ),
        ("CPUExecutionProvider", {}),
    ]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with caplog.at_level("WARNING"):
        fixed = _usable_engine_cache(chain, str(blocker / "engines"), "ranker")
    assert fixed[0] == (
        "TensorrtExecutionProvider",
        {"trt_engine_cache_enable": False, "trt_timing_cache_enable": False, "trt_fp16_enable": True},
    )
    assert fixed[1] == ("CPUExecutionProvider", {})
    assert "not writable" in caplog.text and "engine_cache_dir" in caplog.text
    # A writable directory keeps the chain, caches on.
    assert _usable_engine_cache(chain, str(tmp_path / "engines"), "ranker") == chain
