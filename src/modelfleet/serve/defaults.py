"""The model server's defaults, in one place: read by :class:`~modelfleet.serve.dataplane.ServerSettings`,
:class:`~modelfleet.serve.runtime.RuntimeOptions`, :func:`modelfleet.serve.main.run` and ``modelfleet serve``.

Batching defaults are the model spec's (:class:`modelfleet.spec.Batching`): a server started without
``--spec`` batches exactly as a spec without ``serving.batching`` says.
"""

from __future__ import annotations

from typing import Final

from modelfleet.spec import Batching

_BATCHING: Final = Batching()

MAX_BATCH: Final = _BATCHING.max_batch
MAX_QUEUE_DELAY_US: Final = _BATCHING.max_queue_delay_us
MAX_QUEUE_SIZE: Final = _BATCHING.max_queue_size

#: Largest inference request accepted: an HTTP body (JSON or binary) or a gRPC message (413 /
#: RESOURCE_EXHAUSTED beyond). Requests with more rows than the max batch are bounded by this alone.
MAX_REQUEST_BYTES: Final = 16 << 20
BODY_TIMEOUT: Final = 30.0
LIMIT_CONCURRENCY: Final = 2048

OPTIMIZATION: Final = "all"
INTRA_OP_THREADS: Final = 0

SPOOL_SAMPLE_RATE: Final = 1.0
SPOOL_MAX_BYTES: Final = 256 << 20
SPOOL_SEGMENT_BYTES: Final = 16 << 20

SHUTDOWN_DELAY: Final = 0.0
DRAIN_TIMEOUT: Final = 30.0

HOST: Final = "127.0.0.1"
PORT: Final = 8080
#: No gRPC listener unless a port is given: two versions run side by side on each host, so a fixed
#: default port would collide. ``0`` lets the kernel choose (as for the HTTP port).
GRPC_PORT: Final[int | None] = None
