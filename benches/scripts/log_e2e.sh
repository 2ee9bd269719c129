#!/usr/bin/env bash
# Log lines from file to stored, end to end, beside rsyslog in the same run (issue #25 item 4):
#   SecuMon: `secumon server` (embedded SQLite store, or PostgreSQL with STORE=postgres) and a
#            separate `secumon-agent` process tailing the file (1 s interval, no metric
#            families, no journald), pushing over gRPC; lines counted through the REST API.
#   rsyslog: Debian's rsyslog 8.2302, imfile (inotify) -> ompgsql into PostgreSQL (batched
#            transactions); lines counted with psql. Fluent Bit and Vector are not packaged
#            for Debian bookworm (`apt-cache policy fluent-bit vector`: no candidate), so
#            rsyslog is the well-known shipper measured here.
# Runs:
#   1. max: MAXLINES lines (~100 bytes) appear in a new file at once; time until all are stored.
#   2. 1 000 and 10 000 lines/s for SECONDS: every line stored?, the time from the writer's end
#      until the last is stored, and CPU (utime+stime from /proc) of the agent process and of
#      the server process (SecuMon), of the rsyslogd process (rsyslog), over the run.
# Usage: benches/scripts/log_e2e.sh [SECONDS] [MAXLINES]
#        (STORE=sqlite|postgres; BIN=dir of the binaries; SERVER_BIN=another secumon for the server)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-20}
maxlines=${2:-200000}
store=${STORE:-sqlite}
pg=postgres://postgres@127.0.0.1:5432

root=target/rsyslog
if [ ! -e "$root/usr/lib/x86_64-linux-gnu/rsyslog/ompgsql.so" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libestr0 libfastjson4 libpq5) >/dev/null
  mkdir -p "$root" && (cd "$root" && apt-get download rsyslog rsyslog-pgsql 2>/dev/null && for d in *.deb; do dpkg -x "$d" .; done)
fi
bin=${BIN:-target/release}   # BIN=target/debug: a dry run of the script itself, no figures
[ -n "${BIN:-}" ] || cargo build -q --release --workspace --bin secumon --bin secumon-agent --example log_tail

work=$(mktemp -d /tmp/secumon-log-e2e-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -s "$work/rsyslog.pid" ] && kill "$(cat "$work/rsyslog.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
now() { date +%s.%N; }

# ---- SecuMon ----------------------------------------------------------------------------
api=$(free_port); grpc=$(free_port)
store_args=()
if [ "$store" = postgres ]; then
  psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS secumon_bench_e2e" -c "CREATE DATABASE secumon_bench_e2e"
  store_args=(--store "$pg/secumon_bench_e2e")
fi
"${SERVER_BIN:-$bin/secumon}" server --data-dir "$work/server" "${store_args[@]}" --api "127.0.0.1:$api" --grpc "127.0.0.1:$grpc" \
  >"$work/server.log" 2>&1 &
server_pid=$!; pids+=("$server_pid")
for _ in $(seq 200); do [ -s "$work/server/cli.token" ] && break; sleep 0.1; done
token=$(cat "$work/server/cli.token")

# The newest line stored for host $1: its number + 1 (the writer numbers lines in order), or 0.
stored() {
  python3 - "$api" "$token" "$1" <<'PY'
import json, sys, urllib.request
api, token, host = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(f"http://127.0.0.1:{api}/api/v1/logs/hosts/{host}?limit=1",
                             headers={"Authorization": f"Bearer {token}"})
logs = json.load(urllib.request.urlopen(req))["logs"]
print(int(logs[-1]["line"][:12]) + 1 if logs else 0)
PY
}
# Every line stored for host $1, paged through by cursor: count, distinct, in order?
verify() {
  python3 - "$api" "$token" "$1" <<'PY'
import json, sys, urllib.request
api, token, host = sys.argv[1], sys.argv[2], sys.argv[3]
numbers, after = [], None
while True:
    url = f"http://127.0.0.1:{api}/api/v1/logs/hosts/{host}?since_ms=0&limit=5000" + (f"&after={after}" if after else "")
    page = json.load(urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})))
    numbers += [int(l["line"][:12]) for l in page["logs"]]
    if not page["more"]:
        break
    after = page["next_cursor"]
print(f"{len(numbers)} stored, {len(set(numbers))} distinct, in order: {numbers == sorted(numbers)}")
PY
}

run_agent() { # $1: the file to tail, $2: the host name; starts the agent, waits for its first poll
  mkdir -p "$work/agent"
  cat > "$work/agent.yaml" <<YAML
agent: {name: $2}
collector: {endpoint: "127.0.0.1:$grpc"}
metrics: {interval: 1s, enabled: []}
logs: {enabled: true, sources: ["$1"], journald: false}
spool: {dir: "$work/agent"}
YAML
  "$bin/secumon-agent" --config "$work/agent.yaml" >"$work/agent.log" 2>&1 &
  agent_pid=$!; pids+=("$agent_pid")
  sleep 2
}
stop_agent() { kill "$agent_pid"; wait "$agent_pid" 2>/dev/null || true; rm -rf "$work/agent"; }
wait_stored() { while [ "$(stored "$2")" -lt "$1" ]; do sleep 0.1; done; }

