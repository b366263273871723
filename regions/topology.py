"""The regions topology: which regions exist, where their gateways and Redis listen, and who is whose neighbour.

A topology is a YAML file validated with pydantic. Every error names the field it is about, as a path
into the file (`regions[1].neighbours[0]: unknown region 'eu-wst'`), so a wrong topology is fixed at once.

```yaml
entry: 8001                 # the global entry port: Envoy's gRPC listener
envoy_admin: 9901           # Envoy's admin interface, on 127.0.0.1
model_repo: ./models        # relative paths are relative to the working directory
regions:
  - name: us-east
    gateway:
      grpc: [127.0.0.1:8101]    # HOST:PORT, one or more (a bare string or list is accepted too)
      admin: 127.0.0.1:8102     # optional: /metrics, /readyz, /v1/pools
      rest: 127.0.0.1:8103      # optional: REST v2
    redis: redis://127.0.0.1:6380/0
    neighbours: [eu-west, ap-south]   # other regions, nearest first
    kube_context: null          # optional, for Knative deployments
    knative_domain: null        # optional, for Knative deployments
```
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from edgeinfer.cache.redis_store import ClusterUrl, parse_redis_target, redact_url

DEFAULT_TOPOLOGY_FILE = Path(__file__).with_name("default-topology.yaml")
DEFAULT_ENTRY_PORT = 8001  # Triton's gRPC port: clients find the stack where they expect Triton
DEFAULT_ENVOY_ADMIN_PORT = 9901  # Envoy's own default
DEFAULT_BASE_PORT = 8101
DEFAULT_REDIS_BASE_PORT = 6380
DEFAULT_REGIONS = ("us-east", "eu-west", "ap-south")
# Nearest first, by typical round-trip times between the three areas.
_DEFAULT_NEIGHBOURS = {
    "us-east": ("eu-west", "ap-south"),
    "eu-west": ("us-east", "ap-south"),
    "ap-south": ("eu-west", "us-east"),
}

_REGION_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")


class TopologyError(ValueError):
    """A topology that cannot be used; each line of the message names a field."""

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in self.problems))


def split_hostport(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` → (host, port); ValueError when it is neither."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError(f"{text!r} is not HOST:PORT ([IPv6]:PORT for IPv6)")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, e.g. [::1]:{port}")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"{text!r}: port {number} is not in 1-65535")
    return host, number


def join_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hostport(value: str) -> str:
    host, port = split_hostport(value)
    return join_hostport(host, port)


HostPort = Annotated[str, AfterValidator(_hostport)]


def _redis_url(value: str) -> str:
    try:
        target = parse_redis_target(value)  # a Redis Cluster URL is checked there, node by node
    except ValueError as error:
        raise ValueError(str(error)) from None
    if isinstance(target, ClusterUrl):
        return value
    parts = urlsplit(target)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{redact_url(value)!r} is not a redis://, rediss:// or redis+cluster:// URL")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{redact_url(value)!r}: the port is not a number in 1-65535") from None
    if not parts.hostname:
        raise ValueError(f"{redact_url(value)!r} has no host")
    if port is None:
        raise ValueError(f"{redact_url(value)!r} has no port (e.g. redis://127.0.0.1:6380/0)")
    return value


def redis_endpoints(url: str) -> list[tuple[str, int]]:
    """The host:port pairs a validated Redis URL names: one server, or a cluster's startup nodes."""
    target = parse_redis_target(url)
    if isinstance(target, ClusterUrl):
        return list(target.nodes)
    parts = urlsplit(target)
    assert parts.hostname is not None and parts.port is not None  # validated
    return [(parts.hostname, parts.port)]


RedisUrl = Annotated[str, AfterValidator(_redis_url)]


def _region_name(value: str) -> str:
    if not _REGION_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a region name: lower-case letters, digits and '-', starting and ending with a "
            "letter or digit, at most 63 characters (e.g. 'eu-west')"
        )
    return value


RegionName = Annotated[str, AfterValidator(_region_name)]


def _domain(value: str) -> str:
    if not _DOMAIN.match(value):
        raise ValueError(f"{value!r} is not a DNS domain (e.g. 'eu-west.example.com')")
    return value


def _gateway_shorthand(value: Any) -> Any:
    # `gateway: 127.0.0.1:8101` or `gateway: [a, b]` mean the gRPC endpoints alone.
    if isinstance(value, str):
        return {"grpc": [value]}
    if isinstance(value, list):
        return {"grpc": value}
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gateway(_Strict):
    grpc: Annotated[list[HostPort], BeforeValidator(_one_or_many), Field(min_length=1)]
    admin: HostPort | None = None
    rest: HostPort | None = None

    @property
    def grpc_address(self) -> str:
        """The first gRPC endpoint: the one `edgeinfer up` serves and clients of this region use."""
        return self.grpc[0]


class Region(_Strict):
    name: RegionName
    gateway: Annotated[Gateway, BeforeValidator(_gateway_shorthand)]
    redis: RedisUrl
    kube_context: str | None = Field(default=None, min_length=1)
    knative_domain: Annotated[str, AfterValidator(_domain)] | None = None
    neighbours: list[str] = Field(default_factory=list)


