"""Emulated clusters for the Knative tests: each a real kmock process (k8s_emulator.py) on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit.procs import Proc, free_port

EMULATOR = Path(__file__).with_name("k8s_emulator.py")
TOKEN = "s3cret-bearer-token-never-logged"
REQUEST_LOG_PREFIX = "REQUEST "  # k8s_emulator.py prints one such line per request that changes a Service


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=0.5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def start_emulator(log_dir: Path, name: str, *extra: str) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc([sys.executable, str(EMULATOR), "--port", str(port), *extra], log_dir / f"k8s-{name}.log")
    try:
        proc.wait_until(lambda: _answers(port), 30.0, f"emulated cluster {name}")
    except BaseException:
        proc.stop()
        raise
    return proc, port


@dataclass(frozen=True)
class Clusters:
    kubeconfig: Path
    topology: Path  # us-east and eu-west, both up
    broken_topology: Path  # plus regions whose clusters are down, lack Knative, or have no kube_context
    logs: list[Proc]

    def output(self) -> str:
        return "".join(p.output() for p in self.logs)

    def received(self, cluster: str, namespace: str) -> list[dict[str, Any]]:
        """Every request that tried to change a Service in `namespace` of emulated cluster `cluster` (us-east,
        eu-west, bare), in the order it arrived: method, name, content_type, params, body and the status answered.
        The emulator prints each line before it answers, so a call that returned is in it."""
        log = next((p for p in self.logs if p.log_path.name == f"k8s-{cluster}.log"), None)
        if log is None:
            raise KeyError(f"no emulated cluster '{cluster}'")
        found = []
        for line in log.output().splitlines():
            if line.startswith(REQUEST_LOG_PREFIX):
                entry = json.loads(line[len(REQUEST_LOG_PREFIX) :])
                if entry["namespace"] == namespace:
                    found.append(entry)
        return found
