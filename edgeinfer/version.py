"""The one version string of edgeinfer.

pyproject reads it ([tool.setuptools.dynamic] version = attr), and every code user imports it:
the servers' ServerMetadata, the Knative manifests' version label and the default function image.
"""

from __future__ import annotations

__version__ = "0.1.0"
