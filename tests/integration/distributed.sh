#!/usr/bin/env bash
# The stack of compose.yaml, one process per container, run as plain
# processes because no Docker engine runs here: each service's command,
# environment and replicas are read from compose.yaml, with the service
# names on 127.0.0.1, free ports for the router's sockets, the test's
# database over TCP for CASEMAIL_DB, and a folder per container for its paths (one
# folder shared where compose shares a volume: the sealing key). So the
# router runs with CASEMAIL_LOCAL=0 and starts no stage; 2 fetchers, 4
# parsers and 1 sender find it over tcp://. Checked: every stage is seen;
# every database session has casemail's keepalives; mail becomes
# incidents once each, with the parsers sharing the work;
# the fetcher serving the route is killed and the other one takes the
# route over; the router is killed and started again and the stages come
# back to it; a parser frozen longer than its watchdog goes on when it
# thaws; incident email goes out through the sender; a router whose
# loop waits on a database lock past its watchdog exits with 70 and,
# started again, finds every stage. User u15.
. "$(dirname "$0")/../lib.sh"
D=$CM_WORK/$CM_TEST.d
mkdir -p "$D"
PY=/usr/bin/python3           # with Debian's python3-yaml (make deps)
CORPUS=$CM_TOP/../shared/corpus/hunnysoft
[ -d "$CORPUS" ] || CORPUS=${CM_CORPUS:-}

# The test's own database, as cm_start makes it, but no `casemail up`:
# the router is one of the "containers" below.
db="t_${CM_TEST//[^a-zA-Z0-9]/_}_$$"
psql -X -q "$CM_DB" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
export CASEMAIL_DB="host=$CM_PG_HOST port=$CM_PG_PORT dbname=$db user=casemail"   # for sql()
DB="host=127.0.0.1 port=$CM_PG_PORT dbname=$db user=casemail"   # the stages': over TCP, as in compose
read -r P1 P2 < <($PY -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

# env SERVICE N: the environment of replica N of SERVICE, one VAR=value a line.
env_of() {
    $PY - "$CM_TOP/compose.yaml" "$1" "$2" "$D" "$DB" "$P1" "$P2" <<'PY'
import sys, yaml
path, svc, n, d, db, p1, p2 = sys.argv[1:]
spec = yaml.safe_load(open(path))["services"][svc]
env = dict(spec.get("environment") or {})
mounts = {}
for v in spec.get("volumes") or []:
    name, target = v.split(":")[:2]
    mounts[target] = "%s/vol-%s" % (d, name.strip("./"))   # a volume: shared
for k, v in sorted(env.items()):
    v = str(v)
    if k == "CASEMAIL_DB":
        v = db                                        # the test's database
    v = v.replace("//router:", "//127.0.0.1:").replace("//0.0.0.0:", "//127.0.0.1:")
    v = v.replace(":7010", ":" + p1).replace(":7011", ":" + p2)
    if v.startswith("/"):
        for target, local in mounts.items():
            if v == target or v.startswith(target + "/"):
                v = local + v[len(target):]
                break
        else:
            v = "%s/%s-%s%s" % (d, svc, n, v)         # the container's own disk
    print("%s=%s" % (k, v))
PY
}
# replicas SERVICE, command SERVICE: from compose.yaml.
replicas() { $PY -c 'import sys, yaml; s = yaml.safe_load(open(sys.argv[1]))["services"][sys.argv[2]]; print((s.get("deploy") or {}).get("replicas", 1))' "$CM_TOP/compose.yaml" "$1"; }
command_of() { $PY -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["services"][sys.argv[2]]["command"][0])' "$CM_TOP/compose.yaml" "$1"; }

PIDS=()
# start SERVICE N: replica N of SERVICE in the background; its pid in PID.
start() {
    local envs=() line
    while IFS= read -r line; do envs+=("$line"); done < <(env_of "$1" "$2")
    for line in "${envs[@]}"; do
        case "$line" in CASEMAIL_HOME=*|CASEMAIL_KEY_FILE=*) mkdir -p "$(dirname "${line#*=}")" ;; esac
    done
    # the freeze and stuck-router checks below, in seconds not minutes
    # (the router's only from the restart before its own check)
    if [ "$1" != router ] || [ -n "${ROUTER_WATCHDOG:-}" ]; then envs+=(CASEMAIL_WATCHDOG_MS=3000); fi
    env -i PATH="$PATH" HOME="$D" "${envs[@]}" "$CM_BIN/$(command_of "$1")" \
        >>"$D/$1-$2.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
}
stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
# killed PID: a process of ours killed here, no longer ours to stop
killed() { local p keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); wait "$1" 2>/dev/null; }
trap stop_all EXIT

