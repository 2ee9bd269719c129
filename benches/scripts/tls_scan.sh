#!/usr/bin/env bash
# Time for a full TLS analysis of one server: `secumon scan tls` beside sslscan and
# testssl.sh in the same run, against `openssl s_server` on loopback with a legacy
# configuration (TLS 1.0-1.3, every suite OpenSSL has at @SECLEVEL=0, RSA 2048).
# Usage: benches/scripts/tls_scan.sh [runs=3]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-3}"
for tool in sslscan testssl openssl; do
  command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install sslscan testssl.sh openssl" >&2; exit 2; }
done
cargo build --release --quiet --bin secumon
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 60 \
  -subj /CN=localhost 2>/dev/null
: > "$work/openssl.cnf"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OPENSSL_CONF="$work/openssl.cnf" openssl s_server -quiet -accept "127.0.0.1:$port" -cert "$work/cert.pem" \
  -key "$work/key.pem" -cipher 'ALL:@SECLEVEL=0' </dev/null >/dev/null 2>&1 &
server=$!
sleep 1

seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; end=$(date +%s.%N); echo "$end - $start" | bc; }
printf "%-4s %10s %10s %12s\n" run secumon sslscan testssl.sh
for run in $(seq 1 "$runs"); do
  ours=$(seconds target/release/secumon scan tls "localhost:$port" --json)
  theirs=$(seconds sslscan --no-colour "127.0.0.1:$port")
  if [ "$run" -eq 1 ]; then
    testssl=$(seconds testssl --quiet --color 0 --warnings off "127.0.0.1:$port")
  else
    testssl="-"
  fi
  printf "%-4s %10.2f %10.2f %12s\n" "$run" "$ours" "$theirs" "$testssl"
done
target/release/secumon scan tls "localhost:$port" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)["details"]
print("suites found by secumon:", {v: len(s) for v, s in d["cipher_suites"].items()})'
dpkg-query -W -f '${Package} ${Version}\n' sslscan testssl.sh openssl 2>/dev/null || true
