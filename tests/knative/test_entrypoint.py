"""The function image's entry point as a real process, with the environment the Knative manifest sets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from testkit.procs import Proc, free_port, grpc_ready

from edgeinfer.knative.manifest import build_service
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc


def manifest_env(model_repo: Path, cache: Path) -> dict[str, str]:
    """The container's environment, taken from a built manifest (then pointed at this machine's paths)."""
    container = build_service("fraud", "us-east").manifest["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    env.update(EDGEINFER_MODEL_REPO=f"file://{model_repo}", EDGEINFER_TRT_ENGINE_CACHE=str(cache))
    return env


def test_entrypoint_serves_only_its_model_with_the_manifests_settings(model_repo: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**manifest_env(model_repo, tmp_path / "trt"), "PORT": str(port), "EDGEINFER_WORK_DIR": str(tmp_path / "w")}
    proc = Proc([sys.executable, "-m", "edgeinfer.knative.entrypoint"], tmp_path / "function.log", env)
    address = f"127.0.0.1:{port}"
    try:
        proc.wait_until(lambda: grpc_ready(address), 60.0, "function from the entry point")
        with grpc.insecure_channel(address) as channel:
            # What the manifest's gRPC readiness probe asks.
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ModelReady(pb.ModelReadyRequest(name="fraud"), timeout=5).ready
            try:
                ranker = stub.ModelReady(pb.ModelReadyRequest(name="ranker"), timeout=5).ready
            except grpc.RpcError as error:
                ranker = error.code() != grpc.StatusCode.NOT_FOUND
            assert not ranker  # one Service per model: the other model is not loaded
    finally:
        proc.stop()
    config = yaml.safe_load((tmp_path / "w" / "fraud" / "config.yaml").read_text())
    assert config["execution_providers"] == ["cpu"]  # no GPU in the manifest
    assert config["tensorrt"]["engine_cache_dir"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()
    assert config["max_batch_size"] == 64  # the model's own config is kept


def test_entrypoint_names_the_variable_to_fix(model_repo: Path, tmp_path: Path) -> None:
    cases = {
        "EDGEINFER_MODELS: nope not in": {"EDGEINFER_MODEL_REPO": str(model_repo), "EDGEINFER_MODELS": "nope"},
        "only file:// is read directly": {"EDGEINFER_MODEL_REPO": "s3://bucket/models"},
        "is not a directory in this container": {"EDGEINFER_MODEL_REPO": f"file://{tmp_path}/missing"},
    }
    for words, env in cases.items():
        result = subprocess.run(
            [sys.executable, "-m", "edgeinfer.knative.entrypoint"],
            env={"PATH": "/usr/bin:/bin", "EDGEINFER_WORK_DIR": str(tmp_path / "w"), **env},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert result.returncode == 2 and words in result.stderr, result.stderr