# Compose's own reading of the file (Debian's docker-compose checks it
# against the Compose schema; no engine needed for that)
out=$(cd "$CM_TOP" && docker-compose -f compose.yaml config -q 2>&1); rc=$?
check_eq "compose.yaml is a valid Compose file (docker-compose config)" "0 " "$rc $out"
for svc in router fetcher parser sender; do
    check_eq "compose.yaml: $svc runs $(command_of $svc 2>/dev/null)" "casemail-$svc" "$(command_of $svc 2>/dev/null)"
done
check_eq "compose.yaml: the router starts no stages (CASEMAIL_LOCAL=0)" "CASEMAIL_LOCAL=0" \
    "$(env_of router 1 | grep '^CASEMAIL_LOCAL=')"
NF=$(replicas fetcher); NP=$(replicas parser); NS=$(replicas sender)

start router 1; ROUTER=$PID
# the CLI runs where the router does (its API is on 127.0.0.1 only)
export CASEMAIL_HOME
CASEMAIL_HOME=$(env_of router 1 | sed -n 's/^CASEMAIL_HOME=//p')
wait_until 20 test -s "$CASEMAIL_HOME/run/api.url" \
    || { not_ok "the router is up" "$(tail -5 "$D/router-1.log")"; exit 1; }
for svc in fetcher parser sender; do
    for n in $(seq "$(replicas $svc)"); do
        start $svc "$n"
        [ "$svc-$n" = parser-1 ] && FREEZE=$PID
    done
done
alive() { "$CM" stage list --json | json "' '.join('%s=%d' % (k, sum(1 for s in j['stages'] if s['kind'] == k and s['state'] == 'alive')) for k in ('fetcher', 'parser', 'sender'))"; }
wait_until 20 eval '[ "$(alive)" = "fetcher=$NF parser=$NP sender=$NS" ]'
check_eq "the router sees every stage of compose.yaml over tcp://" "fetcher=$NF parser=$NP sender=$NS" "$(alive)"
check_eq "and started none itself: each stage is its own process, none its child" "0" \
    "$(ps -o pid= --ppid "$ROUTER" | wc -l)"
# A stage frozen whole (docker pause, SIGSTOP) for longer than its watchdog
# (3 s here) is not taken for one whose main loop is stuck when it thaws:
# it goes on, and the router sees it again.
kill -STOP "$FREEZE"; sleep 5; kill -CONT "$FREEZE"; sleep 2
if kill -0 "$FREEZE" 2>/dev/null && ! grep -q "main loop stuck" "$D/parser-1.log"; then
    ok "a parser frozen 5 s (watchdog 3 s) goes on when it thaws"
else not_ok "a parser frozen 5 s (watchdog 3 s) goes on when it thaws" "$(tail -3 "$D/parser-1.log")"; fi
wait_until 20 eval '[ "$(alive)" = "fetcher=$NF parser=$NP sender=$NS" ]'
check_eq "the router sees it alive again" "fetcher=$NF parser=$NP sender=$NS" "$(alive)"
# every process's database sessions go over TCP with casemail's keepalives
# (so a database host that vanished ends them): ss shows a keepalive timer
# of seconds, not the system's two hours (and for a moment after a send,
# a retransmit timer instead: looked again)
keepalives() {   # sets nses and nokeep; true when every session has one
    local p mine sessions
    sessions=$(ss -tnoep state established "( dport = :$CM_PG_PORT )" 2>/dev/null)
    nokeep=0; nses=0
    for p in "${PIDS[@]}"; do
        mine=$(grep "pid=$p," <<<"$sessions")
        [ -n "$mine" ] || { nokeep=$((nokeep + 1)); continue; }
        nses=$((nses + $(wc -l <<<"$mine")))
        nokeep=$((nokeep + $(grep -Evc "timer:\(keepalive,[0-9.]+(ms|sec)," <<<"$mine")))
    done
    [ "$nokeep" = 0 ]
}
if wait_until 10 keepalives; then ok "every process's $nses database sessions go over TCP with 30 s keepalives"
else not_ok "every process's database sessions go over TCP with 30 s keepalives" \
    "processes ${#PIDS[@]}, sessions $nses, without a keepalive timer (or none) $nokeep"; fi

# Mail becomes incidents, once each, the parsers sharing the work.
N=400
$PY "$CM_TOP/tests/tools/mkmail.py" bulk "$N" "$D/mail" --corpus "$CORPUS" --prefix dist >/dev/null
route_add dist u15 --kind ingest >/dev/null
"$CM" route start dist >/dev/null
wait_until 20 status_is dist RUNNING
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u15 INBOX -d "$D/mail" >/dev/null
settled() { sql "SELECT count(*) FROM messages WHERE state <> 'fetched'"; }
wait_until 90 eval '[ "$(settled)" -ge "$N" ]'
check_eq "$N messages, each an incident once" "$N $N $N" \
    "$(sql "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' || (SELECT count(*) FROM incidents) FROM messages")"
