"""Talks to the Knative Serving of each region's cluster with the official `kubernetes` client.

One kubeconfig context per region (the topology's `kube_context`). Services are applied server-side with
the field manager `edgeinfer` (what `kubectl apply --server-side --field-manager edgeinfer` does), then
watched until Ready: `observedGeneration` equals the applied `generation`, the Ready condition is True, and
`latestReadyRevisionName` equals `latestCreatedRevisionName`. Every API failure becomes one sentence that
names the region, the context and what to do; a region's failure never hides another region's result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from edgeinfer import knative_names as n
from edgeinfer.knative import flags
from edgeinfer.knative.webhook.config import ConfigError

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"
REVISIONS_PLURAL = "revisions"
# Knative's label on each Revision: the Service it belongs to.
SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
DEFAULT_REQUEST_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.25
# A Ready=False that lasts this long is a failure, not a step on the way (kn waits the same way).
ERROR_WINDOW_S = 1.0

Progress = Callable[[str, str], None]  # (region, what is happening now)


class ClusterError(Exception):
    """One region's failure, as a sentence that names the region and the fix."""

    def __init__(self, region: str, message: str) -> None:
        super().__init__(f"{region}: {message}")
        self.region = region
        self.message = message


class ChangedSinceRead(ClusterError):
    """409 Conflict on a patch that carried the resourceVersion it was built from: the Service changed since it
    was read (a controller's status update, or another writer); read it again and rebuild."""


