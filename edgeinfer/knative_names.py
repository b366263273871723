"""The names, labels and addresses the Knative objects of a model get, and the Kubernetes rules they follow.

In the ground layer because the gateway (which finds Services by these names) sits below knative/."""

from __future__ import annotations

import re

GROUP = "serving.knative.dev"
VERSION = "v1"
PLURAL = "services"
API_VERSION = f"{GROUP}/{VERSION}"
GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's extended resource
RESOURCE = f"{PLURAL}.{GROUP}"

# Server-side apply records this as the owner of every field edgeinfer sets.
FIELD_MANAGER = "edgeinfer"

LABEL_MODEL = "edgeinfer.dev/model"
LABEL_REGION = "edgeinfer.dev/region"
LABEL_MODEL_VERSION = "edgeinfer.dev/model-version"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_VERSION = "app.kubernetes.io/version"
MANAGED_BY = "edgeinfer"
# Keeps a Service off the ingress: reachable only at <name>.<namespace>.svc.cluster.local.
LABEL_VISIBILITY = "networking.knative.dev/visibility"

AUTOSCALING_PREFIX = "autoscaling.knative.dev/"

_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


def is_dns1035_label(text: str) -> bool:
    """A Kubernetes Service name: lower-case letters, digits, '-', starting with a letter, at most 63."""
    return bool(_DNS1035_LABEL.match(text))


def is_dns1123_label(text: str) -> bool:
    return bool(_DNS1123_LABEL.match(text))


def is_label_value(text: str) -> bool:
    return bool(_LABEL_VALUE.match(text))


def service_name(model: str) -> str:
    """The Knative Service of a model: its name in lower case, with '_' and '.' as '-'.

    ValueError, naming the fix, when that is still no DNS-1035 label.
    """
    name = model.lower().replace("_", "-").replace(".", "-")
    if not is_dns1035_label(name):
        raise ValueError(
            f"model '{model}' gives no valid Knative Service name ('{name}'): a Service name is lower-case letters, "
            "digits and '-', starts with a letter, ends with a letter or digit, at most 63 characters; "
            "pass --service-name NAME"
        )
    return name


def cluster_local_host(service: str, namespace: str, cluster_domain: str = "cluster.local") -> str:
    """The in-cluster address of a Knative Service (its Route's private hostname)."""
    return f"{service}.{namespace}.svc.{cluster_domain}"


def external_host(service: str, namespace: str, domain: str) -> str:
    """The hostname the ingress routes to a Knative Service, with Knative's default domain template."""
    return f"{service}.{namespace}.{domain}"


def tagged_name(tag: str, service: str) -> str:
    """The name a Knative traffic tag's route gets (the default tagTemplate `{{.Tag}}-{{.Name}}`); it takes the
    Service name's place in the host: `<tag>-<service>.<namespace>.<domain>`, or `.svc.<cluster-domain>` inside.

    ValueError, naming the rule, when the tag or the name it makes is no DNS-1035 label (Knative refuses it too).
    """
    name = f"{tag}-{service}"
    if not is_dns1123_label(tag) or not is_dns1035_label(name):
        raise ValueError(
            f"traffic tag '{tag}' of Knative Service '{service}' gives no valid route name ('{name}'): a tag is "
            "lower-case letters, digits and '-', and '<tag>-<service>' must start with a letter and be at most "
            "63 characters"
        )
    return name
