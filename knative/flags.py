"""A cluster's Knative settings: the config-features, config-defaults and config-autoscaler ConfigMaps.

Knative's webhook judges a Service by these three ConfigMaps of the knative-serving namespace (a field behind a
feature flag, the longest timeout, whether initial-scale may be 0...). `edgeinfer deploy` reads them from each
region's cluster before sending; `edgeinfer validate --features/--config` reads them from files; otherwise
Knative's defaults hold. The parsing itself is the webhook port's (webhook/config.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edgeinfer.knative.webhook import config as kc

NAMESPACE = "knative-serving"
CONFIGMAPS = (kc.FEATURES_CONFIG_NAME, kc.DEFAULTS_CONFIG_NAME, kc.AUTOSCALER_CONFIG_NAME)
DEFAULT_SOURCE = "Knative's defaults"


def enable_command(flag: str) -> str:
    """The command that turns a feature flag on in a cluster."""
    return configmap_patch(kc.FEATURES_CONFIG_NAME, flag, "enabled")


def configmap_patch(configmap: str, key: str, value: str) -> str:
    return f'kubectl patch configmap/{configmap} -n {NAMESPACE} --type merge -p \'{{"data":{{"{key}":"{value}"}}}}\''


@dataclass(frozen=True)
class ClusterConfig:
    """The webhook's settings for one cluster, and where each ConfigMap came from."""

    config: kc.Config = field(default_factory=kc.Config)
    # ConfigMap name → "configmap knative-serving/<name>" or a file; a name not listed holds Knative's defaults.
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def known(self) -> bool:
        """Whether any ConfigMap was read: then its settings decide, not the defaults."""
        return bool(self.sources)

    def source(self, configmap: str) -> str:
        return self.sources.get(configmap, DEFAULT_SOURCE)

    @classmethod
    def knative_defaults(cls) -> ClusterConfig:
        """A cluster known to hold Knative's defaults in all three ConfigMaps (what its webhook then refuses, it
        refuses: no warning instead of an error)."""
        return cls(kc.Config(), {name: f"{DEFAULT_SOURCE} ({name})" for name in CONFIGMAPS})

    @classmethod
    def from_configmaps(cls, data_by_name: Mapping[str, Mapping[str, str] | None], where: str) -> ClusterConfig:
        """From the `data` of the ConfigMaps found (by name); raises webhook.config.ConfigError as Knative would."""
        found = {name: data for name, data in data_by_name.items() if name in CONFIGMAPS and data is not None}
        return cls(kc.Config.from_configmaps(found), {name: where.format(name=name) for name in found})

    @classmethod
    def from_documents(cls, documents: Iterable[object], where: str) -> ClusterConfig:
        """From ConfigMap manifests (a file of them); others are ignored by the caller's choice."""
        data_by_name: dict[str, Mapping[str, str]] = {}
        for document in documents:
            if isinstance(document, Mapping) and document.get("kind") == "ConfigMap":
                name = str((document.get("metadata") or {}).get("name", ""))
                data_by_name[name] = {str(k): str(v) for k, v in (document.get("data") or {}).items()}
        return cls.from_configmaps(data_by_name, where)
