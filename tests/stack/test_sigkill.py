"""A gateway that dies is restarted by `edgeinfer up`'s supervisor and serves its region again; SIGKILL of
`edgeinfer up` itself: every child dies with it (Redis, gateways, their functions, Envoy), no port is left
listening within 2 s, and a second `up` on the same ports starts and serves."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from testkit.procs import grpc_ready
from testkit.up import (
    Up,
    alive,
    check_serves_every_region_and_stops_clean,
    free_ports,
    infer,
    listening,
    mentioning,
    tree,
)

LEFT_WITHIN_S = 2.0  # the promise: nothing left this long after the kill
RESTARTED_WITHIN_S = 120.0  # a fresh gateway loads its pool's model: generous for a loaded 2-core machine
KILLED = "eu-west"  # the region whose gateway is killed (not the edge: Envoy's entry is not under test here)


def _gateway_pid(up: Up, region: str) -> int | None:
    """The region's gateway as the state file of `up` records it (the supervisor rewrites it on a restart)."""
    try:
        state = json.loads((up.state_dir / "up.json").read_text())
    except (OSError, ValueError):
        return None  # being replaced (an atomic rename) or not there yet
    pids = [p["pid"] for p in state["processes"] if p["role"] == "gateway" and p["region"] == region]
    return int(pids[0]) if pids else None


def _restarted_and_serving(up: Up, region: str, address: str, old: int) -> int | None:
    """The new gateway's pid once the supervisor has started one that serves `region` on its address."""
    pid = _gateway_pid(up, region)
    if pid is None or pid == old or not grpc_ready(address):
        return None
    return pid


def kill_a_gateway_and_see_it_restarted(up: Up) -> None:
    """SIGKILL one region's gateway: the supervisor starts a new one (a new pid, in its tree, named by the state
    file and announced in the output), and it serves the region's address again."""
    address = up.addresses()[KILLED]
    old = _gateway_pid(up, KILLED)
    assert old is not None and f"--region {KILLED} " in tree(up.popen.pid)[old][1], old
    assert infer(address) == KILLED
    up.collect()  # the killed gateway and its functions too: the checks after SIGKILL of `up` see them gone
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + RESTARTED_WITHIN_S
    while (new := _restarted_and_serving(up, KILLED, address, old)) is None:
        assert up.popen.poll() is None, f"edgeinfer up exited with {up.popen.returncode}:\n{up.output()}"
        assert time.monotonic() < deadline, (
            f"{KILLED}'s gateway not restarted and serving {RESTARTED_WITHIN_S}s after SIGKILL:\n{up.output()}"
        )
        time.sleep(0.1)  # poll interval; the supervisor looks every 0.5 s
    live = tree(up.popen.pid)
    assert old not in live, f"the killed gateway {old} is still there"
    assert new in live and " gateway " in live[new][1] and f"--region {KILLED} " in live[new][1], live.get(new)
    assert infer(address) == KILLED  # a real inference, through the new gateway's own pool
    assert f"{KILLED}: the gateway exited with -9; restarting it (restart 1;" in up.output(), up.output()


def _function_ports(commands: list[str]) -> set[int]:
    """The ports the pools gave their function instances (`... function ... --port N`)."""
    ports = set()
    for command in commands:
        if " function " in command and (match := re.search(r"--port (\d+)", command)):
            ports.add(int(match.group(1)))
    return ports


@pytest.mark.timeout(480)  # two stacks one after the other, and a gateway restarted; a loaded machine: minutes
def test_a_killed_gateway_is_restarted_and_sigkill_of_up_leaves_nothing(tmp_path: Path, fraud_repo: Path) -> None:
    ports = free_ports(12)
    first = Up(tmp_path, fraud_repo, ports, name="first")
    second: Up | None = None
    try:
        first.wait_ready(timeout=150)
        kill_a_gateway_and_see_it_restarted(first)
        # The tree again, with the restarted gateway: what runs now is counted, and what ran is watched too.
        first.collect()
        commands = [cmd for _, cmd in tree(first.popen.pid).values()]
        assert sum(" gateway " in c for c in commands) == 3, commands
        assert sum("-server" in c for c in commands) == 3, commands  # redis-server or valkey-server
        assert sum("envoy" in c.split()[0] for c in commands if c) == 1, commands
        functions = _function_ports(commands)
        assert len(functions) >= 3, commands
        watched = set(ports) | functions
        assert listening(watched), "the stack should be listening before the kill"

        first.popen.send_signal(signal.SIGKILL)
        first.popen.wait(10)
        deadline = time.monotonic() + LEFT_WITHIN_S
        while True:
            processes = [f"{pid}: {cmd}" for pid, (started, cmd) in first.seen.items() if alive(pid, started)]
            processes += [p for p in mentioning(str(tmp_path)) if p not in processes]
            held = listening(watched)
            if not processes and not held:
                break
            assert time.monotonic() < deadline, (
                f"{LEFT_WITHIN_S}s after SIGKILL of edgeinfer up: processes {processes}, listening ports {held}"
            )
            time.sleep(0.02)  # poll interval; the kernel's parent-death signals do the work

        # The state file of the killed stack stays behind; the second `up` finds it stale and starts, serves
        # every region and the entry, then stops clean on SIGTERM.
        second = Up(tmp_path, fraud_repo, ports, name="second")
        second.wait_ready(timeout=150)
        client = triton.InferenceServerClient(second.entry)
        features = triton.InferInput("features", [1, 30], "FP32")
        features.set_data_from_numpy(np.random.rand(1, 30).astype(np.float32) * 100)
        probabilities = client.infer("fraud", [features], client_timeout=60).as_numpy("probabilities")
        client.close()
        assert probabilities is not None and probabilities.shape == (1, 2)
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        check_serves_every_region_and_stops_clean(second, tmp_path)
    finally:
        first.close()
        if second is not None:
            second.close()
