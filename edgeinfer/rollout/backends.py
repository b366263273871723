"""Where a rollout's traffic is set: the `TrafficBackend` protocol and its two implementations.

Both keep the split, the shadow, the lease and the rollout's record in the region gateway's traffic policy
(PUT /v1/traffic/{model}, contract C3): the gateway resolves each unversioned request's version, so its metrics
carry the version that served it, and its lease reverts a split nobody renews.

- `LocalTraffic` (--backend local): the gateway's policy is the whole story; its local pool runs each version,
  and `drain` stops the old version's instances (POST /v1/pools/{model}/{version}/drain).
- `KnativeTraffic` (--backend knative): the same policy (with the revisions' tags), and the Knative Service's
  own traffic block patched to the same split (knative/rollout_backend.py), so a client that reaches the
  Service directly sees what the gateway does. The old revision gets no traffic after the promotion, and
  Knative scales it to zero.

Every write carries `expect_generation` (the rollout's lock): `Conflict` when the policy moved meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from edgeinfer.gateway.admin_client import AdminClient, AdminError

CURRENT_TAG, CANDIDATE_TAG = "current", "candidate"


class Conflict(Exception):
    """The policy is not at the generation the write expected: someone else changed it."""


class BackendError(Exception):
    """A traffic call failed. `unreachable`: nothing answered (retry later); else the gateway refused it."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Plan:
    """What every write of one region's rollout shares."""

    model: str
    baseline: str
    candidate: str
    lease_s: float
    shadow_percent: float = 0.0
    atol: float = 1e-4
    rtol: float = 1e-3


class TrafficBackend(Protocol):
    """One region's traffic for one model. Each write returns the policy the gateway stored (its `generation`
    is the one the next write expects) and raises Conflict or BackendError."""

    name: str

    def read(self) -> dict[str, Any]: ...

    def pin(self, record: dict[str, Any], generation: int) -> dict[str, Any]:
        """Every request to the baseline, the candidate at 0 %, the lease reverting to the baseline."""
        ...

    def step(self, weight: int, record: dict[str, Any], generation: int) -> dict[str, Any]:
        """`weight` % to the candidate, the rest to the baseline, shadow copies of the baseline's requests to the
        candidate. Written again at every poll: that renews the lease."""
        ...

    def rollback(self, record: dict[str, Any] | None, generation: int) -> dict[str, Any]:
        """The candidate at 0 %, shadow off, no lease: the baseline serves for good."""
        ...

    def promote(self, record: dict[str, Any], generation: int) -> dict[str, Any]:
        """Every request to the candidate, shadow off, no lease."""
        ...

    def hold(self, record: dict[str, Any] | None, generation: int) -> dict[str, Any]:
        """The gateway's unversioned requests on the baseline (no lease, nothing else touched): a region that a
        multi-region rollout has not reached yet, whose default would send them to the latest version."""
        ...

    def drain(self, version: str) -> int | None:
        """Stop the old version (in-flight requests finish): instances drained, or None when the platform
        scales it down itself."""
        ...


class GatewayPolicy:
    """GET/PUT of one model's traffic policy on a gateway's admin port."""

    def __init__(self, admin: AdminClient, model: str) -> None:
        self.admin = admin
        self.model = model

    def get(self) -> dict[str, Any]:
        try:
            return self.admin.traffic(self.model)
        except AdminError as exc:
            raise _backend_error(exc) from None

    def put(self, body: dict[str, Any], expect_generation: int) -> dict[str, Any]:
        try:
            return self.admin.set_traffic(self.model, body, expect_generation=expect_generation)
        except AdminError as exc:
            if exc.status == 409:
                raise Conflict(str(exc)) from None
            raise _backend_error(exc) from None


def _backend_error(exc: AdminError) -> BackendError:
    return BackendError(str(exc), unreachable=exc.status is None or exc.status >= 502)


def _weights(baseline: str, candidate: str, weight: int) -> dict[str, int]:
    # Both versions named, 0 % included: the split says which two versions are in play.
    return {baseline: 100 - weight, candidate: weight}


