"""Alertmanager webhook notifications (payload version 4) and the retraining requests drawn from them.

A notification is checked field by field; anything malformed raises :class:`PayloadError` with the
path of the offending field (``alerts[2].labels.model: must be a string``). Firing alerts labelled
``retrain="true"`` become one :class:`RetrainRequest` per model version, with the union of the
drifted features (``feature`` and ``output`` labels) of its alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

ALERT_STATUSES = frozenset({"firing", "resolved"})
FEATURE_LABELS = ("feature", "output")


class PayloadError(ValueError):
    """A notification that is not a valid Alertmanager webhook payload (answered with 400)."""


@dataclass(frozen=True)
class Alert:
    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    fingerprint: str


@dataclass(frozen=True)
class Notification:
    receiver: str
    status: str
    group_key: str
    alerts: tuple[Alert, ...]


@dataclass(frozen=True)
class RetrainRequest:
    """What one model version needs retrained, and the alerts that said so."""

    model: str
    version: str
    features: tuple[str, ...]
    alerts: tuple[Alert, ...]

    @property
    def key(self) -> tuple[str, str]:
        return self.model, self.version

    @property
    def fired_at(self) -> datetime:
        """When the earliest of its alerts started firing."""
        return min(alert.starts_at for alert in self.alerts)

    def document(self, triggered_at: float) -> dict[str, Any]:
        """The compact JSON document the command (stdin) or the URL (body) receives."""
        return {
            "model": self.model,
            "version": self.version or None,
            "features": list(self.features),
            "alerts": [
                {
                    "name": alert.labels.get("alertname", ""),
                    "labels": dict(alert.labels),
                    "starts_at": _rfc3339(alert.starts_at),
                    "fingerprint": alert.fingerprint,
                }
                for alert in self.alerts
            ],
            "fired_at": _rfc3339(self.fired_at),
            "triggered_at": _rfc3339(datetime.fromtimestamp(triggered_at, UTC)),
        }


def parse_notification(body: bytes) -> Notification:
    """The notification in a webhook request body; :class:`PayloadError` when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError("body: must be a JSON object (an Alertmanager webhook notification)")
    version = data.get("version")
    if version != "4":
        raise PayloadError(f'version: must be "4" (Alertmanager webhook payload), got {_show(version)}')
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts: must be a list")
    return Notification(
        receiver=_optional_str(data, "receiver", "receiver"),
        status=_optional_str(data, "status", "status"),
        group_key=_optional_str(data, "groupKey", "groupKey"),
        alerts=tuple(_alert(alert, f"alerts[{index}]") for index, alert in enumerate(alerts)),
    )


def retrain_requests(notification: Notification) -> tuple[list[RetrainRequest], list[str]]:
    """One request per model version among the firing ``retrain="true"`` alerts, and why alerts were ignored."""
    grouped: dict[tuple[str, str], list[Alert]] = {}
    ignored: list[str] = []
    for index, alert in enumerate(notification.alerts):
        if alert.status != "firing" or alert.labels.get("retrain", "").lower() != "true":
            continue
        model = alert.labels.get("model", "")
        if not model:
            ignored.append(
                f'alerts[{index}] ({alert.labels.get("alertname", "unnamed")}): retrain="true" but no model label'
            )
            continue
        grouped.setdefault((model, alert.labels.get("version", "")), []).append(alert)
    requests = []
    for (model, version), alerts in grouped.items():
        features = sorted({alert.labels[name] for alert in alerts for name in FEATURE_LABELS if alert.labels.get(name)})
        requests.append(RetrainRequest(model, version, tuple(features), tuple(alerts)))
    return requests, ignored


def _alert(data: object, path: str) -> Alert:
    if not isinstance(data, dict):
        raise PayloadError(f"{path}: must be an object")
    status = data.get("status")
    if not isinstance(status, str) or status not in ALERT_STATUSES:
        raise PayloadError(f'{path}.status: must be "firing" or "resolved", got {_show(status)}')
    starts_at = data.get("startsAt")
    if not isinstance(starts_at, str):
        raise PayloadError(f"{path}.startsAt: must be an RFC 3339 time string")
    return Alert(
        status=str(status),
        labels=_string_map(data.get("labels"), f"{path}.labels", required=True),
        annotations=_string_map(data.get("annotations"), f"{path}.annotations", required=False),
        starts_at=_time(starts_at, f"{path}.startsAt"),
        fingerprint=_optional_str(data, "fingerprint", f"{path}.fingerprint"),
    )


def _string_map(data: object, path: str, required: bool) -> dict[str, str]:
    if data is None and not required:
        return {}
    if not isinstance(data, dict):
        raise PayloadError(f"{path}: must be an object of strings")
    for key, value in data.items():
        if not isinstance(value, str):
            raise PayloadError(f"{path}.{key}: must be a string, got {_show(value)}")
    return dict(data)


def _optional_str(data: dict[str, Any], key: str, path: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise PayloadError(f"{path}: must be a string, got {_show(value)}")
    return value


def _time(text: str, path: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise PayloadError(f"{path}: {text[:64]!r} is not an RFC 3339 time") from None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _show(value: object) -> str:
    try:
        scalar = isinstance(value, str | int | float | bool | None)
        text = orjson.dumps(value).decode() if scalar else type(value).__name__
    except orjson.JSONEncodeError:
        text = type(value).__name__
    return text if len(text) <= 64 else text[:61] + "..."
