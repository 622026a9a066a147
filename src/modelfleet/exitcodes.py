"""Exit statuses of every modelfleet command: ``modelfleet <command>`` and ``python -m modelfleet.alerting``.

======  ==================================================================================================
status  meaning
======  ==================================================================================================
0       success
1       runtime failure: the command started but could not do its work (port taken, disk lost, no
        checkpoint written); nothing the user passed was wrong
2       usage or input error: bad arguments (argparse's own status), an invalid model spec, a model that
        fails conversion or validation, a damaged artifact, a setting or file that cannot be used
130     interrupted (SIGINT)
======  ==================================================================================================

Handlers raise :class:`~modelfleet.errors.ModelfleetError` (for settings: :class:`~modelfleet.errors.UsageError`)
for status 2; :func:`run_handler` prints it as ``<prog>: error: <message>``, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from enum import IntEnum

from modelfleet.errors import ModelfleetError


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    INTERRUPTED = 130


def run_handler(prog: str, handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command's handler and map what it raises to the statuses above."""
    try:
        return int(handler(args))
    except ModelfleetError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
