#!/usr/bin/env bash
# Prometheus query API latency (issue #21): a Grafana panel's `query_range` over 24 h at a
# 1-minute step (1 441 points per series), with `hosts` hosts' data in the store. Seeds a data
# directory with benches/bin/api_seed.rs (24 h of 8 gauges per host, one minute apart), starts
# `secumon server` on loopback, and times each query `runs` times with curl as a viewer API
# key; prints the median and the slowest, and the number of series answered. The same
# samples, under the same labels, go into a VictoriaMetrics single-node started here
# (Debian's package) and each query is timed on it too, alternating with SecuMon's runs.
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

benches/scripts/install_victoria_metrics.sh
data=$(mktemp -d /tmp/secumon-prom-XXXXXX)
server_pid=""
vm_port=18428
victoria-metrics -storageDataPath="$data/vm" -httpListenAddr="127.0.0.1:$vm_port" -retentionPeriod=1y \
  -search.maxPointsPerTimeseries=100000 >"$data/vm.log" 2>&1 &
vm_pid=$!
trap 'kill $vm_pid 2>/dev/null; [ -n "$server_pid" ] && kill $server_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$vm_port/health" >/dev/null && break
  sleep 0.2
done
key=$("$bin/api_seed" --dir "$data" --hosts "$hosts" --victoria "http://127.0.0.1:$vm_port")

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
echo "hosts=$hosts runs=$runs profile=$profile range=24h step=60s $(victoria-metrics --version 2>&1 | head -1)"
# One timing: curl's total time of a query_range to $1 (a base URL), the answer kept in $2.
time_query() {
  curl -fsS -o "$2" -w '%{time_total}' -H "Authorization: Bearer $key" \
    --data-urlencode "query=$query" --data-urlencode "start=$start" --data-urlencode "end=$end" \
    --data-urlencode "step=60" "$1/api/v1/query_range"
}
summary() { sort -n | awk '{t[NR]=$1} END {printf "%.1f %.1f\n", t[int((NR+1)/2)]*1000, t[NR]*1000}'; }
series() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["data"]["result"]))' "$1"; }
for query in \
  'avg by (client) (cpu_usage_ratio)' \
  'topk(10, cpu_usage_ratio)' \
  'cpu_usage_ratio{host="host-0007"}' \
  'avg_over_time(load1[5m]) > 4'; do
  ours=(); theirs=()
  for _ in $(seq "$runs"); do
    ours+=("$(time_query "http://127.0.0.1:$port/prometheus" "$data/ours.json")")
    theirs+=("$(time_query "http://127.0.0.1:$vm_port" "$data/theirs.json")")
  done
  read -r our_median our_max < <(printf '%s\n' "${ours[@]}" | summary)
  read -r vm_median vm_max < <(printf '%s\n' "${theirs[@]}" | summary)
  printf '%-36s series %s/%s  SecuMon median %s ms max %s ms  VictoriaMetrics median %s ms max %s ms  ratio %.1f\n' \
    "$query" "$(series "$data/ours.json")" "$(series "$data/theirs.json")" "$our_median" "$our_max" \
    "$vm_median" "$vm_max" "$(python3 -c "print($our_median / max($vm_median, 0.001))")"
done
