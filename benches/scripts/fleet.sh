#!/usr/bin/env bash
# Fleet load (issue #18): one release `secumon server --mtls` (embedded store in a fresh
# data directory under /tmp, or --store URL), N simulated agents from benches/bin/fleet.rs,
# each enrolled through the real flow with its own certificate, then every sequence of
# every agent checked against the store after the server stopped.
#
#   benches/scripts/fleet.sh AGENTS [SECONDS=120] [SERIES=100] [INTERVAL_S=10] [STORE_URL]
#
# Loopback only. The descriptor limit is raised (each agent holds a socket in the server,
# and a socket and its spool's two files in the load generator). A process may open at
# most the hard limit (`ulimit -Hn`, 20 000 in this project's containers), so the agents
# are split over as many load-generator processes as that needs (`fleet run --shard I/N`,
# agents disjoint, all starting together); FLEET_SHARDS=N forces N. `fleet merge` makes one
# report of theirs (ack percentiles over all shards' acks, CPU summed) and `fleet verify`
# checks every shard's manifest. Agents' spools go to /dev/shm so their fsyncs do not
# compete with the server's on the same disk. The merged JSON report of the run, then that
# of the check, is printed on stdout; progress on stderr. FLEET_PROFILE=debug skips the
# release build (smoke runs only; figures come from release builds); FLEET_NO_BUILD=1 uses
# the release binaries as they are.
set -euo pipefail
cd "$(dirname "$0")/../.."
agents=${1:?usage: fleet.sh AGENTS [SECONDS] [SERIES] [INTERVAL_S] [STORE_URL]}
seconds=${2:-120}
series=${3:-100}
interval=${4:-10}
store=${5:-}
profile=${FLEET_PROFILE:-release}

if [ "$profile" = release ] && [ -z "${FLEET_NO_BUILD:-}" ]; then
  cargo build --workspace --release --bin secumon --bin fleet >&2
fi
bin=target/$profile

# Every agent: one TLS connection in the server; in its load generator the connection plus
# its spool's segment and lock files. 1 024 more per process for everything else.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
limit=$(ulimit -n)
[ "$limit" = unlimited ] && limit=1048576
server_want=$((agents + 1024))
if [ "$limit" -lt "$server_want" ]; then
  ulimit -Hn "$server_want" 2>/dev/null && ulimit -n "$server_want" && limit=$server_want || {
    echo "fleet.sh: the server needs $server_want open files, the limit is $limit (raise it, or run as root)" >&2
    exit 1
  }
fi
if [ -n "${FLEET_SHARDS:-}" ]; then
  shards=$FLEET_SHARDS
elif [ "$limit" -le 1024 ]; then
  echo "fleet.sh: the open-file limit ($limit) leaves no room for agents" >&2
  exit 1
else
  per=$(((limit - 1024) / 3))
  shards=$(((agents + per - 1) / per))
fi
[ "$shards" -ge 1 ] && [ "$shards" -le "$agents" ] || { echo "fleet.sh: $shards shards for $agents agents" >&2; exit 1; }
shard_want=$(((agents + shards - 1) / shards * 3 + 1024))
if [ "$limit" -lt "$shard_want" ]; then
  echo "fleet.sh: a load generator of $((agents / shards)) agents needs $shard_want open files, the limit is $limit (more shards: FLEET_SHARDS)" >&2
  exit 1
fi

data=$(mktemp -d /tmp/secumon-fleet-XXXXXX)
spool=/dev/shm/secumon-fleet-$$
server_pid=""
shard_pids=()
cleanup() {
  for pid in "${shard_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$data" "$spool"
}
trap cleanup EXIT

api_port=18480 grpc_port=18490 hook=127.0.0.1:18495
cat >"$data/rules.yaml" <<EOF
rules:
  - {name: FleetAlert, expr: fleet_alert_value > 50, severity: warning, channels: [hook]}
channels:
  hook: {type: webhook, url: "http://$hook/hook"}
EOF

store_args=()
[ -n "$store" ] && store_args=(--store "$store")
# The load measures ingest, not the API's rate limit (the loadgen provisions N tokens) nor
# the tenant limits (the default 500 000 series is 5 000 agents' worth of 100 series).
"$bin/secumon" server --data-dir "$data" --api "127.0.0.1:$api_port" --grpc "127.0.0.1:$grpc_port" --mtls \
  --rules "$data/rules.yaml" --api-rate 1000000 --max-series-per-tenant $((agents * (series + 10) * 2)) \
  --max-samples-per-second $((agents * series)) "${store_args[@]}" >"$data/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do
  [ -s "$data/cli.token" ] && curl -fs -o /dev/null "http://127.0.0.1:$api_port/metrics" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$data/server.log" >&2; exit 1; }
  sleep 0.1
done

echo "fleet.sh: $agents agents x $series series every ${interval}s for ${seconds}s in $shards load generator(s); $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
status=0
manifests=() reports=()
for i in $(seq 0 $((shards - 1))); do
  manifests+=(--manifest "$data/manifest-$i.json")
  reports+=("$data/report-$i.json")
  # Each shard's own report on stderr; the merged one on stdout.
  "$bin/fleet" run --api "http://127.0.0.1:$api_port" --grpc "127.0.0.1:$grpc_port" --token-file "$data/cli.token" \
    --agents "$agents" --series "$series" --interval-secs "$interval" --duration-secs "$seconds" \
    --spool-dir "$spool" --server-pid "$server_pid" --hook "$hook" --manifest "$data/manifest-$i.json" --json \
    --shard "$i/$shards" --sync-dir "$data/sync" --report-out "$data/report-$i.json" >&2 &
  shard_pids+=($!)
done
for pid in "${shard_pids[@]}"; do
  wait "$pid" || status=$?
done
shard_pids=()
"$bin/fleet" merge --json "${reports[@]}" || status=$?

# Stopped cleanly first: the embedded store has one writer, the check opens it.
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=""
verify_store="$data/secumon.db"
[ -n "$store" ] && verify_store="$store"
"$bin/fleet" verify "${manifests[@]}" --store "$verify_store" || status=$?
grep -E " (ERROR|WARN) " "$data/server.log" | sort | uniq -c | sort -rn | head -5 >&2 || true
exit $status
