#!/usr/bin/env bash
# End to end for the manual: starts a fresh `secumon up` (on free ports, in a temporary data
# directory) and runs every command of README.md's ```sh blocks, then each of its ```python
# blocks, as written, in order, in a scratch directory where `secumon-data` is that data
# directory and `examples` and the crates are the repository's. Only what is rewritten is the
# binary's path, the ports (8080 -> the free port) and `alerts unsilence ID` (the id that
# `alerts silence` printed). A command fails the walk when it exits non-zero (1 is allowed
# only where the README says so: `alerts list`, `rules test`), when curl gets an HTTP error,
# or when the CLI says it found no data or needs a token. The webhook receiver's `verify`
# then checks real signed deliveries of this server (restarted with a webhook channel).
#
# Never sends traffic off this machine: commands that scan documentation addresses
# (192.0.2.x, 198.51.100.x, example.* names), long-running servers and agents, the build and
# the test suite are listed as skipped, with the reason.
# Usage: scripts/readme_e2e.sh [path/to/secumon] [python virtualenv with the secumon module]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
secumon="$(realpath "${1:-target/debug/secumon}")"
venv="${2:+$(realpath "$2")}"  # absolute: the snippet runs in another directory
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); grpc=$(free_port)
cleanup() {
  [ -n "${up:-}" ] && kill "$up" 2>/dev/null && wait "$up" 2>/dev/null || true
  [ -n "${probe:-}" ] && kill "$probe" 2>/dev/null && wait "$probe" 2>/dev/null || true
  [ -n "${receiver:-}" ] && kill "$receiver" 2>/dev/null && wait "$receiver" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/data" "$work/run"
ln -s "$work/data" "$work/run/secumon-data"
ln -s "$repo/examples" "$work/run/examples"
for crate in "$repo"/secumon-*; do ln -s "$crate" "$work/run/$(basename "$crate")"; done

"$secumon" up --data-dir "$work/data" --api "127.0.0.1:$api" --grpc "127.0.0.1:$grpc" --interval 1s \
  > "$work/up.log" 2>&1 &
up=$!
for _ in $(seq 1 100); do
  [ -s "$work/data/cli.token" ] && break
  sleep 0.1
done
[ -s "$work/data/cli.token" ] || { echo "readme_e2e: FAILED, secumon up wrote no cli.token:" >&2; cat "$work/up.log" >&2; exit 1; }
grep -q 'created the super-admin "admin" with password' "$work/up.log" \
  || { echo "readme_e2e: FAILED, up did not print the first password" >&2; exit 1; }
# A few collections, so that the queries have data.
token=$(cat "$work/data/cli.token")
for _ in $(seq 1 100); do
  curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$api/api/v1/agents" | grep -q '"host"' && break
  sleep 0.1
done
sleep 3

# The commands, one per entry (continuation lines joined, a heredoc kept with its command),
# from the README's ```sh blocks; the Python block apart.
python3 - "$repo/README.md" "$work/commands" "$work/python" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
commands = []
for block in re.findall(r"```sh\n(.*?)```", text, re.S):
    lines = block.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            body = []
            while i < len(lines) and lines[i] != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            line = "\n".join([line] + body + [heredoc.group(1)])
        commands.append(line)
open(sys.argv[2], "w").write("\0".join(commands) + "\0")
# Every ```python block, numbered in README order: each runs on its own after the commands.
import os
os.makedirs(sys.argv[3])
for n, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S), 1):
    open(os.path.join(sys.argv[3], f"{n:02}.py"), "w").write(block)
PY

skip_reason() {
  case "$1" in
    *"secumon backup "*|*"secumon restore "*|*"secumon secret-key rotate"*|*"secumon ca "*)
      echo "a production server's directories (secumon-cli/tests/end_to_end.rs runs them)" ;;
    systemctl\ *) echo "controls a system service (scripts/package_test.sh checks the units)" ;;
    *"--agent AGENT_ID"*) echo "needs an enrolled agent's id (secumon-agent/tests/central_config.rs)" ;;
    *"sudo "*) echo "installs or starts system services (scripts/package_test.sh installs the packages in a throw-away root)" ;;
    *secumon-agent*) echo "an agent enrolling with a remote server (secumon-agent/tests/revoked.rs)" ;;
    *"secumon -- up"*|*"secumon up"*|*"secumon server "*)
      echo "a long-running server (this walk runs its own; secumon-cli/tests/first_hour.rs)" ;;
    *192.0.2.*|*198.51.100.*|*example.com*|*example.net*|*shop.example*|*mail.example*)
      echo "scans a documentation address (never sent off this machine)" ;;
    scripts/test*) echo "the test suite itself" ;;
    pg_dump\ *|pg_restore\ *|pg_basebackup\ *|*"/var/backups/"*)
      echo "a production PostgreSQL and its backups (secumon-store/tests/postgres_backup.rs dumps and restores a test database)" ;;
    *"/etc/grafana"*|*"/var/lib/grafana"*)
      echo "installs into a Grafana host's directories (scripts/grafana_panels.sh runs every panel's query)" ;;
    *"alerts ack ID"*|*"alerts resolve ID"*) echo "needs a firing alert's id (secumon-cli/tests/rules_cli.rs)" ;;
    *) return 1 ;;
  esac
}

