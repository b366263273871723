"""The three ConfigMaps of the knative-serving namespace the webhook reads (pkg/apis/config, pkg/autoscaler/config).

- config-features (features.go): which PodSpec fields and behaviours are Enabled, Allowed or Disabled;
- config-defaults (defaults.go): revision timeouts, container concurrency, container names, resources;
- config-autoscaler (autoscaler/config/config.go): scale bounds and windows the annotations are checked against.

Each parses a ConfigMap's `data` as Knative does, defaults included; a value Knative refuses raises ConfigError
with Knative's message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from edgeinfer.knative.webhook import quantity, strconv
from edgeinfer.knative.webhook.go import Duration, DurationError, parse_duration, seconds

# --- config-features ------------------------------------------------------------------------------------

ENABLED, DISABLED, ALLOWED, ALLOW_ROOT_BOUNDED = "Enabled", "Disabled", "Allowed", "AllowRootBounded"

FEATURES_CONFIG_NAME = "config-features"
QUEUE_PROXY_POD_INFO_FEATURE_KEY = "features.knative.dev/queueproxy-podinfo"
ALLOW_HTTP_FULL_DUPLEX_FEATURE_KEY = "features.knative.dev/http-full-duplex"

AUTODETECT_HTTP2 = "autodetect-http2"
MULTI_CONTAINER = "multi-container"
MULTI_CONTAINER_PROBING = "multi-container-probing"
QUEUE_PROXY_MOUNT_POD_INFO = "queueproxy.mount-podinfo"
QUEUE_PROXY_RESOURCE_DEFAULTS = "queueproxy.resource-defaults"
SECURE_POD_DEFAULTS = "secure-pod-defaults"
TAG_HEADER_BASED_ROUTING = "tag-header-based-routing"
CONTAINER_SPEC_ADD_CAPABILITIES = "kubernetes.containerspec-addcapabilities"
POD_SPEC_AFFINITY = "kubernetes.podspec-affinity"
POD_SPEC_DNS_CONFIG = "kubernetes.podspec-dnsconfig"
POD_SPEC_DNS_POLICY = "kubernetes.podspec-dnspolicy"
POD_SPEC_EMPTY_DIR = "kubernetes.podspec-volumes-emptydir"
POD_SPEC_FIELD_REF = "kubernetes.podspec-fieldref"
POD_SPEC_HOST_ALIASES = "kubernetes.podspec-hostaliases"
POD_SPEC_HOST_IPC = "kubernetes.podspec-hostipc"
POD_SPEC_HOST_NETWORK = "kubernetes.podspec-hostnetwork"
POD_SPEC_HOST_PID = "kubernetes.podspec-hostpid"
POD_SPEC_HOST_PATH = "kubernetes.podspec-volumes-hostpath"
POD_SPEC_VOLUMES_CSI = "kubernetes.podspec-volumes-csi"
POD_SPEC_INIT_CONTAINERS = "kubernetes.podspec-init-containers"
POD_SPEC_VOLUMES_MOUNT_PROPAGATION = "kubernetes.podspec-volumes-mount-propagation"
POD_SPEC_NODE_SELECTOR = "kubernetes.podspec-nodeselector"
POD_SPEC_PV_CLAIM = "kubernetes.podspec-persistent-volume-claim"
POD_SPEC_PERSISTENT_VOLUME_WRITE = "kubernetes.podspec-persistent-volume-write"
POD_SPEC_PRIORITY_CLASS_NAME = "kubernetes.podspec-priorityclassname"
POD_SPEC_RUNTIME_CLASS_NAME = "kubernetes.podspec-runtimeclassname"
POD_SPEC_SCHEDULER_NAME = "kubernetes.podspec-schedulername"
POD_SPEC_SECURITY_CONTEXT = "kubernetes.podspec-securitycontext"
POD_SPEC_SHARE_PROCESS_NAMESPACE = "kubernetes.podspec-shareprocessnamespace"
POD_SPEC_TOLERATIONS = "kubernetes.podspec-tolerations"
POD_SPEC_TOPOLOGY_SPREAD_CONSTRAINTS = "kubernetes.podspec-topologyspreadconstraints"
POD_SPEC_VOLUMES_EPHEMERAL = "kubernetes.podspec-volumes-ephemeral"
POD_SPEC_VOLUMES_IMAGE = "kubernetes.podspec-volumes-image"

# defaultFeaturesConfig(): every flag Knative knows, with its default.
FEATURE_DEFAULTS: dict[str, str] = {
    MULTI_CONTAINER: ENABLED,
    MULTI_CONTAINER_PROBING: DISABLED,
    POD_SPEC_AFFINITY: DISABLED,
    POD_SPEC_TOPOLOGY_SPREAD_CONSTRAINTS: DISABLED,
    POD_SPEC_HOST_ALIASES: DISABLED,
    POD_SPEC_FIELD_REF: DISABLED,
    POD_SPEC_NODE_SELECTOR: DISABLED,
    POD_SPEC_RUNTIME_CLASS_NAME: DISABLED,
    POD_SPEC_SECURITY_CONTEXT: DISABLED,
    POD_SPEC_SHARE_PROCESS_NAMESPACE: DISABLED,
    POD_SPEC_HOST_IPC: DISABLED,
    POD_SPEC_HOST_PID: DISABLED,
    POD_SPEC_HOST_NETWORK: DISABLED,
    POD_SPEC_PRIORITY_CLASS_NAME: DISABLED,
    POD_SPEC_SCHEDULER_NAME: DISABLED,
    CONTAINER_SPEC_ADD_CAPABILITIES: DISABLED,
    POD_SPEC_TOLERATIONS: DISABLED,
    POD_SPEC_EMPTY_DIR: ENABLED,
    POD_SPEC_HOST_PATH: DISABLED,
    POD_SPEC_VOLUMES_MOUNT_PROPAGATION: DISABLED,
    POD_SPEC_VOLUMES_CSI: DISABLED,
    POD_SPEC_VOLUMES_EPHEMERAL: DISABLED,
    POD_SPEC_VOLUMES_IMAGE: DISABLED,
    POD_SPEC_PV_CLAIM: DISABLED,
    POD_SPEC_PERSISTENT_VOLUME_WRITE: DISABLED,
    QUEUE_PROXY_MOUNT_POD_INFO: DISABLED,
    QUEUE_PROXY_RESOURCE_DEFAULTS: DISABLED,
    POD_SPEC_INIT_CONTAINERS: DISABLED,
    POD_SPEC_DNS_POLICY: DISABLED,
    POD_SPEC_DNS_CONFIG: DISABLED,
    SECURE_POD_DEFAULTS: DISABLED,
    TAG_HEADER_BASED_ROUTING: DISABLED,
    AUTODETECT_HTTP2: DISABLED,
}


class ConfigError(ValueError):
    """A ConfigMap value Knative would refuse; str() is Knative's message."""


