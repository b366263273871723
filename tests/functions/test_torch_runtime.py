"""The PyTorch runtime (functions/torch_runtime.py) on the CPU build of torch: the examples' .pt2 twins give the
ONNX models' outputs, directly and through a real function process; config validation; the CUDA path's bucket
logic and its clear error on a host without CUDA; torch stays out of an ONNX-only function."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
import yaml
from testkit.procs import Proc, free_port, start_function

from edgeinfer.functions import examples
from edgeinfer.functions.config import ConfigError, ModelConfig
from edgeinfer.functions.metadata import metadata_from_files
from edgeinfer.functions.metrics import FUNCTION_START_PHASE_SECONDS
from edgeinfer.functions.model_config import model_config_from_files, parse_override
from edgeinfer.functions.repository import RepositoryError, read_entry
from edgeinfer.functions.runtime import ModelLoadError, load_model
from edgeinfer.functions.torch_runtime import (
    CudaUnavailable,
    TorchModel,
    bucket_for,
    fill_padded,
    graph_buckets,
    slice_rows,
)
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import InvalidArgument

torch = pytest.importorskip("torch")

# Float32 on two runtimes: matmuls summed in another order (ranker: 2048-wide layers) differ in the last bits.
RTOL, ATOL = 1e-4, 1e-5
MODELS = {"fraud": ("features", 30, "probabilities"), "ranker": ("embedding", 512, "scores")}


@pytest.fixture(scope="module")
def torch_repo(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's ONNX examples beside fraud-pt and ranker-pt, written by `write_pytorch_examples`."""
    root = tmp_path_factory.mktemp("torch-models")
    for name in MODELS:
        shutil.copytree(model_repo / name, root / name)
    assert {p.name for p in examples.write_pytorch_examples(root)} == {"model.pt2"}
    return root


def inputs_for(model: str, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if model == "fraud":
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer().data.astype(np.float32)
        return data[rng.choice(len(data), batch, replace=False)]
    return rng.standard_normal((batch, MODELS[model][1])).astype(np.float32)


# -- the .pt2 twins equal the ONNX models ------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(MODELS))
def test_pt2_outputs_equal_the_onnx_ones(torch_repo: Path, model: str) -> None:
    onnx_entry, torch_entry = read_entry(torch_repo / model), read_entry(torch_repo / f"{model}-pt")
    assert torch_entry.platform("1") == "pytorch" and onnx_entry.platform("1") == "onnxruntime"
    reference = load_model(model, "1", onnx_entry.versions["1"], onnx_entry.config)
    candidate = load_model(f"{model}-pt", "1", torch_entry.versions["1"], torch_entry.config)
    assert isinstance(candidate, TorchModel) and candidate.provider == "cpu"
    assert candidate.inputs == reference.inputs and candidate.outputs == reference.outputs
    name = MODELS[model][0]
    batches = (569,) if model == "fraud" else (1, 3, 8)  # fraud: the whole bundled data set
    for batch in batches:
        x = inputs_for(model, batch, seed=batch) if batch != 569 else inputs_for(model, 569, seed=0)
        want, got = reference.run({name: x})[0], candidate.run({name: x})[0]
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    if model == "fraud":
        np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)


def test_pytorch_metadata_and_config_from_files_name_triton_s_pytorch_backend(torch_repo: Path) -> None:
    entry = read_entry(torch_repo / "fraud-pt")
    metadata = metadata_from_files(entry)
    assert metadata.platform == "pytorch_libtorch"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("features", "FP32", [-1, 30])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("probabilities", "FP32", [-1, 2])]
    config = model_config_from_files(entry)
    assert (config.platform, config.backend, config.default_model_filename) == (
        "pytorch_libtorch",
        "pytorch",
        "model.pt2",
    )
    assert [(i.name, list(i.dims)) for i in config.input] == [("features", [30])]
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert config.parameters["INFERENCE_MODE"].string_value == "true"
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator


