"""W3C trace context flows caller → gateway (cache lookup, function call) → function."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
from testkit.procs import start_function, start_gateway

from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def spans(path: Path) -> dict[str, dict[str, object]]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {str(r["name"]): r for r in records}


def test_spans_nest_from_the_caller_to_the_function(model_repo: Path, tmp_path: Path) -> None:
    fn_spans, gw_spans = tmp_path / "fn.jsonl", tmp_path / "gw.jsonl"
    function, address = start_function(model_repo, tmp_path, "--trace", "console", "--trace-file", str(fn_spans))
    gateway, addresses = start_gateway(
        tmp_path, {"fraud": [address]}, "--trace", "console", "--trace-file", str(gw_spans)
    )
    try:
        with grpc.insecure_channel(addresses["grpc"]) as channel:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                build_request("fraud", {"features": np.ones((1, 30), np.float32)}),
                metadata=(("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01"),),
                timeout=10,
            )
    finally:
        gateway.stop()  # stopping flushes the span processors
        function.stop()
    gw, fn = spans(gw_spans), spans(fn_spans)
    root, lookup, call = gw["gateway.ModelInfer"], gw["cache.lookup"], gw["function.call"]
    served = fn["ModelInfer"]
    for span in (root, lookup, call, served):
        assert span["context"]["trace_id"] == f"0x{TRACE_ID}"  # type: ignore[index]
    assert root["parent_id"] == f"0x{CALLER_SPAN}"
    root_id = root["context"]["span_id"]  # type: ignore[index]
    assert lookup["parent_id"] == root_id and call["parent_id"] == root_id
    assert served["parent_id"] == call["context"]["span_id"]  # type: ignore[index]
