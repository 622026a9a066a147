#!/usr/bin/env bash
# GPU hardware check: run on a real GPU host, from a checkout with its virtualenv (make venv collection).
# Prints what it found: gpu_facts (the Ansible module, on this host), nvidia-smi's query parsed by the
# collection's parser, and the DCGM collectors check (against a running dcgm-exporter when one answers).
# A few minutes at most. Exit status 0 when every check passed.
#
#   scripts/gpu-hardware-check.sh [DCGM_METRICS_URL]     (default http://127.0.0.1:9400/metrics if it answers)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$ROOT/.cache/collections" ANSIBLE_NOCOLOR=1
export ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0
URL="${1:-http://127.0.0.1:9400/metrics}"
status=0

echo "== gpu_facts (modelfleet.serving.gpu_facts on $(hostname))"
ansible localhost -c local -e "ansible_python_interpreter=$VENV/bin/python" -m modelfleet.serving.gpu_facts -o \
  | sed 's/^localhost | SUCCESS => //' | python3 -m json.tool || status=1

if ! curl -fsS -o /dev/null --max-time 5 "$URL" 2>/dev/null; then
  echo "== no dcgm-exporter answers at $URL: the collectors are checked against DCGM's fields only"
  URL=""
fi
echo "== nvidia-smi parsing and DCGM collectors"
PYTHONPATH="$ROOT/src" "$VENV/bin/python" -m modelfleet.gpu.hardware_check ${URL:+--dcgm-url "$URL"} || status=1
echo "== result: $([[ $status == 0 ]] && echo PASSED || echo FAILED)"
exit "$status"
