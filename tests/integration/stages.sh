#!/usr/bin/env bash
# Stage supervision: a stage that stops heartbeating (SIGSTOP) is shown as
# `lost` in `stage list` within three heartbeat intervals, and in local
# mode the router kills and restarts it; `stage list` shows each stage's
# counters and the depth of pending work. User u17.
. "$(dirname "$0")/../lib.sh"
export CASEMAIL_HEARTBEAT_MS=300
cm_start || exit 1
route_add st u17 >/dev/null
"$CM" route start st >/dev/null
wait_until 20 status_is st RUNNING
deliver u17@example.test "counted"
wait_until 20 sql_at_least 1 "SELECT count(*) FROM incidents"
wait_until 5 eval '"$CM" stage list | grep -q "fetched=1"'   # counters ride on heartbeats
out=$("$CM" stage list)
check_contains "stage list shows the fetcher's counters" "fetched=1" "$out"
check_contains "stage list shows the parsers' counters" "parsed=" "$out"
check_contains "stage list shows the sender's counters" "sent=0" "$out"
# the parsers count a claim once it commits: together, the one message
parser_sum() { "$CM" stage list --json | json "sum(s['counters'].get('$1', 0) for s in j['stages'] if s['kind'] == 'parser')"; }
wait_until 5 eval '[ "$(parser_sum parsed)" = 1 ]'
check_eq "the parsers' counters add up to what was stored: parsed, incidents" "1 1" \
    "$(parser_sum parsed) $(parser_sum incidents)"
check_contains "stage list shows the depth of pending work" "pending work: 0 message(s) to parse, 0 email(s) to send" "$out"

# the supervisor gives a new stage a grace period before judging it
sleep 9
pid=$("$CM" stage list --json | json '[s["pid"] for s in j["stages"] if s["id"] == "parser-1"][0]')
router=$(cat "$CASEMAIL_HOME/run/router.pid")
[ "$(ps -o ppid= -p "$pid" | tr -d ' ')" = "$router" ] && ok "parser-1 (pid $pid) is a child of our router" || not_ok "parser-1 is a child of our router"
t0=$(date +%s%N)
kill -STOP "$pid"
lost() { "$CM" stage list --json | json '[s["state"] for s in j["stages"] if s["id"] == "parser-1"][0]' | grep -qx lost; }
if wait_until 5 lost; then
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    ok "a stopped stage shows as lost (after $ms ms; heartbeat 300 ms)"
    echo "# lost after $ms ms"
else
    not_ok "a stopped stage shows as lost"
fi
restarted() {
    local now
    now=$("$CM" stage list --json | json '[s for s in j["stages"] if s["id"] == "parser-1"][0]')
    [ ! -d "/proc/$pid" ] || grep -q '^State:.*Z' "/proc/$pid/status"
}
if wait_until 15 restarted; then ok "the router killed the lost stage"; else not_ok "the router killed the lost stage" "pid $pid still there"; kill -CONT "$pid" 2>/dev/null; fi
newpid() { p=$("$CM" stage list --json | json '[str(s["pid"]) for s in j["stages"] if s["id"] == "parser-1" and s["state"] == "alive"]' ); case "$p" in *"'$pid'"*|"[]") return 1;; esac; }
if wait_until 20 newpid; then ok "the router restarted it (parser-1 alive with a new pid)"; else not_ok "the router restarted it"; fi
grep -q "parser-1 (pid $pid) stopped heartbeating" "$CASEMAIL_HOME/log/router.log" && ok "the router logged why it killed it" || not_ok "the router logged why it killed it"
deliver u17@example.test "after restart"
if wait_until 30 sql_at_least 2 "SELECT count(*) FROM incidents"; then ok "mail is still turned into incidents"; else not_ok "mail is still turned into incidents" "messages: $(sql "SELECT state, count(*) FROM messages GROUP BY 1" | tr '\n' ' ')" "$("$CM" stage list)"; fi
