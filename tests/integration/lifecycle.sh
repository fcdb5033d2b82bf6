#!/usr/bin/env bash
# tests/integration/lifecycle.sh: start, status and stop of routes against
# the real Dovecot (issue 2, proofs 4 and 5). start gives RUNNING; Dovecot
# stopped gives FAILED with a reason and a failure count, started again
# RUNNING without operator action; a working session the server drops
# is logged in again, the route RUNNING throughout; PostgreSQL restarted
# meanwhile: the lease is taken again; a password changed on the server gives
# FAILED naming authentication; stop gives STOPPED and frees the lease;
# kill -9 of the router and of the fetcher keep routes and statuses.
# Users: dave (the running route), erin (a stopped one).
. tests/lib.sh
cm_start || exit 1

D=$CM_MAIL_DOMAIN
CTL=$CM_TOP/tests/stack/ctl.sh
PASSWD=$CM_TOP/tests/stack/passwd.sh
DAVE_PW="dave-pw-Secret1"
NEW_PW="dave-pw-Changed2"
export DAVE_PW NEW_PW

# Restore the stack if the test dies halfway (other tests share it).
restore() {
    "$CTL" "$CM_STACK_DIR" start dovecot >/dev/null 2>&1 || true
    "$PASSWD" "$CM_STACK_DIR" dave "$DAVE_PW" >/dev/null 2>&1 || true
    cm_stop
}
trap restore EXIT

field() { "$CM" route show "$1" --json | json "j[\"$2\"]"; }
show_brief() { "$CM" route show "$1" --json | json '"%s %s (fail_count %s)" % (j["status"], j["last_error"], j["fail_count"])'; }
fail_count_at_least() { [ "$(field "$1" fail_count)" -ge "$2" ]; }
exe() { local e; e=$(readlink /proc/"${1:-0}"/exe 2>/dev/null); e=${e% (deleted)}; basename "$e"; }   # program of a pid (rebuilt binaries read "(deleted)")
fetcher_pid() { "$CM" stage list --json | json '" ".join(str(s["pid"]) for s in j["stages"] if s["kind"] == "fetcher" and s["state"] == "alive")'; }
# await DESC SECONDS NAME STATUS
await() {
    if wait_until "$2" status_is "$3" "$4"; then ok "$1"; else not_ok "$1" "route $3: $(show_brief "$3")"; fi
}

route_add dave-feed dave >/dev/null 2>&1
route_add erin-feed erin >/dev/null 2>&1
check_eq "two routes saved" 2 "$(sql "SELECT count(*) FROM routes")"
check_eq "a new route is STOPPED" STOPPED "$(route_status dave-feed)"

# ---------------------------------------------------------------- start
run_cm route start dave-feed
check_eq "route start exits 0" 0 "$RC"
check_contains "route start reports the route" "route dave-feed:" "$OUT"
check_eq "desired is running in the database" running "$(sql "SELECT desired FROM routes WHERE name = 'dave-feed'")"
await "start gives RUNNING against Dovecot" 20 dave-feed RUNNING
if wait_until 5 lease_held dave-feed; then ok "a fetcher holds the route's lease"; else not_ok "a fetcher holds the route's lease"; fi
check_eq "fail_count is 0 when RUNNING" 0 "$(field dave-feed fail_count)"
check_eq "erin's route stays STOPPED" STOPPED "$(route_status erin-feed)"
check_eq "starting twice is harmless" 0 "$("$CM" route start dave-feed >/dev/null 2>&1; echo $?)"
check_eq "... and keeps it RUNNING" RUNNING "$(route_status dave-feed)"

# ---------------------------------------------------------------- stages
STAGES=$("$CM" stage list --json)
run_cm stage list
check_eq "stage list exits 0" 0 "$RC"
for kind in fetcher parser sender; do
    pid=$(printf '%s' "$STAGES" | json "' '.join(str(s['pid']) for s in j['stages'] if s['kind'] == '$kind' and s['state'] == 'alive')")
    pid=${pid%% *}
    if [ -n "$pid" ] && [ "$pid" -gt 0 ] 2>/dev/null; then
        ok "stage list shows a live $kind with a pid"
        check_eq "the $kind pid is a running casemail-$kind" "casemail-$kind" "$(exe "$pid")"
        check_contains "the table lists the $kind's pid" "$pid" "$OUT"
    else
        not_ok "stage list shows a live $kind with a pid" "$STAGES"
    fi
