"""PyTriton (Triton Inference Server with a Python model) serving an ONNX Runtime session.

    LD_LIBRARY_PATH=<libpython dir> python pytriton_ort.py --model-name NAME --model-path model.onnx \
        --http-port P --grpc-port G --metrics-port M --max-batch 64 --max-queue-delay-us 2000

Triton's dynamic batcher gathers single-row requests into batches of up to --max-batch rows,
waiting at most --max-queue-delay-us; the batch runs in this process (Triton's Python backend
stub hands it over through shared memory). Stops on SIGINT.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy.typing as npt
from ort_session import NUMPY_DTYPES, session, signature
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

LISTEN_HOST = "127.0.0.1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-queue-delay-us", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sess = session(args.model_path)
    inputs, outputs = signature(sess)
    output_names = [name for name, _, _ in outputs]

    output_dtypes = [NUMPY_DTYPES[datatype] for _, datatype, _ in outputs]

    @batch  # type: ignore[untyped-decorator]
    def infer(**feeds: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        results = sess.run(output_names, feeds)
        answer = {}
        for name, dtype, result in zip(output_names, output_dtypes, results, strict=True):
            # onnxruntime hands INT64 back as numpy's `longlong`, which PyTriton's strict output check
            # (numpy 1.x) rejects as "not numpy.int64": same bytes, so a view fixes the type.
            value = result.view(dtype)
            # Triton describes each output per row; a per-row scalar (the label) travels as shape [1].
            answer[name] = value.reshape(value.shape[0], 1) if value.ndim == 1 else value
        return answer

    def per_row(shape: list[object]) -> tuple[int, ...]:
        rest = tuple(d if isinstance(d, int) else -1 for d in shape[1:])
        return rest or (1,)

    config = TritonConfig(http_address=LISTEN_HOST, http_port=args.http_port, grpc_address=LISTEN_HOST,
                          grpc_port=args.grpc_port, metrics_address=LISTEN_HOST, metrics_port=args.metrics_port,
                          allow_gpu_metrics=False, log_verbose=0)
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.model_name,
            infer_func=infer,
            inputs=[Tensor(name=name, dtype=NUMPY_DTYPES[datatype], shape=per_row(shape))
                    for name, datatype, shape in inputs],
            outputs=[Tensor(name=name, dtype=NUMPY_DTYPES[datatype], shape=per_row(shape))
                     for name, datatype, shape in outputs],
            config=ModelConfig(max_batch_size=args.max_batch,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=args.max_queue_delay_us)),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
