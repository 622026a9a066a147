"""What the hook does with a retraining request: run a command, or POST it to a URL.

Both get the same JSON document (:meth:`RetrainRequest.document`): the command on stdin, with
``MODELFLEET_MODEL``, ``MODELFLEET_VERSION`` and ``MODELFLEET_FEATURES`` (comma-separated) in its
environment; the URL as the request body. A failure raises :class:`ActionError` with the reason.
"""

from __future__ import annotations

import http.client
import logging
import os
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Protocol

from modelfleet.alerting.payload import RetrainRequest

log = logging.getLogger(__name__)
OUTPUT_TAIL = 2000  # characters of a failed command's output kept for the log
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class ActionError(Exception):
    """The retraining could not be started; the message says why."""


class Action(Protocol):
    kind: str

    def __call__(self, request: RetrainRequest, document: bytes) -> None:
        """Start retraining; :class:`ActionError` when that failed."""


class CommandAction:
    """Runs ``argv`` (no shell) with the document on stdin; exit status 0 is success."""

    kind = "command"

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        if not argv:
            raise ValueError("the command is empty")
        self.argv = list(argv)
        self.timeout = timeout

    def __call__(self, request: RetrainRequest, document: bytes) -> None:
        env = dict(
            os.environ,
            MODELFLEET_MODEL=request.model,
            MODELFLEET_VERSION=request.version,
            MODELFLEET_FEATURES=",".join(request.features),
        )
        try:
            result = subprocess.run(
                self.argv, input=document, env=env, capture_output=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise ActionError(f"{self.argv[0]} did not finish within {self.timeout:g} s (killed)") from None
        except OSError as exc:
            raise ActionError(f"{self.argv[0]} could not be started: {exc}") from None
        output = (result.stderr or result.stdout).decode(errors="replace").strip()
        if result.returncode != 0:
            raise ActionError(f"{self.argv[0]} exited with status {result.returncode}: {output[-OUTPUT_TAIL:]}")
        if output:
            log.info("%s for %s v%s: %s", self.argv[0], request.model, request.version, output[-OUTPUT_TAIL:])


class UrlAction:
    """POSTs the document as JSON; 2xx is success. Connection errors, timeouts, 408/429/5xx are retried
    ``retries`` times with exponential backoff (``backoff``, 2×, 4×, … seconds); other answers fail at once."""

    kind = "url"

    def __init__(
        self,
        url: str,
        timeout: float,
        retries: int,
        backoff: float,
        token: str | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.token = token
        self.stop = stop or threading.Event()

    def __call__(self, request: RetrainRequest, document: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "modelfleet-retrain-hook"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        attempt = 0
        while True:
            try:
                self._post(document, headers)
                return
            except _RetryableError as exc:
                if attempt >= self.retries:
                    raise ActionError(f"POST {self.url} failed after {attempt + 1} attempts: {exc}") from None
                delay = self.backoff * 2**attempt
                log.warning(
                    "POST %s for %s v%s failed (%s); retrying in %.3g s",
                    self.url,
                    request.model,
                    request.version,
                    exc,
                    delay,
                )
                attempt += 1
                if self.stop.wait(delay):
                    raise ActionError(f"POST {self.url} abandoned at shutdown: {exc}") from None

    def _post(self, document: bytes, headers: dict[str, str]) -> None:
        http_request = urllib.request.Request(self.url, data=document, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode(errors="replace").strip()
            message = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
            if exc.code in RETRY_STATUSES:
                raise _RetryableError(message) from None
            raise ActionError(f"POST {self.url} was refused: {message}") from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, bad responses
            raise _RetryableError(str(getattr(exc, "reason", exc)) or type(exc).__name__) from None


class _RetryableError(Exception):
    pass
