"""The function's Prometheus endpoint (--metrics-port).

The same rules as the gateway's admin port: loopback by default; beyond loopback only with a bearer token
(Prometheus sends it with `authorization: {credentials_file: ...}`); over TLS whenever the function's gRPC
port has TLS, with the same certificate, and asking for a client certificate when that port does (mTLS).
"""

from __future__ import annotations

import secrets
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the process open


class _QuietHandler(WSGIRequestHandler):
    timeout = 10  # seconds a connection may sit idle (or mid-handshake) before its thread gives up

    def log_message(self, format: str, *args: Any) -> None:
        """One line per scrape would drown the function's log."""


def _require_token(app: WSGIApp, token: str) -> WSGIApp:
    expected = f"Bearer {token}".encode()

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        presented = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not secrets.compare_digest(presented, expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"the metrics port needs 'Authorization: Bearer <metrics token>'\n"]
        return app(environ, start_response)

    return checked


class MetricsServer:
    """The metrics front: serves `registry` at /metrics from a daemon thread, from start() to stop().

    The port is bound at construction, so a port in use is reported before anything starts.
    """

    def __init__(
        self, registry: CollectorRegistry, host: str, port: int, token: str | None, tls: ssl.SSLContext | None
    ) -> None:
        app: WSGIApp = make_wsgi_app(registry)
        if token is not None:
            app = _require_token(app, token)
        try:
            self._httpd = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
        except OSError as exc:
            raise SystemExit(f"cannot serve metrics on {host}:{port}: {exc.strerror}; is the port in use?") from None
        if tls is not None:
            # The handshake happens in the connection's own thread, so a client that connects and stays silent
            # cannot hold up accepting the next one.
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics", daemon=True)

    async def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
            self._thread.join(5)
        self._httpd.server_close()