done
check_eq "every stage has a last heartbeat and uptime" yes "$(printf '%s' "$STAGES" | json '"yes" if j["stages"] and all(s.get("last_heartbeat") and s.get("uptime_s") is not None for s in j["stages"]) else "no"')"

# ---------------------------------------------------------------- a working session dropped
# A server ends a session that worked (its idle timeout, a restart, an
# admin's kick): the fetcher logs in again and the route stays RUNNING,
# with the cause as its last error; alerting on FAILED sees nothing.
# (mail first: the session has worked before it is dropped)
deliver "dave@$D" "before the kick $$"
wait_until 30 sql_at_least 1 "SELECT count(*) FROM incidents WHERE title = 'before the kick $$'" \
    || not_ok "mail before the kick becomes an incident" "$(show_brief dave-feed)"
status_log_start
logins() { cat "$CASEMAIL_HOME"/log/fetcher-*.log 2>/dev/null | grep -c " dave-feed info: logged in to"; }
before=$(logins)
doveadm -c "$CM_DOVECOT_CONF" kick "dave@$D" >/dev/null 2>&1
check_eq "Dovecot kicks dave's sessions" 0 "$?"
logged_in_again() { [ "$(logins)" -gt "$before" ]; }
if wait_until 20 logged_in_again; then
    ok "the fetcher logs in again after the kick"
else not_ok "the fetcher logs in again after the kick" "logins: $before -> $(logins)"; fi
deliver "dave@$D" "after the kick $$"
if wait_until 30 sql_at_least 1 "SELECT count(*) FROM incidents WHERE title = 'after the kick $$'"; then
    ok "mail after the kick becomes an incident"
else not_ok "mail after the kick becomes an incident" "$(show_brief dave-feed)"; fi
check_eq "the route never left RUNNING" "" "$(status_log dave-feed)"
check_eq "... and counts no failure" 0 "$(field dave-feed fail_count)"
ERR=$(field dave-feed last_error)
case "$ERR" in *closed*|*lost*|*BYE*) ok "the drop is its last error" ;;
    *) not_ok "the drop is its last error" "last_error: $ERR" ;; esac
check_lacks "... with when it happened" "None" "$(field dave-feed last_error_at)"
if grep -q " dave-feed warn: mailbox connection lost" "$CASEMAIL_HOME"/log/fetcher-*.log; then
    ok "the fetcher logs the lost connection"
else not_ok "the fetcher logs the lost connection" "$(grep -h dave-feed "$CASEMAIL_HOME"/log/fetcher-*.log | tail -3)"; fi
status_log_stop

# ---------------------------------------------------------------- Dovecot down and up
"$CTL" "$CM_STACK_DIR" stop dovecot >/dev/null 2>&1
check_eq "Dovecot stopped" stopped "$("$CTL" "$CM_STACK_DIR" status dovecot 2>/dev/null)"
# (an imap process in IDLE can outlive Dovecot's master by up to 30 s: the
# session ends then, and the login after it is refused)
await "Dovecot stopped gives FAILED" 60 dave-feed FAILED
ERR=$(field dave-feed last_error)
check_lacks "FAILED has a reason" "None" "$ERR"
case "$ERR" in *refused*|*closed*|*connect*) ok "the reason says the connection failed" ;;
    *) not_ok "the reason says the connection failed" "last_error: $ERR" ;; esac
