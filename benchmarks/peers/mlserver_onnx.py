"""A minimal ONNX Runtime inference runtime for Seldon MLServer (runs in MLServer's own virtualenv).

model-settings.json names it as `"implementation": "mlserver_onnx.OnnxModel"` and points
`parameters.uri` at the .onnx file; functions_vs_peers.py writes those files and puts this
directory on PYTHONPATH. Sessions use one intra-op thread, like the edgeinfer example config,
so every server gets the same compute per request.

Not type-checked with the project (mlserver is not installed in the project's venv).
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self.settings)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(uri, sess_options=options, providers=["CPUExecutionProvider"])
        self._input_names = [i.name for i in self._session.get_inputs()]
        self._output_names = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {}
        for request_input in payload.inputs:
            feeds[request_input.name] = NumpyCodec.decode_input(request_input)
        results = self._session.run(self._output_names, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, value) for name, value in zip(self._output_names, results, strict=True)
            ],
        )
