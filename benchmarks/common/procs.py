"""Server processes for benchmarks: free loopback ports, process groups that always die, readiness, venvs.

Every process starts in its own session (so its own process group); `stop()` signals
the whole group, SIGTERM then SIGKILL, so helpers the server forked (MLServer's
inference pool, multiprocessing workers) go with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import grpc

from edgeinfer.protocol import open_inference_pb2 as pb

LOOPBACK = "127.0.0.1"
SERVER_READY = "/inference.GRPCInferenceService/ServerReady"


class ServerFailed(RuntimeError):
    """A server exited, or did not become ready in time. The message carries its log's tail."""


_handed_out: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on right now (the OS picks it; a small race remains), never one handed out
    before in this process: the kernel may give the same free port to two calls in a row."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class ManagedProcess:
    """A child process in its own process group, its output sent to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = log_path.open("wb")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise
        self.pgid = self.proc.pid  # a new session's leader leads its process group

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def group_pids(self) -> list[int]:
        """The live processes of this process group (from /proc)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == self.pgid and fields[0] != "Z":
                pids.append(int(entry.name))
        return pids

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, wait up to `grace` s for the leader, then SIGKILL whatever is left."""
        try:
            if self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=grace)
            # The leader may be gone while children it forked live on: kill the group regardless.
            deadline = time.monotonic() + 2.0
            while self.group_pids() and time.monotonic() < deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
                time.sleep(0.05)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5.0)
        finally:
            self._log.close()


def _ready_stub(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[pb.ServerReadyRequest, pb.ServerReadyResponse]:
    return channel.unary_unary(
        SERVER_READY,
        request_serializer=pb.ServerReadyRequest.SerializeToString,
        response_deserializer=pb.ServerReadyResponse.FromString,
    )


def server_ready(target: str, timeout: float = 2.0) -> bool:
    """True when `inference.GRPCInferenceService/ServerReady` answers ready=true within `timeout`."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply: pb.ServerReadyResponse = _ready_stub(channel)(pb.ServerReadyRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(reply.ready)


def wait_ready(process: ManagedProcess, target: str, timeout: float) -> float:
    """Poll ServerReady until true; return seconds waited. ServerFailed if the process dies or time runs out."""
    start = time.monotonic()
    while True:
        if not process.alive():
            raise ServerFailed(
                f"{process.name} exited with code {process.proc.returncode} before it was ready; "
                f"log {process.log_path}:\n{process.log_tail()}"
            )
        if server_ready(target, timeout=1.0):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise ServerFailed(
                f"{process.name} not ready on {target} after {timeout:g} s; log {process.log_path}:\n"
                f"{process.log_tail()}"
            )
        time.sleep(0.25)


def _socket_inodes(pids: Sequence[int]) -> set[str]:
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            entries = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in entries:
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    return inodes


def _decode_address(hex_addr: str) -> str:
    """/proc/net/tcp{,6} addresses are the in-kernel bytes, in 32-bit host-order words."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)) if sys.byteorder == "little" else raw
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, words)


def listening_addresses(pids: Sequence[int]) -> list[str]:
    """`host:port` of every TCP socket in LISTEN state that one of `pids` holds."""
    inodes = _socket_inodes(pids)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A" or fields[9] not in inodes:
                continue
            addr, port = fields[1].split(":")
            host = _decode_address(addr)
            found.append(f"[{host}]:{int(port, 16)}" if ":" in host else f"{host}:{int(port, 16)}")
    return sorted(set(found))


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("::1", "localhost") or host.startswith("::ffff:127.")


@contextlib.contextmanager
def managed(process: ManagedProcess, grace: float = 10.0) -> Iterator[ManagedProcess]:
    try:
        yield process
    finally:
        process.stop(grace)


def ensure_venv(path: Path, requirements: Sequence[str], log_path: Path, python: str = sys.executable) -> Path:
    """Create `path` with `requirements` installed unless a marker says exactly that is already there.

    Returns the venv's python. Installing can take minutes; the pip output goes to `log_path`. Builds of one
    venv run one at a time (a lock file beside it), so concurrent callers wait for one build and share it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f"{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        return _ensure_venv_locked(path, requirements, log_path, python)


def _ensure_venv_locked(path: Path, requirements: Sequence[str], log_path: Path, python: str) -> Path:
    marker = path / ".requirements.json"
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    venv_python = path / "bin" / "python"
    if venv_python.exists() and marker.exists():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(marker.read_text()).get("sha256") == digest:
                return venv_python
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        steps = [
            [python, "-m", "venv", "--clear", str(path)],
            [str(venv_python), "-m", "pip", "install", "--upgrade", "pip"],
            [str(venv_python), "-m", "pip", "install", *requirements],
        ]
        for argv in steps:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=False)
            if done.returncode != 0:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
                raise RuntimeError(f"creating {path} failed at: {' '.join(argv)}\n{tail}")
    marker.write_text(json.dumps({"sha256": digest, "requirements": list(requirements)}, indent=2) + "\n")
    return venv_python


def package_versions(python: Path | str, packages: Sequence[str]) -> dict[str, str]:
    """Installed versions of `packages` in the environment of `python` ("" for one not installed)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        out[name] = ''\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return dict.fromkeys(packages, "")
    versions: dict[str, str] = json.loads(done.stdout)
    return versions
