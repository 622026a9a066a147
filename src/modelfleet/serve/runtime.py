"""One model version in ONNX Runtime: checksum-verified load, execution providers, warm-up, metadata.

Providers are tried in the order the serving settings list them (``tensorrt``, ``cuda``, ``cpu``).
A provider that this ONNX Runtime build lacks is skipped; the CPU is used only when it is listed.
ONNX Runtime itself may drop a GPU provider it cannot initialise (missing libraries): the providers
the session actually got are checked, so a GPU-only spec never silently serves from the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet import artifact
from modelfleet.errors import ModelfleetError
from modelfleet.serve import defaults
from modelfleet.spec import Datatype, ModelSpec, Provider
from modelfleet.tensors import NUMPY_DTYPES

log = logging.getLogger(__name__)

ORT_PROVIDER = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
                "cpu": "CPUExecutionProvider"}
PROVIDER_OF_ORT = {v: k for k, v in ORT_PROVIDER.items()}
_LEVEL = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
          "all": "ORT_ENABLE_ALL"}


class NotServableError(ModelfleetError):
    """The model cannot be served here (checksums, providers, load or warm-up failed)."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: Datatype
    shape: tuple[int, ...]  # -1 for a variable dimension

    @property
    def dtype(self) -> np.dtype[Any]:
        return NUMPY_DTYPES[self.datatype]


@dataclass
class RuntimeOptions:
    providers: list[Provider] = field(default_factory=lambda: ["cpu"])
    optimization: str = defaults.OPTIMIZATION
    intra_op_threads: int = defaults.INTRA_OP_THREADS  # 0: ONNX Runtime's default (one per core it may use)
    device_id: int = 0
    gpu_mem_limit: int | None = None
    trt_cache_dir: Path | None = None
    max_batch: int = defaults.MAX_BATCH


def _tensor_infos(described: list[dict[str, Any]]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(d["name"], Datatype(d["datatype"]), tuple(d["shape"])) for d in described)


def _shape_profile(inputs: tuple[TensorInfo, ...], rows: int) -> str:
    return ",".join(f"{t.name}:{'x'.join(str(rows if i == 0 else d) for i, d in enumerate(t.shape))}"
                    for t in inputs)


