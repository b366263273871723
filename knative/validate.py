"""Checks a Knative Service manifest before anything is sent, on three levels kept apart:

- **Kubernetes**: the CRD's openAPIV3Schema (wrong types, unknown fields, missing required fields), as the API
  server and `kubectl apply`'s strict field validation refuse them;
- **Knative**: what Knative's admission webhook does on create, in its order (SetDefaults, then Validate), ported
  case by case in webhook/ and judged with a cluster's ConfigMaps (feature flags, defaults, autoscaler);
- **policy**: edgeinfer's own rules, stricter than Knative on purpose. Each has a name and a reason (POLICIES),
  is never reported as a Knative error, and can be waived with `--allow NAME`.

Every problem names the field (a path into the manifest) and a fix.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import jsonschema

from edgeinfer import knative_names as n
from edgeinfer.knative import flags
from edgeinfer.knative.crd import service_schema
from edgeinfer.knative.webhook import config as kc
from edgeinfer.knative.webhook.context import Context
from edgeinfer.knative.webhook.field_error import FieldError, Level
from edgeinfer.knative.webhook.service import set_service_defaults, validate_service

ProblemLevel = Literal["error", "warning", "policy"]


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    fix: str
    level: ProblemLevel = "error"
    flag: str | None = None  # the Knative feature flag that would allow the field
    rule: str | None = None  # the policy's name (level "policy")

    def __str__(self) -> str:
        return f"{self.path}: {self.message}; fix: {self.fix}"

    @property
    def label(self) -> str:
        return f"policy {self.rule}" if self.level == "policy" else self.level


def errors(problems: Iterable[Problem]) -> list[Problem]:
    """The problems that stop a deploy: Kubernetes and Knative errors, and every policy not waived."""
    return [p for p in problems if p.level in ("error", "policy")]


# --- Kubernetes: the CRD schema ---------------------------------------------------------------------------


def _closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever Kubernetes would drop them (kubectl's strict validation)."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


@functools.cache
def _schema_validator() -> jsonschema.protocols.Validator:
    # status stays in: a manifest may carry it (kubectl get -o yaml); Kubernetes ignores it on apply.
    schema = _closed(copy.deepcopy(service_schema()))
    validator: jsonschema.protocols.Validator = jsonschema.Draft7Validator(schema)
    return validator


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _schema_fix(error: jsonschema.ValidationError) -> tuple[str, str]:
    kind = error.validator
    if kind == "additionalProperties":
        unknown = re.findall(r"'([^']+)'", error.message.split("(")[-1])
        field = ", ".join(unknown) or "the field"
        return f"unknown field {field}", f"remove {field} or fix its spelling (the CRD has no such field)"
    if kind == "required":
        return error.message, "add it"
    if kind == "type":
        return f"{error.instance!r} is not of type {error.validator_value}", f"write it as a {error.validator_value}"
    if kind == "enum":
        return error.message, f"use one of {error.validator_value}"
    return error.message, "see the Knative Service CRD schema for this field"


def schema_problems(manifest: Mapping[str, Any]) -> list[Problem]:
    """The manifest against the CRD's openAPIV3Schema, and its apiVersion and kind."""
    problems = []
    if manifest.get("apiVersion") != n.API_VERSION:
        problems.append(Problem("apiVersion", f"is {manifest.get('apiVersion')!r}", f"set it to {n.API_VERSION}"))
    if manifest.get("kind") != "Service":
        problems.append(Problem("kind", f"is {manifest.get('kind')!r}", "set it to Service"))
    for error in sorted(_schema_validator().iter_errors(manifest), key=lambda e: list(map(str, e.absolute_path))):
        message, fix = _schema_fix(error)
        problems.append(Problem(_path(error.absolute_path), message, fix))
    return problems


# --- Knative: the webhook -----------------------------------------------------------------------------------


def webhook_errors(
    manifest: Mapping[str, Any], config: kc.Config | None = None, existing: Mapping[str, Any] | None = None
) -> FieldError:
    """What Knative's webhook answers to this Service: SetDefaults on a copy, then Validate. With `existing` (the
    Service as the cluster holds it) it is an update, judged against it: a revision name kept while the
    template changes, a changed creator annotation..."""
    config = config or kc.Config()
    service = copy.deepcopy(dict(manifest))
    context = Context(config=config).within_create()
    if existing is not None:
        # The stored object is defaulted already; defaulting again changes nothing there, and makes an
        # emulator's or a hand-written baseline compare as the real one would.
        baseline = copy.deepcopy(dict(existing))
        set_service_defaults(context, baseline)
        context = Context(config=config).within_update(baseline)
    set_service_defaults(context, service)
    return validate_service(context, service)


