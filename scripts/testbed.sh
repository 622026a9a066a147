#!/usr/bin/env bash
# Local systemd hosts for Molecule, the fleet scenario and `make demo`: a private Docker engine and a
# Debian 12 image with systemd as PID 1, both built from Debian packages on this machine (no registry).
#
#   scripts/testbed.sh up        start the engine (idempotent) and make sure the image exists
#   scripts/testbed.sh down      stop the engine (containers stop with it)
#   scripts/testbed.sh env       print `export DOCKER_HOST=...` for the engine
#   scripts/testbed.sh image     (re)build the image if missing or if this recipe changed
#   scripts/testbed.sh network   create the fleet network (fixed subnet, outbound NAT for apt)
#
# State lives in $TESTBED_DIR (default: .cache/testbed in the checkout). The image tarball is cached
# there, keyed by the recipe below, so later runs import it in seconds instead of debootstrapping.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TESTBED_DIR="${TESTBED_DIR:-$ROOT/.cache/testbed}"
ENGINE_DIR="$TESTBED_DIR/docker"
SOCKET="$ENGINE_DIR/docker.sock"
IMAGE="${TESTBED_IMAGE:-local/debian12-systemd:latest}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,sudo,iproute2,procps,ca-certificates,curl"
RECIPE="bookworm minbase $PACKAGES v2"
FLEET_NETWORK="${FLEET_NETWORK:-modelfleet}"
FLEET_SUBNET="${FLEET_SUBNET:-172.30.0.0/24}"
export DOCKER_HOST="unix://$SOCKET"

log() { echo "testbed: $*" >&2; }

engine_running() {
  [[ -S "$SOCKET" ]] && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

engine_up() {
  if engine_running; then
    return 0
  fi
  command -v dockerd >/dev/null || { log "dockerd missing: apt-get install -y docker.io"; exit 1; }
  mkdir -p "$ENGINE_DIR/data" "$ENGINE_DIR/exec"
  # --iptables=false: this host's iptables cannot be changed by the engine; containers reach each
  # other on user-defined networks, and get software from the controller (wheelhouse), not the internet.
  nohup dockerd --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" --host "unix://$SOCKET" \
    --pidfile "$ENGINE_DIR/dockerd.pid" --iptables=false >"$ENGINE_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 100); do
    engine_running && { log "engine up ($SOCKET)"; return 0; }
    sleep 0.1
  done
  log "engine did not start; see $ENGINE_DIR/dockerd.log"
  tail -20 "$ENGINE_DIR/dockerd.log" >&2
  exit 1
}

engine_down() {
  if [[ -f "$ENGINE_DIR/dockerd.pid" ]]; then
    local pid
    pid="$(cat "$ENGINE_DIR/dockerd.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$ENGINE_DIR/dockerd.pid"
  fi
  log "engine down"
}

# The engine runs with --iptables=false, so nothing masquerades container traffic. Hosts on the fleet
# network reach each other by name; for Debian's archive (apt in the roles) one MASQUERADE rule gives them
# outbound access. Python packages never need it: they come from the controller's wheelhouse.
nat_rule() { echo "POSTROUTING -s $FLEET_SUBNET ! -d $FLEET_SUBNET -j MASQUERADE"; }

network_up() {
  if ! docker network inspect "$FLEET_NETWORK" >/dev/null 2>&1; then
    docker network create --driver bridge --subnet "$FLEET_SUBNET" \
      --opt com.docker.network.bridge.name=mf-fleet "$FLEET_NETWORK" >/dev/null
    log "network $FLEET_NETWORK ($FLEET_SUBNET)"
  fi
  if command -v iptables >/dev/null; then
    # shellcheck disable=SC2046
    iptables -t nat -C $(nat_rule) 2>/dev/null || iptables -t nat -A $(nat_rule)
    [[ "$(cat /proc/sys/net/ipv4/ip_forward)" == 1 ]] || sysctl -qw net.ipv4.ip_forward=1
  fi
}

network_down() {
  if command -v iptables >/dev/null; then
    # shellcheck disable=SC2046
    while iptables -t nat -C $(nat_rule) 2>/dev/null; do iptables -t nat -D $(nat_rule); done
  fi
}

# debootstrap mounts /proc (and may mount /sys) inside the tree it builds and does not always unmount them:
# archiving a live /proc fails ("file changed as we read it"), and rm -rf would walk it.
unmount_under() {
  local mount_point
  awk -v root="$1/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r | while read -r mount_point; do
    umount "$mount_point" 2>/dev/null || umount -l "$mount_point"
  done
}

image_build() {
  local key tarball
  key="$(printf '%s' "$RECIPE" | sha256sum | cut -c1-12)"
  tarball="$TESTBED_DIR/debian12-systemd-$key.tar"
  if docker image inspect "$IMAGE" --format '{{index .Config.Labels "modelfleet.recipe"}}' 2>/dev/null | grep -qx "$key"; then
    return 0
  fi
  if [[ ! -f "$tarball" ]]; then
    command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install -y debootstrap"; exit 1; }
    local rootfs="$TESTBED_DIR/rootfs.tmp"
    unmount_under "$rootfs"
    rm -rf "$rootfs"
    log "debootstrap Debian 12 with systemd (about a minute)"
    debootstrap --variant=minbase --include="$PACKAGES" bookworm "$rootfs" "$MIRROR" >"$TESTBED_DIR/debootstrap.log" 2>&1 \
      || { tail -20 "$TESTBED_DIR/debootstrap.log" >&2; exit 1; }
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    # Empty lists must also look old: apt's cache_valid_time (Ansible) goes by this directory's mtime and
    # would otherwise skip the update on a freshly built image and find no packages.
    touch -d @0 "$rootfs/var/lib/apt/lists"
    : >"$rootfs/etc/machine-id"
    unmount_under "$rootfs"
    tar --numeric-owner --one-file-system -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  docker import --change 'CMD ["/sbin/init"]' --change 'ENV container=docker' \
    --change "LABEL modelfleet.recipe=$key" "$tarball" "$IMAGE" >/dev/null
  log "image $IMAGE ($key)"
}

case "${1:-}" in
  up) mkdir -p "$TESTBED_DIR"; engine_up; image_build; network_up ;;
  down) network_down; engine_down ;;
  network) engine_up; network_up ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  image) mkdir -p "$TESTBED_DIR"; engine_up; image_build ;;
  *) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 2 ;;
esac
