# tests/lib.sh: helpers for integration tests (sourced by tests/integration/*.sh).
# A test prints "ok - what" or "not ok - what" per check and "# detail"
# lines for diagnosis. It runs its own casemail install (router and stages)
# with a private state folder and database on the shared test stack.
set -u
: "${CM_TOP:?run through tests/run.sh}" "${CM_WORK:?}" "${CM_TEST:?}"
. "$CM_WORK/stack/env"
CM=$CM_BIN/casemail
export CASEMAIL_HEARTBEAT_MS=${CASEMAIL_HEARTBEAT_MS:-300}
export CASEMAIL_RETRY_MAX_MS=${CASEMAIL_RETRY_MAX_MS:-3000}
export CASEMAIL_BIN=$CM_BIN

ok() { printf 'ok - %s\n' "$*"; }
not_ok() { printf 'not ok - %s\n' "$1"; shift; [ $# -gt 0 ] && printf '# %s\n' "$@"; return 0; }

# check DESC CMD...: ok when CMD exits 0.
check() {
    local desc=$1; shift
    if OUT=$("$@" 2>&1); then ok "$desc"; else not_ok "$desc" "command: $*" "$(printf '%s' "$OUT" | tail -5)"; fi
}
# check_eq DESC EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1" "expected: $2" "actual:   $3"; fi
}
# check_contains DESC NEEDLE HAYSTACK
check_contains() {
    case "$3" in *"$2"*) ok "$1" ;; *) not_ok "$1" "expected to contain: $2" "actual: $(printf '%s' "$3" | head -c 600)" ;; esac
}
# check_lacks DESC NEEDLE HAYSTACK
check_lacks() {
    case "$3" in *"$2"*) not_ok "$1" "must not contain: $2" ;; *) ok "$1" ;; esac
}
# run_cm ARGS...: runs the CLI, output in OUT, exit code in RC.
run_cm() { OUT=$("$CM" "$@" 2>&1); RC=$?; }
# check_exit DESC CODE ARGS...: runs the CLI and checks its exit code.
check_exit() {
    local desc=$1 code=$2; shift 2
    run_cm "$@"
    if [ "$RC" = "$code" ]; then ok "$desc"; else not_ok "$desc" "casemail $*" "exit $RC, expected $code" "$(printf '%s' "$OUT" | tail -3)"; fi
}
# wait_until SECONDS CMD...: polls CMD every 0.2 s; 0 once it succeeds.
wait_until() {
    local limit=$1; shift
    local end=$(( $(date +%s%N) / 1000000 + limit * 1000 ))
    while [ $(( $(date +%s%N) / 1000000 )) -lt $end ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
# sql_at_least N QUERY: QUERY's number is >= N now (for wait_until, which
# must get a command, not a value computed once before it starts).
sql_at_least() { local v; v=$(sql "$2" 2>/dev/null) && [ "${v:-0}" -ge "$1" ]; }
# sql QUERY: one value or rows (unaligned) from the test's database.
sql() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$CASEMAIL_DB" -c "$1"; }

# cm_start: a fresh casemail install for this test: its own state folder
# and database, router started with `casemail up`.
cm_start() {
    local db="t_${CM_TEST//[^a-zA-Z0-9]/_}_$$"
    export CASEMAIL_HOME=$CM_WORK/home-$CM_TEST
    rm -rf "$CASEMAIL_HOME"
    psql -X -q "$CM_DB" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    export CASEMAIL_DB="host=$CM_PG_HOST port=$CM_PG_PORT dbname=$db user=casemail"
    "$CM" up > "$CM_WORK/$CM_TEST.up.log" 2>&1 || { not_ok "casemail up" "$(tail -5 "$CM_WORK/$CM_TEST.up.log")"; return 1; }
}
cm_stop() { mitm_stop; "$CM" down >/dev/null 2>&1 || true; }
trap cm_stop EXIT

# free_port: a loopback port nothing listens on (bound then released).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# mitm LISTEN UPSTREAM MODE LOG: tests/tools/mitm.py in the background
# (its modes are in its header), listening when this returns, its log
# emptied first (the sanitizer pass runs in the same work folder); cm_stop
# stops every one started.
CM_MITM_PIDS=()
mitm() {
    : > "$4"
    python3 "$CM_TOP/tests/tools/mitm.py" --listen "$1" --upstream "$2" --mode "$3" --log "$4" &
    CM_MITM_PIDS+=($!)
    local port=${1##*:} host=${1%:*}
    wait_until 10 python3 -c "import socket; socket.create_connection(('$host', $port), 1)"
}
mitm_stop() { local p; for p in "${CM_MITM_PIDS[@]}"; do kill "$p" 2>/dev/null; done; CM_MITM_PIDS=(); }

# route_add NAME USER [OPTIONS...]: a route on USER@example.test over
# IMAPS and SMTP submission (STARTTLS, AUTH) of the test stack.
route_add() {
    local name=$1 user=$2; shift 2
    CM_PW="$user-pw-Secret1" "$CM" route add "$name" --email "$user@$CM_MAIL_DOMAIN" \
        --username "$user@$CM_MAIL_DOMAIN" --password-env CM_PW \
        --inbound-host localhost --inbound-protocol imaps --inbound-port "$CM_IMAPS_PORT" \
        --outbound-host localhost --outbound-protocol smtp+starttls --outbound-port "$CM_SUBMISSION_PORT" \
        --ca-file "$CM_CA_FILE" "$@"
}
# route_status NAME: the route's status word.
route_status() { "$CM" route show "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
# status_is NAME STATUS (for wait_until)
status_is() { [ "$(route_status "$1")" = "$2" ]; }
# route_id NAME; lease_held NAME: a fetcher's session holds the route's
# advisory lock (its lease); lease_free NAME: none does.
route_id() { sql "SELECT id FROM routes WHERE name = '$1'"; }
lease_held() {
    [ "$(sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
              AND classid = 25453 AND objid = $(route_id "$1") AND objsubid = 2
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")" = 1 ]
}
lease_free() { ! lease_held "$1"; }
# status_log_start: from now on a trigger notes every status a route takes,
# so a status of a moment is seen, not sampled; status_log NAME: the
# statuses NAME took since, in order; status_log_stop removes the trigger.
status_log_start() {
    sql "CREATE TABLE test_route_status (n serial, name text, status text);
CREATE FUNCTION test_note_status() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO test_route_status (name, status) VALUES (NEW.name, NEW.status); RETURN NEW; END \$\$;
CREATE TRIGGER test_note_status AFTER UPDATE OF status ON routes FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION test_note_status();" >/dev/null
}
status_log() { sql "SELECT coalesce(string_agg(status, ' ' ORDER BY n), '') FROM test_route_status WHERE name = '$1'"; }
status_log_stop() {
    sql "DROP TRIGGER test_note_status ON routes; DROP FUNCTION test_note_status(); DROP TABLE test_route_status" >/dev/null
}
# route_stop NAME: stops the route and waits until it shows STOPPED.
route_stop() {
    "$CM" route stop "$1" >/dev/null
    wait_until 20 status_is "$1" STOPPED || not_ok "route $1 STOPPED" "status: $(route_status "$1")"
}
# deliver TO SUBJECT [swaks options...]: a message through Postfix.
deliver() {
    local to=$1 subject=$2; shift 2
    swaks --silent 2 -s 127.0.0.1 -p "$CM_SMTP_PORT" -t "$to" -f "${CM_FROM:-reporter@outside.test}" \
        --header "Subject: $subject" "$@" >/dev/null
}
# json EXPR: evaluates a Python expression on JSON from stdin (as j).
json() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
# stage_pids [KIND]: pids of the live stages (of one kind), sorted.
stage_pids() {
    "$CM" stage list --json 2>/dev/null | python3 -c '
import json, sys
kind = sys.argv[1] if len(sys.argv) > 1 else ""
print(" ".join(sorted(str(s["pid"]) for s in json.load(sys.stdin)["stages"]
                      if (not kind or s["kind"] == kind) and s["state"] == "alive")))' "$@" 2>/dev/null
}
