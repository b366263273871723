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

A Redis Cluster is named by `redis+cluster://[:secret@]host:port,host:port,...`
(`rediss+cluster://` for TLS), or by `?cluster=true` on a redis:// or rediss://
URL. redis-py's cluster client discovers the nodes and keeps the slot map
(CLUSTER SLOTS); each key goes to its slot's master over a pool like the one
above, one pool and one circuit breaker per master, so a dead master costs
misses on its slots only. The map is refreshed by a background task (after a
connection error, a MOVED or CLUSTERDOWN reply, and while any node's breaker
is not closed), never on a request's clock. Every command here names one key,
so no operation crosses slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import AskError, ClusterDownError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
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
_CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
# While a node is failing, the slot map is fetched again this often (a replica's promotion shows up within it).
CLUSTER_REFRESH_INTERVAL: Final = 0.25
# A refresh may meet a dead startup node (one connect timeout) before one answers.
_REFRESH_CONNECT_TIMEOUTS: Final = 3

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


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A Redis Cluster URL taken apart: its startup nodes, and the options redis-py reads from a URL (AUTH, TLS)."""

    nodes: tuple[tuple[str, int], ...]
    options: dict[str, Any] = field(repr=False)  # may hold the password


def _host_port(item: str, safe: str) -> tuple[str, int]:
    host, port = item, "6379"
    if item.startswith("["):  # [IPv6]:port
        end = item.find("]")
        host, rest = item[1:end], item[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"{safe}: {item!r} is not [address]:port")
        port = rest[1:] or port
    elif ":" in item:
        host, port = item.rsplit(":", 1)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{safe}: {item!r} is not host:port")
    return host, int(port)


def parse_redis_target(url: str) -> str | ClusterUrl:
    """The URL of one server (any `cluster` query flag removed), or the ClusterUrl when `url` names a Redis
    Cluster: `redis+cluster://` / `rediss+cluster://` with comma-separated host:port, or `?cluster=true` on a
    redis:// or rediss:// URL. ValueError (the password redacted) if it is malformed."""
    safe = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"{safe}: not a URL") from exc
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    flags = [v.lower() for k, v in pairs if k.lower() == "cluster"]
    if not flags and parts.scheme not in _CLUSTER_SCHEMES:
        return url  # the common case, untouched
    bad = [v for v in flags if v not in _TRUE | _FALSE]
    if bad:
        raise ValueError(f"{safe}: cluster={bad[0]!r}; use cluster=true or cluster=false")
    scheme = _CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
    cluster = parts.scheme in _CLUSTER_SCHEMES or flags[-1] in _TRUE
    if parts.scheme in _CLUSTER_SCHEMES and any(v in _FALSE for v in flags):
        raise ValueError(f"{safe}: {parts.scheme}:// with cluster=false; use {scheme}:// for one server")
    query = urlencode([(k, v) for k, v in pairs if k.lower() != "cluster"])
    if not cluster:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"{safe}: a Redis Cluster URL is redis+cluster://, rediss+cluster:// or redis[s]://...?cluster=true")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = tuple(_host_port(item.strip(), safe) for item in hosts.split(",") if item.strip())
    if not nodes:
        raise ValueError(f"{safe}: no host:port to discover the cluster from")
    if parts.path not in ("", "/", "/0"):
        raise ValueError(f"{safe}: a Redis Cluster has database 0 only")
    host, port = nodes[0]
    first = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    options: dict[str, Any] = dict(parse_url(urlunsplit((scheme, f"{userinfo}@{first}" if userinfo else first, "",
                                                          query, ""))))
    for name in ("host", "port"):
        options.pop(name, None)
    if options.pop("db", 0) != 0:
        raise ValueError(f"{safe}: a Redis Cluster has database 0 only")
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return ClusterUrl(nodes, options)


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
        on_connect_error: Callable[[], None] | None = None,
    ) -> None:
        """`on_connect_failure`: a failed connect nobody waited on; `on_connect_error`: every failed connect."""
        self._make = make
        self._on_connect_error = on_connect_error
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
                if self._on_connect_error is not None:
                    self._on_connect_error()
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