def _status_message(error: ApiException) -> str:
    """The API server's own words from a Status body, without the surrounding JSON."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        return (error.reason or "").strip()
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return (error.reason or "").strip()


def _network_cause(error: BaseException) -> BaseException:
    while isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason
    return error


@dataclass
class Cluster:
    """The Knative Services of one region's cluster, through one kubeconfig context."""

    region: str
    context: str
    api: k8s.ApiClient
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    # --- errors -----------------------------------------------------------------------------------------

    def explain(self, error: BaseException, action: str, name: str | None = None, namespace: str = "") -> ClusterError:
        where = f"context '{self.context}' ({self.server})"
        if name:
            what = f"Service '{name}' in namespace '{namespace}'"
        else:
            what = f"Services in namespace '{namespace}'" if namespace else "Knative's settings"
        if isinstance(error, ApiException):
            status, said = error.status, _status_message(error)
            if status == 401:
                message = f"{where} refused our credentials (401 Unauthorized: {said}); log in again or renew the token"
            elif status == 403:
                message = (
                    f"{where} does not allow us to {action} {what} (403 Forbidden: {said}); ask for a Role with "
                    f"get, list, patch and delete on {n.RESOURCE} in '{namespace}'"
                )
            elif status == 404 and "namespaces" in said and "not found" in said:
                message = (
                    f"namespace '{namespace}' does not exist in {where}: "
                    f"kubectl create namespace {namespace} --context {self.context}"
                )
            elif status == 404 and name is not None and action != "apply":
                message = f"{what} not found in {where}; `edgeinfer services list` shows what is deployed"
            elif status == 404:
                message = (
                    f"{where} has no {n.RESOURCE} (404 Not Found: {said}): is Knative Serving installed there, "
                    "and is this the right context?"
                )
            elif status == 409:
                message = (
                    f"conflict on {what} in {where} (409 Conflict: {said}); another field manager owns those fields "
                    "(e.g. kubectl edit): rerun with --force-conflicts to take them over"
                )
            elif status in (400, 422):
                message = f"{where} rejected {what} ({status}: {said}); fix the field it names"
            elif status == 429 or (status is not None and status >= 500):
                message = f"{where} failed to {action} {what} ({status}: {said}); try again shortly"
            else:
                message = f"{where} answered {status} to {action} {what}: {said}"
            return ClusterError(self.region, message)
        cause = _network_cause(error)
        # urllib3 makes NewConnectionError a ConnectTimeoutError: ask about refusal first.
        if isinstance(cause, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
            return ClusterError(
                self.region, f"cannot reach {where}: {cause}; is the cluster up, and does the kubeconfig point at it?"
            )
        if isinstance(cause, urllib3.exceptions.TimeoutError | TimeoutError):
            return ClusterError(
                self.region,
                f"no answer from {where} within {self.request_timeout:g}s to {action} {what}; check the network "
                "(VPN, firewall) or raise --request-timeout",
            )
        if isinstance(cause, ConnectionError | OSError):
            return ClusterError(
                self.region,
                f"cannot reach {where}: {cause}; is the cluster up, and does the kubeconfig point at it?",
            )
        if isinstance(cause, urllib3.exceptions.HTTPError):
            return ClusterError(self.region, f"talking to {where} failed: {cause}")
        raise error

    # --- calls ------------------------------------------------------------------------------------------

    def _custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api)

    def knative_config(self) -> flags.ClusterConfig:
        """The cluster's config-features, config-defaults and config-autoscaler; Knative's defaults for each one
        that cannot be read (not allowed, or not there: the webhook judges with its defaults then too)."""
        found: dict[str, dict[str, str]] = {}
        for name in flags.CONFIGMAPS:
            try:
                configmap = k8s.CoreV1Api(self.api).read_namespaced_config_map(
                    name, flags.NAMESPACE, _request_timeout=self.request_timeout
                )
            except ApiException:
                continue
            except (urllib3.exceptions.HTTPError, OSError) as error:
                raise self.explain(error, "read") from None
            found[name] = dict(configmap.data or {})
        try:
            return flags.ClusterConfig.from_configmaps(found, f"configmap {flags.NAMESPACE}/{{name}}")
        except ConfigError as error:
            raise ClusterError(self.region, f"its Knative ConfigMaps are invalid ({error}); fix them first") from None

    def apply(self, manifest: Mapping[str, Any], force: bool = False) -> dict[str, Any]:
        """Server-side apply: create the Service or update the fields edgeinfer owns."""
        name = str(manifest["metadata"]["name"])
        namespace = str(manifest["metadata"]["namespace"])
        try:
            result: Any = self._custom().patch_namespaced_custom_object(
                n.GROUP,
                n.VERSION,
                namespace,
                n.PLURAL,
                name,
                dict(manifest),
                field_manager=n.FIELD_MANAGER,
                force=force,
                _content_type=APPLY_CONTENT_TYPE,
                _request_timeout=self.request_timeout,
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            raise self.explain(error, "apply", name, namespace) from None
        if isinstance(result, dict):
            return result
        # The generated client decodes only a 200 for PATCH; a create answers 201, so read it back.
        created = self.get(name, namespace)
        if created is None:
            raise ClusterError(self.region, f"Service '{name}' was applied but cannot be read back")
        return created

    def merge_patch(
        self, name: str, namespace: str, patch: Mapping[str, Any], field_manager: str = n.FIELD_MANAGER
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of the Service; a `metadata.resourceVersion` in it makes the API server
        refuse it with 409 when the Service changed since (ChangedSinceRead)."""
        try:
            result: Any = self._custom().patch_namespaced_custom_object(
                n.GROUP,
                n.VERSION,
                namespace,
                n.PLURAL,
                name,
                dict(patch),
                field_manager=field_manager,
                _content_type=MERGE_PATCH_CONTENT_TYPE,
                _request_timeout=self.request_timeout,
            )
        except ApiException as error:
            if error.status == 409:
                raise ChangedSinceRead(
                    self.region,
                    f"Service '{name}' in namespace '{namespace}' changed since it was read "
                    f"(409 Conflict: {_status_message(error)})",
                ) from None
            raise self.explain(error, "patch", name, namespace) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise self.explain(error, "patch", name, namespace) from None
        return dict(result)

    def revisions(self, service: str, namespace: str) -> list[dict[str, Any]]:
        """The Revisions of a Service (Knative labels each with its Service), oldest first."""
        try:
            listing: Any = self._custom().list_namespaced_custom_object(
                n.GROUP,
                n.VERSION,
                namespace,
                REVISIONS_PLURAL,
                label_selector=f"{SERVICE_LABEL}={service}",
                _request_timeout=self.request_timeout,
            )
        except ApiException as error:
            if error.status == 403:
                raise ClusterError(
                    self.region,
                    f"context '{self.context}' ({self.server}) does not allow us to list the revisions of Service "
                    f"'{service}' in namespace '{namespace}' (403 Forbidden: {_status_message(error)}); ask for a "
                    f"Role with get and list on {REVISIONS_PLURAL}.{n.GROUP} in '{namespace}'",
                ) from None
            # No name: a 404 here means no Knative (the Revisions' API), not a missing Service.
            raise self.explain(error, "list the revisions in", None, namespace) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise self.explain(error, "list the revisions in", None, namespace) from None
        items = listing.get("items", []) if isinstance(listing, dict) else []
        # Filter here too: a selector is a request (the Services' list does the same).
        mine = [r for r in items if ((r.get("metadata") or {}).get("labels") or {}).get(SERVICE_LABEL) == service]
        return sorted(mine, key=_revision_order)

    def get(self, name: str, namespace: str) -> dict[str, Any] | None:
        """The Service, or None when there is none."""
        try:
            found: Any = self._custom().get_namespaced_custom_object(
                n.GROUP, n.VERSION, namespace, n.PLURAL, name, _request_timeout=self.request_timeout
            )
        except ApiException as error:
            if error.status == 404 and "namespaces" not in _status_message(error):
                return None
            raise self.explain(error, "read", name, namespace) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise self.explain(error, "read", name, namespace) from None
        return dict(found)

    def list(self, namespace: str) -> list[dict[str, Any]]:
        """The Services edgeinfer deployed in `namespace`."""
        selector = f"{n.LABEL_MANAGED_BY}={n.MANAGED_BY}"
        try:
            listing = self._custom().list_namespaced_custom_object(
                n.GROUP, n.VERSION, namespace, n.PLURAL, label_selector=selector, _request_timeout=self.request_timeout
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            raise self.explain(error, "list", None, namespace) from None
        items = listing.get("items", []) if isinstance(listing, dict) else []
        # Filter here too: a selector is a request, and a proxy or an old server may ignore it.
        mine = [s for s in items if (s.get("metadata", {}).get("labels") or {}).get(n.LABEL_MANAGED_BY) == n.MANAGED_BY]
        return sorted(mine, key=lambda s: str(s["metadata"].get("name")))

    def delete(self, name: str, namespace: str) -> None:
        try:
            self._custom().delete_namespaced_custom_object(
                n.GROUP, n.VERSION, namespace, n.PLURAL, name, _request_timeout=self.request_timeout
            )
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            raise self.explain(error, "delete", name, namespace) from None


def _revision_order(revision: Mapping[str, Any]) -> tuple[str, int, str]:
    """Creation time (whole seconds), then Knative's configuration generation, then the name."""
    metadata = revision.get("metadata") or {}
    generation = str((metadata.get("labels") or {}).get(CONFIGURATION_GENERATION_LABEL, ""))
    order = int(generation) if generation.isdigit() else 0
    return (str(metadata.get("creationTimestamp", "")), order, str(metadata.get("name", "")))


def connect(region: str, context: str, kubeconfig: str | None, request_timeout: float) -> Cluster:
    """A client for one kubeconfig context; ClusterError naming the context when there is none."""
    configuration = k8s.Configuration()
    try:
        contexts, _ = k8s_config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        known = [c["name"] for c in contexts or []]
        if context not in known:
            raise ClusterError(
                region,
                f"kubeconfig has no context '{context}' (the topology's kube_context of {region}); "
                f"it has: {', '.join(known) or '(none)'}",
            )
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration, persist_config=False
        )
    except ConfigException as error:
        raise ClusterError(region, f"cannot load the kubeconfig for context '{context}': {error}") from None
    # One try per call: the caller sees a timeout at once, and a deploy never applies twice.
    configuration.retries = 0
    return Cluster(region, context, k8s.ApiClient(configuration), request_timeout)


# --- waiting for Ready ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    state: Literal["ready", "failed", "waiting"]
    detail: str
    revision: str | None = None
    url: str | None = None


def _conditions(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("type")): c for c in (service.get("status") or {}).get("conditions") or []}


