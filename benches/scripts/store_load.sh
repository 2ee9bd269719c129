#!/usr/bin/env bash
# Storage side by side: our SQLite store, our PostgreSQL store and VictoriaMetrics
# single-node (Debian package victoria-metrics, started here on loopback with its own data
# directory) fed the same realistic host metrics by benches/bin/store_load.rs.
#
#   benches/scripts/store_load.sh [store_load flags...]   e.g. --hosts 10000 --points 120
#
# PostgreSQL comes from SECUMON_TEST_PG_URL (default: the project's local instance).
set -euo pipefail
cd "$(dirname "$0")/../.."

benches/scripts/install_victoria_metrics.sh

cargo build --release --locked -p secumon-benches --bin store_load

vm_data=$(mktemp -d /tmp/secumon-vm-XXXXXX)
vm_port=18428
victoria-metrics -storageDataPath="$vm_data" -httpListenAddr="127.0.0.1:$vm_port" -retentionPeriod=1y \
  >"$vm_data.log" 2>&1 &
vm_pid=$!
trap 'kill $vm_pid 2>/dev/null; wait $vm_pid 2>/dev/null; rm -rf "$vm_data" "$vm_data.log"' EXIT
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$vm_port/health" >/dev/null && break
  sleep 0.2
done

victoria-metrics --version 2>/dev/null | head -1 || true
target/release/store_load --vm-url "http://127.0.0.1:$vm_port" --vm-data "$vm_data" \
  --pg-url "${SECUMON_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}" "$@"
