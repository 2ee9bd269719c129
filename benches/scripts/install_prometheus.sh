#!/usr/bin/env bash
# Installs Debian's prometheus and prometheus-alertmanager, the peer that
# alert_latency_prometheus.py measures SecuMon's alerting against.
# Binaries: /usr/bin/prometheus, /usr/bin/prometheus-alertmanager.
#
# The packages' own services (systemd units / init scripts on ports 9090 and 9093)
# are not used: the benchmark starts its own processes on free loopback ports with
# configs and data in a temp dir. While installing, a policy-rc.d that denies every
# service start is put in place (unless one already exists), so the postinst starts
# no daemon. Needs root (or sudo).
set -euo pipefail

if [ -x /usr/bin/prometheus ] && [ -x /usr/bin/prometheus-alertmanager ]; then
  echo "prometheus and prometheus-alertmanager already installed"
else
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install_prometheus.sh: run as root (or install sudo)" >&2; exit 2; }
    sudo="sudo"
  fi
  policy=/usr/sbin/policy-rc.d
  placed_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# placed by install_prometheus.sh: start no service while installing\nexit 101\n' \
      | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    placed_policy=1
  fi
  cleanup() { if [ "$placed_policy" = 1 ]; then $sudo rm -f "$policy"; fi; }
  trap cleanup EXIT

  packages=(prometheus prometheus-alertmanager)
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y --no-install-recommends "${packages[@]}"; then
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${packages[@]}"
  fi
fi

for binary in /usr/bin/prometheus /usr/bin/prometheus-alertmanager; do
  [ -x "$binary" ] || { echo "install_prometheus.sh: $binary still missing" >&2; exit 1; }
  "$binary" --version 2>&1 | head -n 1
done
