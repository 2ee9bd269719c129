#!/usr/bin/env bash
# Alert latency, 1 000 series crossing a threshold at one instant: SecuMon, then
# Prometheus + Alertmanager with tuned settings, then with their defaults, in one run.
# Usage: benches/scripts/alert_latency.sh [series=1000]
# Loopback only. The default-settings run takes a few minutes (1 m scrape and evaluation,
# 30 s group_wait).
set -euo pipefail
cd "$(dirname "$0")/../.."
series="${1:-1000}"
bash benches/scripts/install_prometheus.sh
cargo build --release --quiet -p secumon-benches --bin alert_latency
{
  target/release/alert_latency --series "$series" --json
  python3 benches/scripts/alert_latency_prometheus.py --mode tuned --series "$series" --json
  python3 benches/scripts/alert_latency_prometheus.py --mode default --series "$series" --json
} | python3 -c '
import json, sys
rows = [json.loads(line) for line in sys.stdin if line.strip()]
ours = rows[0]
print("| system | settings | notified | p50 | p99 | max | p99 / secumon p99 |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %s | %d/%d | %.0f ms | %.0f ms | %.0f ms | %.1f |" % (r["system"], r["mode"], r["received"],
          r["series"], r["p50_ms"], r["p99_ms"], r["max_ms"], r["p99_ms"] / ours["p99_ms"]))
for r in rows[1:]:
    print("%s: %s / %s" % (r["mode"], r["prometheus_version"], r["alertmanager_version"]))
'