check_lacks "FAILED has when it happened" "None" "$(field dave-feed last_error_at)"
if fail_count_at_least dave-feed 1; then ok "fail_count > 0"; else not_ok "fail_count > 0" "$(show_brief dave-feed)"; fi
if wait_until 20 fail_count_at_least dave-feed 2; then ok "the route retries by itself (fail_count grows)"
else not_ok "the route retries by itself (fail_count grows)" "$(show_brief dave-feed)"; fi
run_cm route list
check_contains "route list shows FAILED" "FAILED" "$(printf '%s\n' "$OUT" | grep dave-feed)"
ROW=$(printf '%s\n' "$OUT" | grep dave-feed)
case "$ROW" in *refused*|*closed*|*connect*) ok "route list shows the reason" ;;
    *) not_ok "route list shows the reason" "$ROW" ;; esac

# PostgreSQL restarted while the route retries its login: the worker's
# database session is gone, and the route's lease with it. The worker
# must give the route up, not go on in a new session that holds no lease
# (another fetcher could then take the route too); a new worker takes it.
refused() { cat "$CASEMAIL_HOME"/log/fetcher-*.log 2>/dev/null | grep -c " dave-feed warn: cannot reach the mailbox"; }
"$CTL" "$CM_STACK_DIR" stop pg >/dev/null 2>&1
"$CTL" "$CM_STACK_DIR" start pg >/dev/null 2>&1
before=$(refused)
tried_again() { [ "$(refused)" -gt "$before" ]; }
wait_until 40 tried_again || not_ok "the fetcher tries the mailbox again after PostgreSQL's restart" "$(refused) refusals"
"$CTL" "$CM_STACK_DIR" start dovecot >/dev/null 2>&1
await "Dovecot started again gives RUNNING on its own" 40 dave-feed RUNNING
if wait_until 20 lease_held dave-feed; then ok "after PostgreSQL's restart a fetcher's session holds the route's lease"
else not_ok "after PostgreSQL's restart a fetcher's session holds the route's lease" "$(show_brief dave-feed)"; fi
check_eq "fail_count is back to 0" 0 "$(field dave-feed fail_count)"

# ---------------------------------------------------------------- password changed on the server
"$PASSWD" "$CM_STACK_DIR" dave "$NEW_PW" >/dev/null 2>&1
check_eq "password changed on the server" 0 "$?"
# A changed setting makes the fetcher log in again.
"$CM" route set dave-feed --poll-interval 5 >/dev/null 2>&1
await "a password changed on the server gives FAILED" 30 dave-feed FAILED
check_contains "FAILED names authentication" "authentication" "$(field dave-feed last_error)"

# The operator gives the route the new password: RUNNING again.
"$CM" route set dave-feed --password-env NEW_PW >/dev/null 2>&1
await "the route's new password gives RUNNING" 30 dave-feed RUNNING

# Back to the old password on the server (and a forced re-login): FAILED,
# then the old password on the server again heals it without the operator.
"$PASSWD" "$CM_STACK_DIR" dave "$DAVE_PW" >/dev/null 2>&1
"$CTL" "$CM_STACK_DIR" stop dovecot >/dev/null 2>&1
"$CTL" "$CM_STACK_DIR" start dovecot >/dev/null 2>&1
# (Dovecot's imap process in IDLE outlives its master's stop by up to 30 s:
# the session ends then, and the login after it fails.)
await "after the server's password went back: FAILED again" 60 dave-feed FAILED
if wait_until 20 sh -c "'$CM' route show dave-feed --json | grep -q authentication"; then
    ok "... naming authentication"; else not_ok "... naming authentication" "$(show_brief dave-feed)"; fi
"$PASSWD" "$CM_STACK_DIR" dave "$NEW_PW" >/dev/null 2>&1
await "the server accepting the route's password again gives RUNNING on its own" 40 dave-feed RUNNING
# Leave dave with the stack's usual password.
"$PASSWD" "$CM_STACK_DIR" dave "$DAVE_PW" >/dev/null 2>&1
"$CM" route set dave-feed --password-env DAVE_PW >/dev/null 2>&1
await "RUNNING with the usual password" 30 dave-feed RUNNING

# ---------------------------------------------------------------- stop
run_cm route stop dave-feed
check_eq "route stop exits 0" 0 "$RC"
await "stop gives STOPPED within 5 s" 5 dave-feed STOPPED
if wait_until 5 lease_free dave-feed; then ok "stop releases the lease within 5 s"; else not_ok "stop releases the lease within 5 s"; fi
sleep 2
check_eq "a stopped route stays STOPPED" STOPPED "$(route_status dave-feed)"
check_eq "desired is stopped" stopped "$(field dave-feed desired)"

# ---------------------------------------------------------------- kill -9 of the router
"$CM" route start dave-feed >/dev/null 2>&1
await "RUNNING again before the router is killed" 20 dave-feed RUNNING
ROUTER_PID=$(cat "$CASEMAIL_HOME/run/router.pid")
check_eq "router.pid names the router" casemail-router "$(exe "$ROUTER_PID")"
OLD_FETCHER=$(fetcher_pid)
kill -9 "$ROUTER_PID"
if wait_until 10 sh -c "! kill -0 $ROUTER_PID 2>/dev/null"; then ok "router killed"; else not_ok "router killed"; fi
if wait_until 10 sh -c "! kill -0 ${OLD_FETCHER:-0} 2>/dev/null"; then ok "its fetcher does not outlive it"
else not_ok "its fetcher does not outlive it" "pid $OLD_FETCHER"; fi
run_cm route list
check_eq "with the router down the CLI exits 1" 1 "$RC"
check_contains "... saying it is not running" "not running" "$OUT"
run_cm up
check_eq "casemail up after kill -9 exits 0" 0 "$RC"
NEW_ROUTER=$(cat "$CASEMAIL_HOME/run/router.pid")
if [ "$NEW_ROUTER" != "$ROUTER_PID" ] && kill -0 "$NEW_ROUTER" 2>/dev/null; then ok "a new router runs"
else not_ok "a new router runs" "old $ROUTER_PID new $NEW_ROUTER"; fi
run_cm route list --json
check_eq "both routes are still there" "dave-feed erin-feed" "$(printf '%s' "$OUT" | json '" ".join(r["name"] for r in j["routes"])')"
await "the RUNNING route is RUNNING after the restart" 20 dave-feed RUNNING
check_eq "the STOPPED route is STOPPED after the restart" STOPPED "$(route_status erin-feed)"
check_eq "its settings are intact" "erin@$D imaps $CM_IMAPS_PORT" \
    "$("$CM" route show erin-feed --json | json '"%s %s %s" % (j["username"], j["inbound_protocol"], j["inbound_port"])')"
check_eq "the secrets still open with the key" "true" "$(field dave-feed password_set | tr A-Z a-z)"
run_cm route test-inbound erin-feed
check_eq "the stopped route's password still works after the restart" 0 "$RC"

# ---------------------------------------------------------------- kill -9 of the fetcher
OLD_FETCHER=$(fetcher_pid)
check_contains "a fetcher runs" "casemail-fetcher" "$(exe "$OLD_FETCHER")"
kill -9 "$OLD_FETCHER"
new_fetcher() { local p; p=$(fetcher_pid); [ -n "$p" ] && [ "$p" != "$OLD_FETCHER" ]; }
if wait_until 20 new_fetcher; then ok "the router restarts a killed fetcher (new pid)"
else not_ok "the router restarts a killed fetcher (new pid)" "$("$CM" stage list 2>&1)"; fi
NEW_FETCHER=$(fetcher_pid)
check_eq "the new fetcher is a casemail-fetcher" casemail-fetcher "$(exe "$NEW_FETCHER")"
await "the route is RUNNING again after the fetcher was killed" 20 dave-feed RUNNING
if wait_until 5 lease_held dave-feed; then ok "the new fetcher holds the lease"; else not_ok "the new fetcher holds the lease"; fi
check_eq "the STOPPED route is still STOPPED" STOPPED "$(route_status erin-feed)"
check_eq "statuses in the database" "dave-feed running RUNNING,erin-feed stopped STOPPED" \
    "$(sql "SELECT string_agg(name || ' ' || desired || ' ' || status, ',' ORDER BY name) FROM routes")"

run_cm route stop dave-feed
await "stop after the restarts gives STOPPED" 5 dave-feed STOPPED