Line = tuple[int, str, str, str]  # (level, message, details, one path): one claim of the webhook's


def _lines(error: FieldError) -> set[Line]:
    return {(int(e.level), e.message, e.details, path) for e in error.wrapped_errors() for path in e.paths or ("",)}


# Fixes for Knative's messages, by the message's start: Knative says what is wrong, not what to write.
_FIXES: tuple[tuple[str, str], ...] = (
    ("missing field(s)", "set it"),
    ("must not set the field(s)", "remove it: Knative does not allow it here (with this cluster's feature flags)"),
    ("expected exactly one, got both", "keep only one of them"),
    ("expected exactly one, got neither", "set one of them"),
    ("invalid key name", "fix the key's name"),
    (
        "Failed to parse image reference",
        "write it as [registry/]repository[:tag][@sha256:digest], e.g. ghcr.io/acme/fn:1.0",
    ),
    ("must be specified with at most second precision", "use whole seconds, e.g. 69s"),
    ("more than one container port is set", "keep one port, the serving container's, across all containers"),
    ("Port name", "name it h2c (gRPC), http1, or leave it out"),
    ("volume with name", "mount it in a container's volumeMounts, or remove it"),
    ("volumeMount has no matching volume", "add a volume of that name to spec.template.spec.volumes"),
    ("mountPath", "mount it elsewhere"),
    ("Traffic targets sum to", "make the percents add up to exactly 100"),
    ("Multiple definitions for", "give each tag once"),
    ("may not set revisionName", "keep only one of revisionName and latestRevision: true"),
    ("Saw the following changes without a name change", "give the changed revision a new name, or leave it out"),
    (
        "Kubernetes default value is insecure",
        "set it in the container's securityContext (runAsNonRoot: true, "
        "allowPrivilegeEscalation: false, capabilities.drop: [ALL], seccompProfile.type: RuntimeDefault)",
    ),
)
_RESERVED = re.compile(r"(invalid value: )?.*is a reserved (port|environment variable|container name|path)")


def _fix(error: FieldError) -> str:
    message = error.message
    for start, fix in _FIXES:
        if message.startswith(start):
            return fix
    bounds = re.fullmatch(r"expected (\S+) <= (\S+) <= (\S+)", message)
    if bounds:
        return f"use a value from {bounds.group(1)} to {bounds.group(3)}"
    if _RESERVED.match(message):
        return "Knative reserves it: use another"
    if re.search(r"(max|min|activation)-scale", message):
        return "make min-scale <= activation-scale <= max-scale (max-scale 0: no limit; activation-scale > 1)"
    if "must have prefix" in message:
        return "name it <service>-<suffix>, or leave it out for a generated name"
    if error.details:
        return "see the reason in brackets"
    return "change it as the message says (Knative's webhook refuses it)"


NO_FIELD = "(Knative names no field)"


def _problem(error: FieldError, paths: Iterable[str], **changes: Any) -> Problem:
    # Details may span lines (a diff): one line per problem, so a table row or a CI log keeps all of it.
    details = " ".join(error.details.split())
    text = error.message + (f" ({details})" if details else "")
    level: ProblemLevel = "warning" if error.level == Level.WARNING else "error"
    where = ", ".join(p for p in paths if p) or NO_FIELD
    return replace(Problem(where, text, _fix(error), level), **changes)


# What a cluster may allow that Knative's defaults refuse: each setting, how it changes the ConfigMaps to lift
# it, and the fix to print.
Lift = Callable[[kc.Config], kc.Config]


def _lifting(config: kc.Config) -> Iterator[tuple[str, Lift, str]]:
    for flag in kc.FEATURE_DEFAULTS:
        if config.features[flag] != kc.ENABLED:

            def enable(c: kc.Config, flag: str = flag) -> kc.Config:
                return replace(c, features=c.features.set(flag, kc.ENABLED))

            yield flag, enable, f"turn on the Knative feature flag {flag}: {flags.enable_command(flag)}"
    if not config.autoscaler.allow_zero_initial_scale:
        patch = flags.configmap_patch(kc.AUTOSCALER_CONFIG_NAME, "allow-zero-initial-scale", "true")
        yield (
            "allow-zero-initial-scale",
            lambda c: replace(c, autoscaler=replace(c.autoscaler, allow_zero_initial_scale=True)),
            f"allow it in the cluster: {patch}",
        )
    if config.autoscaler.max_scale_limit:
        patch = flags.configmap_patch(kc.AUTOSCALER_CONFIG_NAME, "max-scale-limit", "0")
        yield (
            "max-scale-limit",
            lambda c: replace(c, autoscaler=replace(c.autoscaler, max_scale_limit=0)),
            f"raise the cluster's limit: {patch}",
        )

    def roomy(c: kc.Config) -> kc.Config:
        return replace(
            c, defaults=replace(c.defaults, max_revision_timeout_seconds=2**31, container_concurrency_max_limit=2**31)
        )

    if roomy(config) != config:
        yield (
            "config-defaults",
            roomy,
            (
                "raise max-revision-timeout-seconds or container-concurrency-max-limit in configmap "
                f"{kc.DEFAULTS_CONFIG_NAME} of {flags.NAMESPACE}, or lower the value"
            ),
        )


