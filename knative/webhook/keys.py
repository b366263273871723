"""The annotation and label keys of Knative Serving, and kmap.KeyPriority for keys with older spellings.

Ports pkg/apis/serving/register.go and pkg/apis/autoscaling/register.go of knative/serving 98e5ef90, and
knative.dev/pkg/kmap/lookup.go (KeyPriority.Get/Key/Value). A KeyPriority is a tuple of keys, the current
spelling first, then the deprecated ones (`autoscaling.knative.dev/minScale` for `.../min-scale`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgeinfer.knative.webhook.go import HOUR, SECOND, Duration

KeyPriority = tuple[str, ...]


def get_key(annotations: Mapping[str, Any] | None, key_priority: KeyPriority) -> tuple[str, str, bool]:
    """KeyPriority.Get: the first key present, its value and True; else the current key, "" and False."""
    if isinstance(annotations, Mapping):
        for key in key_priority:
            if key in annotations:
                value = annotations[key]
                return key, value if isinstance(value, str) else "", True
    return key_priority[0], "", False


def get_value(annotations: Mapping[str, Any] | None, key_priority: KeyPriority) -> str:
    """KeyPriority.Value."""
    return get_key(annotations, key_priority)[1]


def update_key(annotations: dict[str, Any], key_priority: KeyPriority) -> None:
    """KeyPriority.UpdateKey: move a deprecated spelling's value to the current key."""
    key, value, found = get_key(annotations, key_priority)
    if found and key != key_priority[0]:
        del annotations[key]
        annotations[key_priority[0]] = value


# --- pkg/apis/serving/register.go ------------------------------------------------------------------------

GROUP_NAME = "serving.knative.dev"
GROUP_NAME_PREFIX = GROUP_NAME + "/"
CONFIGURATION_LABEL_KEY = GROUP_NAME + "/configuration"
REVISION_LAST_PINNED_ANNOTATION_KEY = GROUP_NAME + "/lastPinned"
REVISION_PRESERVED_ANNOTATION_KEY = GROUP_NAME + "/no-gc"
ROUTE_LABEL_KEY = GROUP_NAME + "/route"
ROUTES_ANNOTATION_KEY = GROUP_NAME + "/routes"
ROLLOUT_DURATION_KEY = GROUP_NAME + "/rollout-duration"
ROUTING_STATE_LABEL_KEY = GROUP_NAME + "/routingState"
ROUTING_STATE_MODIFIED_ANNOTATION_KEY = GROUP_NAME + "/routingStateModified"
ROUTE_NAMESPACE_LABEL_KEY = GROUP_NAME + "/routeNamespace"
REVISION_LABEL_KEY = GROUP_NAME + "/revision"
REVISION_UID = GROUP_NAME + "/revisionUID"
CONFIGURATION_UID_LABEL_KEY = GROUP_NAME + "/configurationUID"
SERVICE_UID_LABEL_KEY = GROUP_NAME + "/serviceUID"
SERVICE_LABEL_KEY = GROUP_NAME + "/service"
DOMAIN_MAPPING_UID_LABEL_KEY = GROUP_NAME + "/domainMappingUID"
DOMAIN_MAPPING_NAMESPACE_LABEL_KEY = GROUP_NAME + "/domainMappingNamespace"
CONFIGURATION_GENERATION_LABEL_KEY = GROUP_NAME + "/configurationGeneration"
CREATOR_ANNOTATION = GROUP_NAME + "/creator"
UPDATER_ANNOTATION = GROUP_NAME + "/lastModifier"
REVISION_DEPLOYMENT_HASH_LABEL_KEY = GROUP_NAME + "/deployment-hash"
QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY = "queue.sidecar." + GROUP_NAME + "/resource-percentage"
QUEUE_SIDECAR_CPU_RESOURCE_REQUEST_ANNOTATION_KEY = "queue.sidecar." + GROUP_NAME + "/cpu-resource-request"
QUEUE_SIDECAR_CPU_RESOURCE_LIMIT_ANNOTATION_KEY = "queue.sidecar." + GROUP_NAME + "/cpu-resource-limit"
QUEUE_SIDECAR_MEMORY_RESOURCE_REQUEST_ANNOTATION_KEY = "queue.sidecar." + GROUP_NAME + "/memory-resource-request"
QUEUE_SIDECAR_MEMORY_RESOURCE_LIMIT_ANNOTATION_KEY = "queue.sidecar." + GROUP_NAME + "/memory-resource-limit"
QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_REQUEST_ANNOTATION_KEY = (
    "queue.sidecar." + GROUP_NAME + "/ephemeral-storage-resource-request"
)
QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_LIMIT_ANNOTATION_KEY = (
    "queue.sidecar." + GROUP_NAME + "/ephemeral-storage-resource-limit"
)
VISIBILITY_CLUSTER_LOCAL = "cluster-local"
PROGRESS_DEADLINE_ANNOTATION_KEY = GROUP_NAME + "/progress-deadline"

