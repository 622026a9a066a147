"""A small Prometheus HTTP API client: instant queries, nothing else (stdlib only).

Values come back as floats exactly as Prometheus sent them, ``NaN`` and ``±Inf`` included: deciding
what a non-finite value means is the gates' job, not the client's. Every failure — connection
refused, timeout, TLS, an HTTP error status, a body that is not the API's JSON, a query error — is a
:class:`PrometheusError` whose message says what happened (with Prometheus' own error text when it
gave one).
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelfleet.errors import ModelfleetError

_MAX_BODY = 64 * 1024 * 1024


class PrometheusError(ModelfleetError):
    """A query that produced no usable answer; ``unreachable`` when Prometheus itself could not be reached."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector (or the value of a scalar, with no labels)."""

    labels: Mapping[str, str]
    value: float


class QuerySource(Protocol):
    """Anything that answers an instant PromQL query at a time (the client, or a fake in tests)."""

    def query(self, promql: str, at: float) -> list[Sample]:
        """The samples of ``promql`` at epoch time ``at``; raises :class:`PrometheusError`."""


@dataclass
class PrometheusClient:
    """Instant queries against ``url`` (``http(s)://host:port[/prefix]``)."""

    url: str
    timeout: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    validate_certs: bool = True
    ca_path: str | None = None

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise PrometheusError(f"prometheus_url {self.url!r} is not an http:// or https:// URL")
        if self.username is not None and self.bearer_token is not None:
            raise PrometheusError("basic auth (username/password) and a bearer token exclude each other: give one")

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        context = ssl.create_default_context(cafile=self.ca_path)
        if not self.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _request(self, promql: str, at: float) -> urllib.request.Request:
        body = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}", "timeout": f"{self.timeout:g}s"})
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json", **self.headers}
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        elif self.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        return urllib.request.Request(
            self.url.rstrip("/") + "/api/v1/query", data=body.encode(), headers=headers, method="POST"
        )

    def query(self, promql: str, at: float) -> list[Sample]:
        """The instant vector (or scalar) of ``promql`` evaluated at the epoch time ``at``."""
        try:
            with urllib.request.urlopen(
                self._request(promql, at), timeout=self.timeout, context=self._context()
            ) as response:
                raw = response.read(_MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"Prometheus answered HTTP {exc.code}: {_api_error(exc)}") from None
        except urllib.error.URLError as exc:
            raise PrometheusError(f"Prometheus at {self.url} is unreachable: {exc.reason}", unreachable=True) from None
        except TimeoutError:
            raise PrometheusError(
                f"Prometheus at {self.url} did not answer within {self.timeout:g} s", unreachable=True
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise PrometheusError(f"Prometheus at {self.url} is unreachable: {exc}", unreachable=True) from None
        if len(raw) > _MAX_BODY:
            raise PrometheusError("Prometheus answer larger than 64 MiB (the query selects too many series)")
        return parse_response(raw)


def _api_error(exc: urllib.error.HTTPError) -> str:
    try:
        document = json.loads(exc.read(65536))
        return f"{document.get('errorType', 'error')}: {document.get('error', '')}".strip()
    except (ValueError, OSError, AttributeError):
        return str(exc.reason)


def _value(pair: Any) -> float:
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
        raise PrometheusError(f"malformed sample in Prometheus answer: {pair!r}")
    try:
        return float(pair[1])  # "NaN", "+Inf" and "-Inf" included
    except ValueError:
        raise PrometheusError(f"malformed sample value in Prometheus answer: {pair[1]!r}") from None


def parse_response(raw: bytes) -> list[Sample]:
    """Samples of an ``/api/v1/query`` answer (``vector`` or ``scalar``)."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise PrometheusError("Prometheus answer is not JSON (is prometheus_url the server's root?)") from None
    if not isinstance(document, dict):
        raise PrometheusError("Prometheus answer is not a JSON object")
    if document.get("status") != "success":
        raise PrometheusError(f"query failed: {document.get('errorType', 'error')}: {document.get('error', '')}")
    data = document.get("data")
    if not isinstance(data, dict):
        raise PrometheusError("Prometheus answer has no data")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [Sample({}, _value(result))]
    if kind != "vector" or not isinstance(result, list):
        raise PrometheusError(f"expected an instant vector, Prometheus answered {kind!r}")
    samples = []
    for series in result:
        if not isinstance(series, dict) or not isinstance(series.get("metric"), dict):
            raise PrometheusError(f"malformed series in Prometheus answer: {series!r}")
        labels = {str(k): str(v) for k, v in series["metric"].items()}
        samples.append(Sample(labels, _value(series.get("value"))))
    return samples