class ModelRuntime:
    """A loaded, warmed-up ONNX Runtime session for one artifact directory."""

    def __init__(self, directory: Path, options: RuntimeOptions) -> None:
        self.directory = directory
        self.options = options
        try:
            self.manifest = artifact.verify_artifact(directory)
        except ModelfleetError as exc:
            raise NotServableError(f"artifact check failed: {exc}") from None
        self.spec: ModelSpec = artifact.artifact_spec(directory, self.manifest)
        self.name, self.version = self.manifest.name, self.manifest.version
        self.inputs = _tensor_infos(self.manifest.inputs)
        self.outputs = _tensor_infos(self.manifest.outputs)
        self.batchable = all(t.shape and t.shape[0] == -1 for t in (*self.inputs, *self.outputs))
        self.provider, self.precision, self._session = self._create_session()
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.output_infos = {t.name: t for t in self.outputs}

    # --- session -------------------------------------------------------------------------------

    def _provider_entries(self, available: list[str]) -> list[tuple[str, dict[str, Any]]]:
        entries: list[tuple[str, dict[str, Any]]] = []
        for provider in self.options.providers:
            name = ORT_PROVIDER[provider]
            if name not in available:
                log.warning("%s/%s: execution provider %s is not in this ONNX Runtime build (%s)",
                            self.name, self.version, provider, ", ".join(available))
                continue
            entries.append((name, self._provider_options(provider)))
        return entries

    def _provider_options(self, provider: Provider) -> dict[str, Any]:
        if provider == "tensorrt":
            cache = self.options.trt_cache_dir or self.directory / "trt-cache"
            options: dict[str, Any] = {"device_id": self.options.device_id, "trt_engine_cache_enable": True,
                                       "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                                       "trt_fp16_enable": self.manifest.optimization.get("fp16", False)}
            if self.batchable and all(d > 0 for t in self.inputs for d in t.shape[1:]):
                # One optimisation profile over every batch size the batcher forms: no engine rebuilds
                # when traffic changes the batch size (onnxruntime#18272).
                options["trt_profile_min_shapes"] = _shape_profile(self.inputs, 1)
                options["trt_profile_opt_shapes"] = _shape_profile(self.inputs, self.options.max_batch)
                options["trt_profile_max_shapes"] = _shape_profile(self.inputs, self.options.max_batch)
            return options
        if provider == "cuda":
            options = {"device_id": self.options.device_id, "arena_extend_strategy": "kSameAsRequested",
                       "cudnn_conv_algo_search": "HEURISTIC"}
            if self.options.gpu_mem_limit:
                options["gpu_mem_limit"] = self.options.gpu_mem_limit
            return options
        return {}

    def _create_session(self) -> tuple[str, str, Any]:
        import onnxruntime as ort

        entries = self._provider_entries(ort.get_available_providers())
        if not entries:
            raise NotServableError(f"none of the execution providers {self.options.providers} is available "
                                   f"(this ONNX Runtime has {ort.get_available_providers()})")
        first = PROVIDER_OF_ORT[entries[0][0]]
        fp16 = artifact.FP16_MODEL_FILE in self.manifest.files and first == "cuda"
        model_path = self.directory / (artifact.FP16_MODEL_FILE if fp16 else artifact.MODEL_FILE)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                           _LEVEL[self.options.optimization])
        session_options.intra_op_num_threads = self.options.intra_op_threads
        session_options.inter_op_num_threads = 1
        if self.options.trt_cache_dir is not None:
            self.options.trt_cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            session = ort.InferenceSession(str(model_path), session_options, providers=entries)
        except Exception as exc:  # ORT raises its own types
            raise NotServableError(f"ONNX Runtime cannot load {model_path.name}: {exc}") from None
        actual = session.get_providers()
        if actual[0] != entries[0][0]:
            if "cpu" not in self.options.providers:
                raise NotServableError(f"ONNX Runtime could not initialise {first} (got {actual}); the serving "
                                       "settings do not allow the CPU")
            log.warning("%s/%s: %s failed to initialise, serving from the CPU", self.name, self.version, first)
        provider = PROVIDER_OF_ORT.get(actual[0], actual[0])
        return provider, "fp16" if fp16 else "fp32", session

    # --- inference -----------------------------------------------------------------------------

    def run(self, inputs: dict[str, npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        """Outputs (in ``output_names`` order) for a batch of inputs."""
        return [np.asarray(out) for out in self._session.run(self.output_names, inputs)]

    def example_inputs(self, rows: int) -> dict[str, npt.NDArray[Any]]:
        """Zero-valued inputs with ``rows`` rows (variable inner dimensions get size 1)."""
        arrays = {}
        for tensor in self.inputs:
            shape = tuple(rows if i == 0 and tensor.shape[0] == -1 else max(d, 1) for i, d in enumerate(tensor.shape))
            if tensor.datatype is Datatype.BYTES:
                arrays[tensor.name] = np.full(shape, "", dtype=object)
            else:
                arrays[tensor.name] = np.zeros(shape, dtype=tensor.dtype)
        return arrays

    def warm_up(self) -> list[int]:
        """Run every batch size the batcher will form at its powers of two (and the maximum)."""
        sizes = sorted({1, *(2**k for k in range(1, 17) if 2**k < self.options.max_batch),
                        self.options.max_batch}) if self.batchable else [1]
        for rows in sizes:
            try:
                self.run(self.example_inputs(rows))
            except Exception as exc:  # ORT raises its own types
                raise NotServableError(f"warm-up inference with {rows} row(s) failed: {exc}") from None
        return sizes
