#!/usr/bin/env bash
# Prometheus query API latency (issue #21): a Grafana panel's `query_range` over 24 h at a
# 1-minute step (1 441 points per series), with `hosts` hosts' data in the store. Seeds a data
# directory with benches/bin/api_seed.rs (24 h of 8 gauges per host, one minute apart), starts
# `secumon server` on loopback, and times each query `runs` times with curl as a viewer API
# key; prints the median and the slowest, and the number of series answered.
#
#   benches/scripts/prom_query_range.sh [hosts=1000] [runs=10] [profile=release]
set -euo pipefail
cd "$(dirname "$0")/../.."
hosts=${1:-1000}
runs=${2:-10}
profile=${3:-release}

flag=(--release)
[ "$profile" = debug ] && flag=()
cargo build "${flag[@]}" --locked -p secumon-benches --bin api_seed -p secumon-cli --bin secumon
bin=target/$profile

data=$(mktemp -d /tmp/secumon-prom-XXXXXX)
server_pid=""
trap '[ -n "$server_pid" ] && kill $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
key=$("$bin/api_seed" --dir "$data" --hosts "$hosts")

port=18481
"$bin/secumon" server --data-dir "$data" --api "127.0.0.1:$port" --grpc 127.0.0.1:18491 \
  --api-rate 10000000 >"$data/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  curl -fs -o /dev/null -H "Authorization: Bearer $key" "http://127.0.0.1:$port/prometheus/api/v1/labels" && break
  sleep 0.1
done

end=$(( $(date +%s) / 60 * 60 ))
start=$(( end - 86400 ))
echo "hosts=$hosts runs=$runs profile=$profile range=24h step=60s"
for query in \
  'avg by (client) (cpu_usage_ratio)' \
  'topk(10, cpu_usage_ratio)' \
  'cpu_usage_ratio{host="host-0007"}' \
  'avg_over_time(load1[5m]) > 4'; do
  times=()
  for _ in $(seq "$runs"); do
    out=$(curl -fsS -o "$data/answer.json" -w '%{time_total}' -H "Authorization: Bearer $key" \
      --data-urlencode "query=$query" --data-urlencode "start=$start" --data-urlencode "end=$end" \
      --data-urlencode "step=60" "http://127.0.0.1:$port/prometheus/api/v1/query_range")
    times+=("$out")
  done
  series=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["data"]["result"]))' "$data/answer.json")
  printf '%s\n' "${times[@]}" | sort -n | awk -v q="$query" -v s="$series" \
    '{t[NR]=$1} END {printf "%-40s series=%-5s median=%.1f ms  max=%.1f ms\n", q, s, t[int((NR+1)/2)]*1000, t[NR]*1000}'
done
