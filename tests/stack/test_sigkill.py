"""SIGKILL of `edgeinfer up`: every child dies with it (Redis, gateways, their functions, Envoy), no port is
left listening within 2 s, and a second `up` on the same ports starts and serves."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from testkit.up import Up, alive, check_serves_every_region_and_stops_clean, free_ports, listening, mentioning

LEFT_WITHIN_S = 2.0  # the promise: nothing left this long after the kill


def _function_ports(commands: list[str]) -> set[int]:
    """The ports the pools gave their function instances (`... function ... --port N`)."""
    ports = set()
    for command in commands:
        if " function " in command and (match := re.search(r"--port (\d+)", command)):
            ports.add(int(match.group(1)))
    return ports


@pytest.mark.timeout(360)  # two stacks start one after the other; a loaded machine may take minutes
def test_sigkill_leaves_nothing_and_a_second_up_serves(tmp_path: Path, fraud_repo: Path) -> None:
    ports = free_ports(12)
    first = Up(tmp_path, fraud_repo, ports, name="first")
    second: Up | None = None
    try:
        first.wait_ready(timeout=150)
        first.collect()
        commands = [cmd for _, cmd in first.seen.values()]
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
