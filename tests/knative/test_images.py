"""The Dockerfiles agree with the manifests: entry point, engine-cache path, port, and the gpu extra."""

from __future__ import annotations

from pathlib import Path

from edgeinfer.knative.manifest import CONTAINER_PORT, ENGINE_CACHE_PATH, ENV_ENGINE_CACHE, build_service

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_function_image_matches_the_manifest() -> None:
    dockerfile = (DEPLOY / "function.Dockerfile").read_text()
    assert f"VOLUME {ENGINE_CACHE_PATH}" in dockerfile
    assert f"{ENV_ENGINE_CACHE}={ENGINE_CACHE_PATH}" in dockerfile
    assert f"EXPOSE {CONTAINER_PORT}" in dockerfile and f"PORT={CONTAINER_PORT}" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "edgeinfer.knative.entrypoint"]' in dockerfile
    assert "pip install --no-cache-dir -r requirements/function.txt -r requirements/gpu.txt" in dockerfile
    assert "pip install --no-cache-dir --no-deps ." in dockerfile and "pip uninstall -y onnxruntime" in dockerfile
    mount = build_service("fraud", "us-east").manifest["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert mount[0]["mountPath"] == ENGINE_CACHE_PATH


def test_gateway_image_runs_the_gateway() -> None:
    dockerfile = (DEPLOY / "gateway.Dockerfile").read_text()
    assert 'ENTRYPOINT ["edgeinfer", "gateway"]' in dockerfile and "--backend" in dockerfile
