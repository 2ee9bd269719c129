#!/usr/bin/env bash
# The REST API against its own OpenAPI document: schemathesis (PyPI) generates requests
# from /api/v1/openapi.json, sends them to `secumon up` on loopback as an admin, and fails
# on any server error (5xx), any answer outside its documented schema and any answer of
# the wrong content type.
#
#   scripts/api_schema.sh [path/to/secumon] [virtualenv]
set -euo pipefail
cd "$(dirname "$0")/.."
secumon=${1:-target/debug/secumon}
venv=${2:-target/pyvenv}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "schemathesis>=4.3,<5"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); grpc=$(free_port)
work=$(mktemp -d /tmp/secumon-schema-XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$secumon" up --data-dir "$work" --api "127.0.0.1:$api" --grpc "127.0.0.1:$grpc" --interval 1s \
  >"$work/up.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  [ -s "$work/cli.token" ] && curl -fs -o /dev/null "http://127.0.0.1:$api/api/v1/openapi.json" && break
  sleep 0.1
done

"$venv/bin/schemathesis" run "http://127.0.0.1:$api/api/v1/openapi.json" --url "http://127.0.0.1:$api" \
  -H "Authorization: Bearer $(cat "$work/cli.token")" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --phases examples,coverage,fuzzing --max-examples 30 --seed 8 --generation-database none \
  --no-color --workers 2 || { echo "--- server log"; tail -n 50 "$work/up.log"; exit 1; }