@dataclass(frozen=True)
class Features:
    """config-features: each flag's value, one of Enabled, Disabled, Allowed (AllowRootBounded for one)."""

    flags: Mapping[str, str] = field(default_factory=lambda: dict(FEATURE_DEFAULTS))

    def __getitem__(self, key: str) -> str:
        return self.flags[key]

    def with_flags(self, **by_key: str) -> Features:
        """A copy with some flags changed: `with_flags(**{MULTI_CONTAINER: DISABLED})`."""
        return Features({**self.flags, **by_key})

    def set(self, key: str, value: str) -> Features:
        return Features({**self.flags, key: value})

    @classmethod
    def from_map(cls, data: Mapping[str, str] | None) -> Features:
        """NewFeaturesConfigFromMap: a value other than the flag's choices (any case) keeps the default."""
        flags = dict(FEATURE_DEFAULTS)
        for key, raw in (data or {}).items():
            if key not in flags:
                continue
            choices = (ENABLED, ALLOWED, DISABLED)
            if key == SECURE_POD_DEFAULTS:
                choices = (DISABLED, ALLOW_ROOT_BOUNDED, ENABLED)
            for choice in choices:
                if str(raw).lower() == choice.lower():
                    flags[key] = choice
                    break
        return cls(flags)


# --- configmap parsing as knative.dev/pkg/configmap does it ---------------------------------------------------