@dataclass(slots=True)
class _Route:
    """Where a command goes: a pool of connections to one server and the breaker that guards it."""

    pool: _Pool
    breaker: CircuitBreaker
    node: str = ""  # host:port of a cluster's master; "" for a single server


class _ClusterRoutes:
    """Slot -> master's route, from redis-py's cluster client (its NodesManager reads CLUSTER SLOTS).

    The table is replaced whole by a background refresh, so a request only ever indexes a list. `breaker` guards
    the refreshes (it opens when no node answers CLUSTER SLOTS); each master's route has a child of it.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        *,
        make_route: Callable[[ClusterNode], _Route],
        breaker: CircuitBreaker,
        refresh_timeout: float,
        on_failure: Callable[[BaseException], None],
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.cluster = cluster
        self.breaker = breaker
        self._make_route = make_route
        self._refresh_timeout = refresh_timeout
        self._on_failure = on_failure
        self._spawn = spawn
        self._slots: list[_Route | None] = []
        self._routes: dict[str, _Route] = {}
        self._stale = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def masters(self) -> list[_Route]:
        return list(self._routes.values())

    @property
    def ready(self) -> bool:
        return bool(self._slots)

    def route(self, name: bytes) -> _Route | None:
        """The route for a key, or None (and a refresh under way) while its slot's master is unknown."""
        route = self._slots[key_slot(name)] if self._slots else None
        if route is None:
            self.refresh()
        return route

    def refresh(self) -> None:
        """Fetch the slot map again soon, in the background; at most one refresh at a time."""
        self._stale = True
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        # While a master fails, keep polling: its replica's promotion shows up in the map, not as an error.
        while True:
            self._stale = False
            await self.refresh_now()
            if not self._stale and self.ready and all(r.breaker.state is BreakerState.CLOSED for r in self.masters):
                return
            await asyncio.sleep(CLUSTER_REFRESH_INTERVAL)  # poll interval, between two fetches of the map

    async def refresh_now(self) -> bool:
        """Fetch the slot map now (bounded); False if the refresh breaker refused it or no node answered."""
        if not self.breaker.allow():
            return False
        try:
            async with asyncio.timeout(self._refresh_timeout):
                await self.cluster.nodes_manager.initialize()
        except Exception as exc:
            self._on_failure(exc)
            return False
        self.breaker.record_success()
        self._install()
        return True

    def _install(self) -> None:
        table: list[_Route | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        routes: dict[str, _Route] = {}
        for slot, nodes in self.cluster.nodes_manager.slots_cache.items():
            if not nodes:
                continue
            master = nodes[0]
            route = routes.get(master.name)
            if route is None:
                route = self._routes.get(master.name) or self._make_route(master)
                routes[master.name] = route
            table[slot] = route
        for name, old in self._routes.items():
            if name not in routes:  # no longer a master (failed over, removed): its connections go
                self._spawn(old.pool.close())
        self._routes, self._slots = routes, table if routes else []

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*(route.pool.close() for route in self.masters), return_exceptions=True)
        manager = self.cluster.nodes_manager
        # The client's own connections (CLUSTER SLOTS): its initialize() was never called, so neither is aclose().
        await asyncio.gather(manager.aclose(), manager.aclose("startup_nodes"), return_exceptions=True)


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
        """`connection_options` go to redis-py's Connection (e.g. ssl_certfile); the URL's query wins.

        For a cluster URL, `max_connections` and `min_connections` are per master, and `breaker` guards the
        discovery of the slot map; each master gets a child of it (same settings, openings counted in it).
        """
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
        self.max_connections = max_connections
        self._ssl_context: Any = None
        self._single: _Route | None = None
        self._routes: _ClusterRoutes | None = None
        target = parse_redis_target(url)
        if isinstance(target, ClusterUrl):
            self._routes = self._cluster_routes(target, options)
            return
        # Used only as a factory of configured connections (URL, AUTH, TLS, db).
        self._factory = aioredis.ConnectionPool.from_url(target, **options)
        pool = _Pool(self._make_connection, max_connections, connect_timeout,
                     lambda exc: self._connect_failed(exc, self.breaker))
        self._single = _Route(pool, self.breaker)
        if urlsplit(url).scheme == "rediss":
            self._make_connection()  # build the TLS context now, at start-up, not during traffic

    def _cluster_routes(self, target: ClusterUrl, options: dict[str, Any]) -> _ClusterRoutes:
        if b"{" in self.key_prefix and b"}" in self.key_prefix.split(b"{", 1)[1]:
            log.warning("redis cache %s: key prefix %r holds a {hash tag}: every entry lands in one slot, on one "
                        "master", self.safe_url, self.key_prefix.decode(errors="replace"))
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            # A cache serves the slots it can: a slot with no master is a miss, not a cluster-wide outage.
            require_full_coverage=False,
            **{**options, **target.options},
        )
        if cluster.connection_kwargs.get("connection_class") is SSLConnection:
            node = cluster.startup_nodes[0]
            self._shared_tls(node.connection_class(**node.connection_kwargs))  # the TLS context, at start-up
        return _ClusterRoutes(
            cluster,
            make_route=self._cluster_route,
            breaker=self.breaker,
            refresh_timeout=self.connect_timeout * _REFRESH_CONNECT_TIMEOUTS,
            on_failure=lambda exc: self._connect_failed(exc, self.breaker),
            spawn=self._spawn,
        )

    def _cluster_route(self, node: ClusterNode) -> _Route:
        """A master's pool (the cluster client's AUTH/TLS settings for that node, no retries) and breaker."""
        kwargs = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
        breaker = self.breaker.child()
        breaker.add_listener(lambda old, new: self._on_breaker_change(old, new, node.name))

        def refresh() -> None:
            if self._routes is not None:
                self._routes.refresh()

        pool = _Pool(
            lambda: self._shared_tls(node.connection_class(**kwargs)),
            self.max_connections,
            self.connect_timeout,
            lambda exc: self._connect_failed(exc, breaker),
            on_connect_error=refresh,
        )
        pool.warm(self.min_connections)
        return _Route(pool, breaker, node.name)

    def _make_connection(self) -> Any:
        make: Callable[[], Any] = self._factory.make_connection
        return self._shared_tls(make())

    def _shared_tls(self, conn: Any) -> Any:
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
    def cluster(self) -> bool:
        return self._routes is not None

    @property
    def connections(self) -> int:
        """Connections open or being opened (at most max_connections, per master on a cluster)."""
        if self._routes is not None:
            return sum(route.pool.size for route in self._routes.masters)
        assert self._single is not None
        return self._single.pool.size

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

        result = await self._run(op, self.get_timeout, name)
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
        name = self.redis_key(key)
        result = await self._run(self._command("SET", name, value, "PX", ttl_ms), self.write_timeout, name)
        if isinstance(result, _Failed):
            return False
        self.counters.redis_writes += 1
        return True

    async def delete(self, key: bytes) -> bool:
        name = self.redis_key(key)
        result = await self._run(self._command("DEL", name), self.write_timeout, name)
        return not isinstance(result, _Failed)

    async def ping(self, timeout: float | None = None) -> bool:
        """True if the server (every master of a cluster) answers PING within `timeout` (default: the connect
        timeout)."""
        budget = timeout or self.connect_timeout
        if self._routes is None:
            assert self._single is not None
            return not isinstance(await self._run_on(self._single, self._command("PING"), budget), _Failed)
        masters = self._routes.masters
        if not masters:
            return False
        results = await asyncio.gather(*(self._run_on(route, self._command("PING"), budget) for route in masters))
        return not any(isinstance(result, _Failed) for result in results)

    async def start(self) -> bool:
        """Open `min_connections` connections ahead of traffic (per master: the slot map is fetched first) and
        check the server answers."""
        if self._routes is not None:
            if not self._routes.ready and not await self._routes.refresh_now():
                return False
        else:
            assert self._single is not None
            self._single.pool.warm(self.min_connections)
        return await self.ping()

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=self.write_timeout * 2)
        for task in list(self._background):
            task.cancel()
        if self._routes is not None:
            await self._routes.close()
        if self._single is not None:
            await self._single.pool.close()

    @staticmethod
    def _command(*args: Any) -> Callable[[_Connection], Awaitable[Any]]:
        async def op(conn: _Connection) -> Any:
            await conn.send_packed_command(conn.pack_commands([args]), check_health=False)
            return await conn.read_response()

        return op

    async def _run(self, op: Callable[[_Connection], Awaitable[T]], budget: float, name: bytes) -> T | _Failed:
        route = self._single if self._routes is None else self._routes.route(name)
        if route is None:
            # A cluster whose slot map is not known yet (a refresh is under way): a miss, not a wait.
            self.counters.redis_bypassed += 1
            return _FAILED
        return await self._run_on(route, op, budget)

    async def _run_on(self, route: _Route, op: Callable[[_Connection], Awaitable[T]], budget: float) -> T | _Failed:
        breaker, pool = route.breaker, route.pool
        if not breaker.allow():
            self.counters.redis_bypassed += 1
            return _FAILED
        conn: _Connection | None = None
        done = False
        try:
            async with asyncio.timeout(budget):
                conn = await pool.acquire()
                result = await op(conn)
            done = True
        except (TimeoutError, RedisTimeoutError) as exc:
            self.counters.redis_timeouts += 1
            if conn is None:
                # Never got a connection: all busy, or a handshake still under way (e.g. a stalled
                # server accepts but does not answer). Still a failure: the budget was missed.
                self.counters.redis_pool_timeouts += 1
            self._failure(f"timed out after {budget * 1000:.0f} ms", exc, breaker, route.node)
        except ResponseError as exc:
            self.counters.redis_errors += 1
            if self._routes is not None and isinstance(exc, AskError | ClusterDownError):
                # MOVED/ASK: the slot lives elsewhere now; CLUSTERDOWN: a failover is under way. Fetch the map
                # again. Not a breaker failure: the node answered at once, and serves again as soon as the
                # cluster does (an open breaker would keep it bypassed for a cooldown after that).
                self._routes.refresh()
            # Redis answered (e.g. OOM on SET): it is up, but this operation failed.
            log.debug("redis cache %s: %s", self.safe_url, self._scrub(exc))
        except Exception as exc:
            self.counters.redis_errors += 1
            if isinstance(exc, RedisConnectionError | OSError):
                pool.discard_idle()
                if self._routes is not None:
                    self._routes.refresh()
            self._failure(self._scrub(exc), exc, breaker, route.node)
        finally:
            if conn is not None:
                # Any interruption may leave replies unread: such a connection is never reused.
                if done:
                    pool.release(conn)
                else:
                    pool.discard(conn)
        if not done:
            return _FAILED
        breaker.record_success()
        return result

    def _connect_failed(self, exc: BaseException, breaker: CircuitBreaker) -> None:
        # A background connect (or a cluster's map refresh) failed with nobody waiting on it: still evidence.
        self.counters.redis_errors += 1
        self._failure(self._scrub(exc), exc, breaker)

    def _failure(self, reason: str, exc: BaseException, breaker: CircuitBreaker, node: str = "") -> None:
        self._last_error = f"{node}: {reason}" if node else reason
        log.debug("redis cache %s: %s (%s)", self.safe_url, self._last_error, type(exc).__name__)
        breaker.record_failure()

    def _on_breaker_change(self, old: BreakerState, new: BreakerState, node: str = "") -> None:
        # The only log lines an outage produces, instead of one per request.
        where = f"{self.safe_url} (node {node})" if node else self.safe_url
        if new is BreakerState.OPEN and old is BreakerState.CLOSED:
            log.warning(
                "redis cache %s unavailable (%s); serving without it, retrying in %.1fs",
                where, self._last_error or "failures", self.breaker.cooldown_seconds,
            )
        elif new is BreakerState.OPEN:
            log.debug("redis cache %s: probe failed (%s)", where, self._last_error)
        elif new is BreakerState.CLOSED:
            log.info("redis cache %s available again", where)

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