ROLLOUT_DURATION_ANNOTATION: KeyPriority = (ROLLOUT_DURATION_KEY, GROUP_NAME + "/rolloutDuration")
QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION: KeyPriority = (
    QUEUE_SIDECAR_RESOURCE_PERCENTAGE_ANNOTATION_KEY,
    "queue.sidecar." + GROUP_NAME + "/resourcePercentage",
)
QUEUE_SIDECAR_CPU_RESOURCE_REQUEST_ANNOTATION: KeyPriority = (QUEUE_SIDECAR_CPU_RESOURCE_REQUEST_ANNOTATION_KEY,)
QUEUE_SIDECAR_CPU_RESOURCE_LIMIT_ANNOTATION: KeyPriority = (QUEUE_SIDECAR_CPU_RESOURCE_LIMIT_ANNOTATION_KEY,)
QUEUE_SIDECAR_MEMORY_RESOURCE_REQUEST_ANNOTATION: KeyPriority = (QUEUE_SIDECAR_MEMORY_RESOURCE_REQUEST_ANNOTATION_KEY,)
QUEUE_SIDECAR_MEMORY_RESOURCE_LIMIT_ANNOTATION: KeyPriority = (QUEUE_SIDECAR_MEMORY_RESOURCE_LIMIT_ANNOTATION_KEY,)
QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_REQUEST_ANNOTATION: KeyPriority = (
    QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_REQUEST_ANNOTATION_KEY,
)
QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_LIMIT_ANNOTATION: KeyPriority = (
    QUEUE_SIDECAR_EPHEMERAL_STORAGE_RESOURCE_LIMIT_ANNOTATION_KEY,
)
PROGRESS_DEADLINE_ANNOTATION: KeyPriority = (PROGRESS_DEADLINE_ANNOTATION_KEY,)

# --- pkg/apis/autoscaling/register.go --------------------------------------------------------------------

