#!/usr/bin/env bash
# TCP connect scan of all 65 535 ports of 127.0.0.1: `secumon scan ports` beside
# `nmap -sT -p- -T4` in the same run, with the same open ports required of both.
# Usage: benches/scripts/port_scan.sh [runs=3] [concurrency=500]
# Scans loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-3}"
concurrency="${2:-500}"
command -v nmap >/dev/null || { echo "nmap missing: apt-get install nmap" >&2; exit 2; }
cargo build --release --quiet --bin secumon
secumon=target/release/secumon

now() { date +%s.%N; }
ours_open() { "$secumon" scan ports 127.0.0.1 --ports 1-65535 --concurrency "$concurrency" --timeout 1s --json \
  | python3 -c 'import json,sys; d=json.load(sys.stdin)["details"]; print(",".join(sorted((p for p,s in d["ports"].items() if s=="open"), key=int)))'; }
nmap_open() { nmap -sT -p- -T4 -Pn -n 127.0.0.1 -oG - | grep -o '[0-9]*/open' | cut -d/ -f1 | sort -n | paste -sd, -; }

printf "%-5s %12s %12s %8s\n" run "secumon (s)" "nmap (s)" ratio
for run in $(seq 1 "$runs"); do
  start=$(now); ours=$(ours_open); ours_s=$(echo "$(now) - $start" | bc)
  start=$(now); theirs=$(nmap_open); nmap_s=$(echo "$(now) - $start" | bc)
  if [ "$ours" != "$theirs" ]; then
    echo "open ports differ: secumon [$ours] nmap [$theirs]" >&2
    exit 1
  fi
  printf "%-5s %12.2f %12.2f %8.2f\n" "$run" "$ours_s" "$nmap_s" "$(echo "$nmap_s / $ours_s" | bc -l)"
done
echo "open ports (both): $ours"
nmap --version | head -1