def test_a_load_config_for_a_pytorch_model_takes_its_platform_and_refuses_onnx_s(torch_repo: Path) -> None:
    base = read_entry(torch_repo / "fraud-pt").config
    override = parse_override(
        '{"platform": "pytorch_libtorch", "backend": "pytorch", "max_batch_size": 8}', "f", base, "pytorch"
    )
    assert override.config.max_batch_size == 8 and override.config.platform == "pytorch"
    with pytest.raises(InvalidArgument, match="must be 'pytorch_libtorch'"):
        parse_override('{"platform": "onnxruntime_onnx"}', "f", base, "pytorch")
    kind_gpu = parse_override('{"instance_group": [{"kind": "KIND_GPU", "count": 1}]}', "f", base, "pytorch")
    assert kind_gpu.config.device == "cuda"


# -- through a real function process ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_function(torch_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str, int]]:
    """A real `edgeinfer function` serving fraud (ONNX) and fraud-pt (PyTorch): the ranker stays out (cold start)."""
    root = tmp_path_factory.mktemp("fraud-both")
    for name in ("fraud", "fraud-pt"):
        shutil.copytree(torch_repo / name, root / name)
    metrics_port = free_port()
    proc, address = start_function(root, tmp_path_factory.mktemp("logs"), "--metrics-port", str(metrics_port))
    yield proc, address, metrics_port
    proc.stop()


def test_fraud_pt_over_grpc_equals_fraud_onnx(torch_function: tuple[Proc, str, int]) -> None:
    _, address, _ = torch_function
    client = triton.InferenceServerClient(address)
    for batch in (1, 5, 64):
        x = inputs_for("fraud", batch, seed=batch)
        answers = []
        for model in ("fraud", "fraud-pt"):
            tensor = triton.InferInput("features", [batch, 30], "FP32")
            tensor.set_data_from_numpy(x)
            answers.append(client.infer(model, [tensor]).as_numpy("probabilities"))
        assert answers[1].shape == (batch, 2)
        np.testing.assert_allclose(answers[1], answers[0], rtol=RTOL, atol=ATOL)
    # Validation and its error are the ONNX models': a wrong width is INVALID_ARGUMENT naming the input.
    wrong = triton.InferInput("features", [1, 31], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 31), np.float32))
    with pytest.raises(triton.InferenceServerException, match="features") as caught:
        client.infer("fraud-pt", [wrong])
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_fraud_pt_metadata_config_statistics_and_metrics(torch_function: tuple[Proc, str, int]) -> None:
    proc, address, metrics_port = torch_function
    client = triton.InferenceServerClient(address)
    metadata = client.get_model_metadata("fraud-pt")
    assert metadata.platform == "pytorch_libtorch"
    assert [(t.name, list(t.shape)) for t in metadata.inputs] == [("features", [-1, 30])]
    config = client.get_model_config("fraud-pt").config
    assert (config.platform, config.backend, config.max_batch_size) == ("pytorch_libtorch", "pytorch", 64)
    assert config.dynamic_batching.max_queue_delay_microseconds == 200
    tensor = triton.InferInput("features", [2, 30], "FP32")
    tensor.set_data_from_numpy(inputs_for("fraud", 2, seed=9))
    client.infer("fraud-pt", [tensor])
    (stats,) = client.get_inference_statistics("fraud-pt").model_stats
    assert stats.inference_count >= 2 and stats.execution_count >= 1
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert any(
        line.startswith("edgeinfer_function_requests_total{") and 'model="fraud-pt"' in line and 'code="OK"' in line
        for line in text.splitlines()
    )
    for phase in ('model="",phase="process"', 'model="",phase="ready"', 'model="fraud-pt",phase="load"'):
        assert f"{FUNCTION_START_PHASE_SECONDS}{{{phase}}}" in text, phase
    assert 'model="fraud-pt",phase="torch_import"' in text  # the one PyTorch model paid for the import
    assert "phases: process" in proc.output()


# -- config validation ---------------------------------------------------------------------------------------------


