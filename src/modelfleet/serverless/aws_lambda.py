"""Lambda entry point (``modelfleet.serverless.aws_lambda.handler``): the cold start runs at import.

Importing this module is Lambda's init phase: the artifact is verified, loaded and warmed there, so a
corrupted artifact fails the init with a clear log line, and the first request pays nothing more.
"""

from __future__ import annotations

from modelfleet.serverless.events import lambda_handler
from modelfleet.serverless.handler import instance

instance()
handler = lambda_handler
