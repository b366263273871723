"""Property-based fuzzing of a real gateway's gRPC and REST fronts (a real function behind it).

Each hostile case gets its status code and a message that names the cause;
after every one both processes are still up and a normal request is served on
both fronts, and neither log has a traceback. The memory test makes its own
pass over every case, so no test depends on which ran before it. More
examples per case: EDGEINFER_FUZZ_EXAMPLES=2000 (docs/reliability.md).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import example, given
from testkit import hostile
from testkit.procs import Proc, start_function, start_gateway

RSS_GROWTH_LIMIT = 96 * 1024 * 1024
L1_BYTES = 4 * 1024 * 1024


class Stack:
    def __init__(self, gateway: Proc, function: Proc, addresses: dict[str, str]) -> None:
        self.gateway = gateway
        self.function = function
        self.rest_port = int(addresses["rest"].rsplit(":", 1)[1])
        self.channel = grpc.insecure_channel(addresses["grpc"])
        self.call: Callable[..., bytes] = hostile.raw_infer(self.channel)
        hostile.assert_good_request_served(self.call)
        self.assert_rest_served()
        self.facts: dict[str, float] = {}

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        """One POST on a fresh connection (a refused body may close it); the status and the JSON answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=hostile.ANSWER_WITHIN_S)
        try:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def assert_rest_served(self) -> None:
        body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 30], "data": [0.1] * 60}]})
        status, reply = self.post("/v2/models/fraud/infer", body.encode())
        assert status == 200, reply
        assert reply["outputs"][0]["shape"][0] == 2

    def assert_alive(self, kind: str) -> None:
        for proc in (self.gateway, self.function):
            assert proc.popen.poll() is None, f"{proc.argv[3]} died on {kind}:\n{proc.output()[-3000:]}"

    def log_mark(self) -> tuple[int, int]:
        """Where both logs end now: a test checks only what was logged after it (a known crash's xfailed case
        leaves its traceback behind)."""
        return len(self.gateway.output()), len(self.function.output())

    def assert_clean_logs(self, since: tuple[int, int] = (0, 0)) -> None:
        """No handler raised: an INTERNAL answer (or a REST 500) logs `unexpected error` with its traceback."""
        for proc, start in zip((self.gateway, self.function), since, strict=True):
            log = proc.output()[start:]
            assert "unexpected error" not in log and "Traceback" not in log, log[-5000:]

    def send(self, call: hostile.HostileCall) -> tuple[int, str, bytes, dict[str, str]]:
        """One request on a fresh connection: the status, an error's message, the body and the headers."""
        connection = http.client.HTTPConnection("127.0.0.1", self.rest_port, timeout=hostile.ANSWER_WITHIN_S)
        try:
            connection.request(call.method, call.path, body=call.body, headers=dict(call.headers))
            response = connection.getresponse()
            body = response.read()
            headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()
        message = ""
        if response.status != 200:
            try:
                reply = json.loads(body)
            except ValueError:
                reply = None
            error = reply.get("error") if isinstance(reply, dict) else None
            message = error if isinstance(error, str) else f"<not a JSON error body: {body[:200]!r}>"
        return response.status, message, body, headers

    def unregister_regions(self) -> None:
        unregister = hostile.HostileCall(
            "unregister every region", "POST", "/v2/systemsharedmemory/unregister", b"", {200: ()}
        )
        status, message, _, _ = self.send(unregister)
        assert status == 200, message

    def restore_settings(self) -> None:
        """The log settings back to the defaults and the global trace settings cleared (a hostile call may have
        changed them; the tests read the log)."""
        for path, settings in (
            ("/v2/logging", hostile.DEFAULT_LOG_SETTINGS),
            ("/v2/trace/setting", hostile.TRACE_RESET),
        ):
            status, reply = self.post(path, json.dumps(settings).encode())
            assert status == 200, (path, reply)

    def rest_answer(self, example: hostile.HostileBody) -> tuple[int, str]:
        status, reply = self.post(f"/v2/models/{example.model}/infer", example.body)
        return status, reply.get("error", "") if isinstance(reply, dict) else ""


@pytest.fixture(scope="module")
def shm_file() -> Iterator[Path]:
    """The POSIX shared-memory object some hostile registrations name, so that those map for real."""
    path = Path("/dev/shm") / hostile.FUZZ_SHM_KEY.lstrip("/")
    path.write_bytes(bytes(hostile.FUZZ_SHM_BYTES))
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    repo = hostile.write_fuzz_repo(tmp_path_factory.mktemp("fuzz-repo"))
    logs = tmp_path_factory.mktemp("fuzz-logs")
    limit = ("--max-message-bytes", str(hostile.MAX_MESSAGE_BYTES))
    function, address = start_function(repo, logs, *limit)
    routes = {model: [address] for model in ("fraud", "ranker", "echo_text")}
    try:
        gateway, addresses = start_gateway(logs, routes, *limit, "--l1-max-bytes", str(L1_BYTES), rest=True)
    except BaseException:
        function.stop()
        raise
    stack = Stack(gateway, function, addresses)
    yield stack
    hostile.TALLY.write(("gateway gRPC", "gateway REST"), **stack.facts)
    stack.channel.close()
    gateway.stop()
    function.stop()


