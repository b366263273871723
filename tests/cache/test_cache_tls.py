"""rediss:// end to end: a TLS-terminating proxy (the bundled valkey has no TLS) in front of the real server."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from edgeinfer.cache.breaker import CircuitBreaker
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.cache.redis_store import RedisStore

SLOW_LINK_S = 0.5  # the proxy's delay before the handshake can complete
LIMIT = 0.4  # a get within its 10 ms budget stays far below this even on a loaded machine; one that
# waited for the handshake could not (it takes at least SLOW_LINK_S)


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a certificate")
def test_tls_url(redis_server: RedisServer, tmp_path: Path, key_prefix: str) -> None:
    cert, key = self_signed(tmp_path)

    async def main() -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        async def forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            # A slow link: the handshake's SELECT is answered only after SLOW_LINK_S.
            await asyncio.sleep(SLOW_LINK_S)
            server_r, server_w = await asyncio.open_connection(redis_server.host, redis_server.port)
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))

        proxy = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=context)
        port = proxy.sockets[0].getsockname()[1]
        url = f"rediss://127.0.0.1:{port}/1?ssl_ca_certs={cert}"
        try:
            # A 10 ms GET budget and a connection handshake (TLS, SELECT 1) of over SLOW_LINK_S: connecting
            # happens in the background, so gets stay within budget, and hit once it is done. "Within budget"
            # is shown by the pool timeout (it gave up on the connection) and a bound between the budget and
            # the handshake, wide enough for a loaded machine.
            store = RedisStore(url, key_prefix=key_prefix, get_timeout=0.01, write_timeout=0.01,
                               breaker=CircuitBreaker(5, cooldown_seconds=0.1))
            cache = PredictionCache(l1=None, redis=store)
            started = time.perf_counter()
            assert await cache.get(b"k" * 32) is None
            assert time.perf_counter() - started < LIMIT
            assert store.counters.redis_pool_timeouts == 1
            deadline = time.monotonic() + 10
            while True:
                cache.put(b"k" * 32, b"over tls", 30)
                await cache.flush(2.0)
                started = time.perf_counter()
                hit = await cache.get(b"k" * 32)
                assert time.perf_counter() - started < LIMIT
                if hit is not None:
                    break
                assert time.monotonic() < deadline, "no hit over TLS"
                await asyncio.sleep(0.02)
            assert hit.payload == b"over tls" and hit.tier == "redis"
            await cache.close()
            assert store.counters.redis_writes >= 1
            # Without trusting the certificate, TLS fails: a miss, not an exception.
            untrusted = RedisStore(f"rediss://127.0.0.1:{port}/1", key_prefix=key_prefix, get_timeout=1.0)
            assert await untrusted.get(b"k" * 32) is None
            assert untrusted.counters.redis_errors == 1
            await untrusted.close()
        finally:
            proxy.close()
            await proxy.wait_closed()

    asyncio.run(main())
