"""The stack on one machine: where each region of a topology listens under `edgeinfer up`, and the state file
(STATE/up.json) through which `edgeinfer status` finds a running stack."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from edgeinfer.regions.topology import Topology, join_hostport

DEFAULT_STATE_DIR = Path(".edgeinfer")
STATE_FILE = "up.json"


class RegionEndpoints(BaseModel):
    """Where one region listens, as `edgeinfer up` runs it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    grpc: str  # HOST:PORT of the gateway's gRPC front
    admin: str | None = None  # HOST:PORT of /metrics, /readyz, /v1/pools
    rest: str | None = None
    redis: str  # URL, password redacted in the state file


def local_layout(topology: Topology) -> list[RegionEndpoints]:
    """The endpoints of each region under `edgeinfer up`: where the topology says. The entry port is Envoy's."""
    return [
        RegionEndpoints(
            name=region.name,
            grpc=region.gateway.grpc_address,
            admin=region.gateway.admin,
            rest=region.gateway.rest,
            redis=region.redis,
        )
        for region in topology.regions
    ]


def entry_address(topology: Topology, entry_port: int | None = None) -> str:
    """Envoy's listener: the single entry point of the stack."""
    return join_hostport("127.0.0.1", topology.entry if entry_port is None else entry_port)


def redis_parts(url: str) -> tuple[str, int, str | None]:
    """(host, port, password) of a redis:// URL."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port, unquote(parts.password) if parts.password else None


class ProcessRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid: int
    start_time: int  # clock ticks since boot: with the pid, names this process for good
    role: str  # "gateway", "redis" or "envoy"
    region: str
    log: str


class StackState(BaseModel):
    """STATE/up.json: written by `edgeinfer up` when it starts processes, updated when ready, removed on stop."""

    model_config = ConfigDict(extra="forbid")

    pid: int  # the `edgeinfer up` process
    start_time: int
    started_at: float  # Unix time
    ready: bool = False
    ready_seconds: float | None = None
    topology: str | None = None  # the file, or None for the default topology
    entry: str  # HOST:PORT of Envoy's gRPC listener
    envoy_admin: str | None = None  # HOST:PORT of Envoy's admin interface
    edge: str | None = None  # the region Envoy treats as priority 0
    model_repo: str
    regions: list[RegionEndpoints]
    processes: list[ProcessRecord] = []


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def write_state(state_dir: Path, state: StackState) -> None:
    path = state_path(state_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.model_dump(mode="json"), indent=2) + "\n")
    tmp.replace(path)  # atomic: a reader sees the old file or the new one


def read_state(state_dir: Path) -> StackState | None:
    """The state file of `state_dir`, or None if there is none; ValueError if it is not one."""
    path = state_path(state_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return StackState.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"{path} is not a state file of `edgeinfer up`: {exc.error_count()} problems") from None