export SECUMON_SERVER="http://127.0.0.1:$api"
ran=0
skipped=0
while IFS= read -r -d '' command; do
  if reason=$(skip_reason "$command"); then
    echo "readme_e2e: skipped: ${command%%$'\n'*}  ($reason)"
    skipped=$((skipped + 1))
    continue
  fi
  # As written, but for where the binary is, the free ports, and curl failing on HTTP errors.
  run=$command
  # `alerts unsilence ID` ends the silence whose id `alerts silence` printed above it.
  case "$command" in
    *"alerts unsilence ID"*)
      [ -n "${silence_id:-}" ] || { echo "readme_e2e: FAILED, no silence id printed before: $command" >&2; exit 1; }
      run=${run/unsilence ID/unsilence $silence_id} ;;
  esac
  run=${run//target\/release\/secumon/$secumon}
  run=$(printf '%s' "$run" | sed -E "s#^secumon #\"$secumon\" #; s#127\.0\.0\.1:8080#127.0.0.1:$api#g; s#127\.0\.0\.1:9090#127.0.0.1:$grpc#g; s#^curl -s #curl -sSf #")
  set +e
  output=$(cd "$work/run" && env -u SECUMON_TOKEN bash -c "set -e
$(cat "$work/exports" 2>/dev/null || true)
$run" 2>&1)
  code=$?
  set -e
  # The README's own `export` lines carry on to the commands after them, as in a terminal.
  case "$command" in export\ *) echo "$command" >> "$work/exports" ;; esac
  allowed=0
  case "$command" in *"alerts list"*|*"rules test"*) allowed=1 ;; esac
  if [ "$code" -ne 0 ] && ! { [ "$allowed" = 1 ] && [ "$code" = 1 ]; }; then
    echo "readme_e2e: FAILED (exit $code): $command" >&2
    printf '%s\n' "$output" | head -n 40 >&2
    exit 1
  fi
  # curl -f already fails on a 401; these are the CLI's words for no data and no token.
  if printf '%s' "$output" | grep -qE '^no data for |pass --token or set SECUMON_TOKEN'; then
    echo "readme_e2e: FAILED: $command" >&2
    printf '%s\n' "$output" | head -n 40 >&2
    exit 1
  fi
  # The silence's round trip: its id printed, listed, then gone once ended.
  case "$command" in
    *"alerts silence "*)
      silence_id=$(printf '%s\n' "$output" | sed -nE 's/^silenced \(id ([^)]+)\)$/\1/p')
      [ -n "$silence_id" ] || { echo "readme_e2e: FAILED, no silence id printed by: $command" >&2; printf '%s\n' "$output" >&2; exit 1; } ;;
    *"alerts silences"*)
      if [ -n "${silence_id:-}" ] && ! grep -qF "$silence_id" <<< "$output"; then
        echo "readme_e2e: FAILED, silence $silence_id not listed by: $command" >&2; printf '%s\n' "$output" >&2; exit 1
      fi ;;
    *"alerts unsilence "*)
      if SECUMON_TOKEN="$token" "$secumon" alerts silences | grep -qF "$silence_id"; then
        echo "readme_e2e: FAILED, silence $silence_id still in force after: $command" >&2; exit 1
      fi ;;
  esac
  ran=$((ran + 1))
done < "$work/commands"

# `secumon probe --config examples/probe.yaml` (the Probe checks section) against this `up`:
# its port and spool follow this walk's; the local HTTP check must pass (no 401).
# Only its checks of this machine by address: the DNS checks ask the system's resolvers,
# which may forward to the internet.
sed -e "s#127\.0\.0\.1:8080#127.0.0.1:$api#g; s#127\.0\.0\.1:9090#127.0.0.1:$grpc#g" \
  -e "s#\./secumon-data/probe#$work/data/probe#" "$repo/examples/probe.yaml" \
  | python3 -c '
import sys
out, keep = [], True
for line in sys.stdin:
    if line.startswith("  - name: "):
        keep = line.split()[2] in ("local-web", "local-ssh", "loopback")
    if keep:
        out.append(line)
