"""API keys → tenants on real gateways: separate cache namespaces, a rate limit each, a guarded admin port.

Real processes throughout: a function, a Redis, gateways started with a keys
file; nothing a client sends besides its key can choose its tenant.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
from testkit.procs import Proc, free_port, start_gateway

from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.gateway.auth import Authenticator, KeysFile, KeysFileError, TokenBucket, new_key
from edgeinfer.gateway.metrics import GATEWAY_AUTH, GATEWAY_REQUESTS
from edgeinfer.gateway.settings import GatewaySettings
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request

PREFIX = "authtest:"
REDIS_PASSWORD = "redis-pw-Zq8x"
ADMIN_TOKEN = "admin-token-7Hc2pQ"
LIMITED_RATE = 1.0
LIMITED_BURST = 3
OVER_BURST = 5  # calls beyond a burst: some are refused unless they took 5 s (the refill of 5 tokens)


@dataclass(frozen=True)
class Keys:
    acme: str
    globex: str
    limited: str
    burst: str  # limited like `limited`, used by one test only: its bucket is full when that test starts
    file: Path

    def all(self) -> tuple[str, ...]:
        return (self.acme, self.globex, self.limited, self.burst)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    (acme, acme_digest), (globex, globex_digest), (limited, limited_digest) = new_key(), new_key(), new_key()
    burst, burst_digest = new_key()
    limits = f"    rate_per_second: {LIMITED_RATE}\n    burst: {LIMITED_BURST}\n"
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    path.write_text(
        "tenants:\n"
        f"  acme:\n    keys: ['{acme_digest}']\n"
        f"  globex:\n    keys: ['{globex_digest}']\n"
        f"  limited:\n    keys: ['{limited_digest}']\n{limits}"
        f"  burst:\n    keys: ['{burst_digest}']\n{limits}"
    )
    return Keys(acme, globex, limited, burst, path)


@dataclass(frozen=True)
class Stack:
    gateway: str
    gateway_rest: str
    gateway_admin: str
    redis_only: str  # a second gateway on the same Redis, without L1
    open_gateway: str  # no --api-keys: everyone is tenant "default"
    redis: RedisServer
    logs: list[Proc]


@pytest.fixture(scope="module")
def stack(function_address: str, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("auth-logs")
    server = RedisServer(free_port(), password=REDIS_PASSWORD, dir=tmp_path_factory.mktemp("auth-redis"))
    server.start()
    server.wait_ready()
    token_file = logs / "admin-token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    routes = {"fraud": [function_address]}
    # Secrets come from the environment and files, as in production: never on the command line.
    env = {"EDGEINFER_GATEWAY_REDIS_URL": server.url}
    common = ("--redis-prefix", PREFIX, "--log-level", "DEBUG")
    procs: list[Proc] = []
    try:
        gw, addresses = start_gateway(
            logs, routes, *common, "--api-keys", str(keys.file), "--admin-host", "0.0.0.0",
            "--admin-token-file", str(token_file), rest=True, env=env,
        )  # fmt: skip
        procs.append(gw)
        gw2, addresses2 = start_gateway(
            logs, routes, *common, "--api-keys", str(keys.file), "--l1-max-bytes", "0", region="second", env=env
        )
        procs.append(gw2)
        gw3, addresses3 = start_gateway(logs, routes, *common, region="open", env=env)
        procs.append(gw3)
        first = (addresses["grpc"], addresses["rest"], addresses["admin"])
        yield Stack(*first, addresses2["grpc"], addresses3["grpc"], server, procs)
    finally:
        for proc in reversed(procs):
            proc.stop()
        server.stop()


def infer(
    address: str, request: pb.ModelInferRequest, key: str | None, extra: tuple[tuple[str, str], ...] = ()
) -> tuple[pb.ModelInferResponse, dict[str, str]]:
    metadata = ((("authorization", f"Bearer {key}"),) if key is not None else ()) + extra
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        reply, call = stub.ModelInfer.with_call(request, metadata=metadata, timeout=10)
    return reply, dict(call.trailing_metadata() or ())


def cache_status(address: str, request: pb.ModelInferRequest, key: str | None, **kw: object) -> str:
    reply, _ = infer(address, request, key, **kw)  # type: ignore[arg-type]
    return reply.parameters["cache_status"].string_param


def unique_request(seed: int) -> pb.ModelInferRequest:
    features = np.random.default_rng(seed).random((1, 30), dtype=np.float32)
    return build_request("fraud", {"features": features})


def rpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


# -- tenants and the cache ---------------------------------------------------------------------


def redis_key_count(client: redis.Redis) -> int:
    return len(list(client.scan_iter(f"{PREFIX}*")))


def redis_keys_settle(client: redis.Redis, expected: int, timeout: float = 10.0) -> int:
    """The number of cache keys once `expected` have appeared (Redis writes run after the reply), or by timeout."""
    deadline = time.monotonic() + timeout
    while (count := redis_key_count(client)) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return count


def test_two_tenants_never_share_a_cache_entry(stack: Stack, keys: Keys) -> None:
    client = redis.Redis.from_url(stack.redis.url)
    before = redis_key_count(client)  # the entries of the tests that ran before this one
    request = unique_request(1)
    assert cache_status(stack.gateway, request, keys.acme) == "miss"
    # The same bytes from another tenant: not acme's entry, a call of its own.
    assert cache_status(stack.gateway, request, keys.globex) == "miss"
    assert cache_status(stack.gateway, request, keys.acme) == "hit-l1"
    assert cache_status(stack.gateway, request, keys.globex) == "hit-l1"
    # The shared tier keeps them apart too: per tenant a canonical and a wire entry in Redis (written in the
    # background: polled)...
    assert redis_keys_settle(client, before + 4) == before + 4
    # ...found by another gateway for the right tenant only.
    assert cache_status(stack.redis_only, request, keys.acme) == "hit-redis"
    assert cache_status(stack.redis_only, request, keys.globex) == "hit-redis"
    assert cache_status(stack.redis_only, request, keys.limited) == "miss"
    # An open gateway's callers are all tenant "default": no tenant's entry either.
    assert cache_status(stack.open_gateway, request, None) == "miss"
    # Two more tenants ("limited", "default"), each its own canonical and wire entry.
    assert redis_keys_settle(client, before + 8) == before + 8
    client.close()


def test_a_client_cannot_choose_its_tenant(stack: Stack, keys: Keys) -> None:
    request = unique_request(2)
    assert cache_status(stack.gateway, request, keys.globex) == "miss"
    # acme claims to be globex every way a client might try: still acme, so no globex entry.
    spoof = (("x-edgeinfer-tenant", "globex"), ("tenant", "globex"))
    request.parameters["tenant"].string_param = "globex"
    assert cache_status(stack.gateway, request, keys.acme, extra=spoof) == "miss"
    assert cache_status(stack.gateway, request, keys.globex) == "miss"  # the parameter is part of the request


# -- authentication ----------------------------------------------------------------------------


def test_calls_without_a_valid_key_are_unauthenticated(stack: Stack, keys: Keys) -> None:
    request = unique_request(3)
    wrong = keys.acme[:-4] + "AAAA"
    for key, says in ((None, "no API key"), (wrong, "not recognised"), ("x" * 5000, "not recognised")):
        error = rpc_error(lambda key=key: infer(stack.gateway, request, key))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert says in (error.details() or "")
        assert key is None or key not in (error.details() or "")
    with grpc.insecure_channel(stack.gateway) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        error = rpc_error(lambda: stub.ModelInfer(request, metadata=(("authorization", f"Basic {keys.acme}"),)))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "Bearer <key>" in (error.details() or "")
        error = rpc_error(lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="fraud"), timeout=5))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        # Probes need no key: they tell nothing about any tenant.
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready
        meta = stub.ModelMetadata(
            pb.ModelMetadataRequest(name="fraud"), metadata=(("authorization", f"Bearer {keys.acme}"),), timeout=5
        )
        assert meta.name == "fraud"


def test_rate_limit_per_tenant(stack: Stack, keys: Keys) -> None:
    """Tenant `burst` is this test's alone, so its bucket is full at the start, whichever tests ran before."""
    request = unique_request(4)
    outcomes: list[grpc.RpcError | None] = []
    started = time.monotonic()
    for _ in range(LIMITED_BURST + OVER_BURST):
        try:
            infer(stack.gateway, request, keys.burst)
            outcomes.append(None)
        except grpc.RpcError as exc:
            outcomes.append(exc)
    elapsed = time.monotonic() - started
    # The bucket's arithmetic against the measured time, so a slow machine cannot break it: the burst is
    # served, then no more than what refilled meanwhile (rate × elapsed, +1 for the token being refilled).
    assert outcomes[:LIMITED_BURST] == [None] * LIMITED_BURST
    served = outcomes.count(None)
    assert served <= LIMITED_BURST + LIMITED_RATE * elapsed + 1, (served, elapsed)
    refused = [e for e in outcomes if e is not None]
    assert refused, f"nothing refused in {elapsed:.1f} s"  # OVER_BURST more than a burst, in well under 5 s
    error = refused[0]
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "tenant 'burst' is over its rate limit of 1 requests/s; retry in" in (error.details() or "")
    retry_ms = int(dict(error.trailing_metadata() or ())["retry-after-ms"])  # type: ignore[attr-defined]
    assert 0 < retry_ms <= 1000 / LIMITED_RATE
    # Other tenants are not slowed by it.
    for _ in range(LIMITED_BURST + 2):
        infer(stack.gateway, request, keys.acme)
    # The hint is right: after it, the tenant is served again.
    time.sleep(retry_ms / 1000)
    infer(stack.gateway, request, keys.burst)