def _parse_bool(key: str, raw: str) -> bool:
    # strconv.ParseBool
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ConfigError(f'failed to parse "{key}": strconv.ParseBool: parsing "{raw}": invalid syntax')


def _parse_int(key: str, raw: str, bits: int) -> int:
    try:
        return strconv.parse_int(raw, bits)
    except strconv.NumError as error:
        raise ConfigError(f'failed to parse "{key}": {error}') from None


def _parse_float(key: str, raw: str) -> float:
    try:
        return strconv.parse_float(raw)
    except strconv.NumError as error:
        raise ConfigError(f'failed to parse "{key}": {error}') from None


def _parse_quantity(key: str, raw: str) -> str:
    """cm.AsQuantity: refused as ParseQuantity refuses it; kept as Go writes it back (its String())."""
    try:
        return str(quantity.parse_quantity(raw))
    except quantity.QuantityError as error:
        raise ConfigError(f'failed to parse "{key}": {error}') from None


def _parse_duration(key: str, raw: str) -> Duration:
    try:
        return parse_duration(raw)
    except DurationError as error:
        raise ConfigError(f'failed to parse "{key}": {error}') from None


# --- config-defaults ------------------------------------------------------------------------------------

DEFAULTS_CONFIG_NAME = "config-defaults"
DEFAULT_REVISION_TIMEOUT_SECONDS = 5 * 60
DEFAULT_MAX_REVISION_TIMEOUT_SECONDS = 10 * 60
DEFAULT_REVISION_RESPONSE_START_TIMEOUT_SECONDS = 5 * 60
DEFAULT_REVISION_IDLE_TIMEOUT_SECONDS = 0
DEFAULT_INIT_CONTAINER_NAME = "init-container"
DEFAULT_USER_CONTAINER_NAME = "user-container"
DEFAULT_CONTAINER_CONCURRENCY = 0
DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY = 1000
DEFAULT_ALLOW_CONTAINER_CONCURRENCY_ZERO = True

_TEMPLATE_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def render_name_template(template: str, meta: Mapping[str, Any]) -> str:
    """The text/template subset container-name-template uses: {{.Name}}, {{.Namespace}}, {{index .Labels "k"}}."""

    def action(match: re.Match[str]) -> str:
        expression = match.group(1)
        field_match = re.fullmatch(r"\.(Name|Namespace|GenerateName|UID)", expression)
        if field_match:
            key = field_match.group(1)
            return str(meta.get({"UID": "uid"}.get(key, key[0].lower() + key[1:])) or "")
        index_match = re.fullmatch(r'index \.(Labels|Annotations) "([^"]*)"', expression)
        if index_match:
            return str((meta.get(index_match.group(1).lower()) or {}).get(index_match.group(2), ""))
        raise ConfigError(f"template: container-template: unsupported action {{{{{expression}}}}}")

    return _TEMPLATE_ACTION.sub(action, template)


