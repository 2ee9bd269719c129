#!/usr/bin/env bash
# The Grafana dashboards of deploy/grafana against a real `secumon up` (its local agent
# collecting every second, a rule that fires at once, the server's own series every 2 s):
# every panel's query and every variable's query, run as Grafana runs them, must return data
# (scripts/grafana_panels.py says which panels may be empty on a machine without Docker or
# systemd). Grafana itself is not installed here.
# Usage: scripts/grafana_panels.sh [path/to/secumon]   (default target/debug/secumon)
set -euo pipefail
cd "$(dirname "$0")/.."
secumon="${1:-target/debug/secumon}"
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); grpc=$(free_port)
cleanup() {
  [ -n "${up:-}" ] && kill "$up" 2>/dev/null && wait "$up" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/rules.yaml" <<'RULES'
rules:
  - {name: AlwaysOn, expr: load1 >= 0, severity: warning}
RULES
"$secumon" up --data-dir "$work" --api "127.0.0.1:$api" --grpc "127.0.0.1:$grpc" --interval 1s \
  --self-series-interval 2s --rules "$work/rules.yaml" > "$work/up.log" 2>&1 &
up=$!
for _ in $(seq 1 100); do
  [ -s "$work/cli.token" ] && break
  sleep 0.1
done
[ -s "$work/cli.token" ] || { echo "grafana_panels: FAILED, secumon up did not start:" >&2; cat "$work/up.log" >&2; exit 1; }
# Rates need two samples of every counter, the server's own included: 12 s of data.
sleep 12
python3 scripts/grafana_panels.py "http://127.0.0.1:$api" "$(cat "$work/cli.token")" deploy/grafana/dashboards/*.json