def knative_problems(
    manifest: Mapping[str, Any], cluster: flags.ClusterConfig | None = None, existing: Mapping[str, Any] | None = None
) -> list[Problem]:
    """What Knative's webhook would refuse (errors) or warn about, judged with `cluster`'s ConfigMaps.

    Without them (`cluster.known` false), an error that a cluster setting would lift is a warning naming that
    setting: the target cluster decides, and `edgeinfer deploy` asks it before sending.
    """
    cluster = cluster or flags.ClusterConfig()
    found = webhook_errors(manifest, cluster.config, existing)
    if not found:
        return []
    lifted_by: dict[Line, tuple[str, str]] = {}
    lifts = list(_lifting(cluster.config))
    everything = cluster.config
    for _, lift, _ in lifts:
        everything = lift(everything)
    # Only what every setting lifted together lifts is worth a run per setting (most errors are not: no run).
    remaining = _lines(found) - _lines(webhook_errors(manifest, everything, existing))
    for setting, lift, how in lifts:
        if not remaining:
            break
        gone = remaining - _lines(webhook_errors(manifest, lift(cluster.config), existing))
        for line in gone:
            lifted_by.setdefault(line, (setting, how))
        remaining -= gone
    problems = []
    for error in found.wrapped_errors():
        # Knative merges one message's paths; they may need different settings, so group them by setting.
        by_setting: dict[tuple[str, str] | None, list[str]] = {}
        for path in error.paths or ("",):
            line = (int(error.level), error.message, error.details, path)
            by_setting.setdefault(lifted_by.get(line) if error.level == Level.ERROR else None, []).append(path)
        for setting_how, paths in by_setting.items():
            problems.append(_lifted_problem(error, paths, setting_how, cluster))
    return problems


def _lifted_problem(
    error: FieldError, paths: list[str], setting_how: tuple[str, str] | None, cluster: flags.ClusterConfig
) -> Problem:
    if setting_how is None:
        return _problem(error, paths)
    setting, how = setting_how
    flag = setting if setting in kc.FEATURE_DEFAULTS else None
    if not cluster.known:
        fix = f"Knative's defaults refuse it; make sure the target cluster allows it: {how}"
        return _problem(error, paths, level="warning", flag=flag, fix=fix)
    if flag:
        source = cluster.source(kc.FEATURES_CONFIG_NAME)
        value = cluster.config.features[flag]
        fix = f"the feature flag {flag} is {value} in {source}; turn it on: {flags.enable_command(flag)}"
        return _problem(error, paths, fix=fix, flag=flag)
    return _problem(error, paths, fix=f"{how} (refused with {cluster.source(_configmap_of(setting))})")


def _configmap_of(setting: str) -> str:
    return kc.DEFAULTS_CONFIG_NAME if setting == "config-defaults" else kc.AUTOSCALER_CONFIG_NAME


