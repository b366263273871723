"""A real Prometheus for tests: on 127.0.0.1 (a free port), its storage in a temporary directory, scraping the
given targets every second; ready when its /-/ready answers; stopped with its process group.

The binary is Debian's `prometheus` package (installed by .ci/run). Without it a test skips, naming the fix,
except under CI (.ci/run sets EDGEINFER_CI=1; CI=true as hosted runners set it counts too), where a missing
binary fails the test: CI must never pass by skipping the real thing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edgeinfer.stack.local import prometheus_argv, prometheus_config, prometheus_ready
from testkit.procs import Proc, free_port

INSTALL_HINT = "apt-get install --no-install-recommends prometheus (or the release tarball of prometheus.io)"


def in_ci() -> bool:
    return any(os.environ.get(name, "").lower() not in ("", "0", "false", "no") for name in ("EDGEINFER_CI", "CI"))


def require_binary(name: str = "prometheus") -> Path:
    """The binary (`prometheus` or `promtool`) on PATH; skips the test with the fix when it is missing, fails it
    under CI."""
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    message = f"`{name}` is not on PATH: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(f"{message}; .ci/run installs it, so CI must have it", pytrace=False)
    pytest.skip(message)


class PromQLError(AssertionError):
    """Prometheus answered a query with status "error" (it does not parse, or cannot be evaluated)."""


class Prometheus:
    """A running Prometheus's HTTP API at `address`; `proc` when this test started it (else, `edgeinfer up`'s)."""

    def __init__(self, address: str, proc: Proc | None = None) -> None:
        self.proc = proc
        self.address = address
        self.url = f"http://{address}"

    def log_tail(self) -> str:
        return self.proc.output()[-2000:] if self.proc is not None else ""

    def api(self, path: str, params: dict[str, str] | list[tuple[str, str]] | None = None) -> dict[str, Any]:
        """GET /api/v1/<path>: the whole answer ({"status": ..., "data": ...} or "error"), whatever the status."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as reply:
                body = reply.read()
        except urllib.error.HTTPError as exc:  # 400/422 carry the error as JSON
            body = exc.read()
        answer: dict[str, Any] = json.loads(body)
        return answer

    def query_raw(self, promql: str) -> dict[str, Any]:
        return self.api("query", {"query": promql})

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query now: its result list (vector samples); PromQLError when Prometheus refuses it."""
        answer = self.query_raw(promql)
        if answer.get("status") != "success":
            raise PromQLError(f"{promql}: {answer.get('errorType')}: {answer.get('error')}")
        data = answer["data"]
        result: list[dict[str, Any]] = data["result"] if data["resultType"] in ("vector", "matrix") else [data]
        return result

    def wait_for_series(self, promql: str, timeout: float) -> list[dict[str, Any]]:
        """Until the query returns at least one series (scrapes come every second); the last answer in the
        TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no series after {timeout}s for: {promql}\n{self.log_tail()}")
            time.sleep(0.2)  # poll interval: a scrape a second

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets", {"state": "active"})["data"]["activeTargets"]
        return active

    def wait_targets_up(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Until `count` active targets have been scraped successfully."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.targets()
            if len(targets) == count and all(t["health"] == "up" for t in targets):
                return targets
            if time.monotonic() > deadline:
                raise TimeoutError(f"targets not all up after {timeout}s: {targets}\n{self.log_tail()}")
            time.sleep(0.2)  # poll interval


@contextmanager
def running_prometheus(
    tmp_path: Path,
    targets: Sequence[str],
    *,
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "1s",
    timeout: float = 30.0,
) -> Iterator[Prometheus]:
    """A real Prometheus scraping `targets` (HOST:PORT, /metrics) until the block ends; no process outlives it."""
    binary = require_binary("prometheus")
    workdir = tmp_path / f"prometheus-{time.monotonic_ns()}"
    workdir.mkdir(parents=True)
    config = workdir / "prometheus.yml"
    config.write_text(prometheus_config(targets, scrape_interval, rule_files))
    address = f"127.0.0.1:{free_port()}"
    proc = Proc(prometheus_argv(binary, config, workdir / "data", address), workdir / "prometheus.log")
    try:
        proc.wait_until(lambda: prometheus_ready(address), timeout, f"prometheus on {address}")
        yield Prometheus(address, proc)
    finally:
        proc.stop()
