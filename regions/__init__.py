"""Regions: the topology of the multi-region stack (`edgeinfer up`, `edgeinfer status`)."""

from edgeinfer.regions.topology import (
    DEFAULT_TOPOLOGY_FILE,
    Gateway,
    Region,
    Topology,
    TopologyError,
    default_topology,
    dump_topology,
    join_hostport,
    load_topology,
    parse_topology,
    split_hostport,
)

__all__ = [
    "DEFAULT_TOPOLOGY_FILE",
    "Gateway",
    "Region",
    "Topology",
    "TopologyError",
    "default_topology",
    "dump_topology",
    "join_hostport",
    "load_topology",
    "parse_topology",
    "split_hostport",
]
