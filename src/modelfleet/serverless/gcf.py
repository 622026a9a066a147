"""Cloud Functions entry point (functions-framework ``--target handler``): the cold start runs at import."""

from __future__ import annotations

from modelfleet.serverless.events import gcf_handler
from modelfleet.serverless.handler import instance

instance()
handler = gcf_handler
