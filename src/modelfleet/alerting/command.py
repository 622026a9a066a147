"""``modelfleet retrain-hook``: the command line of the retraining hook.

    modelfleet retrain-hook --listen 127.0.0.1:9095 --command "/usr/local/bin/retrain --queue gpu" \\
        --cooldown 1h --state-file /var/lib/modelfleet-retrain-hook/state.json
    modelfleet retrain-hook --url https://training.example/api/retrain --bearer-token-file /etc/...

Also runs as ``python -m modelfleet.alerting ...``.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelfleet.durations import duration_argument
from modelfleet.errors import UsageError
from modelfleet.exitcodes import run_handler

#: ``type=`` of the duration options; 0 is allowed (no cooldown, no backoff).
duration = duration_argument(allow_zero=True)
#: ``type=`` of the timeouts, which must be positive.
positive_duration = duration_argument()


def listen_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6)."""
    match = re.match(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d{1,5})$", text.strip())
    if not match or not 0 < int(match["port"]) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not host:port")
    return match["v6"] or match["host"] or "0.0.0.0", int(match["port"])  # ":port" listens on all addresses


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--listen",
        type=listen_address,
        default=("127.0.0.1", 9095),
        metavar="HOST:PORT",
        help="where Alertmanager's webhook reaches the hook (default 127.0.0.1:9095)",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--command",
        dest="command_line",
        metavar="COMMAND",
        help="run this command per retraining request (split like a shell would, but run without "
        "one): the request as JSON on stdin, MODELFLEET_MODEL, MODELFLEET_VERSION and "
        "MODELFLEET_FEATURES in its environment; exit status 0 is success",
    )
    action.add_argument("--url", help="POST each retraining request as JSON to this URL; 2xx is success")
    parser.add_argument(
        "--cooldown",
        type=duration,
        default=3600.0,
        help="do not retrain a model version again within this time (default 1h; 0 turns it off)",
    )
    parser.add_argument(
        "--state-file", type=Path, help="remember trigger times here across restarts (default: in memory only)"
    )
    parser.add_argument(
        "--command-timeout",
        type=positive_duration,
        default=3600.0,
        help="kill the command after this time (default 1h)",
    )
    parser.add_argument("--url-timeout", type=positive_duration, default=10.0, help="timeout of one POST (default 10s)")
    parser.add_argument(
        "--url-retries",
        type=int,
        default=3,
        help="retries of a POST after connection errors, timeouts, 408/429/5xx (default 3)",
    )
    parser.add_argument(
        "--url-backoff",
        type=duration,
        default=1.0,
        help="wait before the first retry, doubled for each further one (default 1s)",
    )
    parser.add_argument("--bearer-token-file", type=Path, help="send the token in this file to --url as a bearer")
    parser.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, help="largest notification accepted (413 beyond; default 1 MiB)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(handler=run_hook)
    return parser


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``retrain-hook`` on the ``modelfleet`` command's subparsers."""
    return configure(
        commands.add_parser(
            "retrain-hook",
            help="receive Alertmanager's drift alerts and start retraining (command or URL)",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )


def run_hook(args: argparse.Namespace) -> int:
    from modelfleet.alerting.actions import Action, CommandAction, UrlAction
    from modelfleet.alerting.app import run
    from modelfleet.alerting.hook import RetrainHook
    from modelfleet.alerting.state import TriggerState

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    action: Action
    try:
        if args.command_line is not None:
            action = CommandAction(shlex.split(args.command_line), args.command_timeout)
        else:
            token = args.bearer_token_file.read_text().strip() if args.bearer_token_file else None
            action = UrlAction(args.url, args.url_timeout, args.url_retries, args.url_backoff, token)
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    if args.max_body_bytes <= 0 or args.url_retries < 0:
        raise UsageError("--max-body-bytes must be positive, --url-retries >= 0")
    try:
        state = TriggerState(args.state_file)
    except OSError as exc:
        raise UsageError(f"state file {args.state_file}: {exc}") from None
    hook = RetrainHook(action, state, args.cooldown)
    host, port = args.listen
    return run(hook, host, port, args.max_body_bytes, args.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = configure(
        argparse.ArgumentParser(
            prog="modelfleet retrain-hook", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
    )
    args = parser.parse_args(argv)
    return run_handler(parser.prog, args.handler, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
