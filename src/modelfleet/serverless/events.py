"""Platform adapters: Lambda HTTP events and Cloud Functions requests in, platform responses out.

Lambda events recognised (payload format):

- **Function URL** and **API Gateway HTTP API** (``version: "2.0"``): ``requestContext.http.method``,
  ``rawPath``, ``rawQueryString``; a named stage's prefix (``/prod/v2/...``) is removed from the path;
- **API Gateway REST API** (``version: "1.0"`` or no version, ``httpMethod``): ``path`` (without the
  stage), ``multiValueQueryStringParameters`` ignored.

Bodies may be base64 (``isBase64Encoded``). Anything else is answered 400 with a message naming the
formats expected. Entry points: :func:`lambda_handler` (``modelfleet.serverless.events.lambda_handler``)
and :func:`gcf_handler` (functions-framework target, a Flask request).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from modelfleet.asgi import error_body
from modelfleet.serverless.handler import HttpRequest, HttpResponse, ModelFunction, instance

LambdaEvent = Mapping[str, Any]
_JSON = {"content-type": "application/json"}


class EventError(ValueError):
    """An event that is not an HTTP request in a format this handler knows."""


def _body(event: LambdaEvent) -> bytes:
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise EventError("body must be a string")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise EventError(f"body is not valid base64: {exc}") from None
    return body.encode()


def _headers(event: LambdaEvent) -> dict[str, str]:
    headers = event.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise EventError("headers must be an object")
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _strip_stage(path: str, stage: Any) -> str:
    if isinstance(stage, str) and stage and stage != "$default" and path.startswith(f"/{stage}/"):
        return path[len(stage) + 1:]
    return path


def request_from_lambda(event: LambdaEvent) -> tuple[HttpRequest, str]:
    """The HTTP request in a Lambda event and its payload format (``"2.0"`` or ``"1.0"``)."""
    if not isinstance(event, Mapping):
        raise EventError("the event is not a JSON object")
    context = event.get("requestContext")
    context = context if isinstance(context, Mapping) else {}
    http = context.get("http")
    if event.get("version") == "2.0" and isinstance(http, Mapping):
        path = _strip_stage(str(event.get("rawPath") or http.get("path") or "/"), context.get("stage"))
        return HttpRequest(str(http.get("method", "GET")), path, _body(event), _headers(event),
                           str(event.get("rawQueryString") or "")), "2.0"
    if isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str):
        return HttpRequest(event["httpMethod"], event["path"], _body(event), _headers(event)), "1.0"
    raise EventError("not an HTTP event: expected a Lambda Function URL or API Gateway HTTP API event "
                     "(version 2.0, requestContext.http) or an API Gateway REST API event (httpMethod, path)")


def response_to_lambda(response: HttpResponse, payload_format: str) -> dict[str, Any]:
    """The Lambda proxy-integration response (the same shape for payload formats 1.0 and 2.0)."""
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return {"statusCode": response.status, "headers": headers, "body": response.body.decode(),
            "isBase64Encoded": False}


def handle_lambda(function: ModelFunction, event: LambdaEvent) -> dict[str, Any]:
    """Answer one Lambda event with ``function``."""
    try:
        request, payload_format = request_from_lambda(event)
    except EventError as exc:
        return response_to_lambda(HttpResponse(400, error_body(f"bad event: {exc}"), dict(_JSON)), "2.0")
    return response_to_lambda(function.handle(request), payload_format)


def lambda_handler(event: LambdaEvent, context: Any = None) -> dict[str, Any]:
    """The Lambda handler (``modelfleet.serverless.events.lambda_handler``); the context object is not used."""
    del context
    return handle_lambda(instance(), event)


def gcf_handler(request: Any) -> tuple[bytes, int, dict[str, str]]:
    """The Cloud Functions HTTP handler (functions-framework passes a Flask request)."""
    response = instance().handle(HttpRequest(request.method, request.path, request.get_data(),
                                             {k.lower(): v for k, v in request.headers.items()},
                                             request.query_string.decode()))
    return response.body, response.status, {k: v for k, v in response.headers.items() if k != "content-length"}
