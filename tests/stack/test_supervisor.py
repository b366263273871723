"""The supervisor with plain children: a real probe, restart of a child that exits, stop in rank order."""

from __future__ import annotations

import signal
import socket
import sys
import threading
from pathlib import Path

import pytest
from testkit.procs import free_port

from edgeinfer.stack.supervisor import Child, ChildExited, Supervisor

# Listens on a port (after a moment, as a real server imports first); on SIGTERM notes its name, then exits.
SERVER = """
import signal, socket, sys, time
name, port, notes = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def stop(*_):
    with open(notes, "a") as f:
        f.write(name + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(0.2)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", port)); s.listen()
while True:
    s.accept()[0].close()
"""


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _child(tmp_path: Path, name: str, rank: int, restart: bool = False) -> tuple[Child, int]:
    port = free_port()
    notes = tmp_path / "stopped"
    child = Child(
        name, "test", "here", tmp_path / f"{name}.log", lambda: _listens(port),
        argv=lambda: [sys.executable, "-c", SERVER, name, str(port), str(notes)],
        stop_rank=rank, stop_grace=10.0, restart=restart,
    )  # fmt: skip
    return child, port


def test_ready_restart_and_stop_in_order(tmp_path: Path) -> None:
    supervisor = Supervisor()
    redis, _ = _child(tmp_path, "redis", 2)
    gateway, gateway_port = _child(tmp_path, "gateway", 1, restart=True)
    envoy, _ = _child(tmp_path, "envoy", 0)
    try:
        for child in (redis, gateway, envoy):
            supervisor.start(child)
        supervisor.wait_ready([redis, gateway, envoy], timeout=60)
        assert all(c.ready for c in (redis, gateway, envoy))

        first = gateway.pid
        gateway.signal(signal.SIGKILL)
        assert gateway.wait(30)
        assert supervisor.check_once() == [gateway]  # restarted, as `up` restarts a gateway
        assert gateway.pid != first and gateway.restarts == 1
        supervisor.wait_ready([gateway], timeout=60)
        assert _listens(gateway_port)

        envoy.signal(signal.SIGKILL)
        assert envoy.wait(30)
        with pytest.raises(ChildExited) as exited:
            supervisor.check_once()  # not restartable: the stack stops
        assert exited.value.child is envoy
    finally:
        assert supervisor.stop_all() == []
    # Envoy was gone already; then gateways, then Redis.
    assert (tmp_path / "stopped").read_text().split() == ["gateway", "redis"]
    assert not any(c.running for c in (redis, gateway, envoy))


def test_a_child_that_exits_while_starting_is_reported(tmp_path: Path) -> None:
    supervisor = Supervisor()
    child = Child(
        "broken", "test", "here", tmp_path / "broken.log", lambda: False,
        argv=lambda: [sys.executable, "-c", "import sys; print('no config'); sys.exit(3)"],
    )  # fmt: skip
    supervisor.start(child)
    with pytest.raises(ChildExited) as exited:
        supervisor.wait_ready([child], timeout=60)
    assert exited.value.code == 3
    assert "no config" in child.log_path.read_text()
    assert supervisor.stop_all() == []


def test_children_start_from_the_supervisors_thread_only(tmp_path: Path) -> None:
    """Their parent-death signal follows the forking thread: a short-lived one would take them down early."""
    supervisor = Supervisor()
    child, _ = _child(tmp_path, "late", 0)
    errors: list[BaseException] = []

    def elsewhere() -> None:
        try:
            supervisor.start(child)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(30)
    assert len(errors) == 1 and "supervisor's thread" in str(errors[0])
    assert child.popen is None