@dataclass(frozen=True)
class Defaults:
    """config-defaults."""

    revision_timeout_seconds: int = DEFAULT_REVISION_TIMEOUT_SECONDS
    max_revision_timeout_seconds: int = DEFAULT_MAX_REVISION_TIMEOUT_SECONDS
    revision_response_start_timeout_seconds: int = DEFAULT_REVISION_RESPONSE_START_TIMEOUT_SECONDS
    revision_idle_timeout_seconds: int = DEFAULT_REVISION_IDLE_TIMEOUT_SECONDS
    init_container_name_template: str = DEFAULT_INIT_CONTAINER_NAME
    user_container_name_template: str = DEFAULT_USER_CONTAINER_NAME
    container_concurrency: int = DEFAULT_CONTAINER_CONCURRENCY
    container_concurrency_max_limit: int = DEFAULT_MAX_REVISION_CONTAINER_CONCURRENCY
    allow_container_concurrency_zero: bool = DEFAULT_ALLOW_CONTAINER_CONCURRENCY_ZERO
    enable_service_links: bool | None = False
    # resource.Quantity values, as Go writes them back (None: not set).
    revision_cpu_request: str | None = None
    revision_cpu_limit: str | None = None
    revision_memory_request: str | None = None
    revision_memory_limit: str | None = None
    revision_ephemeral_storage_request: str | None = None
    revision_ephemeral_storage_limit: str | None = None

    def user_container_name(self, parent_meta: Mapping[str, Any] | None) -> str:
        return _render_or_empty(self.user_container_name_template, parent_meta)

    def init_container_name(self, parent_meta: Mapping[str, Any] | None) -> str:
        return _render_or_empty(self.init_container_name_template, parent_meta)

    @classmethod
    def from_map(cls, data: Mapping[str, str] | None) -> Defaults:
        """NewDefaultsConfigFromMap, with its checks."""
        data = dict(data or {})
        values: dict[str, Any] = {}
        for key, attribute in (
            ("init-container-name-template", "init_container_name_template"),
            ("container-name-template", "user_container_name_template"),
        ):
            if key in data:
                values[attribute] = data[key]
        if "allow-container-concurrency-zero" in data:
            values["allow_container_concurrency_zero"] = _parse_bool(
                "allow-container-concurrency-zero", data["allow-container-concurrency-zero"]
            )
        if "enable-service-links" in data:
            raw = data["enable-service-links"].lower()
            values["enable_service_links"] = True if raw == "true" else False if raw == "false" else None
        for key in (
            "revision-timeout-seconds",
            "max-revision-timeout-seconds",
            "revision-idle-timeout-seconds",
            "container-concurrency",
            "container-concurrency-max-limit",
        ):
            if key in data:
                values[key.replace("-", "_")] = _parse_int(key, data[key], 64)
        for key in (
            "revision-cpu-request",
            "revision-memory-request",
            "revision-ephemeral-storage-request",
            "revision-cpu-limit",
            "revision-memory-limit",
            "revision-ephemeral-storage-limit",
        ):
            if key in data:
                values[key.replace("-", "_")] = _parse_quantity(key, data[key])
        result = replace(cls(), **values)
        start = result.revision_timeout_seconds
        if "revision-response-start-timeout-seconds" in data:
            key = "revision-response-start-timeout-seconds"
            start = _parse_int(key, data[key], 64)
        result = replace(result, revision_response_start_timeout_seconds=start)
        if result.revision_timeout_seconds > result.max_revision_timeout_seconds:
            raise ConfigError(
                f"revision-timeout-seconds ({result.revision_timeout_seconds}) cannot be greater than "
                f"max-revision-timeout-seconds ({result.max_revision_timeout_seconds})"
            )
        if start > 0 and start > result.revision_timeout_seconds:
            raise ConfigError(
                f"revision-response-start-timeout-seconds ({start}) cannot be greater than "
                f"revision-timeout-seconds ({result.revision_timeout_seconds})"
            )
        idle = result.revision_idle_timeout_seconds
        if idle > 0 and idle > result.revision_timeout_seconds:
            raise ConfigError(
                f"revision-idle-timeout-seconds ({idle}) cannot be greater than "
                f"revision-timeout-seconds ({result.revision_timeout_seconds})"
            )
        if result.container_concurrency_max_limit < 1:
            limit = result.container_concurrency_max_limit
            raise ConfigError(f"expected 1 <= {limit} <= 2147483647: container-concurrency-max-limit")
        if not 0 <= result.container_concurrency <= result.container_concurrency_max_limit:
            raise ConfigError(
                f"expected 0 <= {result.container_concurrency} <= {result.container_concurrency_max_limit}: "
                "container-concurrency"
            )
        render_name_template(result.user_container_name_template, {})
        render_name_template(result.init_container_name_template, {})
        return result


def _render_or_empty(template: str, meta: Mapping[str, Any] | None) -> str:
    try:
        return render_name_template(template, meta or {})
    except ConfigError:
        return ""


# --- config-autoscaler ----------------------------------------------------------------------------------