# the counters ride on heartbeats: until they add up to the N messages
parsed_sum() { "$CM" stage list --json | json "sum(s['counters'].get('parsed', 0) for s in j['stages'] if s['kind'] == 'parser')"; }
wait_until 10 eval '[ "$(parsed_sum)" -ge "$N" ]'
busy=$("$CM" stage list --json | json "sum(1 for s in j['stages'] if s['kind'] == 'parser' and s['counters'].get('parsed', 0) > 0)")
[ "${busy:-0}" -ge 2 ] && ok "the parsers shared the work ($busy of $NP parsed some)" \
    || not_ok "the parsers shared the work" "parsers that parsed: $busy (of $(parsed_sum) counted)"

# The fetcher serving the route dies (docker would restart it; here it
# stays dead): the other fetcher takes the route's lease and goes on.
# the fetcher that logged taking the lease (its pid is in the line)
lease_line() { grep -h "took the lease of route dist" "$D"/fetcher-*.log | tail -1; }
victim=$(lease_line | sed -n 's/.*casemail-fetcher\[\([0-9]*\)\].*/\1/p')
[ -n "$victim" ] && ok "found the fetcher holding the route's lease (pid $victim)" \
    || not_ok "found the fetcher holding the route's lease" "$(lease_line)"
[ -n "$victim" ] && kill -KILL "$victim" && killed "$victim"
wait_until 30 eval '[ "$(grep -h "took the lease of route dist" "$D"/fetcher-*.log | wc -l)" -ge 2 ]'
check_contains "another fetcher took the lease" "took the lease" "$(grep -h "took the lease of route dist" "$D"/fetcher-*.log | grep -v "\[$victim\]")"
$PY "$CM_TOP/tests/tools/mkmail.py" bulk 50 "$D/more" --corpus "$CORPUS" --prefix dist2 >/dev/null
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u15 INBOX -d "$D/more" >/dev/null
wait_until 60 eval '[ "$(settled)" -ge $((N + 50)) ]'
sleep 1
check_eq "the other fetcher took the route over: 50 more, each once" "$((N + 50)) $((N + 50))" \
    "$(sql "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM messages")"
check_eq "the route is RUNNING" RUNNING "$(route_status dist)"

# The router dies and is started again: the stages come back to it.
kill -KILL "$ROUTER" && killed "$ROUTER"
rm -f "$CASEMAIL_HOME/run/api.url"
ROUTER_WATCHDOG=1
start router 1; ROUTER=$PID
wait_until 20 test -s "$CASEMAIL_HOME/run/api.url"
wait_until 40 eval '[ "$(alive)" = "fetcher=$((NF - 1)) parser=$NP sender=$NS" ]'
check_eq "after a router restart the stages are back" "fetcher=$((NF - 1)) parser=$NP sender=$NS" "$(alive)"

# Incident email through the sender.
run_cm incident email INC-1 --to sink@example.test --subject "from the compose stack" \
    --body "sent by a sender of its own" --wait --wait-timeout 60
check_eq "incident email goes out through the sender" 0 "$RC"
check_contains "... and is sent" "sent" "$OUT"

# The router's main loop stuck: its lease check waits on the database (here
# on a SHARE lock on routes held for 6 s, as a plain CREATE INDEX takes).
# Without stages of its own to supervise, it exits with 70 after its
# watchdog (3 s here), so that Compose's restart policy starts it again;
# the stages' own loops do not wait on that lock and stay.
sql "BEGIN; LOCK TABLE routes IN SHARE MODE; SELECT pg_sleep(6); COMMIT" >/dev/null 2>&1 &
LOCKER=$!
gone() { ! kill -0 "$ROUTER" 2>/dev/null || [ "$(ps -o stat= -p "$ROUTER" | cut -c1)" = Z ]; }
rc="still running after 15 s"
wait_until 15 gone && { wait "$ROUTER"; rc=$?; }
[ "$rc" = "still running after 15 s" ] && kill -KILL "$ROUTER"
killed "$ROUTER"
check_eq "a router whose loop waits on the database for longer than its watchdog exits with 70" 70 "$rc"
check_contains "... and says why" "main loop stuck for" "$(tail -3 "$D/router-1.log")"
wait "$LOCKER"
rm -f "$CASEMAIL_HOME/run/api.url"
start router 1; ROUTER=$PID
wait_until 20 test -s "$CASEMAIL_HOME/run/api.url"
wait_until 40 eval '[ "$(alive)" = "fetcher=$((NF - 1)) parser=$NP sender=$NS" ]'
check_eq "started again, it sees every stage, none of which left" "fetcher=$((NF - 1)) parser=$NP sender=$NS" "$(alive)"
check_eq "and no stage's watchdog fired" 0 "$(cat "$D"/fetcher-*.log "$D"/parser-*.log "$D"/sender-*.log | grep -c "main loop stuck")"
