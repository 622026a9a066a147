"""OpenAPI 3.0 document of the server's HTTP API (served at ``/v2/openapi.json``).

It follows the Open Inference Protocol REST specification (KServe v2 / Triton), restricted to what
this server implements, with the served model's name in the path parameters.
"""

from __future__ import annotations

from typing import Any

from modelfleet.spec import Datatype

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


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
        f"{prefix}/infer": {"post": {
            "summary": "Inference", "parameters": parameters,
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/InferenceRequest"}}}},
            "responses": {"200": _json("InferenceResponse"), "400": _ERROR, "404": _ERROR, "408": _ERROR,
                          "413": _ERROR, "503": _ERROR}}},
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
            "RequestInput": {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string", "enum": datatypes},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "parameters": {"type": "object"}, "data": tensor_data}},
            "RequestOutput": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "parameters": {"type": "object"}}},
            "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/RequestInput"}},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/RequestOutput"}}}},
            "ResponseOutput": {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}}, "data": tensor_data}},
            "InferenceResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
                "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/ResponseOutput"}}}},
        }},
    }
