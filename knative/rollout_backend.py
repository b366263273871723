"""A canary's traffic on one region's Knative Service, through the real `kubernetes` client (deployer.Cluster).

Every change reads the Service and its Revisions, builds the new spec with knative/traffic.py, and judges the
resulting Service with knative.validate on all three levels (the CRD schema; Knative's webhook as an update of the
Service the cluster holds, with that cluster's ConfigMaps; edgeinfer's policies), plus what the webhook cannot
know: each revision named must exist, and a revision whose share grows must be Ready. Anything wrong raises
TrafficRefused, listing every problem, and nothing is sent.

It is sent as a JSON merge patch (RFC 7386) of `spec`, not a server-side apply or a PUT:
- a merge patch replaces a list whole, so `spec.traffic` becomes exactly the block built, and the template is
  not sent at all for a traffic change (no new revision, nothing of the template to round-trip);
- server-side apply with deploy's field manager would drop every field the partial manifest leaves out (the
  template), and with another manager it conflicts on the traffic list deploy owns; a PUT resends the whole
  object for a one-field change;
- the patch carries the `metadata.resourceVersion` it was built from, so the API server refuses it (409) if the
  Service changed in between (a controller's status write, another writer): it is then read, rebuilt,
  validated and sent once more; a second conflict is reported.
The field manager is `edgeinfer-rollout`: a later `edgeinfer deploy` that would change the traffic or the
template fields a rollout set is told so by the API server (409, `--force-conflicts` takes them back), instead of
silently undoing a canary.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgeinfer import knative_names as n
from edgeinfer.knative import traffic as t
from edgeinfer.knative.deployer import POLL_INTERVAL_S, ChangedSinceRead, Cluster, ClusterError
from edgeinfer.knative.flags import ClusterConfig
from edgeinfer.knative.validate import errors, schema_problems, validate
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.service import set_service_defaults

TRAFFIC_FIELD_MANAGER = "edgeinfer-rollout"

Spec = dict[str, Any]  # spec fields to replace


class TrafficRefused(ClusterError):
    """A traffic change refused before anything was sent; `problems` says why, one line each."""

    def __init__(self, region: str, service: str, namespace: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            region,
            f"refused to change the traffic of Service '{service}' in namespace '{namespace}' (nothing was sent): "
            + "; ".join(self.problems),
        )


@dataclass(frozen=True)
class Revision:
    name: str
    version: str | None  # its edgeinfer.dev/model-version label (Knative copies the template's labels)
    ready: str  # its Ready condition: "True", "False" or "Unknown"
    reason: str = ""
    message: str = ""
    # The version its template pins (EDGEINFER_MODEL_VERSION); None: it serves every version of its repository,
    # the latest by default (an unpinned `edgeinfer deploy`), so it is no fixed baseline.
    serves: str | None = None

    @property
    def is_ready(self) -> bool:
        return self.ready == "True"


# (the Service, its revisions) → (the spec fields to replace, the revisions this change creates)
Build = Callable[[dict[str, Any], Mapping[str, Revision]], tuple[Spec, set[str]]]


@dataclass(frozen=True)
class Applied:
    """One traffic change: the block the Service now asks for, and what was sent for it."""

    traffic: list[dict[str, Any]]
    patch: dict[str, Any]  # {}: nothing was sent, the Service already asked for this
    generation: int
    attempts: int  # 2 when the first patch met a changed Service
    manifest: dict[str, Any]  # the Service the validator judged: as the API server holds it after the patch


def _revision(raw: Mapping[str, Any]) -> Revision:
    metadata = raw.get("metadata") or {}
    conditions = (raw.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Ready"), {})
    version = (metadata.get("labels") or {}).get(n.LABEL_MODEL_VERSION)
    return Revision(
        str(metadata.get("name")),
        str(version) if version else None,
        str(ready.get("status") or "Unknown"),
        str(ready.get("reason") or ""),
        str(ready.get("message") or ""),
        t.template_version({"spec": {"template": {"spec": raw.get("spec") or {}}}}),
    )


class KnativeTraffic:
    """The traffic of Knative Service `service` in `namespace` of one region's cluster, moved as a canary."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        service: str,
        *,
        allow: Collection[str] = (),
        field_manager: str = TRAFFIC_FIELD_MANAGER,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.service = service
        self.allow = tuple(allow)
        self.field_manager = field_manager
        self._config: ClusterConfig | None = None

    @property
    def region(self) -> str:
        return self.cluster.region

    # --- reading ------------------------------------------------------------------------------------------

    def config(self) -> ClusterConfig:
        """The cluster's Knative ConfigMaps, read once: what its webhook judges with."""
        if self._config is None:
            self._config = self.cluster.knative_config()
        return self._config

    def read(self) -> dict[str, Any]:
        found = self.cluster.get(self.service, self.namespace)
        if found is None:
            raise ClusterError(
                self.region,
                f"no Service '{self.service}' in namespace '{self.namespace}' of context '{self.cluster.context}': "
                "deploy the current version first (edgeinfer deploy)",
            )
        return found

    def revisions(self) -> dict[str, Revision]:
        """The Service's revisions by name, oldest first."""
        return {r.name: r for r in map(_revision, self.cluster.revisions(self.service, self.namespace))}

    def split(self) -> t.Canary:
        """The roles spec.traffic gives (current, candidate with its share, previous); TrafficError if none."""
        return t.canary(self.read())

    def revision_weights(self) -> dict[str, int]:
        """revision → percent, as Knative routes it now (status.traffic)."""
        weights: dict[str, int] = {}
        for target in t.routed(self.read()):
            weights[target.revision] = weights.get(target.revision, 0) + target.percent
        return weights

    def weights(self) -> dict[str, int]:
        """model version → percent, as Knative routes it now (status.traffic); a revision without a version
        label counts under its own name."""
        revisions = self.revisions()
        weights: dict[str, int] = {}
        for revision, percent in self.revision_weights().items():
            known = revisions.get(revision)
            key = known.version if known is not None and known.version else revision
            weights[key] = weights.get(key, 0) + percent
        return weights

    # --- changing -----------------------------------------------------------------------------------------

    def deploy_candidate(
        self, version: str, *, image: str | None = None, revision: str | None = None, current: str | None = None
    ) -> Applied:
        """Make the Service's template the candidate's (revision `<service>-v<version>` unless `revision`, serving
        only `version`, on `image` when given) and pin the traffic in the same change: the current revision keeps
        100 %, the new one is born tagged candidate with 0 %. Wait for it with wait_revision before any step."""

        def build(service: dict[str, Any], revisions: Mapping[str, Revision]) -> tuple[Spec, set[str]]:
            name = revision or t.revision_name(self.service, version)
            serving = current or t.current_revision(service)
            if name == serving:
                raise t.TrafficError(f"revision {name} (version {version}) is the current one already: nothing to do")
            for entry in t.spec_traffic(service):
                other, share = entry.get("revisionName"), int(entry.get("percent") or 0)
                if entry.get("tag") == t.CANDIDATE and other != name and share > 0:
                    raise t.TrafficError(
                        f"candidate revision {other} has {share}% of the traffic: roll it back or promote it before "
                        f"deploying another candidate"
                    )
            # A template that is this candidate already (a retry, or after a rollback) makes no new revision.
            if name in revisions and t.template_revision(service) != name:
                raise t.TrafficError(
                    f"revision {name} exists already (an earlier candidate?) with the template of its day; delete it "
                    f"(kubectl delete revision {name} -n {self.namespace} --context {self.cluster.context}) or name "
                    "this candidate's revision otherwise (revision=...)"
                )
            creates = set() if name in revisions else {name}
            template = t.candidate_template(service, version, name, image)
            traffic = t.pin(serving, name, _extras(service))
            if template == (service.get("spec") or {}).get("template"):
                return {"traffic": traffic}, creates  # the template is this candidate's already
            return {"template": template, "traffic": traffic}, creates

        return self._change(build)

    def pin(self, current: str, candidate: str) -> Applied:
        """All traffic on revision `current` (tagged current), `candidate` tagged candidate at 0 %."""
        return self._change(lambda service, _: ({"traffic": t.pin(current, candidate, _extras(service))}, set()))

    def step(self, percent: int) -> Applied:
        """`percent` to the candidate, the rest to the current revision."""
        try:
            share = t.check_percent(percent)
        except t.TrafficError as error:
            raise TrafficRefused(self.region, self.service, self.namespace, [str(error)]) from None
        return self._change(lambda service, _: ({"traffic": t.step(t.canary(service), share)}, set()))

    def rollback(self, keep_tag: bool = True) -> Applied:
        """The candidate back to 0 %: still tagged, to inspect it at its URL, unless keep_tag is False or it is not
        Ready (Knative routes no traffic block that names a failed revision, so the rollback would not apply)."""

        def build(service: dict[str, Any], revisions: Mapping[str, Revision]) -> tuple[Spec, set[str]]:
            state = t.canary(service)
            candidate = revisions.get(state.candidate or "")
            keep = keep_tag and candidate is not None and candidate.is_ready
            return {"traffic": t.rollback(state, keep)}, set()

        return self._change(build)

    def promote(self, keep_previous: bool = False) -> Applied:
        """The candidate takes 100 % and the current tag; the old revision gets no traffic (Knative scales it to
        zero), or stays tagged previous at 0 % with keep_previous."""
        return self._change(lambda service, _: ({"traffic": t.promote(t.canary(service), keep_previous)}, set()))

    def set_traffic(self, traffic: Sequence[Mapping[str, Any]]) -> Applied:
        """Any traffic block, judged like the others before it is sent."""
        block = [dict(entry) for entry in traffic]
        return self._change(lambda service, _: ({"traffic": block}, set()))

    def _change(self, build: Build) -> Applied:
        for attempt in (1, 2):
            service = self.read()
            revisions = self.revisions()
            try:
                spec, creates = build(service, revisions)
            except t.TrafficError as error:
                raise TrafficRefused(self.region, self.service, self.namespace, [str(error)]) from None
            # What is sent: the change of the Service as read. What is judged: that change on the Service as the
            # API server holds it (defaulted by Knative's webhook), where a merge patch lands.
            patch = t.spec_patch(service, t.with_spec(service, **spec))
            manifest = t.with_spec(self._as_held(service), **spec)
            problems = self._problems(manifest, service, revisions, creates)
            if problems:
                raise TrafficRefused(self.region, self.service, self.namespace, problems)
            traffic = t.spec_traffic(manifest)
            if not patch:
                return Applied(traffic, {}, int(service["metadata"].get("generation") or 0), attempt, manifest)
            try:
                result = self.cluster.merge_patch(self.service, self.namespace, patch, self.field_manager)
            except ChangedSinceRead as error:
                if attempt == 1:
                    continue  # read, rebuild and judge it again on the Service as it is now
                raise ClusterError(
                    self.region,
                    f"{error.message}, twice in a row: something else keeps changing it "
                    "(see `edgeinfer services describe`); nothing was changed, try again",
                ) from None
            return Applied(traffic, patch, int(result["metadata"].get("generation") or 0), attempt, manifest)
        raise AssertionError("unreachable")  # pragma: no cover (the loop returns or raises)

    def _as_held(self, service: Mapping[str, Any]) -> dict[str, Any]:
        """The Service with Knative's defaults, as a real API server stores it (its webhook defaults every write;
        defaulting again changes nothing). A template left as it is then compares equal to the stored one in the
        webhook's update check, which a kept revision name requires."""
        held = copy.deepcopy(dict(service))
        set_service_defaults(Context(config=self.config().config).within_create(), held)
        return held

    def _problems(
        self,
        manifest: Mapping[str, Any],
        existing: Mapping[str, Any],
        revisions: Mapping[str, Revision],
        creates: Collection[str],
    ) -> list[str]:
        problems = [str(p) for p in errors(validate(manifest, self.config(), self.allow, existing))]
        if schema_problems(manifest):
            return problems  # the API server refuses it before anything else looks (and the values may be any type)
        before = {entry.get("revisionName"): int(entry.get("percent") or 0) for entry in t.spec_traffic(existing)}
        was_current = next((e.get("revisionName") for e in t.spec_traffic(existing) if e.get("tag") == t.CURRENT), None)
        names = ", ".join(revisions) or "none"
        for index, entry in enumerate(t.spec_traffic(manifest)):
            name = entry.get("revisionName")
            if not isinstance(name, str) or not name:
                continue  # latestRevision, or a wrong type the schema reported
            where = f"spec.traffic[{index}].revisionName"
            if name in creates:
                if int(entry.get("percent") or 0) > 0:
                    problems.append(f"{where}: {name} is created by this change and cannot take traffic yet; fix: 0 %")
                continue
            known = revisions.get(name)
            if known is None:
                problems.append(
                    f"{where}: no revision {name} of Service {self.service} (it has: {names}); fix: name one of "
                    "them, or deploy the candidate first"
                )
                continue
            percent = entry.get("percent")
            grows = isinstance(percent, int) and percent > before.get(name, 0)
            if grows and name != was_current and not known.is_ready:
                why = f"{known.reason}: {known.message}".strip(": ") or "not Ready yet"
                problems.append(
                    f"{where}: revision {name} is not Ready ({why}); fix: give it traffic once it is Ready "
                    "(wait_revision), or roll back"
                )
        return problems

    # --- waiting ------------------------------------------------------------------------------------------

    def wait_revision(self, revision: str, timeout: float, poll: float = POLL_INTERVAL_S) -> Revision:
        """Until `revision` is Ready; ClusterError when it fails, or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.revisions().get(revision)
            if found is not None and found.is_ready:
                return found
            if found is not None and found.ready == "False":
                raise ClusterError(self.region, f"revision {revision} failed: {found.reason}: {found.message}")
            if time.monotonic() >= deadline:
                state = "does not exist" if found is None else f"is {found.reason or 'not Ready'}"
                raise ClusterError(self.region, f"revision {revision} {state} after {timeout:g}s")
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def wait_settled(self, timeout: float, poll: float = POLL_INTERVAL_S) -> dict[str, Any]:
        """Until Knative routes what spec.traffic asks for (status.traffic); the Service then. ClusterError when
        its route fails, or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            service = self.read()
            if t.settled(service):
                return service
            conditions = (service.get("status") or {}).get("conditions") or []
            routes: dict[str, Any] = next((c for c in conditions if c.get("type") == "RoutesReady"), {})
            if t.observed(service) and routes.get("status") == "False":
                raise ClusterError(
                    self.region,
                    f"Knative does not route Service '{self.service}' as asked: {routes.get('reason')}: "
                    f"{routes.get('message', '')}",
                )
            if time.monotonic() >= deadline:
                raise ClusterError(
                    self.region,
                    f"Service '{self.service}' does not route as asked after {timeout:g}s "
                    f"(routes {t.routed(service)}, asked {t.spec_traffic(service)})",
                )
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))


def _extras(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    """0 % targets outside the canary's tags (someone's own), kept by a pin."""
    return [
        e
        for e in t.spec_traffic(service)
        if e.get("tag") not in t.TAGS and not int(e.get("percent") or 0) and e.get("revisionName")
    ]
