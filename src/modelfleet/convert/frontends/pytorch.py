"""PyTorch front end: ``torch.onnx.export`` (TorchScript exporter) with a dynamic batch axis.

The source is a TorchScript archive, a pickled ``nn.Module``, or a ``state_dict`` together with
``source.factory`` (``model_def.py:build``, a file beside the spec that builds the module).
"""

from __future__ import annotations

import importlib.util
import io
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from modelfleet.convert.frontends import Arrays, Exported, SourceFiles, require
from modelfleet.errors import ConversionError
from modelfleet.spec import ModelSpec


def _load_module(spec: ModelSpec, files: SourceFiles) -> Any:
    import torch

    buffer = io.BytesIO(files.model)
    if spec.source.factory is not None:
        file_name, function = spec.source.factory.split(":")
        factory_path = spec.source.path.parent / file_name
        module_spec = importlib.util.spec_from_file_location(f"_modelfleet_factory_{spec.name}", factory_path)
        if module_spec is None or module_spec.loader is None or not factory_path.is_file():
            raise ConversionError(f"source.factory: {factory_path} is not a readable Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_spec.name] = module
        try:
            module_spec.loader.exec_module(module)
            network = getattr(module, function)()
        except Exception as exc:  # user code
            raise ConversionError(f"source.factory {spec.source.factory}: {type(exc).__name__}: {exc}") from None
        try:
            state = torch.load(buffer, map_location="cpu", weights_only=True)
            network.load_state_dict(state)
        except Exception as exc:  # torch raises many types for corrupt or mismatched weights
            raise ConversionError(f"source.path {spec.source.path}: cannot load the state_dict into "
                                  f"{spec.source.factory}: {type(exc).__name__}: {exc}") from None
        return network
    try:
        return torch.jit.load(buffer, map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception:  # not TorchScript: try a pickled module next
        buffer.seek(0)
    try:
        network = torch.load(buffer, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt archives
        raise ConversionError(f"source.path {spec.source.path}: neither TorchScript nor a saved nn.Module: "
                              f"{type(exc).__name__}: {exc}") from None
    if not isinstance(network, torch.nn.Module):
        raise ConversionError(f"source.path {spec.source.path}: holds a {type(network).__name__}; a state_dict "
                              "needs source.factory to build the module")
    return network


def export(spec: ModelSpec, files: SourceFiles, samples: Arrays) -> Exported:
    require("torch", "pytorch", "pytorch")
    import torch

    network = _load_module(spec, files)
    network.eval()
    input_names = [t.name for t in spec.inputs]
    output_names = ([t.name for t in spec.outputs] if spec.outputs
                    else ["output"])
    example = tuple(torch.from_numpy(np.ascontiguousarray(samples[name][:2])) for name in input_names)
    dynamic_axes = {name: {0: "batch"} for name in input_names + output_names}
    import onnx

    with tempfile.TemporaryDirectory(prefix="modelfleet-torch-") as scratch:
        exported = Path(scratch) / "model.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(network, example, exported, input_names=input_names, output_names=output_names,
                                  dynamic_axes=dynamic_axes, opset_version=spec.convert.opset, dynamo=False)
        except Exception as exc:  # the exporter raises many types
            raise ConversionError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from None
        model = onnx.load(str(exported))

    def predict(arrays: Arrays) -> list[np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(arrays[name])) for name in input_names]
        with torch.no_grad():
            result = network(*tensors)
        outputs = result if isinstance(result, list | tuple) else [result]
        return [out.detach().cpu().numpy() for out in outputs]

    return Exported(model=model, predict=predict, framework_version=f"torch {torch.__version__}")