class LocalTraffic:
    """--backend local: the gateway's policy, and its local pool for the drain."""

    name = "local"

    def __init__(self, admin: AdminClient, plan: Plan) -> None:
        self.admin = admin
        self.plan = plan
        self.policy = GatewayPolicy(admin, plan.model)

    def _tags(self, promoted: bool = False) -> dict[str, str]:
        return {}

    def _write(
        self,
        weights: dict[str, int],
        *,
        shadow: bool,
        lease: bool,
        revert_to: str | None,
        record: dict[str, Any] | None,
        generation: int,
        promoted: bool = False,
        tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        p = self.plan
        body: dict[str, Any] = {
            "weights": weights,
            "shadow": (
                {"version": p.candidate, "percent": float(p.shadow_percent), "atol": p.atol, "rtol": p.rtol}
                if shadow
                else None
            ),
            "revert_to": revert_to,
            "lease_seconds": float(p.lease_s) if lease else None,
            "tags": self._tags(promoted) if tags is None else tags,
            "rollout": record,
        }
        return self.policy.put(body, generation)

    def read(self) -> dict[str, Any]:
        return self.policy.get()

    def pin(self, record: dict[str, Any], generation: int) -> dict[str, Any]:
        p = self.plan
        return self._write(
            _weights(p.baseline, p.candidate, 0),
            shadow=False,
            lease=True,
            revert_to=p.baseline,
            record=record,
            generation=generation,
        )

    def step(self, weight: int, record: dict[str, Any], generation: int) -> dict[str, Any]:
        p = self.plan
        # At 100 % the baseline serves nothing, so there is nothing to copy.
        shadow = p.shadow_percent > 0 and weight < 100
        return self._write(
            _weights(p.baseline, p.candidate, weight),
            shadow=shadow,
            lease=True,
            revert_to=p.baseline,
            record=record,
            generation=generation,
        )

    def rollback(self, record: dict[str, Any] | None, generation: int) -> dict[str, Any]:
        p = self.plan
        return self._write(
            {p.baseline: 100}, shadow=False, lease=False, revert_to=p.baseline, record=record, generation=generation
        )

    def promote(self, record: dict[str, Any], generation: int) -> dict[str, Any]:
        p = self.plan
        return self._write(
            {p.candidate: 100},
            shadow=False,
            lease=False,
            revert_to=p.candidate,
            record=record,
            generation=generation,
            promoted=True,
        )

    def hold(self, record: dict[str, Any] | None, generation: int) -> dict[str, Any]:
        p = self.plan
        # No tags: this region's Service is not pinned yet, so it has no `current`/`candidate` routes; its main route
        # is the deployed (baseline) revision.
        return LocalTraffic._write(
            self,
            {p.baseline: 100},
            shadow=False,
            lease=False,
            revert_to=p.baseline,
            record=record,
            generation=generation,
            tags={},
        )

    def drain(self, version: str) -> int | None:
        try:
            return self.admin.drain(self.plan.model, version)
        except AdminError as exc:
            if exc.status == 404:
                return None  # no local pool (a static backend): nothing of this gateway's to stop
            raise _backend_error(exc) from None


class ServiceTraffic(Protocol):
    """The Knative Service's traffic block of one model in one region (knative/rollout_backend.py)."""

    def pin(self, baseline: str, candidate: str) -> None: ...

    def step(self, baseline: str, candidate: str, weight: int) -> None: ...

    def rollback(self, baseline: str, candidate: str) -> None: ...

    def promote(self, baseline: str, candidate: str) -> None: ...


class KnativeTraffic(LocalTraffic):
    """--backend knative: the gateway's policy (with the revisions' tags) and the Service's traffic block."""

    name = "knative"

    def __init__(self, admin: AdminClient, plan: Plan, service: ServiceTraffic) -> None:
        super().__init__(admin, plan)
        self.service = service
        # The Service is patched when its traffic changes, not at every renewal of the gateway's lease.
        self._applied: tuple[str, int] | None = None

    def _tags(self, promoted: bool = False) -> dict[str, str]:
        if promoted:
            return {self.plan.candidate: CURRENT_TAG}
        return {self.plan.baseline: CURRENT_TAG, self.plan.candidate: CANDIDATE_TAG}

    def _service(self, weight: int, action: str) -> None:
        p = self.plan
        if self._applied == (action, weight):
            return
        try:
            if action == "pin":
                self.service.pin(p.baseline, p.candidate)
            elif action == "step":
                self.service.step(p.baseline, p.candidate, weight)
            elif action == "rollback":
                self.service.rollback(p.baseline, p.candidate)
            else:
                self.service.promote(p.baseline, p.candidate)
        except Exception as exc:  # the kubernetes client's errors are many; the message says which call
            raise BackendError(f"Knative Service {p.model}: {action} failed: {exc}") from None
        self._applied = (action, weight)

    def pin(self, record: dict[str, Any], generation: int) -> dict[str, Any]:
        self._service(0, "pin")
        return super().pin(record, generation)

    def step(self, weight: int, record: dict[str, Any], generation: int) -> dict[str, Any]:
        self._service(weight, "step")
        return super().step(weight, record, generation)

    def rollback(self, record: dict[str, Any] | None, generation: int) -> dict[str, Any]:
        # The gateway first: it is what callers reach, and the faster of the two.
        policy = super().rollback(record, generation)
        self._service(0, "rollback")
        return policy

    def promote(self, record: dict[str, Any], generation: int) -> dict[str, Any]:
        self._service(100, "promote")
        return super().promote(record, generation)

    def drain(self, version: str) -> int | None:
        return None  # the old revision has no traffic left: Knative scales it to zero


class _KnativeService:
    """ServiceTraffic over knative/rollout_backend.py's KnativeTraffic: versions become revisions (by their
    edgeinfer.dev/model-version label, else `<service>-v<version>`); a candidate with no revision yet is made from
    the Service's template (KnativeTraffic.deploy_candidate, which pins it at 0 %) and waited for."""

    def __init__(self, traffic: Any, revision_timeout_s: float) -> None:
        self.traffic = traffic
        self.revision_timeout_s = revision_timeout_s

    def _revision(self, version: str, prefer: str | None = None) -> str | None:
        """The revision of `version`: `prefer` when it is one, else the newest. Every `edgeinfer deploy` that
        changes the template (a scale flag, an image) makes another revision of the same version: the oldest is
        then a stale one, not the one serving."""
        found = [str(name) for name, revision in self.traffic.revisions().items() if revision.version == version]
        if prefer is not None and prefer in found:
            return prefer
        return found[-1] if found else None

    def _serving(self) -> str | None:
        from edgeinfer.knative import traffic as t

        try:
            return t.current_revision(self.traffic.read())
        except t.TrafficError:
            return None  # split outside a canary, or no ready revision: the version's label decides

    def pin(self, baseline: str, candidate: str) -> None:
        from edgeinfer.knative import traffic as t

        current = self._revision(baseline, self._serving()) or t.revision_name(self.traffic.service, baseline)
        target = self._revision(candidate)
        if target is None:
            applied = self.traffic.deploy_candidate(candidate, current=current)
            del applied
            self.traffic.wait_revision(t.revision_name(self.traffic.service, candidate), self.revision_timeout_s)
            return
        self.traffic.pin(current, target)

    def step(self, baseline: str, candidate: str, weight: int) -> None:
        self.traffic.step(weight)

    def rollback(self, baseline: str, candidate: str) -> None:
        self.traffic.rollback()

    def promote(self, baseline: str, candidate: str) -> None:
        self.traffic.promote()


def knative_service_traffic(
    region: Any,
    model: str,
    *,
    namespace: str | None = None,
    kubeconfig: str | None = None,
    revision_timeout_s: float = 300.0,
) -> ServiceTraffic:
    """The Knative Service of `model` in `region` (a topology Region with its kube_context), through
    knative/rollout_backend.py (contract C6: built, validated, then patched). BackendError when the region has no
    cluster."""
    from edgeinfer import knative_names
    from edgeinfer.knative.deployer import DEFAULT_REQUEST_TIMEOUT_S, ClusterError, connect
    from edgeinfer.knative.manifest import DEFAULT_NAMESPACE
    from edgeinfer.knative.rollout_backend import KnativeTraffic as ServiceCanary

    if region is None or getattr(region, "kube_context", None) is None:
        name = getattr(region, "name", "this region")
        raise BackendError(f"--backend knative: {name} has no kube_context in the topology: no cluster to patch")
    try:
        cluster = connect(region.name, region.kube_context, kubeconfig, DEFAULT_REQUEST_TIMEOUT_S)
    except ClusterError as exc:
        raise BackendError(str(exc)) from None
    service = knative_names.service_name(model)
    canary = ServiceCanary(cluster, namespace or DEFAULT_NAMESPACE, service)
    return _KnativeService(canary, revision_timeout_s)
