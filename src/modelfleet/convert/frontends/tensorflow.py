"""TensorFlow/Keras front end through tf2onnx, available where tensorflow and tf2onnx are installed."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from modelfleet.convert.frontends import Arrays, Exported, SourceFiles, require
from modelfleet.errors import ConversionError
from modelfleet.spec import ModelSpec


def export(spec: ModelSpec, files: SourceFiles, samples: Arrays) -> Exported:
    require("tensorflow", "tensorflow", "tensorflow")
    require("tf2onnx", "tensorflow", "tensorflow")
    import tensorflow as tf
    import tf2onnx

    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / spec.source.path.name
        local.write_bytes(files.model)
        try:
            keras_model = tf.keras.models.load_model(local)
        except Exception as exc:  # Keras raises many types for unreadable files
            raise ConversionError(f"source.path {spec.source.path}: not a loadable Keras model: {exc}") from None
    signature = [tf.TensorSpec([None if d == -1 else d for d in t.shape], name=t.name,
                               dtype=tf.as_dtype(t.datatype.value.lower().replace("fp", "float")))
                 for t in spec.inputs]
    try:
        model = tf2onnx.convert.from_keras(keras_model, input_signature=signature,
                                           opset=spec.convert.opset)[0]
    except Exception as exc:  # tf2onnx raises many types for unsupported graphs
        raise ConversionError(f"tf2onnx could not convert the model: {type(exc).__name__}: {exc}") from None

    def predict(arrays: Arrays) -> list[np.ndarray]:
        result = keras_model([arrays[t.name] for t in spec.inputs], training=False)
        outputs = result if isinstance(result, list | tuple) else [result]
        return [np.asarray(out) for out in outputs]

    return Exported(model=model, predict=predict, framework_version=f"tensorflow {tf.__version__}")
