#!/usr/bin/env bash
# Serving benchmark: modelfleet vs MLServer, KServe and PyTriton (see README.md beside this file).
# All arguments go to run.py; PYTHON picks the interpreter that runs the orchestrator (stdlib only, >= 3.11).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python3}" "$here/run.py" "$@"
