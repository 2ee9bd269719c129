#!/usr/bin/env bash
# End to end for the manual: starts a fresh `secumon up` (on free ports, in a temporary data
# directory) and runs every command of README.md's ```sh blocks and its Python snippet as
# written, in order, in a scratch directory where `secumon-data` is that data directory and
# `examples` and the crates are the repository's. Only what is rewritten is the binary's path and
# the ports (8080 -> the free port). A command fails the walk when it exits non-zero
# (1 is allowed only where the README says so: `alerts list`, `rules test`), when curl gets
# an HTTP error, or when the CLI says it found no data or needs a token.
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
python3 - "$repo/README.md" "$work/commands" "$work/snippet.py" <<'PY'
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
python = re.findall(r"```python\n(.*?)```", text, re.S)
open(sys.argv[3], "w").write(python[0] if python else "")
PY

skip_reason() {
  case "$1" in
    *secumon-agent*) echo "an agent enrolling with a remote server (secumon-agent/tests/revoked.rs)" ;;
    *"secumon -- up"*|*"secumon up"*|*"secumon server "*)
      echo "a long-running server (this walk runs its own; secumon-cli/tests/first_hour.rs)" ;;
    *192.0.2.*|*198.51.100.*|*example.com*|*example.net*|*shop.example*|*mail.example*)
      echo "scans a documentation address (never sent off this machine)" ;;
    scripts/test*) echo "the test suite itself" ;;
    *"alerts ack ID"*|*"alerts resolve ID"*) echo "needs a firing alert's id (secumon-cli/tests/rules_cli.rs)" ;;
    *"alerts unsilence ID"*) echo "needs a silence's id (secumon-server/tests/alerting.rs)" ;;
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

# The Python snippet, with the module scripts/test builds.
if [ -n "$venv" ] && "$venv/bin/python" -c 'import secumon' 2>/dev/null; then
  sed -e "s#127\.0\.0\.1:8080#127.0.0.1:$api#g" "$work/snippet.py" > "$work/run/snippet.py"
  (cd "$work/run" && SECUMON_TOKEN="$token" "$venv/bin/python" snippet.py) > "$work/python.log" 2>&1 \
    || { echo "readme_e2e: FAILED, the Python snippet:" >&2; cat "$work/python.log" >&2; exit 1; }
  ran=$((ran + 1))
else
  echo "readme_e2e: skipped: the Python snippet (no virtualenv with the secumon module given)"
  skipped=$((skipped + 1))
fi
echo "readme_e2e: ok ($ran commands run as written, $skipped skipped)"
