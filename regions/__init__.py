"""Regions: the topology of the multi-region stack (`edgeinfer up`, `edgeinfer status`)."""

# A folder at the top of the repository (the user's layout), but a subpackage of edgeinfer: under
# another name its modules would load twice, with two copies of their state.
if __name__ != "edgeinfer.regions":
    raise ImportError(f"import edgeinfer.regions, not {__name__}: regions/ is part of the edgeinfer package")


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
