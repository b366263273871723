"""One emulated cluster with Knative Serving, for the deploy tests: run as its own process, one per region.

kmock's KubernetesEmulator stores objects and answers the Kubernetes API over HTTP. Added here:

- server-side apply (PATCH application/apply-patch+yaml): creates or replaces the applied fields, bumps
  `metadata.generation` when the spec changes, records the field manager, and answers 409 when another
  manager owns the Service and the apply is not forced;
- a stand-in for the Knative controller: it creates a revision per generation and, --ready-after seconds
  later, marks it Ready. An image tagged `:missing` fails the way an unpullable image does; one tagged
  `:never-ready` stays Unknown;
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
CONFIGMAPS = kmock.resource("", "v1", "configmaps")
APPLY = "application/apply-patch+yaml"


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    condition = {"type": kind, "status": status, "lastTransitionTime": _now()}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


@attrs.define(kw_only=True)
class KnativeCluster(kmock.KubernetesEmulator):
    domain: str = "example.com"
    ready_after: float = 0.3
    forbidden: frozenset[str] = frozenset()
    slow: dict[str, float] = attrs.field(factory=dict)
    knative_installed: bool = True
    _revision_seen: dict[Any, float] = attrs.field(factory=dict)
    _version: int = 0

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
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
        if request.resource == SERVICES and request.method == kmock.method.PATCH and content_type.startswith(APPLY):
            return await self._apply(request)
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

    def reconcile(self) -> None:
        """One pass of the stand-in Knative controller."""
        now = time.monotonic()
        for key, obj in list(self.objects.items()):
            resource, namespace, name = key
            if resource != SERVICES or obj.deleted:
                continue
            service = obj.raw
            generation = service["metadata"]["generation"]
            template = service["spec"]["template"]
            revision = (template.get("metadata") or {}).get("name") or f"{name}-{generation:05d}"
            status = dict(service.get("status") or {})
            url = f"http://{name}.{namespace}.{self.domain}"
            if status.get("observedGeneration") != generation:
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
                image = template["spec"]["containers"][0]["image"]
                if image.endswith(":never-ready"):
                    continue
                if image.endswith(":missing"):
                    message = (
                        f'Revision "{revision}" failed with message: Unable to fetch image "{image}": failed to '
                        "resolve image to digest: MANIFEST_UNKNOWN: manifest unknown."
                    )
                    status["conditions"] = [
                        _condition("ConfigurationsReady", "False", "RevisionFailed", message),
                        _condition("Ready", "False", "RevisionFailed", message),
                        _condition("RoutesReady", "Unknown", "RevisionMissing"),
                    ]
                else:
                    traffic = []
                    for target in service["spec"].get("traffic") or [{"latestRevision": True, "percent": 100}]:
                        entry = dict(target)
                        if entry.get("latestRevision"):
                            entry["revisionName"] = revision
                        if entry.get("tag"):
                            entry["url"] = f"http://{entry['tag']}-{name}.{namespace}.{self.domain}"
                        traffic.append(entry)
                    status.update(
                        latestReadyRevisionName=revision,
                        traffic=traffic,
                        conditions=[
                            _condition("ConfigurationsReady", "True"),
                            _condition("Ready", "True"),
                            _condition("RoutesReady", "True"),
                        ],
                    )
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
