#!/usr/bin/env bash
# The console at fleet scale (issue #29): 1 000 hosts seeded by benches' api_seed (labels
# client/site/role), `secumon server` on them, the console in a 160×45 tmux pane. Checks:
# every host is counted, the last one is reached by scrolling (1 000 × Down) and by the `/`
# filter, grouping by client shows 50 groups whose counts match `GET /api/v1/overview`'s,
# a group folds and the jump key moves to the next one.
# Usage: scripts/console_fleet_e2e.sh [path/to/secumon] [path/to/api_seed]
set -euo pipefail
cd "$(dirname "$0")/.."
secumon="${1:-target/debug/secumon}"
seed="${2:-target/debug/api_seed}"
command -v tmux >/dev/null || { echo "console_fleet_e2e: FAILED, tmux is not installed (scripts/test installs it)" >&2; exit 1; }
[ -x "$seed" ] || { echo "console_fleet_e2e: FAILED, no $seed (cargo build --workspace --bin api_seed)" >&2; exit 1; }
work=$(mktemp -d)
session="secumon-fleet-$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port); grpc=$(free_port)
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
key=$("$seed" --dir "$work" --hosts 1000 --hours 1 2>"$work/seed.log")
# Exactly the seeded fleet: without the server's own host (secumon-server/tests/self_series.rs).
"$secumon" server --data-dir "$work" --api "127.0.0.1:$api" --grpc "127.0.0.1:$grpc" --self-series-interval 0s \
  > "$work/server.log" 2>&1 &
server=$!
auth=(-H "Authorization: Bearer $key")
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "${auth[@]}" "http://127.0.0.1:$api/api/v1/overview?limit=1" && break
  sleep 0.1
done
overview() { curl -sf "${auth[@]}" "http://127.0.0.1:$api/api/v1/overview?$1"; }
total=$(overview "limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
[ "$total" = 1000 ] || { echo "console_fleet_e2e: FAILED, the API counts $total hosts" >&2; exit 1; }

tmux new-session -d -s "$session" -x 160 -y 45 -e "SECUMON_TOKEN=$key" "$secumon console --server http://127.0.0.1:$api"
screen() { tmux capture-pane -p -t "$session"; }
fail() { echo "console_fleet_e2e: FAILED, $1:" >&2; screen >&2; exit 1; }
expect() { # expect TEXT WHAT: wait up to 10 s for TEXT on screen
  for _ in $(seq 1 100); do
    screen | grep -qF -- "$1" && return 0
    sleep 0.1
  done
  fail "no \"$1\" on screen ($2)"
}

expect "Hosts (1000, by alerts)" "every host counted"
screen | grep -qF "host-0999" && fail "host-0999 is on the first screen already: scrolling proves nothing"
# In bursts of 100: the terminal reads input 1 kB at a time and a larger burst loses keys
# (a person's key repeat is far slower).
for _ in $(seq 1 10); do
  tmux send-keys -t "$session" -N 100 Down
  sleep 0.3
done
expect "host-0999" "the last host, reached by scrolling"
tmux send-keys -t "$session" Home
expect "host-0000" "back at the top"
tmux send-keys -t "$session" /
tmux send-keys -t "$session" -l "host-0999"
tmux send-keys -t "$session" Enter
expect 'Hosts (1 of 1000 matching "host-0999"' "the filter runs over every host"
expect "host-0999" "the last host, found by the filter"
tmux send-keys -t "$session" /
tmux send-keys -t "$session" -N 9 BSpace
tmux send-keys -t "$session" Enter
expect "Hosts (1000, by alerts)" "the filter cleared"

tmux send-keys -t "$session" g
expect "Hosts (1000, by alerts, 50 groups by client" "grouped by client"
# The first group's header against the API's counts of it. A host turns offline 2 minutes
# after its seeded data ends, so the comparison is retried on a fresh fetch (`r`).
matched=""
for _ in 1 2 3 4 5; do
  line=$(overview "group_by=client&limit=1" | python3 -c '
import json, sys
body = json.load(sys.stdin)
assert len(body["groups"]) == 50, len(body["groups"])
g = body["groups"][0]
print("client {} · {} hosts|{} down".format(g["name"], g["hosts"], g["down"]))')
  header="${line%%|*}"; down="${line##*|}"
  for _ in $(seq 1 30); do
    if screen | grep -F -- "$header" | grep -qF -- "$down"; then matched=1; break; fi
    sleep 0.1
  done
  [ -n "$matched" ] && break
  tmux send-keys -t "$session" r
done
[ -n "$matched" ] || fail "the first group's header does not match the API's \"$header\" \"$down\""
tmux send-keys -t "$session" Space
expect "▸ client client-00" "the first group folded"
tmux send-keys -t "$session" '}'
tmux send-keys -t "$session" Enter
expect "▸ client client-01" "the jump key moved to the next group, and Enter folded it"
tmux send-keys -t "$session" End
expect "host-0999" "the last host, at the end of the last group"
tmux send-keys -t "$session" q
echo "console_fleet_e2e: ok (1 000 hosts: counted, last reached by scrolling and by /, 50 client groups matching the API, fold, jump)"
