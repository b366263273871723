"""API keys → tenants, and a rate limit per tenant, on the gateway's gRPC and REST fronts.

Callers send `authorization: Bearer <key>` (gRPC metadata or HTTP header).
The keys file holds only SHA-256 digests of the keys, each under a tenant:

    tenants:
      acme:
        keys: ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
        rate_per_second: 200   # optional: a token bucket per tenant
        burst: 400             # optional: defaults to one second's worth

Keys are high-entropy random strings (`edgeinfer apikey`), so a plain SHA-256
is enough to make a leaked keys file useless, and it costs about a microsecond:
a slow password hash (scrypt) would protect guessable secrets that these are
not, at a cost paid on every request. The tenant a request runs as comes from
its key alone; nothing the client sends can choose it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import math
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeinfer.gateway.dataplane import authenticated_tenant
from edgeinfer.protocol.errors import InferenceError, ResourceExhausted

KEY_PREFIX = "ei_"
HASH_SCHEME = "sha256:"
# Longer presented keys are refused before hashing.
MAX_KEY_CHARS = 256
RETRY_AFTER_METADATA = "retry-after-ms"
# A refill that lands on a whole token up to float rounding counts as one.
_ROUNDING = 1e-9
# Probes and liveness answer without a key: they reveal nothing and kubelets carry no secrets.
OPEN_GRPC_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
    }
)
OPEN_REST_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})


class Unauthenticated(InferenceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class RateLimited(ResourceExhausted):
    def __init__(self, tenant: str, rate: float, retry_after: float) -> None:
        self.retry_after_ms = max(1, math.ceil(retry_after * 1000))
        super().__init__(
            f"tenant '{tenant}' is over its rate limit of {rate:g} requests/s; retry in {self.retry_after_ms} ms"
        )


class KeysFileError(ValueError):
    """The --api-keys file is missing or malformed."""


# -- the keys file ---------------------------------------------------------------------------


class TenantEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[str] = Field(min_length=1)
    rate_per_second: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)

    @field_validator("keys")
    @classmethod
    def _digests(cls, keys: list[str]) -> list[str]:
        for key in keys:
            digest = key.removeprefix(HASH_SCHEME)
            if not key.startswith(HASH_SCHEME) or len(digest) != 64 or not _is_hex(digest):
                raise ValueError(
                    f"{key[:12]!r}... is not 'sha256:<64 hex digits>'; store the digest of a key "
                    "(edgeinfer apikey prints one), never the key itself"
                )
        return keys


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenants: dict[str, TenantEntry] = Field(min_length=1)

    @field_validator("tenants")
    @classmethod
    def _names(cls, tenants: dict[str, TenantEntry]) -> dict[str, TenantEntry]:
        for name in tenants:
            if not name or not all(c.isalnum() or c in "-_." for c in name):
                raise ValueError(f"tenant name {name!r} must be letters, digits, '-', '_' or '.'")
        return tenants


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> tuple[str, str]:
    """A fresh API key (256 random bits) and the line to store for it in the keys file."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, HASH_SCHEME + key_digest(key).hex()


# -- tenants and their buckets ---------------------------------------------------------------


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second up to `burst`; each request takes one."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one will be there."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0 - _ROUNDING:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


@dataclass(slots=True)
class Tenant:
    name: str
    bucket: TokenBucket | None


class Authenticator:
    """Maps a presented key to its tenant and charges the tenant's bucket."""

    def __init__(self, tenants: dict[str, TenantEntry]) -> None:
        # Told every outcome as (tenant, outcome); the tenant is "" when the key was refused.
        self.observe: Callable[[str, str], None] = _ignore
        self._by_digest: dict[bytes, Tenant] = {}
        for name, entry in tenants.items():
            bucket = None
            if entry.rate_per_second is not None:
                burst = entry.burst if entry.burst is not None else max(1, math.ceil(entry.rate_per_second))
                bucket = TokenBucket(entry.rate_per_second, float(burst))
            tenant = Tenant(name, bucket)
            for key in entry.keys:
                digest = bytes.fromhex(key.removeprefix(HASH_SCHEME))
                other = self._by_digest.get(digest)
                if other is not None and other.name != name:
                    raise KeysFileError(f"one key is listed under both tenant '{other.name}' and '{name}'")
                self._by_digest[digest] = tenant

    @classmethod
    def from_file(cls, path: Path) -> Authenticator:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise KeysFileError(f"--api-keys {path}: cannot read it ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise KeysFileError(f"--api-keys {path}: not valid YAML: {exc}") from None
        try:
            parsed = KeysFile.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
            )
            raise KeysFileError(f"--api-keys {path}: {problems}") from None
        try:
            return cls(parsed.tenants)
        except KeysFileError as exc:
            raise KeysFileError(f"--api-keys {path}: {exc}") from None

    @property
    def tenants(self) -> list[str]:
        return sorted({t.name for t in self._by_digest.values()})

    def authenticate(self, authorization: str | None) -> Tenant:
        """The tenant of an `authorization` value; Unauthenticated (never echoing the key) otherwise."""
        if not authorization:
            self.observe("", "no_key")
            raise Unauthenticated("no API key: send 'authorization: Bearer <key>'")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            self.observe("", "malformed")
            raise Unauthenticated("the authorization value must be 'Bearer <key>'")
        tenant = self._by_digest.get(key_digest(key)) if len(key) <= MAX_KEY_CHARS else None
        if tenant is None:
            self.observe("", "unknown_key")
            raise Unauthenticated("API key not recognised")
        return tenant

    def admit(self, tenant: Tenant) -> None:
        """Take one request from the tenant's bucket, or raise RateLimited with when to retry."""
        bucket = tenant.bucket
        if bucket is not None:
            wait = bucket.take(time.monotonic())
            if wait > 0.0:
                self.observe(tenant.name, "rate_limited")
                raise RateLimited(tenant.name, bucket.rate, wait)
        self.observe(tenant.name, "admitted")


