"""Knative feature flags: which manifest fields need one, and whether a cluster has it on.

Knative Serving accepts some PodSpec fields only when a flag in the `config-features` ConfigMap of the
`knative-serving` namespace is on; otherwise its webhook rejects the Service. The CRD schema marks each such
field in its description ("This is accessible behind a feature flag - kubernetes.podspec-nodeselector"), so the
list here is read from the schema, not kept by hand. A few rules the schema cannot express (a writable
PersistentVolumeClaim, several containers) are added by validate.py.

The defaults are those of Knative Serving's config/core/configmaps/features.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeinfer.knative.crd import service_schema

FEATURES_NAMESPACE = "knative-serving"
FEATURES_CONFIGMAP = "config-features"

PVC = "kubernetes.podspec-persistent-volume-claim"
PVC_WRITE = "kubernetes.podspec-persistent-volume-write"
MULTI_CONTAINER = "multi-container"

# Knative's defaults; a flag not listed is off by default.
DEFAULTS: dict[str, str] = {
    MULTI_CONTAINER: "enabled",
    "kubernetes.podspec-volumes-emptydir": "enabled",
    "kubernetes.podspec-dryrun": "allowed",
}

_FLAG_IN_DESCRIPTION = re.compile(r"behind a feature flag - ([a-z0-9.-]+)")


def enable_command(flag: str) -> str:
    """The command that turns a flag on in a cluster."""
    return (
        f"kubectl patch configmap/{FEATURES_CONFIGMAP} -n {FEATURES_NAMESPACE} --type merge "
        f'-p \'{{"data":{{"{flag}":"enabled"}}}}\''
    )


@dataclass(frozen=True)
class Features:
    """The flags of one cluster, or Knative's defaults when the cluster's ConfigMap was not read."""

    values: Mapping[str, str] = field(default_factory=dict)
    # Where the values come from: "Knative's defaults" or "configmap knative-serving/config-features".
    source: str = "Knative's defaults"

    @property
    def from_cluster(self) -> bool:
        return self.source != "Knative's defaults"

    def value(self, flag: str) -> str:
        return self.values.get(flag, DEFAULTS.get(flag, "disabled")).strip().lower()

    def enabled(self, flag: str) -> bool:
        # "allowed" lets a Service use the field too (some flags then need a per-Service annotation).
        return self.value(flag) in ("enabled", "allowed")

    @classmethod
    def from_configmap_data(cls, data: Mapping[str, str] | None) -> Features:
        values = {k: v for k, v in (data or {}).items() if not k.startswith("_")}
        return cls(values, f"configmap {FEATURES_NAMESPACE}/{FEATURES_CONFIGMAP}")


@dataclass(frozen=True)
class GatedField:
    """A field of a manifest that Knative accepts only with `flag` on."""

    path: str
    flag: str


def _flag_of(schema: Mapping[str, Any]) -> str | None:
    match = _FLAG_IN_DESCRIPTION.search(str(schema.get("description", "")))
    return match.group(1) if match else None


def _walk(schema: Mapping[str, Any], value: Any, path: str) -> Iterator[GatedField]:
    flag = _flag_of(schema)
    if flag is not None:
        yield GatedField(path, flag)
        return  # the field as a whole needs the flag; its parts add nothing
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                yield from _walk(properties[key], item, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _walk(schema["items"], item, f"{path}[{index}]")


def gated_fields(manifest: Mapping[str, Any]) -> list[GatedField]:
    """The fields of a Service manifest that sit behind a feature flag, with the flag of each."""
    return list(_walk(service_schema(), manifest, ""))