def auth_counts(stack: Stack) -> dict[tuple[str, str], float]:
    request = urllib.request.Request(
        f"{stack.gateway_admin}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    counts: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith(GATEWAY_AUTH + "{"):
            labels, value = line.rsplit(" ", 1)
            tenant = labels.split('tenant="', 1)[1].split('"', 1)[0]
            outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
            counts[(tenant, outcome)] = float(value)
    return counts


def test_auth_outcomes_are_counted_per_tenant(stack: Stack, keys: Keys) -> None:
    before = auth_counts(stack)
    request = unique_request(11)
    for _ in range(3):
        infer(stack.gateway, request, keys.acme)
    rpc_error(lambda: infer(stack.gateway, request, "not-a-key"))
    rpc_error(lambda: infer(stack.gateway, request, None))
    limited = 0
    for _ in range(LIMITED_BURST + OVER_BURST):
        try:
            infer(stack.gateway, request, keys.limited)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            limited += 1
    after = auth_counts(stack)

    def delta(tenant: str, outcome: str) -> float:
        return after.get((tenant, outcome), 0.0) - before.get((tenant, outcome), 0.0)

    assert delta("acme", "admitted") == 3
    assert delta("", "unknown_key") == 1 and delta("", "no_key") == 1
    # However many the bucket refused (it refills while the calls go on), each is counted once.
    assert limited >= 1 and delta("limited", "rate_limited") == limited
    assert delta("limited", "admitted") == LIMITED_BURST + OVER_BURST - limited
    assert not any(keys.acme in tenant or keys.limited in tenant for tenant, _ in after)  # labels hold no keys


# -- REST ------------------------------------------------------------------------------------


def rest(url: str, body: object | None = None, token: str | None = None) -> tuple[int, dict[str, str], object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status, headers = response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, headers = error.read(), error.code, dict(error.headers)
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode(errors="replace")


def test_rest_front_authenticates_and_limits(stack: Stack, keys: Keys) -> None:
    url = f"{stack.gateway_rest}/v2/models/fraud/infer"
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.25] * 30}]}
    status, headers, reply = rest(url, body)
    assert status == 401 and headers.get("WWW-Authenticate") == "Bearer" and "no API key" in str(reply)
    status, _, reply = rest(url, body, keys.acme[::-1])
    assert status == 401 and keys.acme[::-1] not in str(reply)
    status, headers, reply = rest(url, body, keys.acme)
    assert status == 200 and headers["x-edgeinfer-cache"] == "miss", reply
    status, headers, _ = rest(url, body, keys.globex)
    assert status == 200 and headers["x-edgeinfer-cache"] == "miss"  # globex's own entry
    assert rest(url, body, keys.acme)[1]["x-edgeinfer-cache"] == "hit-l1"
    assert rest(f"{stack.gateway_rest}/v2/health/live")[0] == 200  # probes are open
    assert rest(f"{stack.gateway_rest}/v2/models/fraud")[0] == 401
    statuses = [rest(url, body, keys.limited) for _ in range(LIMITED_BURST + 1)]
    limited = [s for s in statuses if s[0] == 429]
    assert limited, [s[0] for s in statuses]
    status, headers, reply = limited[0]
    assert int(headers["Retry-After"]) >= 1 and "over its rate limit" in str(reply)