class Topology(_Strict):
    regions: list[Region] = Field(min_length=1)
    entry: int = Field(default=DEFAULT_ENTRY_PORT, ge=1, le=65535)
    envoy_admin: int = Field(default=DEFAULT_ENVOY_ADMIN_PORT, ge=1, le=65535)
    model_repo: Path = Path("models")

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.regions]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as a topology file holds it."""
        data = self.model_dump(mode="json")
        data["model_repo"] = _path_text(self.model_repo)
        return data


def _path_text(path: Path) -> str:
    text = str(path)
    return text if path.is_absolute() or text.startswith(".") else f"./{text}"


def _location(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith(("function-after[", "function-before[", "function-wrap[")):
            continue  # pydantic's validator wrappers are not fields
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _format_validation_error(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "missing (required)"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        problems.append(f"{_location(item['loc'])}: {message}")
    return problems


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1", "0.0.0.0", "::") or host.startswith("127.")


def _check_consistency(topology: Topology) -> list[str]:
    problems: list[str] = []
    names = topology.names
    first_index: dict[str, int] = {}
    for i, region in enumerate(topology.regions):
        if region.name in first_index:
            problems.append(f"regions[{i}].name: region '{region.name}' is already regions[{first_index[region.name]}]")
        else:
            first_index[region.name] = i
    for i, region in enumerate(topology.regions):
        seen: set[str] = set()
        for j, neighbour in enumerate(region.neighbours):
            where = f"regions[{i}].neighbours[{j}]"
            if neighbour == region.name:
                problems.append(f"{where}: a region cannot be its own neighbour ('{neighbour}')")
            elif neighbour not in names:
                problems.append(f"{where}: unknown region '{neighbour}' (known: {', '.join(names)})")
            elif neighbour in seen:
                problems.append(f"{where}: '{neighbour}' is listed twice")
            seen.add(neighbour)
    # Two listeners on one address cannot both start. Hosts are compared as written, with every
    # loopback or wildcard address taken as this machine; the entry port is taken on loopback.
    used: dict[tuple[str, int], str] = {("local", topology.entry): "entry"}
    if ("local", topology.envoy_admin) in used:
        problems.append(f"envoy_admin: port {topology.envoy_admin} is already the entry port")
    used[("local", topology.envoy_admin)] = "envoy_admin"
    for i, region in enumerate(topology.regions):
        endpoints = [(f"regions[{i}].gateway.grpc[{k}]", e) for k, e in enumerate(region.gateway.grpc)]
        endpoints += [(f"regions[{i}].gateway.{f}", getattr(region.gateway, f)) for f in ("admin", "rest")]
        for host, port in redis_endpoints(region.redis):
            endpoints.append((f"regions[{i}].redis", join_hostport(host, port)))
        for where, endpoint in endpoints:
            if endpoint is None:
                continue
            host, port = split_hostport(endpoint)
            key = ("local" if _loopback(host) else host, port)
            if key in used:
                problems.append(f"{where}: {endpoint} is already used by {used[key]}")
            else:
                used[key] = where
    return problems


def parse_topology(data: Any, source: str | None = None) -> Topology:
    """Validate plain data (a parsed YAML document) as a topology; raise TopologyError naming each bad field."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise TopologyError([f"(top level): expected a mapping with a 'regions' list, got {kind}"], source)
    try:
        topology = Topology.model_validate(data)
    except ValidationError as exc:
        raise TopologyError(_format_validation_error(exc), source) from None
    problems = _check_consistency(topology)
    if problems:
        raise TopologyError(problems, source)
    return topology


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError([f"cannot read the topology: {exc.strerror}"], str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TopologyError([f"{where}not valid YAML: {problem}"], str(path)) from None
    return parse_topology(data, str(path))


def default_topology(
    base_port: int = DEFAULT_BASE_PORT,
    *,
    redis_base_port: int = DEFAULT_REDIS_BASE_PORT,
    entry: int = DEFAULT_ENTRY_PORT,
    envoy_admin: int = DEFAULT_ENVOY_ADMIN_PORT,
    model_repo: str | Path = "models",
) -> Topology:
    """us-east, eu-west and ap-south on loopback: region i has gRPC base_port+10i, admin +1, REST +2,
    and Redis redis_base_port+i."""
    regions = []
    for i, name in enumerate(DEFAULT_REGIONS):
        port = base_port + 10 * i
        regions.append(
            {
                "name": name,
                "gateway": {
                    "grpc": [f"127.0.0.1:{port}"],
                    "admin": f"127.0.0.1:{port + 1}",
                    "rest": f"127.0.0.1:{port + 2}",
                },
                "redis": f"redis://127.0.0.1:{redis_base_port + i}/0",
                "neighbours": list(_DEFAULT_NEIGHBOURS[name]),
            }
        )
    data = {"entry": entry, "envoy_admin": envoy_admin, "model_repo": str(model_repo), "regions": regions}
    return parse_topology(data, "default topology")


def dump_topology(topology: Topology) -> str:
    """The topology as YAML, in the layout of a topology file."""
    return yaml.safe_dump(topology.to_dict(), sort_keys=False)
