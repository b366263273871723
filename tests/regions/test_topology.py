from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgeinfer.regions.topology import (
    DEFAULT_TOPOLOGY_FILE,
    TopologyError,
    default_topology,
    dump_topology,
    load_topology,
    parse_topology,
    redis_endpoints,
)
from edgeinfer.stack.state import entry_address, local_layout


def test_default_topology_file_equals_the_default() -> None:
    assert load_topology(DEFAULT_TOPOLOGY_FILE) == default_topology()


def test_default_topology_layout() -> None:
    topology = default_topology()
    assert topology.names == ["us-east", "eu-west", "ap-south"]
    assert topology.entry == 8001
    assert topology.model_repo == Path("models")
    for i, region in enumerate(topology.regions):
        assert region.gateway.grpc == [f"127.0.0.1:{8101 + 10 * i}"]
        assert region.gateway.admin == f"127.0.0.1:{8102 + 10 * i}"
        assert region.redis == f"redis://127.0.0.1:{6380 + i}/0"
        assert sorted(region.neighbours) == sorted(set(topology.names) - {region.name})
    assert topology.region("ap-south").neighbours[0] == "eu-west"
    moved = default_topology(9000, redis_base_port=7000)
    assert moved.regions[2].gateway.grpc == ["127.0.0.1:9020"] and moved.regions[2].redis.endswith(":7002/0")


def test_a_region_may_use_a_redis_cluster() -> None:
    data = copy.deepcopy(default_topology().to_dict())
    data["regions"][0]["redis"] = "redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001,[::1]:7002"
    data["regions"][1]["redis"] = "redis://127.0.0.1:7100?cluster=true"
    topology = parse_topology(data)
    assert topology.regions[0].redis.startswith("redis+cluster://")
    assert redis_endpoints(topology.regions[0].redis) == [("127.0.0.1", 7000), ("127.0.0.1", 7001), ("::1", 7002)]


def test_dump_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(dump_topology(default_topology(9100)))
    assert load_topology(path) == default_topology(9100)


def test_shorthands_and_optional_fields() -> None:
    topology = parse_topology(
        {
            "regions": [
                {"name": "a", "gateway": "127.0.0.1:9001", "redis": "redis://127.0.0.1:9002"},
                {
                    "name": "b",
                    "gateway": ["127.0.0.1:9003", "[::1]:9004"],
                    "redis": "redis://:secret@127.0.0.1:9005/1",
                    "neighbours": ["a"],
                    "kube_context": "kind-b",
                    "knative_domain": "b.example.com",
                },
            ],
            "entry": 9000,
            "model_repo": "/srv/models",
        }
    )
    assert topology.regions[0].gateway.grpc == ["127.0.0.1:9001"] and topology.regions[0].gateway.admin is None
    assert topology.regions[1].gateway.grpc == ["127.0.0.1:9003", "[::1]:9004"]
    assert topology.regions[1].knative_domain == "b.example.com"
    layout = local_layout(topology)
    assert [e.grpc for e in layout] == ["127.0.0.1:9001", "127.0.0.1:9003"]
    assert entry_address(topology, 9100) == "127.0.0.1:9100" and entry_address(topology) == "127.0.0.1:9000"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation of the default topology's data: set the field at `path` (dots and [i])."""

    def mutate(data: dict[str, Any]) -> None:
        parts: list[str | int] = []
        for piece in path.replace("[", ".").replace("]", "").split("."):
            parts.append(int(piece) if piece.isdigit() else piece)
        target: Any = data
        for part in parts[:-1]:
            target = target[part]
        if value is _DELETE:
            del target[parts[-1]]
        else:
            target[parts[-1]] = value

    return mutate


_DELETE = object()

BAD = [
    # (mutation, the field the message must name, a phrase it must contain)
    (_set("regions[1].neighbours[0]", "eu-wst"), "regions[1].neighbours[0]", "unknown region 'eu-wst'"),
    (_set("regions[0].neighbours[1]", "us-east"), "regions[0].neighbours[1]", "own neighbour"),
    (_set("regions[2].neighbours", ["eu-west", "eu-west"]), "regions[2].neighbours[1]", "listed twice"),
    (_set("regions[2].name", "us-east"), "regions[2].name", "already regions[0]"),
    (_set("regions[1].name", "EU_west"), "regions[1].name", "not a region name"),
    (_set("regions[0].name", _DELETE), "regions[0].name", "missing"),
    (_set("regions[0].gateway.grpc[0]", "localhost"), "regions[0].gateway.grpc[0]", "not HOST:PORT"),
    (_set("regions[0].gateway.grpc", []), "regions[0].gateway.grpc", "at least 1"),
    (_set("regions[1].gateway.admin", "127.0.0.1:70000"), "regions[1].gateway.admin", "not in 1-65535"),
    (_set("regions[1].gateway.adminn", "127.0.0.1:7000"), "regions[1].gateway.adminn", "unknown field"),
    (_set("regions[2].redis", "http://127.0.0.1:6382"), "regions[2].redis", "redis://"),
    (_set("regions[2].redis", "redis://127.0.0.1"), "regions[2].redis", "no port"),
    (_set("regions[1].knative_domain", "not a domain"), "regions[1].knative_domain", "DNS domain"),
    (_set("regions[1].neighbors", []), "regions[1].neighbors", "unknown field"),
    (_set("regions[1].gateway.admin", "127.0.0.1:8101"), "regions[1].gateway.admin", "already used by regions[0]"),
    (_set("regions[2].redis", "redis://127.0.0.1:8001/0"), "regions[2].redis", "already used by entry"),
    (_set("regions[2].redis", "redis+cluster://127.0.0.1:7000,127.0.0.1:8001"), "regions[2].redis", "used by entry"),
    (_set("regions[2].redis", "redis+cluster://127.0.0.1:7000/1"), "regions[2].redis", "database 0 only"),
    (_set("regions[2].redis", "redis://:pw@127.0.0.1:7000?cluster=maybe"), "regions[2].redis", "cluster=true"),
    (_set("entry", 0), "entry", "greater than or equal to 1"),
    (_set("regions", []), "regions", "at least 1"),
    (_set("regins", []), "regins", "unknown field"),
]


@pytest.mark.parametrize(("mutate", "field", "phrase"), BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_bad_topology_names_the_field(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], None], field: str, phrase: str
) -> None:
    data = copy.deepcopy(default_topology().to_dict())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    lines = str(caught.value).splitlines()
    assert any(line.startswith(f"{path}: {field}: ") and phrase in line for line in lines), lines


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(TopologyError, match=r"\(top level\): expected a mapping"):
        load_topology(path)
    path.write_text("regions: [\n  {name: a\n")
    with pytest.raises(TopologyError, match=r"t\.yaml: line \d+, column \d+: not valid YAML"):
        load_topology(path)
    with pytest.raises(TopologyError, match="cannot read the topology"):
        load_topology(tmp_path / "missing.yaml")
