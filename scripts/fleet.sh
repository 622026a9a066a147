#!/usr/bin/env bash
# Local fleet of systemd hosts (Debian 12 containers on the private engine of scripts/testbed.sh), made
# from an Ansible inventory: every host with a `fleet_address` becomes a container of that name and
# address on the fleet network. One harness for `make demo`, the Molecule scenarios and CI.
#
#   scripts/fleet.sh up   INVENTORY   start the hosts that are not running (idempotent)
#   scripts/fleet.sh down INVENTORY   remove the hosts
#   scripts/fleet.sh ps   INVENTORY   show the hosts and their state
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ACTION="${1:-}"
INVENTORY="${2:-$ROOT/inventories/local/hosts.yml}"
eval "$("$ROOT/scripts/testbed.sh" env)"
IMAGE="${TESTBED_IMAGE:-local/debian12-systemd:latest}"
FLEET_NETWORK="${FLEET_NETWORK:-modelfleet}"
PYTHON="${PYTHON:-python3}"

log() { echo "fleet: $*" >&2; }

# "name address" per host, from the inventory (YAML; any nesting of groups).
hosts() {
  "$PYTHON" - "$INVENTORY" <<'PY'
import sys, yaml
seen = {}
def walk(group):
    for name, hostvars in ((group or {}).get("hosts") or {}).items():
        address = (hostvars or {}).get("fleet_address")
        if address:
            seen[name] = address
    for child in ((group or {}).get("children") or {}).values():
        walk(child)
with open(sys.argv[1]) as handle:
    walk(yaml.safe_load(handle).get("all"))
for name, address in seen.items():
    print(name, address)
PY
}

wait_booted() {
  local name="$1" state=""
  for _ in $(seq 1 100); do
    state="$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)"
    [[ "$state" == running || "$state" == degraded ]] && return 0
    sleep 0.2
  done
  log "$name did not boot (systemd: ${state:-no answer})"
  return 1
}

up() {
  "$ROOT/scripts/testbed.sh" up
  local name address
  while read -r name address; do
    if [[ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" == true ]]; then
      continue
    fi
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker run -d --name "$name" --hostname "$name" --network "$FLEET_NETWORK" --ip "$address" \
      --cap-add SYS_ADMIN --cgroupns=private --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
      --stop-signal SIGRTMIN+3 --label modelfleet.fleet="$INVENTORY" "$IMAGE" /sbin/init >/dev/null
    wait_booted "$name"
    log "$name up at $address"
  done < <(hosts)
}

down() {
  local name address
  if ! docker version >/dev/null 2>&1; then
    return 0
  fi
  while read -r name address; do
    docker rm -f "$name" >/dev/null 2>&1 && log "$name removed" || true
  done < <(hosts)
}

case "$ACTION" in
  up) up ;;
  down) down ;;
  ps) docker ps -a --filter label=modelfleet.fleet="$INVENTORY" --format '{{.Names}}\t{{.Status}}' ;;
  *) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 2 ;;
esac
