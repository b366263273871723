"""Property-based fuzzing of a real function's gRPC front (the function has no REST front).

Each hostile case gets its status code and a message that names the cause;
after every one the process is still up and a normal request is served, and
its log has no traceback. The memory test makes its own pass over every case,
so no test depends on which ran before it. More examples per case:
EDGEINFER_FUZZ_EXAMPLES=2000 (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit import hostile
from testkit.procs import Proc, start_function

from edgeinfer.protocol import open_inference_pb2 as pb

# Growth of the function's resident memory over one pass of every case that counts as unbounded.
RSS_GROWTH_LIMIT = 96 * 1024 * 1024
STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"


class Target:
    def __init__(self, proc: Proc, address: str) -> None:
        self.proc = proc
        self.channel = grpc.insecure_channel(address)
        self.call: Callable[..., bytes] = hostile.raw_infer(self.channel)
        hostile.assert_good_request_served(self.call)
        self.facts: dict[str, float] = {}

    def assert_clean_log(self) -> None:
        """No handler raised: an INTERNAL answer logs `unexpected error` with its traceback."""
        log = self.proc.output()
        assert "unexpected error" not in log and "Traceback" not in log, log[-5000:]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    repo = hostile.write_fuzz_repo(tmp_path_factory.mktemp("fuzz-repo"))
    proc, address = start_function(
        repo, tmp_path_factory.mktemp("fuzz-logs"), "--max-message-bytes", str(hostile.MAX_MESSAGE_BYTES)
    )
    target = Target(proc, address)
    yield target
    hostile.TALLY.write(("function gRPC", "function gRPC stream"), **target.facts)
    target.channel.close()
    proc.stop()


def _survives(target: Target, name: str, case: hostile.Hostile) -> None:
    code, message = hostile.answer(target.call, case.payload)
    hostile.TALLY.add("function gRPC", name, code)
    hostile.judge(code, message, case.answers, hostile.OK)
    assert target.proc.popen.poll() is None, f"the function died on {case.kind}:\n{target.proc.output()[-3000:]}"
    hostile.assert_good_request_served(target.call)


@pytest.mark.parametrize("case", sorted(hostile.GRPC_CASES))
def test_grpc_hostile_input(target: Target, case: str) -> None:
    @hostile.fuzz_settings(case)
    @given(hostile.GRPC_CASES[case])
    def run(example: hostile.Hostile) -> None:
        _survives(target, case, example)

    run()
    target.assert_clean_log()


@pytest.mark.parametrize("method", sorted(hostile.RPC_CASES))
def test_other_rpcs_hostile_input(target: Target, method: str) -> None:
    """Config, statistics, repository, shared memory, trace and log settings: each hostile request handled (an
    UNIMPLEMENTED RPC counts), the function up and serving after it."""
    call = hostile.unary(target.channel, method)

    @hostile.fuzz_settings(method)
    @given(hostile.RPC_CASES[method])
    def run(example: hostile.Hostile) -> None:
        code, message = hostile.answer(call, example.payload)
        hostile.TALLY.add("function gRPC", method, code)
        hostile.judge(code, message, example.answers, hostile.OK)
        assert target.proc.popen.poll() is None, f"the function died on {example}:\n{target.proc.output()[-3000:]}"
        hostile.reset_settings(target.channel)
        hostile.assert_good_request_served(target.call)

    run()
    target.assert_clean_log()


def _stream(target: Target, payload: bytes) -> tuple[list[pb.ModelStreamInferResponse], grpc.StatusCode, str]:
    """`payload`, then a good request, on one ModelStreamInfer: the replies before the stream ended, and its status."""
    stream = target.channel.stream_stream(STREAM_METHOD, request_serializer=None, response_deserializer=None)
    good = hostile.good_request(1).SerializeToString()
    replies: list[pb.ModelStreamInferResponse] = []
    try:
        for reply in stream(iter([payload, good]), timeout=hostile.ANSWER_WITHIN_S):
            replies.append(pb.ModelStreamInferResponse.FromString(reply))
    except grpc.RpcError as error:
        return replies, error.code(), error.details() or ""
    return replies, hostile.OK, ""


@hostile.fuzz_settings()
@given(st.data())
def test_stream_infer_answers_hostile_messages_in_band(target: Target, data: st.DataObject) -> None:
    """ModelStreamInfer: a bad message gets an in-band error and the stream goes on; garbage ends it cleanly."""
    example = data.draw(st.sampled_from(sorted(hostile.GRPC_CASES)).flatmap(lambda k: hostile.GRPC_CASES[k]))
    replies, code, message = _stream(target, example.payload)
    hostile.TALLY.add("function gRPC stream", "any case, then a good request", code)
    refused = hostile.refused_on_receipt(example.payload)
    if refused is not None:
        # Oversized or unparsable: no handler sees it, so the stream ends with the status unary calls get.
        hostile.judge(code, message, refused, None)
        assert replies == [], f"{example} ended the stream, yet it answered {replies}"
    else:
        assert code == hostile.OK, f"the stream ended with {code.name} ({message!r}) on {example}"
        assert len(replies) == 2, f"{len(replies)} replies to {example} and a good request"
        first, second = replies
        sent = hostile.parse(example.payload)
        assert sent is not None
        if first.error_message:
            # In band: the message the unary call's error status carries (the stream has no status per reply).
            errors = {code: says for code, says in example.answers.items() if code != hostile.OK}
            assert errors, f"{example} must be served, got in-band error {first.error_message!r}"
            causes = [s for says in errors.values() for s in says]
            assert any(s in first.error_message for s in causes), f"{first.error_message!r} should say one of {causes}"
            assert not first.infer_response.outputs
        else:
            assert hostile.OK in example.answers, f"{example} was served: {first.infer_response}"
            assert first.infer_response.outputs, first
        # Either way the reply says which request it answers.
        assert (first.infer_response.model_name, first.infer_response.id) == (sent.model_name, sent.id)
        # ...and the stream goes on: the good request after it is served.
        assert not second.error_message, f"the good request after {example} failed: {second.error_message!r}"
        assert second.infer_response.model_name == "fraud"
        assert second.infer_response.outputs[0].shape[0] == 1
    assert target.proc.popen.poll() is None
    hostile.assert_good_request_served(target.call)
    target.assert_clean_log()


def test_memory_bounded_and_no_unexpected_errors(target: Target) -> None:
    """One pass of every case of its own: resident memory across it stays bounded, and nothing was INTERNAL."""

    def send(example: hostile.Hostile) -> None:
        code, message = hostile.answer(target.call, example.payload)
        hostile.judge(code, message, example.answers, hostile.OK)

    hostile.assert_good_request_served(target.call)
    before = hostile.rss_bytes(target.proc.pid)
    hostile.send_every_case(hostile.GRPC_CASES, send)
    hostile.assert_good_request_served(target.call)
    growth = hostile.rss_bytes(target.proc.pid) - before
    target.facts["rss_growth_mib"] = round(growth / 2**20, 1)
    assert growth < RSS_GROWTH_LIMIT, f"resident memory grew {growth / 2**20:.0f} MiB over a pass of every case"
    target.assert_clean_log()