def readiness(service: Mapping[str, Any], generation: int) -> Readiness:
    """Where a Service stands with respect to the generation we applied."""
    status = service.get("status") or {}
    observed = status.get("observedGeneration")
    created = status.get("latestCreatedRevisionName")
    ready_revision = status.get("latestReadyRevisionName")
    url = status.get("url")
    if observed != generation:
        return Readiness("waiting", f"waiting for Knative to pick up generation {generation}")
    conditions = _conditions(service)
    ready = conditions.get("Ready", {})
    if ready.get("status") == "False":
        # The most specific failing condition says why (a revision that cannot start, a route that cannot route).
        failing = next(
            (c for t, c in conditions.items() if t != "Ready" and c.get("status") == "False"),
            ready,
        )
        reason = failing.get("reason") or ready.get("reason") or "NotReady"
        message = failing.get("message") or ready.get("message") or ""
        return Readiness("failed", f"revision {created or '?'} failed: {reason}: {message}".rstrip(": "), created, url)
    if ready.get("status") == "True" and created and created == ready_revision:
        return Readiness("ready", f"revision {created} is Ready", created, url)
    reason = ready.get("reason") or "Deploying"
    if created and created != ready_revision:
        return Readiness("waiting", f"revision {created} is starting ({reason})", created, url)
    return Readiness("waiting", f"waiting for a revision ({reason})", created, url)


def wait_ready(
    cluster: Cluster,
    name: str,
    namespace: str,
    generation: int,
    timeout: float,
    progress: Progress | None = None,
    poll: float = POLL_INTERVAL_S,
    error_window: float = ERROR_WINDOW_S,
) -> Readiness:
    """Poll the Service until the applied generation is Ready, has failed, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    failing_since: float | None = None
    last = Readiness("waiting", "applied")
    while True:
        service = cluster.get(name, namespace)
        if service is None:
            return Readiness("failed", f"Service '{name}' disappeared while waiting (deleted by someone else?)")
        state = readiness(service, generation)
        if progress is not None and state.detail != last.detail:
            progress(cluster.region, state.detail)
        last = state
        now = time.monotonic()
        if state.state == "ready":
            return state
        if state.state == "failed":
            failing_since = failing_since if failing_since is not None else now
            if now - failing_since >= error_window:
                return state
        else:
            failing_since = None
        if now >= deadline:
            return Readiness(
                "failed",
                f"not Ready after {timeout:g}s: {state.detail}; see `edgeinfer services describe` "
                "or raise --wait-timeout",
                state.revision,
                state.url,
            )
        time.sleep(min(poll, max(0.0, deadline - now)))
