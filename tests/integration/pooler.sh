#!/usr/bin/env bash
# casemail behind PgBouncer. Its leases are session-level advisory locks
# and its statements are prepared per session: a pooler in transaction or
# statement mode runs a session's statements on whichever server
# connection is free, leaves a lease with a server other clients then use,
# and lets two fetchers both believe they hold a route (or none ever
# again). Such a pooler is refused at the start, with the cause and the
# fix; one that turns into it later (a reload) stops casemail with the
# same words. A pooler in session mode works: mail is ingested once, and
# a route stopped and started again is taken again. User u28.
. "$(dirname "$0")/../lib.sh"
export CASEMAIL_HOME=$CM_WORK/home-$CM_TEST
usql() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$DIRECT" -c "$1"; }
cause="a connection pooler in transaction or statement mode"
fix="pool_mode = session"

# ------------------------------------------------------------ the pooler
pgb=$CM_WORK/pgbouncer-$CM_TEST
rm -rf "$pgb"
mkdir -p "$pgb"
PGB_PORT=$(free_port)
# pgb_config MODE: PgBouncer's ini for MODE (a reload makes it count).
# casemail sends "options" (its session settings) at login: PgBouncer
# refuses a login with a parameter it does not know unless told to
# ignore it.
pgb_config() {
    cat >"$pgb/pgbouncer.ini.tmp" <<INI
[databases]
* = host=$CM_PG_HOST port=$CM_PG_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $pgb/userlist.txt
pool_mode = $1
default_pool_size = 20
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,options
logfile = $pgb/pgbouncer.log
pidfile = $pgb/pgbouncer.pid
$(cm_user_line)
INI
    mv -f "$pgb/pgbouncer.ini.tmp" "$pgb/pgbouncer.ini"
}
# PgBouncer does not run as root: it becomes the stack's postgres user.
cm_user_line() { [ "$(id -u)" = 0 ] && echo "user = postgres"; }
printf '"casemail" ""\n' > "$pgb/userlist.txt"
pgb_config transaction
[ "$(id -u)" = 0 ] && chown -R postgres "$pgb"
PGB_PID=
pgb_stop() {
    [ -n "$PGB_PID" ] || return 0
    kill "$PGB_PID" 2>/dev/null
    wait_until 10 eval '! kill -0 '"$PGB_PID"
    PGB_PID=
}
# pgb_mode MODE: PgBouncer reads its ini again (SIGHUP), now in MODE.
pgb_mode() {
    pgb_config "$1"
    kill -HUP "$PGB_PID"
    wait_until 10 grep -q "pool_mode.*$1\|RELOAD" "$pgb/pgbouncer.log"
    sleep 0.5
}
trap 'cm_stop; pgb_stop' EXIT
if [ ! -x /usr/sbin/pgbouncer ]; then
    not_ok "PgBouncer is installed" "no /usr/sbin/pgbouncer: 'make deps' installs the Debian package pgbouncer"
    exit 0
fi
if ! /usr/sbin/pgbouncer -d "$pgb/pgbouncer.ini" >"$pgb/start.log" 2>&1; then
    not_ok "PgBouncer starts" "$(tail -3 "$pgb/start.log" "$pgb/pgbouncer.log" 2>/dev/null)"
    exit 0
fi
wait_until 10 test -s "$pgb/pgbouncer.pid"
PGB_PID=$(cat "$pgb/pgbouncer.pid")
wait_until 10 python3 -c "import socket; socket.create_connection(('127.0.0.1', $PGB_PORT), 1)" \
    && ok "PgBouncer $(/usr/sbin/pgbouncer --version | head -1 | awk '{print $2}') listens on 127.0.0.1:$PGB_PORT (pid $PGB_PID)" \
    || not_ok "PgBouncer listens" "$(tail -3 "$pgb/pgbouncer.log")"

# newdb NAME: a fresh database; DIRECT reaches it, CASEMAIL_DB through PgBouncer.
newdb() {
    psql -X -q "$CM_DB" -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
    DIRECT="host=$CM_PG_HOST port=$CM_PG_PORT dbname=$1 user=casemail"
    export CASEMAIL_DB="host=127.0.0.1 port=$PGB_PORT dbname=$1 user=casemail"
    rm -rf "$CASEMAIL_HOME"
}

# -------------------------------------------- transaction mode: refused
newdb "t_pooler_tx_$$"
run_cm up
[ "$RC" != 0 ] && ok "casemail up through PgBouncer in transaction mode fails (exit $RC)" \
    || not_ok "casemail up through PgBouncer in transaction mode fails" "exit 0"
check_contains "the router exits with status 1" "exited while starting (status 1)" "$OUT"
check_contains "and names the cause" "$cause" "$OUT"
check_contains "and the fix" "$fix" "$OUT"
check_contains "the router's log says it too" "$cause" "$(cat "$CASEMAIL_HOME/log/router.log" 2>/dev/null)"
run_cm route show anything
[ "$RC" != 0 ] && ok "casemail route show fails too (exit $RC)" || not_ok "casemail route show fails" "exit 0"
check_contains "and shows the cause" "$cause" "$OUT"
check_eq "no table was made" 0 "$(usql "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")"
check_eq "no advisory lock is left on any server connection" 0 \
    "$(usql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")"
