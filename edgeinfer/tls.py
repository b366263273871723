"""TLS and mutual TLS material for gRPC servers, channels and aiohttp sites.

Shared by the gateway and the functions (which may depend only on `edgeinfer`).
Files are read and checked here, so a missing file, a key that does not match
its certificate, or a CA that is not PEM fails the start with one line naming
the flag, instead of a handshake error on the first request.

gRPC servers pick up rotated files without a restart (cert-manager renewing a
Kubernetes Secret rewrites the mounted files): before each new connection's
handshake they look at the files' stat, and when it changed, load and check them
again. A half-written rotation (a new certificate, the old key) is refused with
a warning and the current certificate kept. Server-side SSL contexts (aiohttp
sites, the metrics port) do the same per handshake. Client channels read their
files at start.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)


class TLSConfigError(ValueError):
    """A TLS flag points at a file that is missing or unusable."""


def _read(path: Path, flag: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
    if b"-----BEGIN " not in data:
        raise TLSConfigError(f"{flag} {path}: not a PEM file (expected a '-----BEGIN ...' block)")
    return data


def _check_pair(cert: Path, key: Path, cert_flag: str, key_flag: str) -> None:
    """Fail now, with the flags' names, if the key does not belong to the certificate."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TLSConfigError(
            f"{cert_flag} {cert} and {key_flag} {key} do not form a usable pair: {exc.reason or exc}"
        ) from None


def _check_ca(ca: Path, flag: str) -> None:
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(ca))
    except ssl.SSLError as exc:
        raise TLSConfigError(f"{flag} {ca}: not a usable CA bundle: {exc.reason or exc}") from None


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate and key; with `client_ca`, clients must present a certificate it signed (mTLS)."""

    cert_chain: bytes
    private_key: bytes
    cert_path: Path
    key_path: Path
    client_ca: bytes | None = None
    client_ca_path: Path | None = None

    @classmethod
    def load(
        cls,
        cert: Path,
        key: Path,
        client_ca: Path | None = None,
        *,
        flags: tuple[str, str, str] = ("--tls-cert", "--tls-key", "--tls-client-ca"),
    ) -> ServerTLS:
        cert_flag, key_flag, ca_flag = flags
        cert_chain, private_key = _read(cert, cert_flag), _read(key, key_flag)
        _check_pair(cert, key, cert_flag, key_flag)
        ca = None
        if client_ca is not None:
            ca = _read(client_ca, ca_flag)
            _check_ca(client_ca, ca_flag)
        return cls(cert_chain, private_key, cert, key, ca, client_ca)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials that serve these files, and their replacements once they change on disk."""
        # The stub's fetcher type omits None, which gRPC's documentation allows ("no change").
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(),
            _Reloader(self),  # type: ignore[arg-type]
            require_client_authentication=self.mutual,
        )

    def _grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.private_key, self.cert_chain)], root_certificates=self.client_ca
        )

    def _paths(self) -> tuple[Path, ...]:
        return (self.cert_path, self.key_path) + ((self.client_ca_path,) if self.client_ca_path else ())

    def ssl_context(self, *, mutual: bool | None = None) -> ssl.SSLContext:
        """A server-side context (aiohttp, the metrics port); `mutual=False` drops the client-certificate demand.

        Rotated files are picked up per handshake: the context's SNI callback (which OpenSSL calls for every
        ClientHello, with or without a server name) hands the connection a context built from the new files."""
        context = self._plain_context(mutual)
        context.sni_callback = _ContextSwapper(self, mutual)
        return context

    def _plain_context(self, mutual: bool | None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        if self.client_ca_path is not None and mutual is not False:
            context.load_verify_locations(cafile=str(self.client_ca_path))
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _stat_of(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is rewritten or a Secret volume swaps its symlink: inode, size, mtime."""
    stats = [os.stat(path) for path in paths]
    return tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in stats)


class _FileWatch:
    """A ServerTLS and the stat of its files; `changed()` reloads and checks them once per change."""

    def __init__(self, current: ServerTLS) -> None:
        self.current = current
        self._seen = _stat_of(current._paths())
        self._lock = threading.Lock()  # gRPC's and OpenSSL's callbacks may run on several threads

    def changed(self) -> ServerTLS | None:
        """The freshly loaded files if they changed since the last look and are usable, else None."""
        with self._lock:
            return self._changed()

    def _changed(self) -> ServerTLS | None:
        try:
            seen = _stat_of(self.current._paths())
        except OSError:  # mid-rotation: a file is briefly missing
            return None
        if seen == self._seen:
            return None
        self._seen = seen  # judged once per change: a bad set is not re-read (and re-logged) per connection
        try:
            fresh = ServerTLS.load(self.current.cert_path, self.current.key_path, self.current.client_ca_path)
        except TLSConfigError as exc:
            log.warning("TLS files changed but are not usable (%s); still serving the previous certificate", exc)
            return None
        self.current = fresh
        log.info("TLS files changed: new connections get the new certificate")
        return fresh


class _ContextSwapper:
    """An SSLContext's SNI callback that moves each new connection onto a context of the newest good files."""

    def __init__(self, current: ServerTLS, mutual: bool | None) -> None:
        self._watch = _FileWatch(current)
        self._mutual = mutual
        self._lock = threading.Lock()  # so a slower, older swap never overwrites a newer one
        self._latest: ssl.SSLContext | None = None  # None: the original context is still the newest

    def __call__(self, connection: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        with self._lock:
            fresh = self._watch.changed()
            if fresh is not None:
                self._latest = fresh._plain_context(self._mutual)
            latest = self._latest
        if latest is not None:
            connection.context = latest


class _Reloader:
    """gRPC's certificate fetcher, called before every new connection's handshake: a changed file set is
    loaded and checked again; None keeps the current certificate."""

    def __init__(self, current: ServerTLS) -> None:
        self._watch = _FileWatch(current)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        fresh = self._watch.changed()
        return fresh._grpc_configuration() if fresh is not None else None


@dataclass(frozen=True)
class ClientTLS:
    """How a client verifies a server (`ca`; None: the system roots) and, for mTLS, proves who it is."""

    ca: bytes | None = None
    cert_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    @classmethod
    def load(
        cls,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        server_name: str | None = None,
        *,
        flags: tuple[str, str, str] = ("--function-tls-ca", "--function-tls-cert", "--function-tls-key"),
    ) -> ClientTLS:
        ca_flag, cert_flag, key_flag = flags
        if (cert is None) != (key is None):
            raise TLSConfigError(f"{cert_flag} and {key_flag} go together: give both for mutual TLS, or neither")
        ca_bytes = None
        if ca is not None:
            ca_bytes = _read(ca, ca_flag)
            _check_ca(ca, ca_flag)
        cert_chain = private_key = None
        if cert is not None and key is not None:
            cert_chain, private_key = _read(cert, cert_flag), _read(key, key_flag)
            _check_pair(cert, key, cert_flag, key_flag)
        return cls(ca_bytes, cert_chain, private_key, server_name)

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.private_key, certificate_chain=self.cert_chain
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        """Check the server's certificate against this name rather than the dialled address."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []
