#!/usr/bin/env bash
# The console at fleet scale (issue #29): seeds N hosts (benches/bin/api_seed.rs, 1 h of 8
# gauges one minute apart, labels client/site/role), starts the release `secumon server` on
# loopback, then measures
#   - time from start to the full overview (benches/bin/console_load.rs: every overview page,
#     alerts, findings, checks, into the app state, drawn once at 160×45), 3 runs;
#   - server CPU over S seconds with no console, then with one `secumon console` open in a
#     160×45 tmux pane (utime+stime from /proc/PID/stat);
#   - that console's RSS (VmRSS, VmHWM).
#
#   benches/scripts/console_fleet.sh [hosts=1000] [seconds=30]
# SECUMON_BENCH_PROFILE=debug measures the debug build instead (slower: say so with figures).
set -euo pipefail
cd "$(dirname "$0")/../.."
hosts=${1:-1000}
seconds=${2:-30}
command -v tmux >/dev/null || { echo "console_fleet: needs tmux (apt-get install tmux)" >&2; exit 1; }

profile=${SECUMON_BENCH_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release --locked --workspace --bin api_seed --bin console_load --bin secumon
else
  cargo build --locked --workspace --bin api_seed --bin console_load --bin secumon
fi
bin=target/$profile
echo "console_fleet: $hosts hosts, $profile build, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

data=$(mktemp -d /tmp/secumon-fleet-XXXXXX)
session="secumon-fleet-bench-$$"
server_pid=""
trap 'tmux kill-session -t "$session" 2>/dev/null; [ -n "$server_pid" ] && kill $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
key=$("$bin/api_seed" --dir "$data" --hosts "$hosts" --hours 1)

port=18580
"$bin/secumon" server --data-dir "$data" --api "127.0.0.1:$port" --grpc 127.0.0.1:18590 \
  >"$data/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  curl -fs -o /dev/null -H "Authorization: Bearer $key" "http://127.0.0.1:$port/api/v1/overview?limit=1" && break
  sleep 0.1
done

"$bin/console_load" --server "http://127.0.0.1:$port" --token "$key" --runs 3 --expect "$hosts"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_over() { # cpu_over PID SECONDS: percent of one core
  local before after hz
  hz=$(getconf CLK_TCK)
  before=$(ticks "$1"); sleep "$2"; after=$(ticks "$1")
  awk -v d=$((after - before)) -v hz="$hz" -v s="$2" 'BEGIN {printf "%.2f", 100 * d / hz / s}'
}
echo "console_fleet: server CPU, no console, ${seconds} s: $(cpu_over "$server_pid" "$seconds") % of a core"

tmux new-session -d -s "$session" -x 160 -y 45 -e "SECUMON_TOKEN=$key" \
  "$bin/secumon console --server http://127.0.0.1:$port"
console_pid=$(tmux list-panes -t "$session" -F '#{pane_pid}')
for _ in $(seq 300); do
  tmux capture-pane -p -t "$session" | grep -qF "Hosts ($hosts, " && break
  sleep 0.1
done
tmux capture-pane -p -t "$session" | grep -F "Hosts (" || { echo "console_fleet: the console shows no overview" >&2; exit 1; }
echo "console_fleet: server CPU, one console open, ${seconds} s: $(cpu_over "$server_pid" "$seconds") % of a core"
grep -E '^(VmRSS|VmHWM)' "/proc/$console_pid/status" | tr -s ' \t' ' ' | sed 's/^/console_fleet: console /'
