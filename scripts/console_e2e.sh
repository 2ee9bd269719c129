#!/usr/bin/env bash
# End to end for the console: `secumon up` with a rule that fires at once, the console in
# tmux, keys sent to move between views and acknowledge the alert, the pane captured and
# checked (host name, a metric value, the acknowledged state), and the API asked too.
# Usage: scripts/console_e2e.sh [path/to/secumon]   (default target/debug/secumon)
set -euo pipefail
cd "$(dirname "$0")/.."
secumon="${1:-target/debug/secumon}"
if ! command -v tmux >/dev/null; then
  [ "${SECUMON_TEST_STRICT:-0}" != 0 ] && { echo "console_e2e: FAILED, tmux is not installed (apt-get install tmux)" >&2; exit 1; }
  echo "console_e2e: SKIPPED, tmux is not installed (apt-get install tmux)"; exit 0
fi
work=$(mktemp -d)
session="secumon-e2e-$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); grpc=$(free_port)
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  [ -n "${up:-}" ] && kill "$up" 2>/dev/null && wait "$up" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/rules.yaml" <<'RULES'
rules:
  - {name: AlwaysOn, expr: load1 >= 0, severity: warning}
RULES
"$secumon" up --data-dir "$work" --api "127.0.0.1:$api" --grpc "127.0.0.1:$grpc" --interval 1s \
  --rules "$work/rules.yaml" > "$work/up.log" 2>&1 &
up=$!
# `up` writes the local CLI's API key on first start.
for _ in $(seq 1 100); do
  [ -s "$work/cli.token" ] && break
  sleep 0.1
done
export SECUMON_TOKEN=$(cat "$work/cli.token")
auth=(-H "Authorization: Bearer $SECUMON_TOKEN")
for _ in $(seq 1 100); do
  curl -sf "${auth[@]}" "http://127.0.0.1:$api/api/v1/alerts" | grep -q AlwaysOn && break
  sleep 0.1
done
host=$(hostname)

tmux new-session -d -s "$session" -x 120 -y 32 -e "SECUMON_TOKEN=$SECUMON_TOKEN" "$secumon console --server http://127.0.0.1:$api --user e2e-operator"
screen() { tmux capture-pane -p -t "$session"; }
expect() { # expect TEXT WHAT: wait up to 10 s for TEXT on screen
  for _ in $(seq 1 100); do
    screen | grep -qF -- "$1" && return 0
    sleep 0.1
  done
  echo "console_e2e: FAILED, no \"$1\" on screen ($2):" >&2
  screen >&2
  exit 1
}

expect "$host" "overview lists this host"
expect "%" "a gauge value"
expect "online" "the host is online"
expect "(live)" "updates arrive over the live stream"
tmux send-keys -t "$session" Enter
expect "CPU %" "host detail charts"
# Escape and a key sent together read as Alt+key: leave the terminal a moment between.
tmux send-keys -t "$session" Escape
expect "Hosts (" "back on the overview"
tmux send-keys -t "$session" 4
expect "AlwaysOn" "the alert in the alerts centre"
expect "firing" "its state"
tmux send-keys -t "$session" a
tmux send-keys -t "$session" -l "looking into it"
tmux send-keys -t "$session" Enter
# The server records who acknowledged as the caller: here the CLI's API key (key:<id>).
expect "ack by key:" "the acknowledged state"
curl -sf "${auth[@]}" "http://127.0.0.1:$api/api/v1/alerts" | grep -q '"by":"key:' \
  || { echo "console_e2e: FAILED, the server does not show the acknowledgement" >&2; exit 1; }
tmux send-keys -t "$session" h
expect "History of AlwaysOn" "the rule's history"
expect "inactive → " "a transition in it"
tmux send-keys -t "$session" x s
expect "silence for: 1h" "the silence prompt"
tmux send-keys -t "$session" Enter
expect "silenced for 1h" "the silence went through"
curl -sf "${auth[@]}" "http://127.0.0.1:$api/api/v1/silences" | grep -q '"created_by":"key:' \
  || { echo "console_e2e: FAILED, the server has no silence from the console" >&2; exit 1; }
tmux send-keys -t "$session" '?'
expect "Help" "the help overlay"
tmux send-keys -t "$session" x q
echo "console_e2e: ok (overview, live stream, host detail, alerts centre, acknowledge, rule history, silence, help)"