AUTOSCALING_INTERNAL_GROUP_NAME = "autoscaling.internal.knative.dev"
AUTOSCALING_GROUP_NAME = "autoscaling.knative.dev"
CLASS_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/class"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
MIN_SCALE_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/min-scale"
MAX_SCALE_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/max-scale"
INITIAL_SCALE_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/initial-scale"
SCALE_DOWN_DELAY_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/scale-down-delay"
METRIC_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/metric"
CONCURRENCY = "concurrency"
CPU = "cpu"
MEMORY = "memory"
RPS = "rps"
TARGET_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/target"
TARGET_MIN = 0.01
SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY = AUTOSCALING_GROUP_NAME + "/scale-to-zero-pod-retention-period"
METRIC_AGGREGATION_ALGORITHM_KEY = AUTOSCALING_GROUP_NAME + "/metric-aggregation-algorithm"
METRIC_AGGREGATION_ALGORITHM_LINEAR = "linear"
METRIC_AGGREGATION_ALGORITHM_WEIGHTED_EXPONENTIAL = "weighted-exponential"
METRIC_AGGREGATION_ALGORITHM_WEIGHTED_EXPONENTIAL_ALT = "weightedExponential"
WINDOW_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/window"
WINDOW_MIN: Duration = Duration(6 * SECOND)
WINDOW_MAX: Duration = Duration(1 * HOUR)
TARGET_UTILIZATION_PERCENTAGE_KEY = AUTOSCALING_GROUP_NAME + "/target-utilization-percentage"
TARGET_BURST_CAPACITY_KEY = AUTOSCALING_GROUP_NAME + "/target-burst-capacity"
PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/panic-window-percentage"
PANIC_WINDOW_PERCENTAGE_MIN = 1.0
PANIC_WINDOW_PERCENTAGE_MAX = 100.0
PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY = AUTOSCALING_GROUP_NAME + "/panic-threshold-percentage"
PANIC_THRESHOLD_PERCENTAGE_MIN = 110.0
PANIC_THRESHOLD_PERCENTAGE_MAX = 1000.0
ACTIVATION_SCALE_KEY = AUTOSCALING_GROUP_NAME + "/activation-scale"

CLASS_ANNOTATION: KeyPriority = (CLASS_ANNOTATION_KEY,)
INITIAL_SCALE_ANNOTATION: KeyPriority = (INITIAL_SCALE_ANNOTATION_KEY, AUTOSCALING_GROUP_NAME + "/initialScale")
MAX_SCALE_ANNOTATION: KeyPriority = (MAX_SCALE_ANNOTATION_KEY, AUTOSCALING_GROUP_NAME + "/maxScale")
METRIC_ANNOTATION: KeyPriority = (METRIC_ANNOTATION_KEY,)
METRIC_AGGREGATION_ALGORITHM_ANNOTATION: KeyPriority = (
    METRIC_AGGREGATION_ALGORITHM_KEY,
    AUTOSCALING_GROUP_NAME + "/metricAggregationAlgorithm",
)
ACTIVATION_SCALE: KeyPriority = (ACTIVATION_SCALE_KEY,)
MIN_SCALE_ANNOTATION: KeyPriority = (MIN_SCALE_ANNOTATION_KEY, AUTOSCALING_GROUP_NAME + "/minScale")
PANIC_THRESHOLD_PERCENTAGE_ANNOTATION: KeyPriority = (
    PANIC_THRESHOLD_PERCENTAGE_ANNOTATION_KEY,
    AUTOSCALING_GROUP_NAME + "/panicThresholdPercentage",
)
PANIC_WINDOW_PERCENTAGE_ANNOTATION: KeyPriority = (
    PANIC_WINDOW_PERCENTAGE_ANNOTATION_KEY,
    AUTOSCALING_GROUP_NAME + "/panicWindowPercentage",
)
SCALE_DOWN_DELAY_ANNOTATION: KeyPriority = (
    SCALE_DOWN_DELAY_ANNOTATION_KEY,
    AUTOSCALING_GROUP_NAME + "/scaleDownDelay",
)
SCALE_TO_ZERO_POD_RETENTION_PERIOD_ANNOTATION: KeyPriority = (
    SCALE_TO_ZERO_POD_RETENTION_PERIOD_KEY,
    AUTOSCALING_GROUP_NAME + "/scaleToZeroPodRetentionPeriod",
)
TARGET_ANNOTATION: KeyPriority = (TARGET_ANNOTATION_KEY,)
TARGET_BURST_CAPACITY_ANNOTATION: KeyPriority = (
    TARGET_BURST_CAPACITY_KEY,
    AUTOSCALING_GROUP_NAME + "/targetBurstCapacity",
)
TARGET_UTILIZATION_PERCENTAGE_ANNOTATION: KeyPriority = (
    TARGET_UTILIZATION_PERCENTAGE_KEY,
    AUTOSCALING_GROUP_NAME + "/targetUtilizationPercentage",
)
WINDOW_ANNOTATION: KeyPriority = (WINDOW_ANNOTATION_KEY,)
