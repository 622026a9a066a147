"""MLServer 1.7 custom runtime: an ONNX Runtime session behind MLServer's OIP REST server.

model-settings.json: {"implementation": "mlserver_ort.OrtRuntime", "parameters": {"uri": "<model.onnx>"}}
(run.py writes it, with MLServer's adaptive batching set like modelfleet's dynamic batching).
"""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from ort_session import session, signature


class OrtRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        uri = self.settings.parameters.uri if self.settings.parameters else None
        if not uri:
            raise ValueError("model-settings.json: parameters.uri must name the ONNX file")
        self._session = session(uri)
        inputs, outputs = signature(self._session)
        self._input_names = {name for name, _, _ in inputs}
        self._output_names = [name for name, _, _ in outputs]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {request_input.name: NumpyCodec.decode_input(request_input) for request_input in payload.inputs}
        missing = self._input_names - feeds.keys()
        if missing:
            raise ValueError(f"missing inputs {sorted(missing)}")
        results = self._session.run(self._output_names, feeds)
        return InferenceResponse(
            model_name=self.name, model_version=self.version, id=payload.id,
            outputs=[NumpyCodec.encode_output(name, result) for name, result in zip(self._output_names, results,
                                                                                     strict=True)])
