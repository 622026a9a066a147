"""The retraining hook: Alertmanager's webhook for drift alerts (``retrain="true"``) in, retraining out.

``modelfleet retrain-hook`` (or ``python -m modelfleet.alerting``) receives webhook notifications,
groups the firing retraining alerts per model version with the union of their drifted features,
and runs a command or POSTs to a URL for each, at most once per cooldown (docs/monitoring.md).
"""

from __future__ import annotations

from modelfleet.alerting.command import add_parser, main

__all__ = ["add_parser", "main"]