# --- policy: edgeinfer's own rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    name: str
    reason: str
    check: Callable[[Mapping[str, Any]], list[tuple[str, str, str]]]  # → (path, message, fix)


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _containers(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    containers = _get(manifest, "spec", "template", "spec", "containers")
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []


def _serving(manifest: Mapping[str, Any]) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
    """The serving container (the one with a port, else the only one), and its port."""
    containers = _containers(manifest)
    for index, container in enumerate(containers):
        ports = [p for p in container.get("ports") or [] if isinstance(p, dict)]
        if ports:
            return index, container, ports[0]
    return 0, (containers[0] if len(containers) == 1 else None), None


def _h2c_port(manifest: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    index, container, port = _serving(manifest)
    base = f"spec.template.spec.containers[{index}].ports"
    if container is None:
        return []
    if port is None:
        return [(base, "no port: Knative then sends HTTP/1 to 8080", "add ports: [{name: h2c, containerPort: 8080}]")]
    if port.get("name") != "h2c":
        name = port.get("name") or "(none)"
        return [(f"{base}[0].name", f"port name {name} makes Knative speak HTTP/1 to the container", "name it h2c")]
    return []


def _probe_on_serving_port(manifest: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    index, container, port = _serving(manifest)
    if container is None:
        return []
    number = (port or {}).get("containerPort", 8080)
    name = (port or {}).get("name")
    found = []
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        for handler in ("grpc", "httpGet", "tcpSocket"):
            target = _get(container, kind, handler, "port")
            if target is None or target in (0, "") or target == number or (name and target == name):
                continue
            where = f"spec.template.spec.containers[{index}].{kind}.{handler}.port"
            found.append((where, f"probes port {target}, not the serving port {number}", f"set it to {number}"))
    return found


def _traffic_of_this_service(manifest: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    name = str(_get(manifest, "metadata", "name") or "")
    traffic = _get(manifest, "spec", "traffic")
    found = []
    for index, entry in enumerate(traffic if isinstance(traffic, list) else []):
        revision = entry.get("revisionName") if isinstance(entry, dict) else None
        if revision and name and not str(revision).startswith(f"{name}-"):
            found.append(
                (
                    f"spec.traffic[{index}].revisionName",
                    f"{revision} is not a revision of Service {name}",
                    f"name one of its revisions ({name}-...; see `edgeinfer services describe`)",
                )
            )
    return found


def _gpu_whole_and_equal(manifest: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    found = []
    for index, container in enumerate(_containers(manifest)):
        where = f"spec.template.spec.containers[{index}].resources"
        limit = _get(container, "resources", "limits", n.GPU_RESOURCE)
        request = _get(container, "resources", "requests", n.GPU_RESOURCE)
        for value, at in ((limit, "limits"), (request, "requests")):
            if value is not None and not re.fullmatch(r"[0-9]+", str(value)):
                found.append(
                    (f"{where}.{at}.{n.GPU_RESOURCE}", f"{value} is not a whole number of GPUs", "use 1, 2...")
                )
        if request is not None and str(request) != str(limit):
            found.append(
                (
                    f"{where}.requests.{n.GPU_RESOURCE}",
                    f"request {request} differs from limit {limit}",
                    "drop the request (it defaults to the limit) or make them equal",
                )
            )
    return found


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(
            "h2c-port",
            "the function speaks gRPC, which needs HTTP/2 end to end: Knative uses it only for a port named h2c",
            _h2c_port,
        ),
        Policy(
            "probe-on-serving-port",
            "a probe on another port says nothing about the port that serves; the function answers its gRPC health "
            "check on the serving port once its models are warm",
            _probe_on_serving_port,
        ),
        Policy(
            "traffic-of-this-service",
            "Knative accepts any well-formed revision name, and then the route never becomes Ready if it is not "
            "one of this Service's revisions",
            _traffic_of_this_service,
        ),
        Policy(
            "gpu-whole-and-equal",
            "Kubernetes refuses the pods later (extended resources are whole and cannot be overcommitted), after "
            "Knative has accepted the Service",
            _gpu_whole_and_equal,
        ),
    )
}


class UnknownPolicy(ValueError):
    pass


def add_allow_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--allow NAME` (repeatable), shared by `edgeinfer deploy` and `edgeinfer validate`."""
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="NAME",
        help=f"waive an edgeinfer policy (repeatable; Knative's own rules always hold): {', '.join(POLICIES)}",
    )


def check_allowed(allow: Collection[str]) -> None:
    unknown = sorted(set(allow) - set(POLICIES))
    if unknown:
        raise UnknownPolicy(f"--allow {', '.join(unknown)}: no such policy; the policies are {', '.join(POLICIES)}")


def policy_problems(manifest: Mapping[str, Any], allow: Collection[str] = ()) -> list[Problem]:
    check_allowed(allow)
    problems = []
    for policy in POLICIES.values():
        if policy.name in allow:
            continue
        for path, message, fix in policy.check(manifest):
            problems.append(Problem(path, message, f"{fix} (or --allow {policy.name})", "policy", rule=policy.name))
    return problems


def validate(
    manifest: Mapping[str, Any],
    cluster: flags.ClusterConfig | None = None,
    allow: Collection[str] = (),
    existing: Mapping[str, Any] | None = None,
) -> list[Problem]:
    """Every problem of a Service manifest: the schema's; then, if it holds, Knative's webhook's and policy's.
    `existing`: the Service the cluster holds, which makes it an update.

    The API server refuses a manifest that breaks the schema before Knative's webhook sees it.
    """
    problems = schema_problems(manifest)
    if problems:
        return problems
    return knative_problems(manifest, cluster, existing) + policy_problems(manifest, allow)