# -- the admin port ---------------------------------------------------------------------------


def test_admin_port_off_loopback_needs_its_token(stack: Stack) -> None:
    metrics = f"{stack.gateway_admin}/metrics"
    assert rest(metrics)[0] == 401
    assert rest(metrics, token="wrong")[0] == 401
    request = urllib.request.Request(metrics, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert GATEWAY_REQUESTS.encode() in response.read()
    assert rest(f"{stack.gateway_admin}/healthz")[0] == 200


def test_admin_port_off_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "gateway", "--port", str(free_port()), "--route", "fraud=127.0.0.1:1",
         "--admin-port", str(free_port()), "--admin-host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--admin-host 0.0.0.0 is not loopback: set an admin token" in result.stderr


def test_secrets_never_reach_the_logs(stack: Stack, keys: Keys) -> None:
    """Keys, the admin token and the Redis password appear in no log, even at DEBUG.

    This test uses the keys, the token and Redis itself, rightly and wrongly, on every front, so it does not
    depend on which tests ran before it.
    """
    client = redis.Redis.from_url(stack.redis.url)
    before = redis_key_count(client)
    request = unique_request(12)
    url = f"{stack.gateway_rest}/v2/models/fraud/infer"
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 30], "data": [0.75] * 30}]}
    admitted: set[str] = set()  # tenants served on gRPC, each with an entry for `request`
    admitted_rest: set[str] = set()  # and on REST, each with an entry for `body`
    # Not `burst`'s key: its bucket is test_rate_limit_per_tenant's alone.
    for tenant, key in (("acme", keys.acme), ("globex", keys.globex), ("limited", keys.limited)):
        for address in (stack.gateway, stack.redis_only):
            try:
                infer(address, request, key)
                admitted.add(tenant)
            except grpc.RpcError as error:  # a limited tenant may be out of tokens
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
        wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
        assert rpc_error(lambda wrong=wrong: infer(stack.gateway, request, wrong)).code() == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        status, _, _ = rest(url, body, key)
        assert status in (200, 429), status
        if status == 200:
            admitted_rest.add(tenant)
    assert rest(url, body, keys.acme[::-1])[0] == 401
    infer(stack.open_gateway, request, keys.acme)  # a gateway without keys ignores (and must not log) one
    metrics = f"{stack.gateway_admin}/metrics"
    assert rest(metrics, token=ADMIN_TOKEN)[0] == 200
    assert rest(metrics, token=ADMIN_TOKEN[::-1])[0] == 401
    # Each admitted tenant's entries and the open gateway's are written to Redis in the background: every log
    # line about them is written once they are there. gRPC writes a canonical and a wire entry; REST the first.
    entries = before + 2 * len(admitted) + len(admitted_rest) + 2
    assert redis_keys_settle(client, entries) == entries
    client.close()
    for proc in stack.logs:
        log = proc.output()
        assert "edgeinfer gateway" in log
        for secret in (*keys.all(), ADMIN_TOKEN, REDIS_PASSWORD):
            assert secret not in log


