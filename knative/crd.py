"""The Knative Service CRD shipped with edgeinfer (crd/service-crd.yaml, see crd/NOTICE) and its v1 schema."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

CRD_FILE = Path(__file__).with_name("crd") / "service-crd.yaml"


@functools.cache
def service_schema() -> dict[str, Any]:
    """The openAPIV3Schema of `serving.knative.dev/v1` Service (read once)."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    for version in crd["spec"]["versions"]:
        if version["name"] == "v1":
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise RuntimeError(f"{CRD_FILE} has no v1 version")
