"""What Knative's validation reads from context.Context, as one immutable value.

Go code passes `ctx` down and derives children with `apis.WithinCreate(ctx)`, `WithinParent(ctx, meta)`...;
here each of those is a method returning a changed copy. `Context()` is Go's `context.Background()`: no
operation, no parent, Knative's default ConfigMaps (config.FromContextOrDefaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from edgeinfer.knative.webhook.config import Autoscaler, Config, Defaults, Features


@dataclass(frozen=True)
class Context:
    config: Config = field(default_factory=Config)
    # knative.dev/pkg/apis/contexts.go
    in_create: bool = False
    in_update: bool = False
    in_delete: bool = False
    baseline: Any = None  # the object before the update (GetBaseline)
    subresource: str = ""  # GetUpdatedSubresource
    parent: Mapping[str, Any] | None = None  # the ObjectMeta of WithinParent
    in_spec: bool = False
    in_status: bool = False
    deprecated_allowed: bool = True
    different_namespace_allowed: bool = False
    dry_run: bool = False
    user_info: Mapping[str, Any] | None = None
    # knative.dev/serving: the container being validated (k8s_validation.go), v1's contexts.go
    in_user_container: bool = False
    in_sidecar_container: bool = False
    in_init_container: bool = False
    default_configuration_name: bool = False
    previous_configuration_spec: Mapping[str, Any] | None = None  # v1's WithPreviousConfigurationSpec

    # --- config.FromContextOrDefaults and config.ToContext ----------------------------------------------
    @property
    def features(self) -> Features:
        return self.config.features

    @property
    def defaults(self) -> Defaults:
        return self.config.defaults

    @property
    def autoscaler(self) -> Autoscaler:
        return self.config.autoscaler

    def with_config(self, config: Config) -> Context:
        return replace(self, config=config)

    def with_features(self, features: Features) -> Context:
        return replace(self, config=replace(self.config, features=features))

    def with_defaults(self, defaults: Defaults) -> Context:
        return replace(self, config=replace(self.config, defaults=defaults))

    def with_autoscaler(self, autoscaler: Autoscaler) -> Context:
        return replace(self, config=replace(self.config, autoscaler=autoscaler))

    # --- apis.Within* -----------------------------------------------------------------------------------
    def within_create(self) -> Context:
        return replace(self, in_create=True)

    def within_update(self, base: Any) -> Context:
        return replace(self, in_update=True, baseline=base, subresource="")

    def within_subresource_update(self, base: Any, subresource: str) -> Context:
        return replace(self, in_update=True, baseline=base, subresource=subresource)

    def within_delete(self) -> Context:
        return replace(self, in_delete=True)

    @property
    def in_status_update(self) -> bool:
        return self.subresource == "status"

    def within_parent(self, meta: Mapping[str, Any] | None) -> Context:
        return replace(self, parent=dict(meta or {}))

    @property
    def is_within_parent(self) -> bool:
        return self.parent is not None

    @property
    def parent_meta(self) -> Mapping[str, Any]:
        return self.parent or {}

    def within_spec(self) -> Context:
        return replace(self, in_spec=True)

    def within_status(self) -> Context:
        return replace(self, in_status=True)

    def disallow_deprecated(self) -> Context:
        return replace(self, deprecated_allowed=False)

    def allow_different_namespace(self) -> Context:
        return replace(self, different_namespace_allowed=True)

    def with_dry_run(self) -> Context:
        return replace(self, dry_run=True)

    def with_user_info(self, user_info: Mapping[str, Any]) -> Context:
        return replace(self, user_info=dict(user_info))

    # --- serving's own ----------------------------------------------------------------------------------
    def within_user_container(self) -> Context:
        return replace(self, in_user_container=True)

    def within_sidecar_container(self) -> Context:
        return replace(self, in_sidecar_container=True)

    def within_init_container(self) -> Context:
        return replace(self, in_init_container=True)

    def with_default_configuration_name(self) -> Context:
        return replace(self, default_configuration_name=True)

    def with_previous_configuration_spec(self, spec: Mapping[str, Any] | None) -> Context:
        return replace(self, previous_configuration_spec=spec)
