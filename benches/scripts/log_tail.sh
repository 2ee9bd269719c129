#!/usr/bin/env bash
# The log tailer beside rsyslog's imfile (Debian's rsyslog 8.2302, the shipper Debian has:
# Fluent Bit and Vector are not packaged for bookworm), in the same run:
#   1. max: LINES lines (~100 bytes each) already in the file; time until all are read
#      (SecuMon: LogTailer polls; rsyslog: imfile -> omfile, time until the output has them);
#   2. CPU at 1 000 and 10 000 lines/s over SECONDS: SecuMon's tailer thread polling once a
#      second (as the agent does) and committing positions; rsyslogd's whole process.
# Measures file -> records in memory (SecuMon) and file -> output file (rsyslog): the push
# to the server and the store are not included.
# Usage: benches/scripts/log_tail.sh [LINES] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
lines=${1:-1000000}
seconds=${2:-30}

# rsyslogd unpacked from its Debian package into target/ (not installed: no service starts).
root=target/rsyslog
if [ ! -x "$root/usr/sbin/rsyslogd" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libestr0 libfastjson4) >/dev/null
  mkdir -p "$root" && (cd "$root" && apt-get download rsyslog 2>/dev/null && dpkg -x rsyslog_*.deb .)
fi
cargo build -q --release -p secumon-collect --example log_tail
bench=target/release/examples/log_tail

work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
start_rsyslog() {
  cat > "$work/rsyslog.conf" <<CONF
global(workDirectory="$work")
module(load="imfile" mode="inotify")
template(name="raw" type="string" string="%msg%\n")
ruleset(name="out") { action(type="omfile" file="$work/out.log" template="raw") }
input(type="imfile" file="$work/in.log" tag="bench" ruleset="out")
CONF
  "$root/usr/sbin/rsyslogd" -n -f "$work/rsyslog.conf" -i "$work/pid" -M "$root/usr/lib/x86_64-linux-gnu/rsyslog" &
  for _ in $(seq 100); do [ -s "$work/pid" ] && break; sleep 0.05; done
}
stop_rsyslog() { kill "$(cat "$work/pid")"; wait 2>/dev/null || true; rm -f "$work/pid" "$work"/imfile-state* "$work/out.log" "$work/in.log"; }
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_lines() { while [ "$(wc -l < "$work/out.log" 2>/dev/null || echo 0)" -lt "$1" ]; do sleep 0.01; done; }

echo "== max throughput, $lines lines"
$bench max "$lines"
python3 -c "
import sys
with open('$work/in.log', 'w') as f:
    for n in range($lines):
        f.write('%012d 203.0.113.7 - - \"GET /api/v1/items?page=%d HTTP/1.1\" 200 5120 \"-\" \"bench/1.0\"\n' % (n, n % 977))"
t0=$(date +%s.%N); start_rsyslog; pid=$(cat "$work/pid")
wait_lines "$lines"; t1=$(date +%s.%N); cpu=$(cpu_of "$pid")
echo "rsyslog imfile: $lines lines in $(echo "$t1 - $t0" | bc) s = $(echo "$lines / ($t1 - $t0)" | bc) lines/s, $(echo "scale=2; $cpu / 100" | bc) CPU s (incl. start)"
stop_rsyslog

for rate in 1000 10000; do
  echo "== $rate lines/s for $seconds s"
  $bench rate "$rate" "$seconds"
  : > "$work/in.log"; start_rsyslog; pid=$(cat "$work/pid"); sleep 1
  before=$(cpu_of "$pid"); t0=$(date +%s.%N)
  written=$($bench write "$rate" "$seconds" "$work/in.log" | awk '{print $2}')
  wait_lines "$written"; t1=$(date +%s.%N); after=$(cpu_of "$pid")
  echo "rsyslog imfile: written $written, CPU $(echo "scale=2; ($after - $before) / 100" | bc) s = $(echo "scale=2; ($after - $before) / ($t1 - $t0)" | bc) % of one core"
  stop_rsyslog
done
