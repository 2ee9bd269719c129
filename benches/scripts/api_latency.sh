#!/usr/bin/env bash
# REST API latency with 1 000 hosts' data in the store (issue #8): seeds a data directory
# (benches/bin/api_seed.rs: 24 h of 8 gauges per host, one minute apart), starts the release
# `secumon server` on loopback, and runs wrk (Debian package, installed here if missing)
# against a random host's 24 h history and against the agents list, as a viewer API key.
#
#   benches/scripts/api_latency.sh [hosts=1000] [seconds=20] ["connections..."="2 16"]
set -euo pipefail
cd "$(dirname "$0")/../.."
hosts=${1:-1000}
seconds=${2:-20}
connections=${3:-2 16}

if ! command -v wrk >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends wrk \
    || { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends wrk; }
fi

cargo build --release --locked -p secumon-benches --bin api_seed -p secumon-cli --bin secumon

data=$(mktemp -d /tmp/secumon-api-XXXXXX)
server_pid=""
trap '[ -n "$server_pid" ] && kill $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
key=$(target/release/api_seed --dir "$data" --hosts "$hosts")

port=18480
# The benchmark measures latency, not the rate limiter: lift the per-tenant budget.
target/release/secumon server --data-dir "$data" --api "127.0.0.1:$port" --grpc 127.0.0.1:18490 \
  --api-rate 10000000 >"$data/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  curl -fs -o /dev/null -H "Authorization: Bearer $key" "http://127.0.0.1:$port/api/v1/agents?limit=1" && break
  sleep 0.1
done

wrk --version 2>/dev/null | head -1 || true
for endpoint in history agents; do
  for c in $connections; do
    SECUMON_BENCH_ENDPOINT=$endpoint SECUMON_BENCH_HOSTS=$hosts wrk -t2 -c"$c" -d"${seconds}s" \
      -s benches/scripts/api_latency.lua -H "Authorization: Bearer $key" "http://127.0.0.1:$port" | tail -n1
  done
done
