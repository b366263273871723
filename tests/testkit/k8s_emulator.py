"""One emulated cluster with Knative Serving, for the deploy tests: run as its own process, one per region.

kmock's KubernetesEmulator stores objects and answers the Kubernetes API over HTTP. Added here:

- server-side apply (PATCH application/apply-patch+yaml): creates or replaces the applied fields, bumps
  `metadata.generation` when the spec changes, records the field manager, and answers 409 when another
  manager owns the Service and the apply is not forced;
- JSON merge patch (PATCH application/merge-patch+json, RFC 7386: null deletes, lists replaced whole): bumps
  `metadata.generation` when the spec changes, records the manager as an Update, and answers 409 Conflict
  when the patch carries a `metadata.resourceVersion` that is no longer the Service's (optimistic locking);
- a stand-in for the Knative controller: it creates a Revision object per template change (named by the
  template's `metadata.name`, else `<service>-<configuration generation>`, carrying the template's labels)
  and, --ready-after seconds later, marks it Ready. An image tagged `:missing` fails the way an unpullable
  image does; one tagged `:never-ready` stays Unknown. The route (status.traffic) follows spec.traffic once
  every revision it names is Ready; until then it keeps routing as before (RoutesReady False or Unknown);
- every request that changes a Service is printed as one line `REQUEST {json}` (method, namespace, name,
  content type, query, body, the status answered), so that tests can assert what reached the cluster;
- `--forbid NS`: 403 for every call in that namespace; `--slow NS=SECONDS`: answers that late;
- `--feature FLAG=VALUE`: the cluster's config-features ConfigMap in knative-serving; `--no-knative`: 404 for
  Services, as on a cluster without Knative Serving.

It does NOT run pods, the webhook, the autoscaler or networking: those are verified only on a real cluster.

    python tests/knative/k8s_emulator.py --port 18080 --domain eu-west.example.com
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import signal
import time
import uuid
from typing import Any

import aiohttp.web
import attrs
import kmock

SERVICES = kmock.resource("serving.knative.dev", "v1", "services")
REVISIONS = kmock.resource("serving.knative.dev", "v1", "revisions")
CONFIGMAPS = kmock.resource("", "v1", "configmaps")
APPLY = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_LOG_PREFIX = "REQUEST "
SERVICE_LABEL = "serving.knative.dev/service"
SERVICE_UID_LABEL = "serving.knative.dev/serviceUID"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
CONFIGURATION_GENERATION_LABEL = "serving.knative.dev/configurationGeneration"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    condition = {"type": kind, "status": status, "lastTransitionTime": _now()}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _merged(target: Any, patch: Any) -> Any:
    """RFC 7386: a mapping patches a mapping key by key (null removes the key); anything else replaces."""
    if not isinstance(patch, dict):
        return json.loads(json.dumps(patch))
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merged(result.get(key), value)
    return result


def _ready_state(obj: Any) -> str:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((str(c.get("status")) for c in conditions if c.get("type") == "Ready"), "Unknown")


@attrs.define(kw_only=True)
class KnativeCluster(kmock.KubernetesEmulator):
    domain: str = "example.com"
    ready_after: float = 0.3
    forbidden: frozenset[str] = frozenset()
    slow: dict[str, float] = attrs.field(factory=dict)
    knative_installed: bool = True
    _revision_seen: dict[Any, float] = attrs.field(factory=dict)
    # Per Service: (uid, the last template seen, how many templates so far): Knative's configuration generation.
    _configurations: dict[Any, tuple[str, str, int]] = attrs.field(factory=dict)
    _version: int = 0

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource == SERVICES and request.method != kmock.method.GET:
            status: int | None = None
            try:
                response = await self._handle_service(request)
                status = response.status
                return response
            except kmock.KubernetesError as error:
                status = error.status
                raise
            finally:
                self._log_request(request, status)
        return await self._handle_service(request)

    def _log_request(self, request: kmock.Request, status: int | None) -> None:
        entry = {
            "method": str(request.method.value),
            "namespace": request.namespace,
            "name": request.name,
            "content_type": request.headers.get("Content-Type", ""),
            "params": dict(request.params),
            "body": request.data if isinstance(request.data, dict | list) else None,
            "status": status,  # what was answered (None: the handler failed otherwise)
        }
        print(REQUEST_LOG_PREFIX + json.dumps(entry, sort_keys=True), flush=True)

    async def _handle_service(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.namespace in self.slow:
            await asyncio.sleep(self.slow[request.namespace])
        if request.namespace in self.forbidden:
            verb = {"PATCH": "patch", "GET": "get", "DELETE": "delete"}.get(str(request.method.value), "access")
            plural = request.resource.plural if request.resource is not None else "resources"
            raise kmock.KubernetesError(
                status=403,
                reason="Forbidden",
                message=f'{plural}.serving.knative.dev "{request.name or ""}" is forbidden: User '
                f'"system:serviceaccount:ci:deployer" cannot {verb} resource "{plural}" in API group '
                f'"serving.knative.dev" in the namespace "{request.namespace}"',
            )
        if request.resource == SERVICES and not self.knative_installed:
            raise kmock.KubernetesError(
                status=404, reason="NotFound", message="the server could not find the requested resource"
            )
        content_type = request.headers.get("Content-Type", "")
        patch = request.resource == SERVICES and request.method == kmock.method.PATCH
        if patch and content_type.startswith(APPLY):
            return await self._apply(request)
        if patch and content_type.startswith(MERGE_PATCH):
            return await self._merge_patch(request)
        if request.resource == REVISIONS and not self.knative_installed:
            raise kmock.KubernetesError(
                status=404, reason="NotFound", message="the server could not find the requested resource"
            )
        return await super()._handle(request)

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    async def _apply(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        manager = request.params.get("fieldManager")
        if not manager:
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="fieldManager: Required value: is required for apply patch"
            )
        force = request.params.get("force") == "true"
        body = request.data if isinstance(request.data, dict) else {}
        if body.get("metadata", {}).get("name") != request.name:
            raise kmock.KubernetesError(
                status=400, reason="BadRequest", message="the name of the object does not match"
            )
        key = (SERVICES, request.namespace, request.name)
        async with self._lock:
            existing = self.objects[key] if key in self.objects else None  # noqa: SIM401 (no .get on ObjectsArray)
            created = existing is None or existing.deleted
            if created:
                service = json.loads(json.dumps(body))
                service["metadata"].update(
                    uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1, namespace=request.namespace
                )
            else:
                assert existing is not None
                current = existing.raw
                owner = (current["metadata"].get("managedFields") or [{}])[0].get("manager")
                changed = current.get("spec") != body.get("spec")
                if owner != manager and changed and not force:
                    raise kmock.KubernetesError(
                        status=409,
                        reason="Conflict",
                        message=f'Apply failed with 1 conflict: conflict with "{owner}" using serving.knative.dev/v1: '
                        '.spec.template.spec.containers[name="function"].image',
                    )
                service = json.loads(json.dumps(current))
                service["metadata"]["labels"] = body["metadata"].get("labels", {})
                service["metadata"]["annotations"] = body["metadata"].get("annotations", {})
                service["spec"] = body.get("spec", {})
                service["metadata"]["generation"] = current["metadata"]["generation"] + (1 if changed else 0)
            service["metadata"]["resourceVersion"] = self._next_version()
            service["metadata"]["managedFields"] = [
                {"manager": manager, "operation": "Apply", "apiVersion": "serving.knative.dev/v1", "time": _now()}
            ]
            if created:
                self.objects[key] = service
            else:
                assert existing is not None
                existing.history.append(service)
        return aiohttp.web.json_response(service, status=201 if created else 200)

    async def _merge_patch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        body = request.data if isinstance(request.data, dict) else None
        if body is None:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message="a merge patch is a JSON object")
        key = (SERVICES, request.namespace, str(request.name))
        async with self._lock:
            existing = self.objects[key] if key in self.objects else None  # noqa: SIM401 (no .get on ObjectsArray)
            if existing is None or existing.deleted:
                raise kmock.KubernetesError(
                    status=404,
                    reason="NotFound",
                    message=f'services.serving.knative.dev "{request.name}" not found',
                )
            current = existing.raw
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != current["metadata"].get("resourceVersion"):
                raise kmock.KubernetesError(
                    status=409,
                    reason="Conflict",
                    message=f'Operation cannot be fulfilled on services.serving.knative.dev "{request.name}": the '
                    "object has been modified; please apply your changes to the latest version and try again",
                )
            patch = json.loads(json.dumps(body))
            patch.pop("status", None)  # the status subresource is the controller's
            for server_set in ("resourceVersion", "generation", "uid", "managedFields", "creationTimestamp"):
                (patch.get("metadata") or {}).pop(server_set, None)
            service = _merged(current, patch)
            changed = current.get("spec") != service.get("spec")
            service["metadata"]["generation"] = current["metadata"]["generation"] + (1 if changed else 0)
            service["metadata"]["resourceVersion"] = self._next_version()
            manager = request.params.get("fieldManager") or "unknown"
            entries = [
                e
                for e in current["metadata"].get("managedFields") or []
                if (e.get("manager"), e.get("operation")) != (manager, "Update")
            ]
            entries.append(
                {"manager": manager, "operation": "Update", "apiVersion": "serving.knative.dev/v1", "time": _now()}
            )
            service["metadata"]["managedFields"] = entries
            existing.history.append(service)
        return aiohttp.web.json_response(service, status=200)

    def _revision_name(self, key: Any, service: dict[str, Any]) -> str:
        """The template's own name, else `<service>-<n>` where n counts the templates (Knative's configuration
        generation: a traffic-only change makes no revision)."""
        name = service["metadata"]["name"]
        uid = str(service["metadata"].get("uid"))
        template = service["spec"]["template"]
        text = json.dumps(template, sort_keys=True)
        seen_uid, seen_text, count = self._configurations.get(key, ("", "", 0))
        if seen_uid != uid:
            count = 0
        if seen_uid != uid or seen_text != text:
            count += 1
            self._configurations[key] = (uid, text, count)
        return (template.get("metadata") or {}).get("name") or f"{name}-{count:05d}"

    def _ensure_revision(self, namespace: str, service: dict[str, Any], revision: str) -> None:
        """The Revision object of the current template, created once (Knative never changes a revision)."""
        key = (REVISIONS, namespace, revision)
        if key in self.objects and not self.objects[key].deleted:
            return
        metadata = service["metadata"]
        template = service["spec"]["template"]
        template_metadata = template.get("metadata") or {}
        count = self._configurations.get((SERVICES, namespace, metadata["name"]), ("", "", 1))[2]
        labels = {
            **(template_metadata.get("labels") or {}),
            SERVICE_LABEL: metadata["name"],
            SERVICE_UID_LABEL: str(metadata.get("uid")),
            CONFIGURATION_LABEL: metadata["name"],
            CONFIGURATION_GENERATION_LABEL: str(count),
        }
        self.objects[key] = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {
                "name": revision,
                "namespace": namespace,
                "labels": labels,
                "annotations": dict(template_metadata.get("annotations") or {}),
                "uid": str(uuid.uuid4()),
                "creationTimestamp": _now(),
                "generation": 1,
                "resourceVersion": self._next_version(),
            },
            "spec": json.loads(json.dumps(template.get("spec") or {})),
            "status": {"conditions": [_condition("Ready", "Unknown", "Deploying")]},
        }

    def _mark_revision(self, namespace: str, revision: str, status: str, reason: str = "", message: str = "") -> None:
        obj = self.objects[REVISIONS, namespace, revision]
        metadata = json.loads(json.dumps(obj.raw["metadata"]))
        metadata["resourceVersion"] = self._next_version()
        obj["metadata"] = metadata
        obj["status"] = {"conditions": [_condition("Ready", status, reason, message)]}

    def _revision_ready(self, namespace: str, revision: str) -> str:
        key = (REVISIONS, namespace, revision)
        if key not in self.objects or self.objects[key].deleted:
            return "Missing"
        return _ready_state(self.objects[key].raw)

    def _collect_revisions(self) -> None:
        """Revisions whose Service is gone (Knative's owner references garbage-collect them)."""
        services = {
            (ns, str(obj.raw["metadata"].get("uid")))
            for (resource, ns, _), obj in self.objects.items()
            if resource == SERVICES and not obj.deleted
        }
        for (resource, ns, _), obj in list(self.objects.items()):
            if resource != REVISIONS or obj.deleted:
                continue
            if (ns, (obj.raw["metadata"].get("labels") or {}).get(SERVICE_UID_LABEL)) not in services:
                obj.delete()

    def _route(
        self, service: dict[str, Any], namespace: str, latest_ready: str | None
    ) -> tuple[list[dict[str, Any]] | None, dict[str, str]]:
        """status.traffic for spec.traffic, or None while a revision it names is not Ready; and RoutesReady."""
        name = service["metadata"]["name"]
        traffic = []
        for target in service["spec"].get("traffic") or [{"latestRevision": True, "percent": 100}]:
            entry = dict(target)
            if entry.get("latestRevision", not entry.get("revisionName")):
                if latest_ready is None:
                    return None, _condition("RoutesReady", "Unknown", "RevisionMissing")
                entry["revisionName"] = latest_ready
            revision = str(entry.get("revisionName"))
            state = self._revision_ready(namespace, revision)
            if state == "Missing":
                message = f'Revision "{revision}" referenced in traffic not found.'
                return None, _condition("RoutesReady", "False", "RevisionMissing", message)
            if state == "False":
                message = f'Revision "{revision}" failed to become ready.'
                return None, _condition("RoutesReady", "False", "RevisionFailed", message)
            if state != "True":
                return None, _condition("RoutesReady", "Unknown", "RevisionMissing")
            if entry.get("tag"):
                entry["url"] = f"http://{entry['tag']}-{name}.{namespace}.{self.domain}"
            traffic.append(entry)
        return traffic, _condition("RoutesReady", "True")

    def reconcile(self) -> None:
        """One pass of the stand-in Knative controller."""
        now = time.monotonic()
        self._collect_revisions()
        for key, obj in list(self.objects.items()):
            resource, where, name = key
            if resource != SERVICES or obj.deleted:
                continue
            namespace = str(where)
            service = obj.raw
            generation = service["metadata"]["generation"]
            template = service["spec"]["template"]
            status = dict(service.get("status") or {})
            url = f"http://{name}.{namespace}.{self.domain}"
            if status.get("observedGeneration") != generation:
                revision = self._revision_name(key, service)
                self._ensure_revision(namespace, service, revision)
                self._revision_seen[key] = now
                status.update(
                    observedGeneration=generation,
                    latestCreatedRevisionName=revision,
                    url=url,
                    address={"url": f"http://{name}.{namespace}.svc.cluster.local"},
                    conditions=[
                        _condition("ConfigurationsReady", "Unknown", "RevisionMissing"),
                        _condition(
                            "Ready",
                            "Unknown",
                            "RevisionMissing",
                            f'Configuration "{name}" is waiting for a Revision to become ready.',
                        ),
                        _condition("RoutesReady", "Unknown", "RevisionMissing"),
                    ],
                )
            elif now - self._revision_seen.get(key, now) >= self.ready_after:
                ready = next(c for c in status["conditions"] if c["type"] == "Ready")
                if ready["status"] != "Unknown":
                    continue
                revision = str(status["latestCreatedRevisionName"])
                if self._revision_ready(namespace, revision) == "Unknown":  # a new revision: its fate, once
                    image = template["spec"]["containers"][0]["image"]
                    if image.endswith(":never-ready"):
                        continue
                    if image.endswith(":missing"):
                        self._mark_revision(
                            namespace,
                            revision,
                            "False",
                            "ContainerMissing",
                            f'Unable to fetch image "{image}": failed to resolve image to digest: MANIFEST_UNKNOWN: '
                            "manifest unknown.",
                        )
                    else:
                        self._mark_revision(namespace, revision, "True")
                if self._revision_ready(namespace, revision) == "True":
                    status["latestReadyRevisionName"] = revision
                    configuration = _condition("ConfigurationsReady", "True")
                else:
                    why = self.objects[REVISIONS, namespace, revision].raw["status"]["conditions"][0].get("message")
                    message = f'Revision "{revision}" failed with message: {why or ""}'
                    configuration = _condition("ConfigurationsReady", "False", "RevisionFailed", message)
                traffic, route = self._route(service, namespace, status.get("latestReadyRevisionName"))
                if traffic is not None:
                    status["traffic"] = traffic
                if configuration["status"] == "False":
                    overall = _condition("Ready", "False", configuration["reason"], configuration["message"])
                elif route["status"] == "False":
                    overall = _condition("Ready", "False", route["reason"], route.get("message", ""))
                elif route["status"] == "Unknown":
                    overall = _condition("Ready", "Unknown", route["reason"])
                else:
                    overall = _condition("Ready", "True")
                status["conditions"] = [configuration, overall, route]
            else:
                continue
            metadata = json.loads(json.dumps(service["metadata"]))
            metadata["resourceVersion"] = self._next_version()
            obj["metadata"] = metadata
            obj["status"] = status


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", default="example.com")
    parser.add_argument("--ready-after", type=float, default=0.3)
    parser.add_argument("--forbid", action="append", default=[])
    parser.add_argument("--slow", action="append", default=[], metavar="NS=SECONDS")
    parser.add_argument("--feature", action="append", default=[], metavar="FLAG=VALUE")
    parser.add_argument("--no-knative", action="store_true", help="a cluster without Knative Serving's CRDs")
    args = parser.parse_args()
    slow = {ns: float(s) for ns, s in (item.split("=", 1) for item in args.slow)}
    cluster = KnativeCluster(
        domain=args.domain,
        ready_after=args.ready_after,
        forbidden=frozenset(args.forbid),
        slow=slow,
        knative_installed=not args.no_knative,
    )
    cluster.resources["serving.knative.dev/v1/services"] = {
        "namespaced": True,
        "kind": "Service",
        "singular": "service",
        "verbs": [],
        "shortnames": ["ksvc"],
        "categories": [],
        "subresources": ["status"],
    }
    cluster.resources["serving.knative.dev/v1/revisions"] = {
        "namespaced": True,
        "kind": "Revision",
        "singular": "revision",
        "verbs": [],
        "shortnames": ["rev"],
        "categories": [],
        "subresources": ["status"],
    }
    if args.feature:
        data = dict(item.split("=", 1) for item in args.feature)
        cluster.objects[CONFIGMAPS, "knative-serving", "config-features"] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "config-features", "namespace": "knative-serving"},
            "data": data,
        }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with cluster, kmock.Server(cluster, host="127.0.0.1", port=args.port):
        print(f"emulated cluster on 127.0.0.1:{args.port} domain={args.domain}", flush=True)
        while not stop.is_set():
            cluster.reconcile()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)


if __name__ == "__main__":
    asyncio.run(main())
