"""What the tuner reads from a running region, and how it sets knobs: the gateway's admin port (GET /v1/pools,
Prometheus /metrics, PATCH /v1/pools/<model>) for the local pool, and Knative annotations for Knative."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from regions.observe import quantile_from_buckets

CALLS = "edgeinfer_gateway_function_calls_total"
CALL_SECONDS = "edgeinfer_gateway_function_call_seconds"
COLD_BUCKET = "edgeinfer_gateway_cold_start_seconds_bucket"
COLD_WAITS = "edgeinfer_gateway_cold_start_waits_total"


class LiveError(Exception):
    """A region that cannot be read or changed; the message names it and the address."""


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read().decode())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise LiveError(f"{method} {url}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LiveError(f"{method} {url}: {getattr(exc, 'reason', exc)}; is the stack up (edgeinfer up)?") from None


def http_text(url: str, timeout: float = 5.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return str(reply.read().decode())
    except (urllib.error.URLError, OSError) as exc:
        raise LiveError(f"GET {url}: {getattr(exc, 'reason', exc)}; is the stack up (edgeinfer up)?") from None


@dataclass
class ModelReadings:
    calls: float = 0.0  # function calls so far (misses that reached an instance)
    call_seconds_sum: float = 0.0
    call_seconds_count: float = 0.0
    cold_buckets: dict[float, float] = field(default_factory=dict)
    cold_waits: float = 0.0

    def cold_start_quantile(self, q: float) -> float | None:
        estimate, _ = quantile_from_buckets(q, list(self.cold_buckets.items()))
        return estimate if self.cold_buckets.get(math.inf, 0) >= 3 else None


def parse_metrics(text: str) -> dict[str, ModelReadings]:
    models: dict[str, ModelReadings] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get("model")
            if model is None:
                continue
            reading = models.setdefault(model, ModelReadings())
            if sample.name == CALLS:
                reading.calls += sample.value
            elif sample.name == CALL_SECONDS + "_sum":
                reading.call_seconds_sum += sample.value
            elif sample.name == CALL_SECONDS + "_count":
                reading.call_seconds_count += sample.value
            elif sample.name == COLD_BUCKET:
                bound = float(sample.labels["le"])
                reading.cold_buckets[bound] = reading.cold_buckets.get(bound, 0.0) + sample.value
            elif sample.name == COLD_WAITS:
                reading.cold_waits += sample.value
    return models


class KnobApplier(Protocol):
    def current(self, region: str, model: str) -> dict[str, Any]: ...

    def apply(self, region: str, model: str, changes: dict[str, Any]) -> None: ...


class LocalPoolApplier:
    """The local pool of `edgeinfer up`: PATCH /v1/pools/<model> on the region's admin port."""

    def __init__(self, admin: dict[str, str]) -> None:
        self.admin = admin  # region -> HOST:PORT

    def pools(self, region: str) -> dict[str, Any]:
        reply = http_json(f"http://{self.admin[region]}/v1/pools")
        pools: dict[str, Any] = reply.get("pools", {})
        return pools

    def current(self, region: str, model: str) -> dict[str, Any]:
        knobs: dict[str, Any] = self.pools(region).get(model, {}).get("knobs", {})
        return knobs

    def apply(self, region: str, model: str, changes: dict[str, Any]) -> None:
        http_json(f"http://{self.admin[region]}/v1/pools/{model}", "PATCH", changes)


class KnativeApplier:
    """Knative Serving: a merge patch of the Service's revision-template annotations
    (`autoscaling.knative.dev/<knob>`), through kubectl with the region's kube_context.

    TODO(knative/): switch to the knative package's client once it lands; this uses kubectl directly.
    """

    def __init__(self, contexts: dict[str, str | None], namespace: str = "default", dry_run: bool = False) -> None:
        self.contexts = contexts
        self.namespace = namespace
        self.dry_run = dry_run
        self.commands: list[list[str]] = []

    def _kubectl(self, region: str) -> list[str]:
        context = self.contexts.get(region)
        if not context:
            raise LiveError(f"region {region}: no kube_context in the topology; set regions[].kube_context")
        binary = shutil.which("kubectl") or "kubectl"
        return [binary, "--context", context, "-n", self.namespace]

    def current(self, region: str, model: str) -> dict[str, Any]:
        if self.dry_run:
            return {}
        out = subprocess.run([*self._kubectl(region), "get", "ksvc", model, "-o", "json"], capture_output=True,
                             text=True, timeout=30, check=False)  # fmt: skip
        if out.returncode != 0:
            raise LiveError(f"region {region}: kubectl get ksvc {model}: {out.stderr.strip()}")
        annotations = json.loads(out.stdout)["spec"]["template"]["metadata"].get("annotations", {})
        prefix = "autoscaling.knative.dev/"
        return {k[len(prefix) :]: v for k, v in annotations.items() if k.startswith(prefix)}

    def apply(self, region: str, model: str, changes: dict[str, Any]) -> None:
        annotations = {f"autoscaling.knative.dev/{k}": str(v) for k, v in changes.items()}
        patch = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        command = [*self._kubectl(region), "patch", "ksvc", model, "--type", "merge", "-p", json.dumps(patch)]
        self.commands.append(command)
        if self.dry_run:
            return
        out = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        if out.returncode != 0:
            raise LiveError(f"region {region}: kubectl patch ksvc {model}: {out.stderr.strip()}")