@pytest.mark.parametrize("case", sorted(hostile.GRPC_CASES))
def test_grpc_hostile_input(stack: Stack, case: str) -> None:
    @hostile.fuzz_settings(case)
    @given(hostile.GRPC_CASES[case])
    def run(example: hostile.Hostile) -> None:
        code, message = hostile.answer(stack.call, example.payload)
        hostile.TALLY.add("gateway gRPC", case, code)
        hostile.judge(code, message, example.answers, hostile.OK)
        stack.assert_alive(example.kind)
        hostile.assert_good_request_served(stack.call)

    mark = stack.log_mark()
    run()
    stack.assert_clean_logs(mark)


@pytest.mark.parametrize("method", sorted(hostile.RPC_CASES))
def test_other_rpcs_hostile_input(stack: Stack, method: str) -> None:
    """Config, statistics, repository, shared memory, trace and log settings: each hostile request handled (an
    UNIMPLEMENTED RPC counts), both processes up and the gateway serving after it."""
    call = hostile.unary(stack.channel, method)

    @hostile.fuzz_settings(method)
    @given(hostile.RPC_CASES[method])
    def run(example: hostile.Hostile) -> None:
        code, message = hostile.answer(call, example.payload)
        hostile.TALLY.add("gateway gRPC", method, code)
        hostile.judge(code, message, example.answers, hostile.OK)
        stack.assert_alive(example.kind)
        hostile.reset_settings(stack.channel)
        hostile.assert_good_request_served(stack.call)

    mark = stack.log_mark()
    run()
    stack.assert_clean_logs(mark)


@pytest.mark.parametrize("case", sorted(hostile.REST_CASES))
def test_rest_hostile_input(stack: Stack, case: str) -> None:
    @hostile.fuzz_settings(case)
    @given(hostile.REST_CASES[case])
    def run(example: hostile.HostileBody) -> None:
        status, message = stack.rest_answer(example)
        hostile.TALLY.add("gateway REST", case, status)
        hostile.judge(status, message, example.answers, 200)
        stack.assert_alive(example.kind)
        stack.assert_rest_served()

    mark = stack.log_mark()
    run()
    stack.assert_clean_logs(mark)


def check_route_reply(
    call: hostile.HostileCall, status: int, message: str, body: bytes, headers: dict[str, str]
) -> None:
    """The answer is a right one; a 200 with binary tensors is laid out as it says (its JSON header parses)."""
    hostile.judge(status, message, call.answers, 200)
    if status == 200 and body:
        length = headers.get(hostile.INFERENCE_HEADER.lower())
        header = body if length is None else body[: int(length)]
        assert length is None or int(length) <= len(body), f"{hostile.INFERENCE_HEADER} {length} > {len(body)} bytes"
        json.loads(header)


@pytest.mark.parametrize("case", sorted(hostile.ROUTE_CASES))
def test_rest_routes_hostile_input(stack: Stack, shm_file: Path, case: str) -> None:
    """Binary tensors, compression, config, statistics, repository, shared memory, trace and log settings: each
    hostile request gets a right answer (an error as JSON naming its cause) within the deadline; both processes are
    up, the next normal request is served, and no traceback was logged."""

    def run(call: hostile.HostileCall) -> None:
        status, message, body, headers = stack.send(call)
        hostile.TALLY.add("gateway REST", case, status)
        try:
            check_route_reply(call, status, message, body, headers)
        finally:
            stack.assert_alive(call.kind)
            if call.changes_logging or case == "trace_settings":
                stack.restore_settings()
            if "/systemsharedmemory/" in call.path:  # a registration that worked: gone before the next
                stack.unregister_regions()
        stack.assert_rest_served()

    test: Any = run
    for reproducer in hostile.FOUND_CRASHES.get(case, ("", ()))[1]:
        test = example(reproducer)(test)
    mark = stack.log_mark()
    hostile.fuzz_settings(case)(given(hostile.ROUTE_CASES[case])(test))()
    stack.assert_clean_logs(mark)


def test_memory_bounded_and_no_unexpected_errors(stack: Stack) -> None:
    """One pass of every case of its own: the gateway's memory across it stays bounded, nothing was INTERNAL."""

    def send(example: hostile.Hostile) -> None:
        code, message = hostile.answer(stack.call, example.payload)
        hostile.judge(code, message, example.answers, hostile.OK)

    def post(example: hostile.HostileBody) -> None:
        status, message = stack.rest_answer(example)
        hostile.judge(status, message, example.answers, 200)

    hostile.assert_good_request_served(stack.call)
    stack.assert_rest_served()
    mark = stack.log_mark()
    before = hostile.rss_bytes(stack.gateway.pid)
    hostile.send_every_case(hostile.GRPC_CASES, send)
    hostile.send_every_case(hostile.REST_CASES, post)
    hostile.assert_good_request_served(stack.call)
    stack.assert_rest_served()
    growth = hostile.rss_bytes(stack.gateway.pid) - before
    stack.facts["rss_growth_mib"] = round(growth / 2**20, 1)
    assert growth < RSS_GROWTH_LIMIT, f"the gateway's resident memory grew {growth / 2**20:.0f} MiB over a pass"
    stack.assert_alive("a pass of every case")
    stack.assert_clean_logs(mark)
