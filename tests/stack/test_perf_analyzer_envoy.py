"""NVIDIA's perf_analyzer (the tritonclient 2.45.0 wheel's binary, unchanged) against the Envoy entry of a real
`edgeinfer up`: through Envoy to the nearest region's gateway and its scale-to-zero pool. One stack for the file."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.perf_analyzer import SHORT, Measurement, run_perf_analyzer
from testkit.up import Up, free_ports, infer

RUN_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def up(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp_path = tmp_path_factory.mktemp("perf-analyzer-up")
    repo = tmp_path / "models"
    shutil.copytree(model_repo / "fraud", repo / "fraud")  # one function per region keeps the start light
    stack = Up(tmp_path, repo, free_ports(12))
    try:
        stack.wait_ready(timeout=150)
        stack.collect()
        assert infer(stack.entry) == "us-east"  # the edge's pool has a warm function before the measurement
        yield stack
    finally:
        stack.close()


def check(m: Measurement) -> None:
    assert m.throughput > 0, m.client_lines
    assert 0 < m.latency_us[50] <= m.latency_us[99], m.client_lines
    assert m.server.get("successful_request", 0) > 0, m.server_lines  # the gateway's statistics, through Envoy


@pytest.mark.timeout(300)  # `up` on a loaded 2-core machine, then the run
def test_grpc_through_the_entry_prints_throughput(up: Up) -> None:
    result = run_perf_analyzer(["-m", "fraud", "-u", up.entry, "-i", "grpc", *SHORT], RUN_TIMEOUT_S)
    check(result.last)
    assert result.summary[0].startswith("Concurrency: 1, throughput: ")


@pytest.mark.perf_analyzer
@pytest.mark.slow
@pytest.mark.timeout(480)  # `up`, then up to 10 windows of 5 s, three times (an unstable run is retried twice)
def test_grpc_through_the_entry_with_perf_analyzers_own_defaults(up: Up) -> None:
    """Exactly `perf_analyzer -m fraud -u ENTRY -i grpc`: 5 s windows until three agree within 10 %. Only
    perf_analyzer's own verdict "no stable measurement" earns a rerun: three hops (Envoy, gateway, function) and a
    whole stack's processes on two cores vary more between windows than one server does."""
    result = run_perf_analyzer(["-m", "fraud", "-u", up.entry, "-i", "grpc"], timeout=110, unstable_retries=2)
    check(result.last)