sys.stdout.write("".join(out))' > "$work/probe.yaml"
grep -q "name: local-web" "$work/probe.yaml" || { echo "readme_e2e: FAILED, no local-web check in examples/probe.yaml" >&2; exit 1; }
"$secumon" config check "$work/probe.yaml" >/dev/null
(cd "$work/run" && exec "$secumon" probe --config "$work/probe.yaml") > "$work/probe.log" 2>&1 &
probe=$!
local_web=""
for _ in $(seq 1 150); do
  local_web=$(curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$api/api/v1/checks" \
    | python3 -c 'import json,sys; print(next((c["result"]["status"] for c in json.load(sys.stdin)["checks"] if c["result"]["check_id"] == "local-web"), ""))' 2>/dev/null || true)
  [ -n "$local_web" ] && break
  sleep 0.2
done
[ "$local_web" = "ok" ] || { echo "readme_e2e: FAILED, probe.yaml's local-web check is \"$local_web\", not ok" >&2; cat "$work/probe.log" >&2; exit 1; }
ran=$((ran + 1))

# README's ```python blocks, each on its own in the scratch directory against this `up` (the
# port rewritten, SECUMON_TOKEN set as after the README's `export`): those that import the
# bindings with the module scripts/test builds, the others with any python3.
have_module=0
[ -n "$venv" ] && "$venv/bin/python" -c 'import secumon' 2>/dev/null && have_module=1
for block in "$work/python"/*.py; do
  [ -e "$block" ] || { echo "readme_e2e: FAILED, README.md has no python block" >&2; exit 1; }
  python=python3
  if grep -qE '^(import|from) secumon' "$block"; then
    if [ "$have_module" = 0 ]; then
      echo "readme_e2e: skipped: python block $(basename "$block" .py) (no virtualenv with the secumon module given)"
      skipped=$((skipped + 1))
      continue
    fi
    python=$venv/bin/python
  fi
  sed -e "s#127\.0\.0\.1:8080#127.0.0.1:$api#g" "$block" > "$work/run/snippet.py"
  (cd "$work/run" && SECUMON_TOKEN="$token" "$python" snippet.py) > "$work/python.log" 2>&1 \
    || { echo "readme_e2e: FAILED, python block $(basename "$block" .py):" >&2; cat "$work/run/snippet.py" "$work/python.log" >&2; exit 1; }
  ran=$((ran + 1))
done

# The README's webhook receiver, its `verify` as written, behind a webhook channel of this
# `up` restarted with `--rules` and a rule that fires at once: every real signed delivery
# must verify, and the same delivery must not once its body is changed, under another
# secret, or signed anew with a timestamp 10 minutes old (a replay).
verify_block=$(grep -l '^def verify(' "$work/python"/*.py | head -n1 || true)
[ -n "$verify_block" ] || { echo "readme_e2e: FAILED, README.md shows no webhook receiver's verify" >&2; exit 1; }
secret="readme-$RANDOM$RANDOM"
python3 - "$verify_block" "$secret" "$work/receiver.port" "$work/receiver.log" > "$work/receiver.out" 2>&1 <<'PY' &
import copy, hashlib, hmac, http.server, sys
readme = {}
exec(open(sys.argv[1]).read(), readme)
verify, secret = readme["verify"], sys.argv[2].encode()
log = open(sys.argv[4], "a", buffering=1)

class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # The headers as the README's receiver gets them (case-insensitive names).
        genuine = verify(secret, self.headers, body)
        changed = verify(secret, self.headers, body + b" ")
        other_secret = verify(b"not-" + secret, self.headers, body)
        # A captured delivery sent again later: correctly signed, but its timestamp is old.
        replay = copy.deepcopy(self.headers)
        old = str(int(self.headers["X-SecuMon-Timestamp"]) - 600)
        replay.replace_header("X-SecuMon-Timestamp", old)
        mac = hmac.new(secret, old.encode() + b"." + body, hashlib.sha256).hexdigest()
        replay.replace_header("X-SecuMon-Signature", "sha256=" + mac)
        replayed = verify(secret, replay, body)
        ok = genuine and not (changed or other_secret or replayed) and b"ReadmeWebhook" in body
        log.write("ok\n" if ok else f"failed: genuine={genuine} changed={changed} "
                  f"other_secret={other_secret} replayed={replayed} body={body[:200]!r}\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
open(sys.argv[3], "w").write(str(server.server_address[1]))
server.serve_forever()
PY
receiver=$!
for _ in $(seq 1 50); do [ -s "$work/receiver.port" ] && break; sleep 0.1; done
[ -s "$work/receiver.port" ] || { echo "readme_e2e: FAILED, the webhook receiver did not start:" >&2; cat "$work/receiver.out" >&2; exit 1; }
cat > "$work/webhook-rules.yaml" <<RULES
rules:
  - name: ReadmeWebhook
    expr: load1 >= 0
    severity: info
    channels: [receiver]
channels:
  receiver:
    type: webhook
    url: "http://127.0.0.1:$(cat "$work/receiver.port")/hook"
    secret: "$secret"
RULES
kill "$probe" && wait "$probe" 2>/dev/null || true
probe=""
kill "$up" && wait "$up" 2>/dev/null || true
"$secumon" up --data-dir "$work/data" --api "127.0.0.1:$api" --grpc "127.0.0.1:$grpc" --interval 1s \
  --rules "$work/webhook-rules.yaml" > "$work/up2.log" 2>&1 &
up=$!
for _ in $(seq 1 300); do [ -s "$work/receiver.log" ] && break; sleep 0.1; done
[ -s "$work/receiver.log" ] || { echo "readme_e2e: FAILED, no webhook delivery in 30 s:" >&2; cat "$work/up2.log" "$work/receiver.out" >&2; exit 1; }
if grep -v '^ok$' "$work/receiver.log" >&2; then
  echo "readme_e2e: FAILED, the README's verify on the server's webhook deliveries (above)" >&2
  exit 1
fi
ran=$((ran + 1))

echo "readme_e2e: ok ($ran commands run as written, $skipped skipped)"
