"""Two emulated clusters (us-east, eu-west) plus one without Knative, each a real kmock process on 127.0.0.1,
with a kubeconfig of one context per region and topologies that point at them. The deploy tests drive them
through the real `kubernetes` client over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from testkit.knative_clusters import TOKEN, Clusters, start_emulator
from testkit.procs import Proc, free_port


def _region(name: str, port: int, context: str | None, domain: str | None = None) -> dict[str, object]:
    return {
        "name": name,
        "gateway": f"127.0.0.1:{port}",
        "redis": f"redis://127.0.0.1:{port + 1}/0",
        "kube_context": context,
        "knative_domain": domain,
    }


@pytest.fixture(scope="session")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    tmp = tmp_path_factory.mktemp("clusters")
    procs: list[Proc] = []
    try:
        # us-east has nodeSelector on; eu-west has a ConfigMap without it (so it is read, and off).
        east, east_port = start_emulator(
            tmp,
            "us-east",
            "--domain",
            "us-east.example.com",
            "--forbid",
            "locked",
            "--slow",
            "slow=3",
            "--feature",
            "kubernetes.podspec-nodeselector=enabled",
        )
        procs.append(east)
        west, west_port = start_emulator(
            tmp, "eu-west", "--domain", "eu-west.example.com", "--feature", "kubernetes.podspec-affinity=enabled"
        )
        procs.append(west)
        bare, bare_port = start_emulator(tmp, "bare", "--no-knative")
        procs.append(bare)
        dead_port = free_port()  # nothing listens there
        servers = {"us-east": east_port, "eu-west": west_port, "bare": bare_port, "dead": dead_port}
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": n, "cluster": {"server": f"http://127.0.0.1:{p}"}} for n, p in servers.items()],
            "users": [{"name": "deployer", "user": {"token": TOKEN}}],
            "contexts": [{"name": f"kind-{n}", "context": {"cluster": n, "user": "deployer"}} for n in servers],
            "current-context": "kind-us-east",
        }
        kubeconfig_path = tmp / "kubeconfig"
        kubeconfig_path.write_text(yaml.safe_dump(kubeconfig))
        regions = [
            _region("us-east", 9101, "kind-us-east", "us-east.example.com"),
            _region("eu-west", 9111, "kind-eu-west", "eu-west.example.com"),
        ]
        topology = tmp / "topology.yaml"
        topology.write_text(yaml.safe_dump({"regions": regions}))
        broken = tmp / "broken-topology.yaml"
        broken_regions = [
            *regions,
            _region("ap-south", 9121, "kind-dead"),
            _region("sa-east", 9131, "kind-bare"),
            _region("me-central", 9141, None),
            _region("af-south", 9151, "kind-nowhere"),
        ]
        broken.write_text(yaml.safe_dump({"regions": broken_regions}))
        yield Clusters(kubeconfig_path, topology, broken, procs)
    finally:
        for proc in procs:
            proc.stop()
