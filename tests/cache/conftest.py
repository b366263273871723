"""Fixtures for the cache tests: real Redis-compatible servers on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit.procs import free_port

from edgeinfer.cache.redis_server import RedisServer


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server for one test: to kill, pause, or configure with a password."""
    server = RedisServer(free_port(), dir=tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix unique to the test, so tests sharing a server never see each other's keys."""
    return f"test:{request.node.name}:"
