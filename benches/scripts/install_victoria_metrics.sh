#!/usr/bin/env bash
# Installs VictoriaMetrics single-node (Debian's package victoria-metrics) if it is missing,
# without letting the package start its own service (the benchmarks start theirs on
# loopback, with their own data directories).
set -euo pipefail
command -v victoria-metrics >/dev/null && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
policy=/usr/sbin/policy-rc.d
placed=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && placed=1
fi
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends victoria-metrics \
  || { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends victoria-metrics; }
[ "$placed" = 1 ] && $sudo rm -f "$policy"
exit 0
