"""The canary's traffic block of a Knative Service, built from the Service as the cluster holds it (pure: no I/O).

On Knative each model version is one revision, `<service>-v<version>` (Knative's "bring your own revision name":
a template name must start with `<service>-` and be a DNS-1035 label, and a template that changes must change
its name). Its template pins the version (`EDGEINFER_MODEL_VERSION`, which knative/entrypoint.py reads: the
function then links only that version) and carries it as the `edgeinfer.dev/model-version` label, which Knative
copies onto the Revision. The revisions of a rollout are named in `spec.traffic` and tagged:

    pin(current, candidate)   current 100 % tagged current, candidate 0 % tagged candidate (its own URL)
    step(canary, w)           current 100 - w, candidate w
    rollback(canary)          candidate 0 %, still tagged (it can be inspected at its URL)
    promote(canary)           candidate 100 % tagged current; the old revision leaves the block (Knative scales an
                              unreferenced revision to zero), or stays tagged previous at 0 % (kept routable)

Every target names its revision (`latestRevision: false`): a step never moves to a revision that merely became
the latest. `candidate_template` makes the candidate's template from the current one, so creating the candidate
and pinning the traffic to the current revision are one change: the new revision is born with no traffic.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgeinfer import knative_names as n
from edgeinfer.knative.manifest import CONTAINER_NAME, ENV_MODEL_VERSION

CURRENT = "current"
CANDIDATE = "candidate"
PREVIOUS = "previous"
TAGS = (CURRENT, CANDIDATE, PREVIOUS)


class TrafficError(ValueError):
    """A traffic change that cannot be built; the message says what to change."""


@dataclass(frozen=True)
class Target:
    """One entry of `spec.traffic`, always naming its revision."""

    revision: str
    percent: int
    tag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        if self.tag:
            entry["tag"] = self.tag
        # latestRevision written out: it is what Knative's defaulting stores, so a block read back compares equal.
        entry.update(revisionName=self.revision, latestRevision=False, percent=self.percent)
        return entry


def block(targets: Sequence[Target], extras: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    return [t.to_dict() for t in targets] + [copy.deepcopy(dict(e)) for e in extras]


def revision_name(service: str, version: str) -> str:
    """The revision of `version` of Knative Service `service`: `<service>-v<version>`."""
    name = f"{service}-v{version}"
    if not version or not n.is_dns1035_label(name):
        raise TrafficError(
            f"version '{version}' of Service '{service}' gives no valid revision name ('{name}'): a revision name is "
            "lower-case letters, digits and '-', at most 63 characters, and starts with the Service's name and '-'; "
            "name the candidate's revision yourself (revision=...)"
        )
    return name


def check_percent(value: object, what: str = "the candidate's share") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise TrafficError(f"{what} must be a whole percent from 0 to 100, not {value!r}")
    return value


# --- reading a Service ---------------------------------------------------------------------------------------


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def service_name(service: Mapping[str, Any]) -> str:
    return str(_get(service, "metadata", "name") or "")


def spec_traffic(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    traffic = _get(service, "spec", "traffic")
    return [dict(t) for t in traffic if isinstance(t, Mapping)] if isinstance(traffic, list) else []


def status_traffic(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    traffic = _get(service, "status", "traffic")
    return [dict(t) for t in traffic if isinstance(t, Mapping)] if isinstance(traffic, list) else []


def template_revision(service: Mapping[str, Any]) -> str | None:
    """The revision name the template asks for (None: Knative generates `<service>-<n>`)."""
    name = _get(service, "spec", "template", "metadata", "name")
    return str(name) if name else None


def template_version(service: Mapping[str, Any]) -> str | None:
    """The model version the template pins (EDGEINFER_MODEL_VERSION), None when it serves every version."""
    container = _serving_container(_get(service, "spec", "template", "spec", "containers"))
    for entry in (container or {}).get("env") or []:
        if isinstance(entry, Mapping) and entry.get("name") == ENV_MODEL_VERSION and entry.get("value"):
            return str(entry["value"])
    return None


def _serving_container(containers: Any) -> dict[str, Any] | None:
    """The function's container: by name, else the one with a port, else the only one."""
    found = [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []
    for container in found:
        if container.get("name") == CONTAINER_NAME:
            return container
    with_port = [c for c in found if c.get("ports")]
    if len(with_port) == 1:
        return with_port[0]
    return found[0] if len(found) == 1 else None


def observed(service: Mapping[str, Any]) -> bool:
    """Whether Knative's status describes the Service's current generation."""
    generation = _get(service, "metadata", "generation")
    return generation is not None and _get(service, "status", "observedGeneration") == generation


def resolved(service: Mapping[str, Any]) -> list[Target] | None:
    """spec.traffic with each `latestRevision` target resolved to the latest ready revision (None when there is
    none yet): what status.traffic reads once Knative routes it."""
    latest = _get(service, "status", "latestReadyRevisionName")
    entries = spec_traffic(service) or [{"latestRevision": True, "percent": 100}]
    targets = []
    for entry in entries:
        revision = entry.get("revisionName")
        if not revision or entry.get("latestRevision"):
            if not latest:
                return None
            revision = latest
        targets.append(Target(str(revision), int(entry.get("percent") or 0), entry.get("tag") or None))
    return targets


def routed(service: Mapping[str, Any]) -> list[Target]:
    """What Knative routes now (status.traffic): revision, percent and tag of each target."""
    return [
        Target(str(t.get("revisionName") or ""), int(t.get("percent") or 0), t.get("tag") or None)
        for t in status_traffic(service)
    ]


def settled(service: Mapping[str, Any]) -> bool:
    """Whether Knative routes what spec.traffic asks for (status caught up with this generation)."""
    wanted = resolved(service)
    return observed(service) and wanted is not None and sorted(map(_key, routed(service))) == sorted(map(_key, wanted))


def _key(target: Target) -> tuple[str, int, str]:
    return (target.revision, target.percent, target.tag or "")


# --- the canary's roles ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Canary:
    """The roles in a Service's spec.traffic: the revision tagged current, the candidate with its share, the
    previous one; `extras` are other 0 % targets (someone's own tags), kept as they are."""

    current: str
    candidate: str | None = None
    percent: int = 0  # the candidate's share
    previous: str | None = None
    extras: tuple[dict[str, Any], ...] = ()

    @property
    def revisions(self) -> list[str]:
        return [r for r in (self.current, self.candidate, self.previous) if r]


def current_revision(service: Mapping[str, Any]) -> str:
    """The revision that serves the Service now: the one tagged current, else the only one with traffic."""
    name = service_name(service)
    for entry in spec_traffic(service):
        if entry.get("tag") == CURRENT and entry.get("revisionName"):
            return str(entry["revisionName"])
    serving = [t for t in (resolved(service) or []) if t.percent > 0]
    if len(serving) == 1:
        return serving[0].revision
    if not serving:
        raise TrafficError(
            f"Service '{name}' has no ready revision serving it yet: wait until `edgeinfer services describe` shows "
            "it Ready, then start the canary"
        )
    shares = ", ".join(f"{t.percent}% {t.revision}" for t in serving)
    raise TrafficError(
        f"Service '{name}' splits its traffic ({shares}) with no revision tagged {CURRENT}: name the current "
        "revision, or send all traffic to one revision first (edgeinfer deploy --traffic REV=100)"
    )


def canary(service: Mapping[str, Any]) -> Canary:
    """The roles of a Service's traffic block; TrafficError when it is not a canary's (pin first)."""
    name = service_name(service)
    entries = spec_traffic(service)
    if not any(entry.get("tag") == CURRENT for entry in entries):
        raise TrafficError(
            f"Service '{name}' has no revision tagged {CURRENT} in spec.traffic: no canary runs there; deploy the "
            "candidate (or pin the current and candidate revisions) first"
        )
    roles: dict[str, tuple[str, int]] = {}
    extras: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        tag = entry.get("tag")
        percent = int(entry.get("percent") or 0)
        if tag in TAGS:
            revision = entry.get("revisionName")
            if not revision or entry.get("latestRevision"):
                raise TrafficError(
                    f"Service '{name}': spec.traffic[{index}] (tag {tag}) follows the latest revision instead of "
                    "naming one; pin the canary first"
                )
            roles[str(tag)] = (str(revision), percent)
        elif percent == 0:
            extras.append(entry)
        else:
            raise TrafficError(
                f"Service '{name}': spec.traffic[{index}] sends {percent}% to "
                f"{entry.get('revisionName') or 'the latest revision'} outside the canary's tags "
                f"({', '.join(TAGS)}); pin the canary first"
            )
    current, _ = roles[CURRENT]
    candidate, percent = roles.get(CANDIDATE, (None, 0))
    previous = roles.get(PREVIOUS, (None, 0))[0]
    return Canary(current, candidate, percent, previous, tuple(extras))


# --- the blocks -----------------------------------------------------------------------------------------------


def pin(current: str, candidate: str, extras: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """All traffic on `current` (tagged current); `candidate` tagged candidate at 0 %, reachable at its tag's URL."""
    if not current or not candidate:
        raise TrafficError("pin needs the current and the candidate revision's names")
    if current == candidate:
        raise TrafficError(f"revision {current} cannot be both current and candidate")
    return block([Target(current, 100, CURRENT), Target(candidate, 0, CANDIDATE)], _without(extras, current, candidate))


def step(state: Canary, percent: int) -> list[dict[str, Any]]:
    """`percent` to the candidate, the rest to the current revision; both keep their tags."""
    share = check_percent(percent)
    if state.candidate is None:
        raise TrafficError(f"no revision is tagged {CANDIDATE}: pin the current and the candidate revisions first")
    targets = [Target(state.current, 100 - share, CURRENT), Target(state.candidate, share, CANDIDATE)]
    if state.previous and state.previous not in (state.current, state.candidate):
        targets.append(Target(state.previous, 0, PREVIOUS))
    return block(targets, state.extras)


def rollback(state: Canary, keep_tag: bool = True) -> list[dict[str, Any]]:
    """The candidate back to 0 %; tagged still (to inspect it at its URL) unless `keep_tag` is False."""
    if state.candidate is None:
        raise TrafficError(f"no revision is tagged {CANDIDATE}: nothing to roll back")
    if keep_tag:
        return step(state, 0)
    targets = [Target(state.current, 100, CURRENT)]
    if state.previous and state.previous not in (state.current, state.candidate):
        targets.append(Target(state.previous, 0, PREVIOUS))
    return block(targets, state.extras)


def promote(state: Canary, keep_previous: bool = False) -> list[dict[str, Any]]:
    """The candidate takes all traffic and the current tag. The old revision leaves the block, so Knative scales
    it to zero whatever its min-scale; `keep_previous` keeps it tagged previous at 0 % (routable at its URL, so
    its min-scale still holds)."""
    if state.candidate is None:
        raise TrafficError(f"no revision is tagged {CANDIDATE}: nothing to promote")
    targets = [Target(state.candidate, 100, CURRENT)]
    if keep_previous:
        targets.append(Target(state.current, 0, PREVIOUS))
    return block(targets, _without(state.extras, state.current, state.candidate))


def _without(extras: Sequence[Mapping[str, Any]], *revisions: str) -> list[dict[str, Any]]:
    """Extra targets, less the ones naming a revision that now has a role (one revision, one role)."""
    return [dict(e) for e in extras if e.get("revisionName") not in revisions]


# --- the candidate's template ---------------------------------------------------------------------------------


def candidate_template(
    service: Mapping[str, Any], version: str, revision: str, image: str | None = None
) -> dict[str, Any]:
    """The Service's template, made the candidate's: named `revision`, serving only `version`, labelled with it,
    and on `image` when given. Everything else (resources, autoscaling, probes) stays the current one's."""
    name = service_name(service)
    template = copy.deepcopy(_get(service, "spec", "template"))
    if not isinstance(template, dict):
        raise TrafficError(f"Service '{name}' has no spec.template to make the candidate's from")
    metadata = template.setdefault("metadata", {})
    metadata["name"] = revision
    metadata.setdefault("labels", {})[n.LABEL_MODEL_VERSION] = version
    container = _serving_container(_get(template, "spec", "containers"))
    if container is None:
        raise TrafficError(
            f"Service '{name}': no container named {CONTAINER_NAME} (nor one alone) in spec.template.spec.containers "
            "to serve the candidate version"
        )
    env = [e for e in container.get("env") or [] if not (isinstance(e, Mapping) and e.get("name") == ENV_MODEL_VERSION)]
    container["env"] = [*env, {"name": ENV_MODEL_VERSION, "value": version}]
    if image:
        container["image"] = image
    return template


def with_spec(service: Mapping[str, Any], **spec: Any) -> dict[str, Any]:
    """The Service as the API server will hold it once `spec` fields are replaced: what the webhook judges (the
    status is the controller's and is not sent)."""
    manifest = copy.deepcopy(dict(service))
    manifest.pop("status", None)
    manifest["spec"] = {**(manifest.get("spec") or {}), **copy.deepcopy(spec)}
    return manifest


# --- the patch ------------------------------------------------------------------------------------------------


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns `old` into `new`: changed keys, null for removed ones, and lists whole
    (a merge patch replaces a list, so the traffic block sent is the block the Service gets)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return copy.deepcopy(new)
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif old[key] != value:
            patch[key] = (
                merge_patch(old[key], value)
                if isinstance(old[key], Mapping) and isinstance(value, Mapping)
                else copy.deepcopy(value)
            )
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


def spec_patch(existing: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The patch of `existing`'s spec to `manifest`'s, locked to the resourceVersion read ({} when nothing
    changes): the API server refuses it with 409 if the Service changed in between."""
    change = merge_patch(existing.get("spec") or {}, manifest.get("spec") or {})
    if not change:
        return {}
    version = _get(existing, "metadata", "resourceVersion")
    lock = {"metadata": {"resourceVersion": str(version)}} if version else {}
    return {**lock, "spec": change}
