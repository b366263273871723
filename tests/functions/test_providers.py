"""The provider chain: TensorRT → CUDA → CPU, taking what this ONNX Runtime build has; CPU is the last resort."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from testkit.procs import start_function

from edgeinfer.functions.config import ModelConfig
from edgeinfer.functions.runtime import OnnxModel, provider_chain, trt_profiles
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request


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
    """The options TensorRT then gets: caches off, the rest kept (the behaviour test below runs the whole path)."""
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


# -- the engine cache through a real function ---------------------------------------------------------

# A stand-in for a TensorRT build of ONNX Runtime, loaded by the function's interpreter (sitecustomize): it
# reports TensorrtExecutionProvider available, so the function takes its TensorRT path (the engine-cache check
# included); ONNX Runtime itself drops a provider it lacks, so the session runs on CPU.
FAKE_TENSORRT = """
import onnxruntime

_available = onnxruntime.get_available_providers
onnxruntime.get_available_providers = lambda: ["TensorrtExecutionProvider", *_available()]
"""


def _mount_full_tmpfs(where: Path) -> None:
    """A 64 KiB tmpfs at `where`, filled: its next write fails with ENOSPC. Skips where mounting is not allowed."""
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    with contextlib.suppress(OSError), (where / "filler").open("wb", buffering=0) as filler:
        while True:
            filler.write(b"\0" * 4096)
    with pytest.raises(OSError):
        (where / "probe").write_bytes(b"x" * 4096)


@pytest.mark.parametrize(
    ("case", "reason"),
    [("not-a-directory", "Not a directory"), ("full-disk", "No space left on device"), ("writable", None)],
)
def test_a_function_whose_engine_cache_cannot_be_written_serves_and_says_why(
    case: str, reason: str | None, model_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    shutil.copytree(model_repo / "fraud", repo / "fraud")
    full = tmp_path / "full"
    try:
        if case == "not-a-directory":
            blocker = tmp_path / "a-file"
            blocker.write_text("not a directory")
            cache_dir = blocker / "engines"
        elif case == "full-disk":
            _mount_full_tmpfs(full)
            cache_dir = full / "engines"
        else:
            cache_dir = tmp_path / "engines"
        config = repo / "fraud" / "config.yaml"
        config.write_text(
            config.read_text() + f"execution_providers: [tensorrt, cpu]\ntensorrt:\n  engine_cache_dir: {cache_dir}\n"
        )
        env: dict[str, str] = {}
        if "TensorrtExecutionProvider" not in ort.get_available_providers():
            fake = tmp_path / "fake-tensorrt"
            fake.mkdir()
            (fake / "sitecustomize.py").write_text(FAKE_TENSORRT)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(fake), os.environ.get("PYTHONPATH", "")) if p)
        proc, address = start_function(repo, tmp_path, env=env)
        try:
            request = build_request("fraud", {"features": np.ones((1, 30), dtype=np.float32)})
            with grpc.insecure_channel(address) as channel:
                reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
            probabilities = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).reshape(1, 2)
            assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        finally:
            assert proc.stop() == 0
        log = proc.output()
        warning = f"model fraud: TensorRT engine cache {cache_dir} is not writable"
        if reason is None:
            assert warning not in log, log
            assert cache_dir.is_dir() and not list(cache_dir.glob(".write-test-*"))  # probed, and cleaned up
        else:
            assert f"{warning} ({reason}); building engines without the cache" in log, log
            assert "free space or fix tensorrt.engine_cache_dir" in log, log
    finally:
        if os.path.ismount(full):
            subprocess.run(["umount", str(full)], check=False)
