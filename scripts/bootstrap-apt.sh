#!/usr/bin/env bash
# Install the Debian packages the build, tests and demo need. Idempotent: installs only what is
# missing, runs `apt-get update` at most once, and only when something is missing.
#
# To add a package: append "package[:command]" to PACKAGES. With a command, the package counts
# as present when that command is on PATH (e.g. docker's CLI may come from elsewhere); without
# one, when dpkg says it is installed.
set -euo pipefail

PACKAGES=(
  git:git
  make:make
  prometheus:promtool      # promtool checks every exporter's /metrics output in the tests
  openssl:openssl          # test certificates for the exporters' TLS (web-config)
  prometheus-alertmanager  # real Alertmanager (+ amtool) in the monitoring tests
  prometheus-node-exporter # real node exporter output for the dashboard checks
  haproxy                  # the router: config checks and the real runtime API in tests
  socat:socat
  docker.io:dockerd        # private engine for the local systemd hosts (scripts/testbed.sh)
  debootstrap:debootstrap  # builds the hosts' Debian 12 image
  iptables:iptables        # outbound NAT for the hosts' apt (scripts/testbed.sh)
  dpkg-dev                 # a local signed apt mirror for the grafana role's scenario
  gnupg:gpg
)

# python3 comes from pyenv on the build machines, not from apt: check that it can make a venv.
check_python() {
  local py="${PYTHON:-python3}"
  if ! command -v "$py" >/dev/null 2>&1; then
    echo "bootstrap-apt: $py not found (expected a pyenv or system Python >= 3.11)" >&2
    return 1
  fi
  if ! "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    if [[ "$(command -v "$py")" == /usr/bin/* ]]; then
      PACKAGES+=(python3-venv)       # Debian's python3 splits venv/ensurepip out
    else
      echo "bootstrap-apt: $py cannot create venvs or is older than 3.11" >&2
      return 1
    fi
  fi
}

is_present() {
  local pkg="${1%%:*}" cmd=""
  [[ "$1" == *:* ]] && cmd="${1#*:}"
  if [[ -n "$cmd" ]]; then
    command -v "$cmd" >/dev/null 2>&1 && return 0
  fi
  [[ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" == installed ]]
}

check_python

missing=()
for entry in "${PACKAGES[@]}"; do
  is_present "$entry" || missing+=("${entry%%:*}")
done

if ((${#missing[@]} == 0)); then
  echo "bootstrap-apt: all present (${#PACKAGES[@]} packages)"
  exit 0
fi

if ((EUID != 0)); then
  echo "bootstrap-apt: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "bootstrap-apt: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
