"""Run the real Envoy binary for the local stack: its command line and its admin interface (readiness, the
health of each region as Envoy sees it)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from edgeinfer.regions.envoy_binary import find_envoy


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
