#!/usr/bin/env bash
# What one agent cycle costs, measured so that a busy machine changes it little:
#  1. CPU time of an agent at a 10 s interval and of prometheus-node-exporter scraped every
#     10 s, over the same SECONDS: se.sum_exec_runtime of every thread (nanoseconds, where
#     agent_footprint.sh has 10 ms clock ticks). Threads that end during the run are missed.
#  2. Instructions per cycle in user space (callgrind, every thread): an agent at a 1 s
#     interval run twice, for 8 s and for 18 s; the difference over the extra cycles leaves
#     out the start-up. Kernel work (the bulk of a cycle: /proc, netlink, fsync) is not in it.
#  3. System calls per cycle (strace -c over 20 cycles at a 1 s interval).
# Usage: benches/scripts/agent_cycle_cost.sh [SECONDS] [AGENT_BINARY]
#        (defaults 60, target/agent/secumon-agent; the server is target/release/secumon)
set -euo pipefail
cd "$(dirname "$0")/../.."
duration="${1:-60}"
agent_bin="$(realpath "${2:-target/agent/secumon-agent}")"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(free_port); api=$(free_port); nx=$(free_port)
target/release/secumon server --data-dir "$work/server" --grpc "127.0.0.1:$grpc" --api "127.0.0.1:$api" >/dev/null 2>&1 &
config() { # interval state-dir
  cat <<YAML
collector:
  endpoint: "127.0.0.1:$grpc"
metrics:
  interval: $1
  enabled: [cpu, memory, disk, network, processes, services, containers]
logs:
  enabled: true
  sources: [/var/log/*.log]
spool:
  dir: $2
YAML
}
cpu_ms() { cat /proc/"$1"/task/*/sched 2>/dev/null | awk '/se.sum_exec_runtime/ {s += $3} END {printf "%.3f", s}'; }
sleep 1

# 1. CPU beside node_exporter.
config 10s "$work/a1" > "$work/a1.yaml"
RUST_LOG=warn "$agent_bin" --config "$work/a1.yaml" 2>/dev/null &
agent=$!
prometheus-node-exporter --web.listen-address="127.0.0.1:$nx" >/dev/null 2>&1 &
exporter=$!
sleep 3
a0=$(cpu_ms $agent); e0=$(cpu_ms $exporter); t0=$(date +%s); elapsed=0
while [ "$elapsed" -lt "$duration" ]; do
  sleep 5; elapsed=$(( $(date +%s) - t0 ))
  if [ $(( elapsed % 10 )) -lt 5 ]; then curl -s "127.0.0.1:$nx/metrics" >/dev/null || true; fi
done
a1=$(cpu_ms $agent); e1=$(cpu_ms $exporter)
kill $agent $exporter; wait $agent $exporter 2>/dev/null || true
awk -v a0="$a0" -v a1="$a1" -v e0="$e0" -v e1="$e1" -v t="$elapsed" 'BEGIN {
  a = a1 - a0; e = e1 - e0
  printf "CPU over %d s, 10 s interval: agent %.1f ms (%.4f %% of a core), node_exporter %.1f ms (%.4f %%), ratio %.2f\n",
    t, a, a / t / 10, e, e / t / 10, a / e }'

# 2. Instructions per cycle.
instructions() { # seconds tag
  config 1s "$work/$2" > "$work/$2.yaml"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file=/dev/null "$agent_bin" --config "$work/$2.yaml" 2>"$work/$2.log" &
  local pid=$!
  sleep "$1"; kill -TERM $pid; wait $pid 2>/dev/null || true
  awk '/ I +refs:/ {gsub(",", "", $4); print $4}' "$work/$2.log"
}
short=$(instructions 8 c8); long=$(instructions 18 c18)
echo "user-space instructions per cycle (callgrind, (18 s run - 8 s run) / 10): $(( (long - short) / 10 ))"

# 3. System calls per cycle.
config 1s "$work/s" > "$work/s.yaml"
RUST_LOG=warn "$agent_bin" --config "$work/s.yaml" 2>/dev/null &
agent=$!
sleep 3
timeout -s INT 20 strace -f -c -o "$work/strace.txt" -p $agent >/dev/null 2>&1 || true
kill $agent; wait $agent 2>/dev/null || true
awk '$NF == "total" {printf "system calls per cycle (strace -c, 20 cycles): %d\n", $4 / 20}' "$work/strace.txt"
