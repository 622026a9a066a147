"""``python -m modelfleet.alerting``: the retraining hook (same options as ``modelfleet retrain-hook``)."""

from __future__ import annotations

import sys

from modelfleet.alerting.command import main

sys.exit(main())
