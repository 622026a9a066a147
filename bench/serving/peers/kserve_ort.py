"""KServe 0.21 ModelServer serving an ONNX Runtime session (Open Inference Protocol v2 over REST).

    python kserve_ort.py --model_name NAME --model_path model.onnx --http_port P --grpc_port G --enable_grpc true

KServe's own flags (kserve.model_server.parser) apply. Two changes to KServe's defaults, both for the
benchmark: the REST and gRPC servers listen on 127.0.0.1 (KServe hard-codes 0.0.0.0 and [::]), and
per-request logging (uvicorn access log, latency log) is off, as in the other servers measured.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import kserve
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.rest import server as rest_server
from kserve.utils.utils import generate_uuid
from ort_session import session, signature

LISTEN_HOST = "127.0.0.1"


class _LoopbackConfig(uvicorn.Config):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["host"] = LISTEN_HOST
        kwargs["access_log"] = False
        super().__init__(*args, **kwargs)


def _loopback_grpc_server(*args: Any, **kwargs: Any) -> Any:
    """grpc.aio.server whose add_insecure_port("[::]:P") listens on 127.0.0.1:P instead."""
    server = _aio_server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port(address.replace("[::]", LISTEN_HOST))
    return server


_aio_server = grpc_server.aio.server


class OrtModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, model_path: str) -> None:
        super().__init__(name)
        self.model_path = model_path
        self.load()

    def load(self) -> bool:
        self._session = session(self.model_path)
        _, outputs = signature(self._session)
        self._outputs = [(name, datatype) for name, datatype, _ in outputs]
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                response_headers: dict[str, str] | None = None) -> InferResponse:
        feeds = {request_input.name: request_input.as_numpy() for request_input in payload.inputs}
        results = self._session.run([name for name, _ in self._outputs], feeds)
        outputs = []
        for (name, datatype), result in zip(self._outputs, results, strict=True):
            output = InferOutput(name=name, shape=list(result.shape), datatype=datatype)
            output.set_data_from_numpy(result, binary_data=False)
            outputs.append(output)
        return InferResponse(response_id=payload.id or generate_uuid(), model_name=self.name, infer_outputs=outputs)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_path", required=True, help="the ONNX file")
    args, _ = parser.parse_known_args()
    rest_server.uvicorn.Config = _LoopbackConfig
    grpc_server.aio.server = _loopback_grpc_server
    model = OrtModel(args.model_name, args.model_path)
    server = kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc,
                                enable_latency_logging=False, workers=1)
    logging.getLogger("uvicorn.access").disabled = True
    server.start([model])


if __name__ == "__main__":
    main()
