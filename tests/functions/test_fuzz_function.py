"""Property-based fuzzing of a real function's gRPC front (the function has no REST front).

Each hostile case gets its status code and a message; after every one the
process is still up and a normal request is served; memory stays bounded.
More examples per case: EDGEINFER_FUZZ_EXAMPLES=2000 (docs/reliability.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit import hostile
from testkit.procs import Proc, start_function

# Growth of the function's resident memory over the whole module that counts as unbounded.
RSS_GROWTH_LIMIT = 96 * 1024 * 1024


class Target:
    def __init__(self, proc: Proc, address: str) -> None:
        self.proc = proc
        self.channel = grpc.insecure_channel(address)
        self.call: Callable[..., bytes] = hostile.raw_infer(self.channel)
        hostile.assert_good_request_served(self.call)
        self.rss_after_warm_up = hostile.rss_bytes(proc.pid)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    repo = hostile.write_fuzz_repo(tmp_path_factory.mktemp("fuzz-repo"))
    proc, address = start_function(
        repo, tmp_path_factory.mktemp("fuzz-logs"), "--max-message-bytes", str(hostile.MAX_MESSAGE_BYTES)
    )
    target = Target(proc, address)
    yield target
    target.channel.close()
    proc.stop()


def _survives(target: Target, name: str, case: hostile.Hostile) -> None:
    code, message = hostile.answer(target.call, case.payload)
    hostile.TALLY.add("function gRPC", name, code)
    hostile.judge(code, message, case.codes, case.says, hostile.OK)
    assert target.proc.popen.poll() is None, f"the function died on {case.kind}:\n{target.proc.output()[-3000:]}"
    hostile.assert_good_request_served(target.call)


@pytest.mark.parametrize("case", sorted(hostile.GRPC_CASES))
def test_grpc_hostile_input(target: Target, case: str) -> None:
    @hostile.fuzz_settings(case)
    @given(hostile.GRPC_CASES[case])
    def run(example: hostile.Hostile) -> None:
        _survives(target, case, example)

    run()


@hostile.fuzz_settings()
@given(st.data())
def test_stream_infer_answers_hostile_messages_in_band(target: Target, data: st.DataObject) -> None:
    """ModelStreamInfer: a bad message gets an in-band error and the stream goes on; garbage ends it cleanly."""
    example = data.draw(st.sampled_from(sorted(hostile.GRPC_CASES)).flatmap(lambda k: hostile.GRPC_CASES[k]))
    stream = target.channel.stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer", request_serializer=None, response_deserializer=None
    )
    good = hostile.good_request(1).SerializeToString()
    try:
        replies = list(stream(iter([example.payload, good]), timeout=hostile.ANSWER_WITHIN_S))
        code, message = hostile.OK, ""
    except grpc.RpcError as error:
        replies, code, message = [], error.code(), error.details() or ""
    # Unparsable bytes or an oversized message end the stream with a status; anything else is answered in band.
    hostile.judge(code, message, frozenset({hostile.OK, hostile.INVALID, hostile.EXHAUSTED}), (), hostile.OK)
    if code == hostile.OK:
        assert len(replies) == 2
    hostile.TALLY.add("function gRPC stream", "any case, then a good request", code)
    assert target.proc.popen.poll() is None
    hostile.assert_good_request_served(target.call)


def test_memory_bounded_and_no_unexpected_errors(target: Target) -> None:
    """Run last in this module: after every case above, memory has not run away and nothing was INTERNAL."""
    hostile.assert_good_request_served(target.call)
    growth = hostile.rss_bytes(target.proc.pid) - target.rss_after_warm_up
    assert growth < RSS_GROWTH_LIMIT, f"resident memory grew {growth / 2**20:.0f} MiB over the fuzz run"
    log = target.proc.output()
    assert "unexpected error" not in log and "Traceback" not in log, log[-5000:]
    hostile.TALLY.write(("function gRPC", "function gRPC stream"), rss_growth_mib=round(growth / 2**20, 1))
