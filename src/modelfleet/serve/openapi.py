"""OpenAPI 3.0 document of the server's HTTP API (served at ``/v2/openapi.json``).

It follows the Open Inference Protocol REST specification (KServe v2 / Triton), restricted to what
this server implements, with the served model's name in the path parameters: JSON tensors, Triton's binary
tensor extension (``Inference-Header-Content-Length``: the JSON header, then the tensors' raw bytes) and
Triton's model configuration and statistics.
"""

from __future__ import annotations

from typing import Any

from modelfleet.spec import Datatype

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_HEADER_LENGTH = {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                  "description": "binary tensor extension: length of the JSON header; the body's remaining bytes "
                                 "are the tensors with parameters.binary_data_size, in order",
                  "schema": {"type": "integer", "minimum": 0}}
_DURATION = {"type": "object", "properties": {"count": {"type": "integer"}, "ns": {"type": "integer"}}}


def _json(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _model_paths(prefix: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        prefix: {"get": {"summary": "Model metadata", "parameters": parameters,
                         "responses": {"200": _json("ModelMetadata"), "404": _ERROR, "503": _ERROR}}},
        f"{prefix}/ready": {"get": {"summary": "Model readiness", "parameters": parameters,
                                    "responses": {"200": _json("ModelReady"), "404": _ERROR,
                                                  "503": _json("ModelReady", "not ready")}}},
        f"{prefix}/config": {"get": {"summary": "Triton-style model configuration", "parameters": parameters,
                                     "responses": {"200": {"description": "OK", "content": {
                                         "application/json": {"schema": {"type": "object"}}}},
                                         "404": _ERROR, "503": _ERROR}}},
        f"{prefix}/stats": {"get": {"summary": "Triton-style model statistics", "parameters": parameters,
                                    "responses": {"200": _json("ModelStatistics"), "404": _ERROR, "503": _ERROR}}},
        f"{prefix}/infer": {"post": {
            "summary": "Inference (more rows than the max batch size are run as chunks of it)",
            "parameters": [*parameters, _HEADER_LENGTH],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {"200": {"description": "OK: JSON, or with binary outputs the JSON header (its length in "
                                                 "Inference-Header-Content-Length) followed by their raw bytes",
                                  "headers": {"Inference-Header-Content-Length": {"schema": {"type": "integer"}}},
                                  "content": {"application/json": {"schema": {
                                      "$ref": "#/components/schemas/InferenceResponse"}},
                                      "application/octet-stream": {"schema": {"type": "string",
                                                                              "format": "binary"}}}},
                          "400": _ERROR, "404": _ERROR, "408": _ERROR, "413": _ERROR, "503": _ERROR}}},
    }


def openapi_document(model: str) -> dict[str, Any]:
    name_param = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string",
                                                                                   "example": model}}
    version_param = {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string"}}
    datatypes = [d.value for d in Datatype]
    tensor_data = {"type": "array", "items": {}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "modelfleet model server (Open Inference Protocol)", "version": "2"},
        "paths": {
            "/v2": {"get": {"summary": "Server metadata", "responses": {"200": _json("ServerMetadata")}}},
            "/v2/health/live": {"get": {"summary": "Liveness", "responses": {"200": _json("Live")}}},
            "/v2/health/ready": {"get": {"summary": "Readiness", "responses": {
                "200": _json("Ready"), "503": _json("Ready", "not ready")}}},
            **_model_paths("/v2/models/{model_name}", [name_param]),
            **_model_paths("/v2/models/{model_name}/versions/{model_version}", [name_param, version_param]),
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
                "description": "Prometheus text exposition",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
            "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}, "reason": {"type": "string"}}},
            "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}}}},
            "TensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string", "enum": datatypes},
                "shape": {"type": "array", "items": {"type": "integer"}}}},
            "ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
                "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/TensorMetadata"}}}},
            "ModelReady": {"type": "object", "properties": {
                "name": {"type": "string"}, "version": {"type": "string"}, "ready": {"type": "boolean"},
                "reason": {"type": "string"}}},
            "RequestInput": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string", "enum": datatypes},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "parameters": {"$ref": "#/components/schemas/TensorParameters"}, "data": tensor_data}},
            "TensorParameters": {"type": "object", "properties": {
                "binary_data_size": {"type": "integer", "minimum": 0,
                                     "description": "bytes of this tensor in the binary part (instead of data)"},
                "binary_data": {"type": "boolean", "description": "requested output: answer it as raw bytes"}}},
            "RequestOutput": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "parameters": {"$ref": "#/components/schemas/TensorParameters"}}},
            "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object", "properties": {
                    "binary_data_output": {"type": "boolean", "description": "answer every output as raw bytes"}}},
                "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/RequestInput"}},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/RequestOutput"}}}},
            "ResponseOutput": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}}, "data": tensor_data,
                "parameters": {"$ref": "#/components/schemas/TensorParameters"}}},
            "ModelStatistics": {"type": "object", "required": ["model_stats"], "properties": {"model_stats": {
                "type": "array", "items": {"type": "object", "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"},
                    "last_inference": {"type": "integer"}, "inference_count": {"type": "integer"},
                    "execution_count": {"type": "integer"}, "inference_stats": {"type": "object", "properties": {
                        k: _DURATION for k in ("success", "fail", "queue", "compute_infer")}}}}}}},
            "InferenceResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/ResponseOutput"}}}},
        }},
    }