# -- the keys file and the bucket, without processes ------------------------------------------


def test_keys_file_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key, digest = new_key()
    cases = {
        f"tenants:\n  acme:\n    keys: ['{key}']\n": "tenants.acme.keys",  # a key, not its digest
        "tenants: {}\n": "tenants",
        f"tenants:\n  acme:\n    keys: ['{digest}']\n    rate: 5\n": "rate",  # a misspelt field
        f"tenants:\n  'a b':\n    keys: ['{digest}']\n": "must be letters",
        f"tenants:\n  a:\n    keys: ['{digest}']\n  b:\n    keys: ['{digest}']\n": "both tenant 'a' and 'b'",
        "tenants: [\n": "not valid YAML",
    }
    for text, says in cases.items():
        path.write_text(text)
        with pytest.raises(KeysFileError) as info:
            Authenticator.from_file(path)
        assert says in str(info.value) and str(path) in str(info.value), str(info.value)
        assert key not in str(info.value)  # even a misplaced key is not echoed whole
    with pytest.raises(KeysFileError, match="cannot read it"):
        Authenticator.from_file(tmp_path / "missing.yaml")
    assert KeysFile.model_validate({"tenants": {"t": {"keys": [digest]}}}).tenants["t"].burst is None


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10.0, burst=2.0)
    start = bucket.stamp
    assert bucket.take(start) == 0.0
    assert bucket.take(start) == 0.0
    assert bucket.take(start) == pytest.approx(0.1)
    assert bucket.take(start + 0.05) == pytest.approx(0.05)
    assert bucket.take(start + 0.1) == 0.0
    assert bucket.take(start + 100) == 0.0  # refills to the burst, not beyond
    assert bucket.take(start + 100) == 0.0
    assert bucket.take(start + 100) > 0.0


def test_settings_errors_never_echo_secrets() -> None:
    """A bad setting next to a secret: the error names the setting and shows no input."""
    with pytest.raises(ValueError) as info:  # a rule over the whole model: pydantic would show all of it
        GatewaySettings(admin_token="tok-Sd81x", redis_url="redis://:pw-Q7e@cache:6379/0", tls_cert=Path("c.pem"))
    assert "--tls-cert and --tls-key go together" in str(info.value)
    assert "tok-Sd81x" not in str(info.value) and "pw-Q7e" not in str(info.value)
    assert "tok-Sd81x" not in repr(GatewaySettings(admin_token="tok-Sd81x"))
