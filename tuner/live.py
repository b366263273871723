"""What the tuner reads from a running region, and how it sets knobs: the gateway's admin port (GET /v1/pools,
Prometheus /metrics, PATCH /v1/pools/<model>) for the local pool, and Knative annotations for Knative."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.parser import text_string_to_metric_families

from edgeinfer.gateway.admin_client import AdminClient, AdminError
from edgeinfer.gateway.metrics import (
    GATEWAY_COLD_START_SECONDS,
    GATEWAY_COLD_START_WAITS,
    GATEWAY_FUNCTION_CALL_SECONDS,
    GATEWAY_FUNCTION_CALLS,
)
from edgeinfer.metrics import quantile_from_buckets

CALLS = GATEWAY_FUNCTION_CALLS
CALL_SECONDS = GATEWAY_FUNCTION_CALL_SECONDS
COLD_BUCKET = GATEWAY_COLD_START_SECONDS + "_bucket"
COLD_WAITS = GATEWAY_COLD_START_WAITS


class LiveError(Exception):
    """A region that cannot be read or changed; the message names it and the address."""


def _live_error(exc: AdminError) -> LiveError:
    if exc.status is not None:
        return LiveError(str(exc))
    return LiveError(f"{exc}; is the stack up (edgeinfer up)?")


def read_metrics(admin: str, timeout: float = 5.0) -> str:
    """The Prometheus text of a region's admin port (HOST:PORT)."""
    try:
        return AdminClient(admin, timeout=timeout).metrics()
    except AdminError as exc:
        raise _live_error(exc) from None


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
        try:
            return AdminClient(self.admin[region]).pools()
        except AdminError as exc:
            raise _live_error(exc) from None

    def current(self, region: str, model: str) -> dict[str, Any]:
        knobs: dict[str, Any] = self.pools(region).get(model, {}).get("knobs", {})
        return knobs

    def apply(self, region: str, model: str, changes: dict[str, Any]) -> None:
        try:
            AdminClient(self.admin[region]).update_pool(model, changes)
        except AdminError as exc:
            raise _live_error(exc) from None


class KnativeApplier:
    """Knative Serving: a JSON merge patch of each Service's revision-template annotations
    (`autoscaling.knative.dev/<knob>`), through the `knative` package's client for the region's kube_context.

    A merge patch, not a server-side apply: an apply by edgeinfer's field manager that named only the annotations
    would drop every other field `edgeinfer deploy` applied. Each change makes a new revision, as in Knative.
    """

    def __init__(self, contexts: dict[str, str | None], namespace: str = "default", dry_run: bool = False,
                 kubeconfig: str | None = None, request_timeout: float = 10.0) -> None:  # fmt: skip
        self.contexts = contexts
        self.namespace = namespace
        self.dry_run = dry_run
        self.kubeconfig = kubeconfig
        self.request_timeout = request_timeout
        self.patches: list[tuple[str, str, dict[str, Any]]] = []  # (region, Service, patch), for --dry-run
        self._clusters: dict[str, Any] = {}

    def _cluster(self, region: str) -> Any:
        from edgeinfer.knative.deployer import ClusterError, connect

        if region not in self._clusters:
            context = self.contexts.get(region)
            if not context:
                raise LiveError(f"region {region}: no kube_context in the topology; set regions[].kube_context")
            try:
                self._clusters[region] = connect(region, context, self.kubeconfig, self.request_timeout)
            except ClusterError as exc:
                raise LiveError(str(exc)) from None
        return self._clusters[region]

    def current(self, region: str, model: str) -> dict[str, Any]:
        from edgeinfer.knative.deployer import ClusterError
        from edgeinfer.knative_names import service_name

        if self.dry_run:
            return {}
        try:
            service = self._cluster(region).get(service_name(model), self.namespace)
        except ClusterError as exc:
            raise LiveError(str(exc)) from None
        if service is None:
            raise LiveError(
                f"region {region}: no Knative Service for model '{model}' in namespace '{self.namespace}'; "
                f"deploy it first (edgeinfer deploy {model} --region {region})"
            )
        annotations = service["spec"]["template"].get("metadata", {}).get("annotations", {}) or {}
        prefix = "autoscaling.knative.dev/"
        return {k[len(prefix) :]: v for k, v in annotations.items() if k.startswith(prefix)}

    def apply(self, region: str, model: str, changes: dict[str, Any]) -> None:
        import urllib3
        from kubernetes import client as k8s
        from kubernetes.client.exceptions import ApiException

        from edgeinfer import knative_names as names
        from edgeinfer.knative_names import service_name

        name = service_name(model)
        annotations = {f"autoscaling.knative.dev/{k}": _annotation(k, v) for k, v in changes.items()}
        patch = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        self.patches.append((region, name, patch))
        if self.dry_run:
            return
        cluster = self._cluster(region)
        try:
            k8s.CustomObjectsApi(cluster.api).patch_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, names.PLURAL, name, patch,
                _content_type="application/merge-patch+json", _request_timeout=self.request_timeout,
            )  # fmt: skip
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise LiveError(str(cluster.explain(exc, "patch", name, self.namespace))) from None


DURATION_KNOBS = frozenset({"window", "scale-down-delay", "scale-to-zero-pod-retention-period"})


def _annotation(knob: str, value: Any) -> str:
    """Knative's annotation text, as `edgeinfer deploy` writes it: durations as Go durations ("30s")."""
    from edgeinfer.knative.manifest import duration_text, number_text

    if isinstance(value, int | float) and not isinstance(value, bool):
        return duration_text(value) if knob in DURATION_KNOBS else number_text(value)
    return str(value)
