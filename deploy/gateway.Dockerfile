# The regional gateway image: `edgeinfer gateway` (prediction cache in front of the functions).
#
#   docker build -f deploy/gateway.Dockerfile -t edgeinfer/gateway:0.1.0 .
#
# In a region's cluster it reaches each model's Knative Service at its cluster-local address:
#   docker run edgeinfer/gateway:0.1.0 --region eu-west --backend knative --knative-service fraud \
#     --knative-namespace default --redis redis://redis:6379/0 --admin-port 8002
# Outside the cluster, add --knative-ingress HOST:PORT --knative-domain <the region's knative_domain>.
#
# It runs one gateway worker per CPU the container may use (EDGEINFER_GATEWAY_WORKERS=auto: its CPU affinity
# and cgroup quota, so `resources.limits.cpu: 2` gives 2 workers on the same ports; `--workers N` overrides).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1
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
RUN pip install --no-cache-dir . && rm -rf /src

# A container listens on its own network namespace: bind every address of it.
ENV EDGEINFER_GATEWAY_HOST=0.0.0.0 EDGEINFER_GATEWAY_PORT=8001 EDGEINFER_GATEWAY_WORKERS=auto
EXPOSE 8001 8002 8003
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["edgeinfer", "gateway"]
CMD ["--backend", "knative", "--knative-service", "fraud"]
