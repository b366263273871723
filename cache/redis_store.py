"""The shared tier: entries in Redis (or Valkey), every operation on a small time budget.

A cache must never make a request slower or fail it: each operation runs
under `asyncio.timeout`, and any error or timeout becomes a miss (None/False)
that the circuit breaker counts. Once it opens, operations are refused
without touching the network until a probe succeeds. Nothing here raises to
the caller except cancellation.

Connections are opened by background tasks (bounded by `connect_timeout`),
never inside a request's budget: a TCP+AUTH (or TLS) handshake can take
longer than a 5 ms GET, and a connection torn down by a timeout would
otherwise have to be rebuilt on the next request's clock, failing again and
again. Requests borrow an already-connected connection (LIFO, so few stay
busy) or wait, within their budget, for one to be released or connected.
redis-py provides the protocol (hiredis parser when installed), URL parsing,
AUTH, TLS and SELECT.

The URL may carry a password (`redis://:secret@host:6379/0`) and TLS
(`rediss://`; TLS options as query parameters, e.g. `?ssl_ca_certs=/ca.pem`).
The password is never logged: `redact_url` is used for every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from edgeinfer.cache.breaker import BreakerState, CircuitBreaker
from edgeinfer.cache.entry import Entry, decode_entry
from edgeinfer.cache.stats import Counters

log = logging.getLogger("edgeinfer.cache")

T = TypeVar("T")

DEFAULT_KEY_PREFIX: Final = "edgeinfer:cache:"
DEFAULT_GET_TIMEOUT: Final = 0.005
DEFAULT_WRITE_TIMEOUT: Final = 0.05
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
_SECRET_QUERY_KEYS: Final = frozenset({"password", "pass", "auth", "token"})
# At most this many handshakes in flight: a burst borrows released connections meanwhile.
_MAX_CONCURRENT_CONNECTS: Final = 8

# Skip CLIENT SETINFO on connect: replies a new connection need not wait for.
# redis-py 7+ takes driver_info=None; older versions lib_name/lib_version=None.
_NO_SETINFO: Final[dict[str, None]] = (
    {"driver_info": None}
    if "driver_info" in inspect.signature(AbstractConnection.__init__).parameters
    else {"lib_name": None, "lib_version": None}
)
# redis-py 8 renamed can_read_destructive (pending data or EOF on an idle connection) to can_read.
_STALE_CHECK: Final = "can_read" if hasattr(AbstractConnection, "can_read") else "can_read_destructive"


def redact_url(url: str) -> str:
    """`url` with its password (in the userinfo or the query) replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{userinfo}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*/")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparsable redis url>"


def _secrets_of(url: str) -> tuple[str, ...]:
    """Every form in which the URL's secrets could show up in an error message."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ()
    found = [parts.password or ""]
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY_KEYS]
    found += [unquote(s) for s in found]
    return tuple(sorted({s for s in found if s}, key=len, reverse=True))


class _Connection(Protocol):
    """The part of redis-py's asyncio Connection used here."""

    @property
    def is_connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def disconnect(self, nowait: bool = ...) -> None: ...

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]: ...

    async def send_packed_command(self, command: list[bytes], check_health: bool = ...) -> None: ...

    async def read_response(self) -> Any: ...


