"""Execution provider selection: spec order, GPU options, CPU fallback only when allowed.

This machine has no GPU and its ONNX Runtime build only has the CPU provider. Where a test needs a GPU
it mocks the hardware that cannot exist here: ``onnxruntime.get_available_providers`` (what the build
offers) and, for a GPU that initialises, an ``InferenceSession`` that reports the providers it was
given while computing on the CPU. Everything else (artifact, checksums, model, ONNX Runtime's own
refusal of a provider it lacks) is real.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import onnxruntime as ort
import pytest
from serve_models import build_slow, build_typed

from modelfleet.serve.app import ModelServer, ServerSettings
from modelfleet.serve.runtime import ModelRuntime, NotServableError, RuntimeOptions

ALL_GPU = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
REAL_SESSION = ort.InferenceSession


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("providers")
    return {"typed": build_typed(root / "src", root / "out"), "slow": build_slow(root / "src", root / "out", fp16=True)}


class GpuSession:
    """Stands in for a session on a working GPU (mock of hardware that cannot exist here)."""

    created: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, path: str, options: Any, providers: list[tuple[str, dict[str, Any]]]) -> None:
        GpuSession.created.append({"path": path, "providers": providers})
        self._names = [name for name, _ in providers]
        self._cpu = REAL_SESSION(path, options, providers=["CPUExecutionProvider"])

    def get_providers(self) -> list[str]:
        return self._names

    def get_outputs(self) -> Any:
        return self._cpu.get_outputs()

    def run(self, names: Any, feeds: Any) -> Any:
        return self._cpu.run(names, feeds)


@pytest.fixture
def gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ONNX Runtime build that lists the GPU providers (the hardware itself is not mocked)."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(ALL_GPU))


@pytest.fixture
def working_gpu(gpu_build: None, monkeypatch: pytest.MonkeyPatch) -> type[GpuSession]:
    GpuSession.created = []
    monkeypatch.setattr(ort, "InferenceSession", GpuSession)
    return GpuSession


def test_providers_go_to_onnx_runtime_in_spec_order_with_their_options(
        artifacts: dict[str, Path], working_gpu: type[GpuSession], tmp_path: Path) -> None:
    options = RuntimeOptions(providers=["tensorrt", "cuda", "cpu"], device_id=1, gpu_mem_limit=2 << 30,
                             trt_cache_dir=tmp_path / "engines", max_batch=16)
    runtime = ModelRuntime(artifacts["typed"], options)
    assert runtime.provider == "tensorrt"
    (entry,) = working_gpu.created
    assert [name for name, _ in entry["providers"]] == ALL_GPU
    trt, cuda, cpu = (opts for _, opts in entry["providers"])
    assert trt["device_id"] == 1 and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(tmp_path / "engines") and (tmp_path / "engines").is_dir()
    # One optimisation profile over every batch size the batcher forms.
    assert trt["trt_profile_min_shapes"].startswith("x:1x3,d:1x2,")
    assert trt["trt_profile_max_shapes"].startswith("x:16x3,d:16x2,")
    assert cuda == {"device_id": 1, "arena_extend_strategy": "kSameAsRequested",
                    "cudnn_conv_algo_search": "HEURISTIC", "gpu_mem_limit": 2 << 30}
    assert cpu == {}
    assert runtime.run(runtime.example_inputs(2))[0].shape == (2, 3)


def test_the_first_listed_provider_wins(artifacts: dict[str, Path], working_gpu: type[GpuSession]) -> None:
    runtime = ModelRuntime(artifacts["typed"], RuntimeOptions(providers=["cuda", "tensorrt"]))
    assert runtime.provider == "cuda"
    assert [name for name, _ in working_gpu.created[0]["providers"]] == ["CUDAExecutionProvider",
                                                                          "TensorrtExecutionProvider"]
    on_cpu = ModelRuntime(artifacts["typed"], RuntimeOptions(providers=["cpu", "cuda"]))
    assert on_cpu.provider == "cpu"


def test_trt_cache_defaults_to_the_artifact_directory(artifacts: dict[str, Path],
                                                      working_gpu: type[GpuSession]) -> None:
    ModelRuntime(artifacts["typed"], RuntimeOptions(providers=["tensorrt"]))
    trt = working_gpu.created[0]["providers"][0][1]
    assert trt["trt_engine_cache_path"] == str(artifacts["typed"] / "trt-cache")


def test_fp16_variant_serves_on_cuda_and_fp32_elsewhere(artifacts: dict[str, Path],
                                                        working_gpu: type[GpuSession]) -> None:
    on_gpu = ModelRuntime(artifacts["slow"], RuntimeOptions(providers=["cuda", "cpu"]))
    assert (on_gpu.provider, on_gpu.precision) == ("cuda", "fp16")
    assert working_gpu.created[-1]["path"].endswith("model.fp16.onnx")
    on_cpu = ModelRuntime(artifacts["slow"], RuntimeOptions(providers=["cpu"]))
    assert (on_cpu.provider, on_cpu.precision) == ("cpu", "fp32")
    assert working_gpu.created[-1]["path"].endswith("/model.onnx")


def test_providers_missing_from_the_build_are_skipped(artifacts: dict[str, Path]) -> None:
    assert ort.get_available_providers()[-1] == "CPUExecutionProvider"
    runtime = ModelRuntime(artifacts["typed"], RuntimeOptions(providers=["tensorrt", "cuda", "cpu"]))
    assert (runtime.provider, runtime.precision) == ("cpu", "fp32")
    with pytest.raises(NotServableError, match=r"none of the execution providers \['cuda'\] is available"):
        ModelRuntime(artifacts["typed"], RuntimeOptions(providers=["cuda"]))


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available provider")
def test_gpu_that_fails_to_initialise_falls_back_only_when_cpu_is_allowed(artifacts: dict[str, Path],
                                                                         gpu_build: None) -> None:
    # The build lists CUDA (mocked), but the real ONNX Runtime below cannot start it and hands back a CPU
    # session: exactly what happens on a host whose driver is missing.
    runtime = ModelRuntime(artifacts["typed"], RuntimeOptions(providers=["cuda", "cpu"]))
    assert runtime.provider == "cpu"
    assert runtime.run(runtime.example_inputs(1))[0].shape == (1, 3)
    with pytest.raises(NotServableError, match=r"could not initialise cuda .* do not allow the CPU"):
        ModelRuntime(artifacts["typed"], RuntimeOptions(providers=["cuda"]))


async def _get(app: ModelServer, path: str) -> bytes:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": path, "headers": []}, receive, send)
    return b"".join(m.get("body", b"") for m in sent[1:])


def test_the_provider_in_use_is_a_metric_label_and_in_the_config(artifacts: dict[str, Path],
                                                                 working_gpu: type[GpuSession]) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        server = ModelServer(ServerSettings(artifact=artifacts["typed"],
                                            runtime=RuntimeOptions(providers=["cuda", "cpu"])))
        await server.plane.startup()
        for _ in range(2000):
            if server.plane.ready:
                break
            await asyncio.sleep(0.01)
        metrics, config = await _get(server, "/metrics"), await _get(server, "/v2/models/typed/config")
        await server.plane.shutdown()
        return metrics, config

    metrics, config = asyncio.run(scenario())
    assert b'modelfleet_model_info{build_key="' in metrics
    assert b'precision="fp32",provider="cuda",version="1"} 1.0' in metrics
    assert b'"kind":"KIND_GPU"' in config and b'"execution_provider":{"string_value":"cuda"}' in config