def _ignore(tenant: str, outcome: str) -> None:
    pass


# -- gRPC ------------------------------------------------------------------------------------


def _authorization(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None


class GrpcAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks every call's key (but OPEN_GRPC_METHODS), charges its tenant, and runs the call as that tenant.

    Each method's guarded handler is built once and reused.
    """

    def __init__(self, auth: Authenticator, open_methods: frozenset[str] = OPEN_GRPC_METHODS) -> None:
        self._auth = auth
        self._open = open_methods
        self._guarded: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(  # type: ignore[override]
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        method: str = details.method  # type: ignore[attr-defined]
        if handler is None or method in self._open:
            return handler
        cached = self._guarded.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = self._guard(handler)
        self._guarded[method] = (handler, guarded)
        return guarded

    async def _enter(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The caller's tenant, once its key checks out and its bucket has a token; aborts the call if not."""
        try:
            tenant = self._auth.authenticate(_authorization(context.invocation_metadata()))
            self._auth.admit(tenant)
        except RateLimited as exc:
            retry = ((RETRY_AFTER_METADATA, str(exc.retry_after_ms)),)
            await context.abort(exc.code, exc.message, trailing_metadata=retry)
            raise AssertionError("unreachable: abort raises") from None
        except Unauthenticated as exc:
            await context.abort(exc.code, exc.message)
            raise AssertionError("unreachable: abort raises") from None
        return tenant.name

    def _guard(self, handler: Any) -> Any:
        """The handler with its behaviour wrapped: authenticate, charge, run as the tenant."""
        enter = self._enter
        if handler.unary_unary is not None or handler.stream_unary is not None:
            single: Any = handler.unary_unary or handler.stream_unary

            async def one_reply(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                token = authenticated_tenant.set(await enter(context))
                try:
                    reply = single(request, context)
                    return await reply if inspect.isawaitable(reply) else reply
                finally:
                    authenticated_tenant.reset(token)

            field_name = "unary_unary" if handler.unary_unary is not None else "stream_unary"
            return handler._replace(**{field_name: one_reply})

        streaming: Any = handler.unary_stream or handler.stream_stream

        async def many_replies(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            token = authenticated_tenant.set(await enter(context))
            try:
                async for reply in streaming(request, context):
                    yield reply
            finally:
                # A stream closed from another task (cancellation) runs this in another context.
                with contextlib.suppress(ValueError):
                    authenticated_tenant.reset(token)

        field_name = "unary_stream" if handler.unary_stream is not None else "stream_stream"
        return handler._replace(**{field_name: many_replies})


# -- REST ------------------------------------------------------------------------------------


def rest_middleware(auth: Authenticator, open_paths: frozenset[str] = OPEN_REST_PATHS) -> Any:
    """aiohttp middleware: the same check on the REST front; 401 or 429 (with Retry-After) as JSON."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path in open_paths:
            response: web.StreamResponse = await handler(request)
            return response
        try:
            tenant = auth.authenticate(request.headers.get("Authorization"))
            auth.admit(tenant)
        except RateLimited as exc:
            retry_s = str(max(1, math.ceil(exc.retry_after_ms / 1000)))
            headers = {"Retry-After": retry_s, RETRY_AFTER_METADATA: str(exc.retry_after_ms)}
            return web.json_response({"error": exc.message}, status=exc.http_status, headers=headers)
        except Unauthenticated as exc:
            return web.json_response(
                {"error": exc.message}, status=exc.http_status, headers={"WWW-Authenticate": "Bearer"}
            )
        token = authenticated_tenant.set(tenant.name)
        try:
            response = await handler(request)
            return response
        finally:
            authenticated_tenant.reset(token)

    return check


def admin_middleware(token: str, open_paths: frozenset[str] = frozenset({"/healthz", "/readyz"})) -> Any:
    """aiohttp middleware for the admin port: every path but the probes needs `Bearer <admin token>`."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path not in open_paths:
            presented = request.headers.get("Authorization", "").encode()
            if not secrets.compare_digest(presented, expected):
                return web.json_response(
                    {"error": "the admin port needs 'Authorization: Bearer <admin token>'"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        response: web.StreamResponse = await handler(request)
        return response

    return check


# -- `edgeinfer apikey` ----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant the key belongs to")


def run(args: argparse.Namespace) -> int:
    if not args.tenant or not all(c.isalnum() or c in "-_." for c in args.tenant):
        print("edgeinfer apikey: --tenant must be letters, digits, '-', '_' or '.'", file=sys.stderr)
        return 2
    key, digest = new_key()
    print(f"API key (give it to the tenant; it is not stored anywhere): {key}")
    print("Add to the --api-keys file:")
    print(f'tenants:\n  {args.tenant}:\n    keys: ["{digest}"]')
    return 0