"$CM" down >/dev/null 2>&1

# ---------------------------------------------- statement mode: refused
pgb_mode statement
rm -rf "$CASEMAIL_HOME"
run_cm up
[ "$RC" != 0 ] && ok "casemail up through PgBouncer in statement mode fails (exit $RC)" \
    || not_ok "casemail up through PgBouncer in statement mode fails" "exit 0"
check_contains "and names the cause" "$cause" "$OUT"
check_contains "and the fix" "$fix" "$OUT"
"$CM" down >/dev/null 2>&1

# ---------------------------------------------- session mode: it works
# The database's default is SERIALIZABLE: casemail's READ COMMITTED
# connection option does not get through PgBouncer, so it must be set on
# the session. A trigger notes the isolation each stored message ran under.
pgb_mode session
newdb "t_pooler_session_$$"
psql -X -q "$CM_DB" -c "ALTER DATABASE t_pooler_session_$$ SET default_transaction_isolation = 'serializable'" >/dev/null
if "$CM" up > "$CM_WORK/$CM_TEST.up.log" 2>&1; then
    ok "casemail up through PgBouncer in session mode"
else
    not_ok "casemail up through PgBouncer in session mode" "$(tail -5 "$CM_WORK/$CM_TEST.up.log")"
fi
usql "CREATE TABLE test_isolation (level text);
CREATE FUNCTION test_note_isolation() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN INSERT INTO test_isolation VALUES (current_setting('transaction_isolation')); RETURN NEW; END \$\$;
CREATE TRIGGER test_note_isolation AFTER INSERT OR UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION test_note_isolation();" >/dev/null
src=$CM_WORK/pooler
rm -rf "$src"
mkdir -p "$src"
N=6
for i in $(seq 1 $N); do
    printf 'From: r@outside.test\r\nTo: u28@example.test\r\nSubject: pooled %d\r\nMessage-ID: <pooler.%d.%d@outside.test>\r\n\r\nbody %d\r\n' \
        "$i" "$$" "$i" "$i" > "$src/$i.eml"
done
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u28 INBOX -d "$src" >/dev/null
route_add pool u28 --kind ingest >/dev/null
"$CM" route start pool >/dev/null
settled() { [ "$(usql "SELECT count(*) FROM messages WHERE state <> 'fetched'")" -ge "$1" ]; }
if wait_until 30 settled $N; then ok "$N messages ingested through the pooler"
else not_ok "$N messages ingested through the pooler" "status $(route_status pool)" \
    "$(grep -h "error\|warn" "$CASEMAIL_HOME"/log/*.log | tail -3)"; fi
check_eq "each once, each an incident" "$N $N $N" \
    "$(usql "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' ||
             count(*) FILTER (WHERE incident_id IS NOT NULL) FROM messages")"
check_eq "the fetcher and the parsers ran READ COMMITTED, not the database's SERIALIZABLE" "read committed" \
    "$(usql "SELECT string_agg(DISTINCT level, ',') FROM test_isolation")"
check_eq "the route's lease is held (its fetcher's session)" 1 \
    "$(usql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND classid = 25453 AND objsubid = 2
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")"
route_stop pool
check_eq "the lease is given back when the route stops" 0 \
    "$(usql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 25453
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")"
"$CM" route start pool >/dev/null
wait_until 20 status_is pool RUNNING && ok "the route started again is RUNNING" \
    || not_ok "the route started again is RUNNING" "status $(route_status pool)"
deliver u28@example.test "pooled after restart" --header "Message-ID: <pooler.$$.after@outside.test>"
wait_until 30 settled $((N + 1)) && ok "mail after the restart is ingested" \
    || not_ok "mail after the restart is ingested" "status $(route_status pool)"
check_eq "still each once" "$((N + 1)) $((N + 1))" \
    "$(usql "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM messages")"
check_eq "no prepared-statement error in any log" 0 \
    "$(cat "$CASEMAIL_HOME"/log/*.log | grep -ci "prepared statement")"

# -------------------- the pooler turns to transaction mode: casemail stops
router=$(cat "$CASEMAIL_HOME/run/router.pid" 2>/dev/null)
pgb_mode transaction
if wait_until 20 eval '! kill -0 '"${router:-0}"' 2>/dev/null'; then
    ok "the router stops once its statements move between server connections"
else not_ok "the router stops once its statements move between server connections" \
    "router pid ${router:-?} still runs"; fi
check_contains "its log names the cause" "$cause" "$(cat "$CASEMAIL_HOME/log/router.log")"
check_contains "and the fix" "$fix" "$(cat "$CASEMAIL_HOME/log/router.log")"
wait_until 10 eval '[ -z "$(stage_pids)" ]'
run_cm route show pool
check_contains "casemail route show shows the cause" "$cause" "$OUT"
check_eq "each message still once" "$((N + 1)) $((N + 1))" \
    "$(usql "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM messages")"