AUTOSCALER_CONFIG_NAME = "config-autoscaler"
KPA_CLASS = "kpa.autoscaling.knative.dev"
HPA_CLASS = "hpa.autoscaling.knative.dev"
# pkg/apis/autoscaling/register.go
TARGET_MIN = 0.01
WINDOW_MIN = seconds(6)
WINDOW_MAX = seconds(3600)
PANIC_WINDOW_PERCENTAGE_MIN = 1.0
PANIC_WINDOW_PERCENTAGE_MAX = 100.0
_STABLE_WINDOW, _GRACE_PERIOD, _ZERO = seconds(60), seconds(30), seconds(0)


@dataclass(frozen=True)
class Autoscaler:
    """config-autoscaler (autoscalerconfig.Config) with Knative's defaults."""

    enable_scale_to_zero: bool = True
    container_concurrency_target_fraction: float = 0.7
    container_concurrency_target_default: float = 100.0
    target_utilization: float = 0.7
    rps_target_default: float = 200.0
    target_burst_capacity: float = 211.0
    activator_capacity: float = 100.0
    allow_zero_initial_scale: bool = False
    initial_scale: int = 1
    min_scale: int = 0
    max_scale: int = 0
    max_scale_limit: int = 0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    stable_window: Duration = _STABLE_WINDOW
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    scale_to_zero_grace_period: Duration = _GRACE_PERIOD
    scale_to_zero_pod_retention_period: Duration = _ZERO
    scale_down_delay: Duration = _ZERO
    pod_autoscaler_class: str = KPA_CLASS

    @classmethod
    def from_map(cls, data: Mapping[str, str] | None) -> Autoscaler:
        """NewConfigFromMap, with its validate()."""
        data = dict(data or {})
        values: dict[str, Any] = {}
        if "pod-autoscaler-class" in data:
            values["pod_autoscaler_class"] = data["pod-autoscaler-class"]
        for key in ("enable-scale-to-zero", "allow-zero-initial-scale"):
            if key in data:
                values[key.replace("-", "_")] = _parse_bool(key, data[key])
        floats = {
            "max-scale-up-rate": "max_scale_up_rate",
            "max-scale-down-rate": "max_scale_down_rate",
            "container-concurrency-target-percentage": "container_concurrency_target_fraction",
            "container-concurrency-target-default": "container_concurrency_target_default",
            "requests-per-second-target-default": "rps_target_default",
            "target-burst-capacity": "target_burst_capacity",
            "panic-window-percentage": "panic_window_percentage",
            "activator-capacity": "activator_capacity",
            "panic-threshold-percentage": "panic_threshold_percentage",
        }
        for key, attribute in floats.items():
            if key in data:
                values[attribute] = _parse_float(key, data[key])
        for key in ("initial-scale", "min-scale", "max-scale", "max-scale-limit"):
            if key in data:
                values[key.replace("-", "_")] = _parse_int(key, data[key], 32)
        durations = (
            "stable-window",
            "scale-down-delay",
            "scale-to-zero-grace-period",
            "scale-to-zero-pod-retention-period",
        )
        for key in durations:
            if key in data:
                values[key.replace("-", "_")] = _parse_duration(key, data[key])
        config = replace(cls(), **values)
        if config.container_concurrency_target_fraction > 1.0:
            fraction = config.container_concurrency_target_fraction / 100.0
            config = replace(config, container_concurrency_target_fraction=fraction)
        config.check()
        return config

    def check(self) -> None:
        """autoscaler/config.validate: raises ConfigError with Knative's message."""
        second = 10**9
        if self.scale_to_zero_grace_period <= 0:
            raise ConfigError(f"scale-to-zero-grace-period must be positive, was: {self.scale_to_zero_grace_period}")
        if self.scale_down_delay < 0:
            raise ConfigError(f"scale-down-delay cannot be negative, was: {self.scale_down_delay}")
        if self.scale_down_delay % second:
            raise ConfigError(
                f"scale-down-delay = {self.scale_down_delay}, must be specified with at most second precision"
            )
        if self.scale_to_zero_pod_retention_period < 0:
            raise ConfigError(
                f"scale-to-zero-pod-retention-period cannot be negative, was: {self.scale_to_zero_pod_retention_period}"
            )
        if self.target_burst_capacity < 0 and self.target_burst_capacity != -1:
            raise ConfigError(
                "target-burst-capacity must be either non-negative or -1 (for unlimited), "
                f"was: {self.target_burst_capacity:f}"
            )
        fraction = self.container_concurrency_target_fraction
        if fraction <= 0 or fraction > 1:
            raise ConfigError(
                f"container-concurrency-target-percentage = {fraction:f} is outside of valid range of (0, 100]"
            )
        if fraction * self.container_concurrency_target_default < TARGET_MIN:
            raise ConfigError(
                "container-concurrency-target-percentage and container-concurrency-target-default yield target "
                f"concurrency of {fraction * self.container_concurrency_target_default}, "
                f"can't be less than {TARGET_MIN}"
            )
        if self.rps_target_default < TARGET_MIN:
            raise ConfigError(
                f"requests-per-second-target-default must be at least {TARGET_MIN}, was: {self.rps_target_default}"
            )
        if self.activator_capacity < 1:
            raise ConfigError(f"activator-capacity = {self.activator_capacity}, must be at least 1")
        if self.max_scale_up_rate <= 1.0:
            raise ConfigError(f"max-scale-up-rate = {self.max_scale_up_rate}, must be greater than 1.0")
        if self.max_scale_down_rate <= 1.0:
            raise ConfigError(f"max-scale-down-rate = {self.max_scale_down_rate}, must be greater than 1.0")
        if not WINDOW_MIN <= self.stable_window <= WINDOW_MAX:
            raise ConfigError(f"stable-window = {self.stable_window}, must be in [{WINDOW_MIN}; {WINDOW_MAX}] range")
        if self.stable_window % second:
            raise ConfigError(f"stable-window = {self.stable_window}, must be specified with at most second precision")
        if not PANIC_WINDOW_PERCENTAGE_MIN <= self.panic_window_percentage <= PANIC_WINDOW_PERCENTAGE_MAX:
            raise ConfigError(
                f"panic-window-percentage = {self.panic_window_percentage}, must be in "
                f"[{PANIC_WINDOW_PERCENTAGE_MIN}, {PANIC_WINDOW_PERCENTAGE_MAX}] interval"
            )
        if self.initial_scale < 0 or (self.initial_scale == 0 and not self.allow_zero_initial_scale):
            raise ConfigError(
                f"initial-scale = {self.initial_scale}, must be at least 0 (or at least 1 when "
                "allow-zero-initial-scale is false)"
            )
        if self.min_scale < 0:
            raise ConfigError(f"min-scale = {self.min_scale}, must be at least 0")
        lowest_max = 1 if self.max_scale_limit > 0 else 0
        if self.max_scale < lowest_max or (self.max_scale_limit > 0 and self.max_scale > self.max_scale_limit):
            raise ConfigError(
                f"max-scale = {self.max_scale}, must be in "
                f"[{lowest_max}, max-scale-limit({self.max_scale_limit})] range"
            )
        if self.max_scale_limit < 0:
            raise ConfigError(f"max-scale-limit = {self.max_scale_limit}, must be at least 0")
        if self.min_scale > self.max_scale > 0:
            raise ConfigError(f"min-scale ({self.min_scale}) must be less than max-scale ({self.max_scale})")


@dataclass(frozen=True)
class Config:
    """config.Config: what FromContextOrDefaults gives, Knative's defaults for whatever is not set."""

    defaults: Defaults = field(default_factory=Defaults)
    features: Features = field(default_factory=Features)
    autoscaler: Autoscaler = field(default_factory=Autoscaler)

    @classmethod
    def from_configmaps(cls, data_by_name: Mapping[str, Mapping[str, str] | None]) -> Config:
        """From the `data` of config-defaults, config-features and config-autoscaler (each optional)."""
        return cls(
            Defaults.from_map(data_by_name.get(DEFAULTS_CONFIG_NAME)),
            Features.from_map(data_by_name.get(FEATURES_CONFIG_NAME)),
            Autoscaler.from_map(data_by_name.get(AUTOSCALER_CONFIG_NAME)),
        )