def write_model(root: Path, file: str, config: dict[str, object]) -> Path:
    model_dir = root / "m"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / file).write_bytes(b"not read")
    (model_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return model_dir


DECLARED = {
    "inputs": [{"name": "x", "datatype": "FP32", "dims": [4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "dims": [2]}],
}


@pytest.mark.parametrize(
    ("file", "config", "error"),
    [
        ("model.pt2", {"max_batch_size": 8}, "needs inputs: and outputs:"),
        ("model.pt", {"inputs": DECLARED["inputs"]}, "needs inputs: and outputs:"),
        ("model.onnx", {"device": "cuda"}, "device and cuda_graphs apply to pytorch models"),
        ("model.onnx", DECLARED, "an ONNX model's come from its graph"),
        ("model.pt2", {**DECLARED, "cuda_graphs": True}, "cuda_graphs: true needs device: cuda"),
        ("model.pt2", {**DECLARED, "device": "tpu"}, "device"),
        ("model.pt2", {**DECLARED, "platform": "tensorflow"}, "platform"),
        (
            "model.pt2",
            {**DECLARED, "max_batch_size": 8, "device": "cuda", "cuda_graphs": True, "cuda_graph_batch_sizes": [16]},
            "exceed max_batch_size 8",
        ),
        (
            "model.pt2",
            {
                "inputs": [{"name": "x", "datatype": "FP32", "dims": [-1]}],
                "outputs": DECLARED["outputs"],
                "device": "cuda",
                "cuda_graphs": True,
            },
            "fixed dims apart from the batch",
        ),
        ("model.pt2", {"inputs": [{"name": "x", "datatype": "BYTES", "dims": [1]}], "outputs": []}, "datatype"),
        ("model.pt2", {**DECLARED, "outputs": [{"name": "x", "datatype": "FP32", "dims": [1]}]}, "unique"),
    ],
)
def test_bad_pytorch_configs_fail_naming_the_field(
    tmp_path: Path, file: str, config: dict[str, object], error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        read_entry(write_model(tmp_path, file, config))


def test_platform_pytorch_over_an_onnx_file_names_the_files_it_wants(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match=r"platform pytorch, which serves model\.pt2 or model\.pt"):
        read_entry(write_model(tmp_path, "model.onnx", {**DECLARED, "platform": "pytorch"}))


def test_platform_picks_the_file_when_a_version_holds_two(tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, "model.onnx", {})
    (model_dir / "1" / "model.pt2").write_bytes(b"x")
    assert read_entry(model_dir).versions["1"].name == "model.onnx"  # no platform: ONNX first
    (model_dir / "config.yaml").write_text(yaml.safe_dump({**DECLARED, "platform": "pytorch"}))
    assert read_entry(model_dir).versions["1"].name == "model.pt2"


def test_a_config_that_does_not_fit_the_program_fails_the_load(torch_repo: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "fraud-pt"
    shutil.copytree(torch_repo / "fraud-pt", model_dir)
    raw = yaml.safe_load((model_dir / "config.yaml").read_text())
    for change, error in (
        (
            {"inputs": [{"name": "features", "datatype": "FP64", "dims": [30]}]},
            "is torch.float32, config.yaml says FP64",
        ),
        ({"inputs": [{"name": "features", "datatype": "FP32", "dims": [31]}]}, "dimension 1 is 30"),
        ({"outputs": [{"name": "probabilities", "datatype": "FP32", "dims": [3]}]}, "config.yaml declares"),
        (
            {"outputs": [{"name": "probabilities", "datatype": "FP16", "dims": [2]}]},
            "is float32 but config.yaml declares FP16",
        ),
    ):
        (model_dir / "config.yaml").write_text(yaml.safe_dump({**raw, **change}))
        entry = read_entry(model_dir)
        with pytest.raises(ModelLoadError, match=error):
            load_model("fraud-pt", "1", entry.versions["1"], entry.config)


# -- the CUDA path without a GPU -----------------------------------------------------------------------------------


def test_graph_buckets() -> None:
    assert graph_buckets(64) == (1, 2, 4, 8, 16, 32, 64)
    assert graph_buckets(48) == (1, 2, 4, 8, 16, 32, 48)
    assert graph_buckets(1) == graph_buckets(0) == (1,)
    assert graph_buckets(64, (8, 1, 8)) == (1, 8, 64)  # the largest batch always has a bucket


@pytest.mark.parametrize(("rows", "bucket"), [(1, 1), (2, 2), (3, 4), (33, 64), (64, 64)])
def test_a_batch_goes_to_the_smallest_bucket_that_holds_it(rows: int, bucket: int) -> None:
    assert bucket_for(rows, graph_buckets(64)) == bucket


def test_no_bucket_holds_more_than_the_largest() -> None:
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        bucket_for(65, graph_buckets(64))


def test_padding_zeroes_the_rows_after_the_batch_and_slicing_cuts_them_off() -> None:
    staging = np.full((8, 3), 7.0, dtype=np.float32)  # an earlier batch's rows
    batch = np.arange(9, dtype=np.float32).reshape(3, 3)
    fill_padded(staging[:4], batch)
    np.testing.assert_array_equal(staging[:3], batch)
    np.testing.assert_array_equal(staging[3], 0)
    np.testing.assert_array_equal(staging[4:], 7)  # beyond the bucket: untouched
    (out,) = slice_rows([staging], 3)
    np.testing.assert_array_equal(out, batch)
    staging[0] = -1
    assert out[0, 0] == 0  # a copy: the staging buffer is reused by the next batch


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_device_cuda_without_cuda_fails_naming_what_to_install(torch_repo: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "fraud-pt"
    shutil.copytree(torch_repo / "fraud-pt", model_dir)
    raw = yaml.safe_load((model_dir / "config.yaml").read_text())
    (model_dir / "config.yaml").write_text(yaml.safe_dump({**raw, "device": "cuda", "cuda_graphs": True}))
    entry = read_entry(model_dir)
    assert entry.config == ModelConfig.model_validate({**raw, "device": "cuda", "cuda_graphs": True})
    with pytest.raises(CudaUnavailable, match=r"torch\.cuda\.is_available\(\) is False") as caught:
        load_model("fraud-pt", "1", entry.versions["1"], entry.config)
    assert "install a CUDA build of torch" in str(caught.value) and "device: cpu" in str(caught.value)
    config = model_config_from_files(entry)
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert config.optimization.input_pinned_memory.enable


# -- torch stays optional -------------------------------------------------------------------------------------------

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from edgeinfer.cli import main; sys.exit(main(sys.argv[1:]))"


def test_without_torch_a_pytorch_model_exits_2_naming_the_extra(torch_repo: Path, tmp_path: Path) -> None:
    shutil.copytree(torch_repo / "fraud-pt", tmp_path / "fraud-pt")
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "function", "--model-repo", str(tmp_path), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("edgeinfer function:")]
    assert "pip install 'edgeinfer[torch]'" in line and "fraud-pt" in line


def test_without_torch_examples_skip_the_pytorch_models_saying_so(model_repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(model_repo, root)  # the ONNX examples exist: nothing rebuilt
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "examples", str(root), "--pytorch"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "skipped fraud-pt, ranker-pt: torch is not installed (pip install 'edgeinfer[torch]')" in done.stderr
    assert not (root / "fraud-pt").exists()


def test_an_onnx_only_repository_never_imports_torch(model_repo: Path, tmp_path: Path) -> None:
    shutil.copytree(model_repo / "fraud", tmp_path / "fraud")
    script = (
        "import asyncio, sys; from pathlib import Path; from edgeinfer.functions.dataplane import DataPlane\n"
        "async def main():\n"
        f"    plane = DataPlane(Path({str(tmp_path)!r})); await plane.load(); await plane.close()\n"
        "asyncio.run(main()); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_a_torchscript_model_pt_serves_through_the_same_runtime(tmp_path: Path) -> None:
    class Double(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2, x.sum(dim=1, keepdim=True)

    model_dir = tmp_path / "double"
    (model_dir / "1").mkdir(parents=True)
    torch.jit.script(Double()).save(str(model_dir / "1" / "model.pt"))
    config = {
        "max_batch_size": 4,
        "inputs": [{"name": "x", "datatype": "FP32", "dims": [3]}],
        "outputs": [
            {"name": "doubled", "datatype": "FP32", "dims": [3]},
            {"name": "total", "datatype": "FP32", "dims": [1]},
        ],
    }
    (model_dir / "config.yaml").write_text(yaml.safe_dump(config))
    entry = read_entry(model_dir)
    model = load_model("double", "1", entry.versions["1"], entry.config)
    model.warm_up()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    doubled, total = model.run({"x": x})
    np.testing.assert_array_equal(doubled, x * 2)
    np.testing.assert_array_equal(total, x.sum(axis=1, keepdims=True))
    assert model_config_from_files(entry).default_model_filename == "model.pt"
    assert set(model.phases) >= {"load", "warmup"}