echo "== SecuMon ($store store): max, $maxlines lines appearing at once"
rm -f "$work/max.log"; run_agent "$work/max.log" bench-max
a0=$(cpu_of "$agent_pid")
# Written in about a second to another name, then renamed into place: it appears whole.
max=$($bin/examples/log_tail write "$maxlines" 1 "$work/max.tmp" | awk '{print $2}')
t0=$(now); mv "$work/max.tmp" "$work/max.log"
wait_stored "$max" bench-max; t1=$(now); a1=$(cpu_of "$agent_pid")
echo "secumon: $max lines stored in $(echo "$t1 - $t0" | bc) s = $(echo "$max / ($t1 - $t0)" | bc) lines/s; agent CPU $(echo "scale=2; ($a1 - $a0) / 100" | bc) s"
stop_agent

for rate in 1000 10000; do
  echo "== SecuMon ($store store): $rate lines/s for $seconds s"
  : > "$work/rate-$rate.log"; run_agent "$work/rate-$rate.log" "bench-$rate"
  a0=$(cpu_of "$agent_pid"); s0=$(cpu_of "$server_pid"); t0=$(now)
  written=$($bin/examples/log_tail write "$rate" "$seconds" "$work/rate-$rate.log" | awk '{print $2}'); tw=$(now)
  wait_stored "$written" "bench-$rate"
  t1=$(now); a1=$(cpu_of "$agent_pid"); s1=$(cpu_of "$server_pid")
  echo "secumon: written $written in $(echo "$tw - $t0" | bc) s; last stored $(echo "$t1 - $tw" | bc) s after the writer's end"
  echo "secumon: agent CPU $(echo "scale=2; ($a1 - $a0) / 100" | bc) s = $(echo "scale=2; ($a1 - $a0) / ($t1 - $t0)" | bc) % of one core; server $(echo "scale=2; ($s1 - $s0) / ($t1 - $t0)" | bc) %"
  stop_agent
done
for host in bench-max bench-1000 bench-10000; do
  echo "secumon $host, every line read back through GET /logs by cursor: $(verify "$host")"
done
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true

# ---- rsyslog ----------------------------------------------------------------------------
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS secumon_bench_rsyslog" -c "CREATE DATABASE secumon_bench_rsyslog"
psql -q "$pg/secumon_bench_rsyslog" -c "CREATE TABLE lines (id BIGSERIAL PRIMARY KEY, line TEXT NOT NULL)"
rows() { psql -tA "$pg/secumon_bench_rsyslog" -c "SELECT count(*) FROM lines"; }
start_rsyslog() { # $1: the file to tail
  cat > "$work/rsyslog.conf" <<CONF
global(workDirectory="$work")
module(load="imfile" mode="inotify")
module(load="ompgsql")
template(name="sql" type="string" option.sql="on" string="INSERT INTO lines (line) VALUES ('%msg%')")
ruleset(name="out" queue.type="LinkedList" queue.dequeueBatchSize="1000") {
  action(type="ompgsql" conninfo="$pg/secumon_bench_rsyslog" template="sql")
}
input(type="imfile" file="$1" tag="bench" ruleset="out")
CONF
  "$root/usr/sbin/rsyslogd" -n -f "$work/rsyslog.conf" -i "$work/rsyslog.pid" -M "$root/usr/lib/x86_64-linux-gnu/rsyslog" \
    >"$work/rsyslog.log" 2>&1 &
  for _ in $(seq 100); do [ -s "$work/rsyslog.pid" ] && break; sleep 0.05; done
  rs_pid=$(cat "$work/rsyslog.pid"); sleep 1
}
stop_rsyslog() { kill "$rs_pid"; while kill -0 "$rs_pid" 2>/dev/null; do sleep 0.05; done; rm -f "$work/rsyslog.pid" "$work"/imfile-state*; }
wait_rows() { while [ "$(rows)" -lt "$1" ]; do sleep 0.1; done; }

echo "== rsyslog imfile -> ompgsql: max, $maxlines lines appearing at once"
rm -f "$work/rs-max.log"; start_rsyslog "$work/rs-max.log"
max=$($bin/examples/log_tail write "$maxlines" 1 "$work/rs-max.tmp" | awk '{print $2}')
c0=$(cpu_of "$rs_pid"); t0=$(now); mv "$work/rs-max.tmp" "$work/rs-max.log"
wait_rows "$max"; t1=$(now); c1=$(cpu_of "$rs_pid")
echo "rsyslog: $max lines stored in $(echo "$t1 - $t0" | bc) s = $(echo "$max / ($t1 - $t0)" | bc) lines/s; rsyslogd CPU $(echo "scale=2; ($c1 - $c0) / 100" | bc) s"
stop_rsyslog
total=$max
for rate in 1000 10000; do
  echo "== rsyslog imfile -> ompgsql: $rate lines/s for $seconds s"
  : > "$work/rs-$rate.log"; start_rsyslog "$work/rs-$rate.log"
  c0=$(cpu_of "$rs_pid"); t0=$(now)
  written=$($bin/examples/log_tail write "$rate" "$seconds" "$work/rs-$rate.log" | awk '{print $2}'); tw=$(now)
  total=$((total + written)); wait_rows "$total"; t1=$(now); c1=$(cpu_of "$rs_pid")
  echo "rsyslog: written $written; last stored $(echo "$t1 - $tw" | bc) s after the writer's end"
  echo "rsyslog: rsyslogd CPU $(echo "scale=2; ($c1 - $c0) / 100" | bc) s = $(echo "scale=2; ($c1 - $c0) / ($t1 - $t0)" | bc) % of one core"
  stop_rsyslog
done
echo "rsyslog rows stored: $(rows) (expected $total)"