class _Pool:
    """Connected connections handed out LIFO; connecting happens in background tasks only."""

    def __init__(
        self,
        make: Callable[[], _Connection],
        max_size: int,
        connect_timeout: float,
        on_connect_failure: Callable[[BaseException], None],
    ) -> None:
        self._make = make
        self._max_size = max(1, max_size)
        self._connect_timeout = connect_timeout
        self._on_connect_failure = on_connect_failure
        self._idle: list[_Connection] = []
        self._waiters: deque[asyncio.Future[_Connection]] = deque()
        self._size = 0  # idle + lent + connecting
        self._connecting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def size(self) -> int:
        """Connections open, lent or being connected."""
        return self._size

    async def acquire(self) -> _Connection:
        """A connected connection; waits (the caller's budget bounds it) if none is idle."""
        while self._idle:
            conn = self._idle.pop()
            # An idle connection the server closed (restart, idle timeout) is dropped, not tried.
            try:
                usable = conn.is_connected and not await getattr(conn, _STALE_CHECK)()
            except Exception:
                usable = False
            if usable:
                return conn
            self.discard(conn)
        self._grow()
        waiter: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Handed a connection in the same instant the budget ran out: keep it for others.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def release(self, conn: _Connection) -> None:
        """Return a healthy connection whose replies have all been read."""
        if self._closed:
            self.discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def discard(self, conn: _Connection) -> None:
        """Drop a connection in an unknown state (timed out mid-reply, broken, out of sync)."""
        self._size -= 1
        if conn.is_connected:
            self._spawn(conn.disconnect(nowait=True))
        if self._waiters:
            self._grow()

    def discard_idle(self) -> None:
        """Drop every idle connection: after a connection error they most likely share its fate."""
        idle, self._idle = self._idle, []
        for conn in idle:
            self.discard(conn)

    def warm(self, count: int) -> None:
        """Start connecting up to `count` connections ahead of traffic."""
        for _ in range(max(0, count - self._size)):
            if not self._grow(force=True):
                break

    def _grow(self, force: bool = False) -> bool:
        if self._closed or self._size >= self._max_size or self._connecting >= _MAX_CONCURRENT_CONNECTS:
            return False
        if not force and self._connecting >= len(self._waiters) + 1:
            return False
        self._size += 1
        self._connecting += 1
        self._spawn(self._connect())
        return True

    async def _connect(self) -> None:
        conn: _Connection | None = None
        try:
            conn = self._make()
            async with asyncio.timeout(self._connect_timeout):
                await conn.connect()
        except BaseException as exc:
            self._size -= 1
            self._connecting -= 1
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            if isinstance(exc, Exception):
                self._fail_waiters(exc)
            raise
        self._connecting -= 1
        self.release(conn)

    def _fail_waiters(self, exc: Exception) -> None:
        # Redis is unreachable: everyone waiting gets a fast miss instead of waiting out the budget.
        reported = False
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
                reported = True
        if not reported:
            self._on_connect_failure(exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self._idle:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
        self._idle.clear()


@dataclass(frozen=True, slots=True)
class StoredEntry:
    entry: Entry
    # Remaining TTL at read time; None when the key has none (written by another tool).
    ttl_seconds: float | None


class _Failed:
    """Marks an operation that did not complete (refused, timed out, failed)."""


_FAILED: Final = _Failed()


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        get_timeout: float = DEFAULT_GET_TIMEOUT,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = 64,
        min_connections: int = 2,
        breaker: CircuitBreaker | None = None,
        counters: Counters | None = None,
        **connection_options: Any,
    ) -> None:
        """`connection_options` go to redis-py's Connection (e.g. ssl_certfile); the URL's query wins."""
        self.safe_url = redact_url(url)
        self.key_prefix = key_prefix.encode()
        self.get_timeout = get_timeout
        self.write_timeout = write_timeout
        self.connect_timeout = connect_timeout
        self.min_connections = min_connections
        self.counters = counters if counters is not None else Counters()
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.breaker.add_listener(self._on_breaker_change)
        self._secrets = _secrets_of(url)
        self._last_error = ""
        self._background: set[asyncio.Task[Any]] = set()
        options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout,
            # Our budget bounds every read and write; a socket timeout would only add a task per send.
            "socket_timeout": None,
            # No retries: a retry would spend the budget twice, and the breaker handles outages.
            "retry": Retry(NoBackoff(), 0),
            **_NO_SETINFO,
            **connection_options,
        }
        # Used only as a factory of configured connections (URL, AUTH, TLS, db).
        self._factory = aioredis.ConnectionPool.from_url(url, **options)
        self._ssl_context: Any = None
        self._pool = _Pool(self._make_connection, max_connections, connect_timeout, self._connect_failed)
        if urlsplit(url).scheme == "rediss":
            self._make_connection()  # build the TLS context now, at start-up, not during traffic

    def _make_connection(self) -> Any:
        make: Callable[[], Any] = self._factory.make_connection
        conn = make()
        # redis-py builds an SSLContext per connection, and create_default_context() loads the
        # system CA store: tens of ms blocking the event loop. Build it once and share it.
        holder = getattr(conn, "ssl_context", None)
        if holder is not None and hasattr(holder, "get"):
            if self._ssl_context is None:
                self._ssl_context = holder.get()
            else:
                holder.context = self._ssl_context
        return conn

    def __repr__(self) -> str:
        return f"RedisStore({self.safe_url!r}, key_prefix={self.key_prefix!r})"

    @property
    def connections(self) -> int:
        """Connections open or being opened (at most max_connections)."""
        return self._pool.size

    def redis_key(self, key: bytes) -> bytes:
        return self.key_prefix + key.hex().encode()

    async def get(self, key: bytes) -> StoredEntry | None:
        """The entry under `key`, or None on a miss, a corrupt value (deleted), an error or the budget running out."""
        name = self.redis_key(key)

        async def op(conn: _Connection) -> tuple[bytes | None, int]:
            # GET and PTTL pipelined: one round trip.
            await conn.send_packed_command(conn.pack_commands([("GET", name), ("PTTL", name)]), check_health=False)
            value = await conn.read_response()
            pttl = await conn.read_response()
            return value, int(pttl)

        result = await self._run(op, self.get_timeout)
        if isinstance(result, _Failed):
            return None
        value, pttl = result
        if value is None:
            return None
        entry = decode_entry(value)
        if entry is None:
            self.counters.corrupt_entries += 1
            self._spawn(self.delete(key))
            return None
        return StoredEntry(entry, pttl / 1000 if pttl >= 0 else None)

    async def set(self, key: bytes, value: bytes, ttl_seconds: float) -> bool:
        """SET with a PX expiry (always: an entry without TTL would outlive any model update)."""
        if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
            return False
        ttl_ms = max(1, round(ttl_seconds * 1000))
        result = await self._run(self._command("SET", self.redis_key(key), value, "PX", ttl_ms), self.write_timeout)
        if isinstance(result, _Failed):
            return False
        self.counters.redis_writes += 1
        return True

    async def delete(self, key: bytes) -> bool:
        result = await self._run(self._command("DEL", self.redis_key(key)), self.write_timeout)
        return not isinstance(result, _Failed)

    async def ping(self, timeout: float | None = None) -> bool:
        """True if the server answers PING within `timeout` (default: the connect timeout)."""
        result = await self._run(self._command("PING"), timeout or self.connect_timeout)
        return not isinstance(result, _Failed)

    async def start(self) -> bool:
        """Open `min_connections` connections ahead of traffic and check the server answers."""
        self._pool.warm(self.min_connections)
        return await self.ping()

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=self.write_timeout * 2)
        for task in list(self._background):
            task.cancel()
        await self._pool.close()

    @staticmethod
    def _command(*args: Any) -> Callable[[_Connection], Awaitable[Any]]:
        async def op(conn: _Connection) -> Any:
            await conn.send_packed_command(conn.pack_commands([args]), check_health=False)
            return await conn.read_response()

        return op

    async def _run(self, op: Callable[[_Connection], Awaitable[T]], budget: float) -> T | _Failed:
        if not self.breaker.allow():
            self.counters.redis_bypassed += 1
            return _FAILED
        conn: _Connection | None = None
        done = False
        try:
            async with asyncio.timeout(budget):
                conn = await self._pool.acquire()
                result = await op(conn)
            done = True
        except (TimeoutError, RedisTimeoutError) as exc:
            self.counters.redis_timeouts += 1
            if conn is None:
                # Never got a connection: all busy, or a handshake still under way (e.g. a stalled
                # server accepts but does not answer). Still a failure: the budget was missed.
                self.counters.redis_pool_timeouts += 1
            self._failure(f"timed out after {budget * 1000:.0f} ms", exc)
        except ResponseError as exc:
            # Redis answered (e.g. OOM on SET): it is up, but this operation failed.
            self.counters.redis_errors += 1
            log.debug("redis cache %s: %s", self.safe_url, self._scrub(exc))
        except Exception as exc:
            self.counters.redis_errors += 1
            if isinstance(exc, RedisConnectionError | OSError):
                self._pool.discard_idle()
            self._failure(self._scrub(exc), exc)
        finally:
            if conn is not None:
                # Any interruption may leave replies unread: such a connection is never reused.
                if done:
                    self._pool.release(conn)
                else:
                    self._pool.discard(conn)
        if not done:
            return _FAILED
        self.breaker.record_success()
        return result

    def _connect_failed(self, exc: BaseException) -> None:
        # A background connect failed with nobody waiting on it (warm-up): still evidence for the breaker.
        self.counters.redis_errors += 1
        self._failure(self._scrub(exc), exc)

    def _failure(self, reason: str, exc: BaseException) -> None:
        self._last_error = reason
        log.debug("redis cache %s: %s (%s)", self.safe_url, reason, type(exc).__name__)
        self.breaker.record_failure()

    def _on_breaker_change(self, old: BreakerState, new: BreakerState) -> None:
        # The only log lines an outage produces, instead of one per request.
        if new is BreakerState.OPEN and old is BreakerState.CLOSED:
            log.warning(
                "redis cache %s unavailable (%s); serving without it, retrying in %.1fs",
                self.safe_url, self._last_error or "failures", self.breaker.cooldown_seconds,
            )
        elif new is BreakerState.OPEN:
            log.debug("redis cache %s: probe failed (%s)", self.safe_url, self._last_error)
        elif new is BreakerState.CLOSED:
            log.info("redis cache %s available again", self.safe_url)

    def _scrub(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
