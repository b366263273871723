from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.pki import Pki, build_pki
from testkit.procs import Proc, free_port, start_function
from testkit.slow import SlowFunction, prime, write_slow_model

from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.functions.examples import write_examples


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository (fraud, ranker), built once per test session."""
    root = tmp_path_factory.mktemp("models")
    write_examples(root)
    return root


@pytest.fixture(scope="session")
def function_server(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    """One real `edgeinfer function` process serving the examples, shared by read-only tests."""
    proc, address = start_function(model_repo, tmp_path_factory.mktemp("logs"))
    yield proc, address
    proc.stop()


@pytest.fixture(scope="session")
def function_address(function_server: tuple[Proc, str]) -> str:
    return function_server[1]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Throwaway certificates (tests/pki.py), shared by the TLS tests of every package."""
    return build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def slow_function(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowFunction]:
    """A function serving only `slow` (testkit/slow.py), with a metrics port, primed."""
    repo = tmp_path_factory.mktemp("slow-models")
    write_slow_model(repo, model_repo)
    port = free_port()
    proc, address = start_function(repo, tmp_path_factory.mktemp("slow-logs"), "--metrics-port", str(port))
    try:
        prime(address)
        yield SlowFunction(address, f"http://127.0.0.1:{port}/metrics")
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server shared by tests that only read and write their own (uniquely prefixed) keys."""
    server = RedisServer(free_port(), dir=tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
