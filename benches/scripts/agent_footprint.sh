#!/usr/bin/env bash
# Footprint of secumon-agent beside prometheus-node-exporter, in the same run.
# The agent runs every collector at a 10 s interval and pushes to a local `secumon server`;
# node_exporter is scraped every 10 s, as Prometheus would. Both are sampled every 5 s:
# resident memory (VmRSS) and CPU time (utime + stime).
# The agent is built with the `agent` profile, as it is deployed.
# Usage: benches/scripts/agent_footprint.sh [SECONDS]   (default 300). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-300}"
cargo build --release --bin secumon 2>/dev/null
cargo build --profile agent --bin secumon-agent 2>/dev/null
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(free_port); api=$(free_port); nx=$(free_port)
target/release/secumon server --data-dir "$work/server" --grpc "127.0.0.1:$grpc" --api "127.0.0.1:$api" 2>/dev/null &
cat > "$work/agent.yaml" <<YAML
collector:
  endpoint: "127.0.0.1:$grpc"
metrics:
  interval: 10s
  enabled: [cpu, memory, disk, network, processes, services, containers]
logs:
  enabled: true
  sources: [/var/log/*.log]
spool:
  dir: $work/agent
YAML
sleep 1
RUST_LOG=warn target/agent/secumon-agent --config "$work/agent.yaml" 2>"$work/agent.log" &
agent=$!
prometheus-node-exporter --web.listen-address="127.0.0.1:$nx" >/dev/null 2>&1 &
exporter=$!
ticks=$(getconf CLK_TCK)

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
anon_kib() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A peak start_cpu last_rss last_anon
for p in $agent $exporter; do peak[$p]=0; start_cpu[$p]=$(cpu_ticks $p); done
t0=$(date +%s)
elapsed=0
while [ "$elapsed" -lt "$duration" ]; do
  sleep 5
  elapsed=$(( $(date +%s) - t0 ))
  if [ $(( elapsed % 10 )) -lt 5 ]; then curl -s "127.0.0.1:$nx/metrics" >/dev/null || true; fi
  for p in $agent $exporter; do
    r=$(rss_kib $p); last_rss[$p]=$r; last_anon[$p]=$(anon_kib $p)
    [ "$r" -gt "${peak[$p]}" ] && peak[$p]=$r
  done
done
report() { # name pid binary
  local cpu=$(( $(cpu_ticks $2) - ${start_cpu[$2]} ))
  awk -v n="$1" -v peak="${peak[$2]}" -v last="${last_rss[$2]}" -v anon="${last_anon[$2]}" -v cpu="$cpu" -v hz="$ticks" -v d="$elapsed" -v size="$(stat -c %s "$3")" \
    'BEGIN { printf "%-24s peak RSS %5.1f MiB  steady RSS %5.1f MiB (private %4.1f MiB)  CPU %.3f %% of one core  binary %.1f MiB\n", n, peak/1024, last/1024, anon/1024, 100*cpu/hz/d, size/1048576 }'
}
echo "duration ${elapsed}s, interval 10s"
report secumon-agent $agent target/agent/secumon-agent
report prometheus-node-exporter $exporter "$(command -v prometheus-node-exporter)"
