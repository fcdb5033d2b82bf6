#!/usr/bin/env bash
# A database set up otherwise than casemail's own: the operator's cluster,
# with its own defaults. casemail needs a UTF-8 database and sets what its
# sessions rely on itself. A database whose defaults are another client
# encoding (LATIN1) and SERIALIZABLE transactions still gets every message
# once, with subjects in any script stored as written; a database in
# LATIN1 is refused at the start with a reason that says so. User u26.
. "$(dirname "$0")/../lib.sh"
export CASEMAIL_HOME=$CM_WORK/home-$CM_TEST
usql() { PGCLIENTENCODING=UTF8 psql -X -q -t -A -v ON_ERROR_STOP=1 "$CASEMAIL_DB" -c "$1"; }

# ---------------------------------------------- a LATIN1 database: refused
bad="t_dbconfig_latin1_$$"
psql -X -q "$CM_DB" -c "DROP DATABASE IF EXISTS $bad" \
    -c "CREATE DATABASE $bad ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" >/dev/null
rm -rf "$CASEMAIL_HOME"
CASEMAIL_DB="host=$CM_PG_HOST port=$CM_PG_PORT dbname=$bad user=casemail" \
    run_cm up
[ "$RC" != 0 ] && ok "casemail up on a LATIN1 database fails (exit $RC)" \
    || not_ok "casemail up on a LATIN1 database fails" "exit 0"
check_contains "and says why" "encoding is LATIN1" "$OUT $(cat "$CASEMAIL_HOME"/log/router.log 2>/dev/null)"
"$CM" down >/dev/null 2>&1
check_eq "no table was made in it" 0 \
    "$(psql -X -q -t -A "host=$CM_PG_HOST port=$CM_PG_PORT dbname=$bad user=casemail" -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")"

# ------------------------- other defaults: LATIN1 clients, SERIALIZABLE
db="t_dbconfig_$$"
psql -X -q "$CM_DB" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" \
    -c "ALTER DATABASE $db SET client_encoding = 'LATIN1'" \
    -c "ALTER DATABASE $db SET default_transaction_isolation = 'serializable'" >/dev/null
export CASEMAIL_DB="host=$CM_PG_HOST port=$CM_PG_PORT dbname=$db user=casemail"
rm -rf "$CASEMAIL_HOME"
export CASEMAIL_PARSERS=2
"$CM" up > "$CM_WORK/$CM_TEST.up.log" 2>&1 || not_ok "casemail up on a database with other defaults" "$(tail -3 "$CM_WORK/$CM_TEST.up.log")"
src=$CM_WORK/dbconfig
mkdir -p "$src"
subjects=("Сбой входа в систему" "不正アクセスの報告" "Ελέγξτε τον λογαριασμό" "phishing 🎣 report" "Müller – Überweisung")
i=0
for s in "${subjects[@]}"; do
    i=$((i + 1))
    printf 'From: r@outside.test\r\nTo: u26@example.test\r\nSubject: =?UTF-8?B?%s?=\r\nMessage-ID: <dbconfig.%d@outside.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s\r\n' \
        "$(printf '%s' "$s" | base64 -w0)" "$i" "$s" > "$src/$i.eml"
done
N=300
python3 "$CM_TOP/tests/tools/mkmail.py" bulk "$N" "$src" --corpus "$CM_TOP/../shared/corpus/hunnysoft" --prefix dbconfig >/dev/null
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u26 INBOX -d "$src" >/dev/null
route_add dbc u26 --kind ingest >/dev/null
"$CM" route start dbc >/dev/null
total=$((N + ${#subjects[@]}))
if wait_until 90 eval '[ "$(usql "SELECT count(*) FROM messages WHERE state <> '"'fetched'"'")" -ge $total ]'; then
    ok "$total messages settled under LATIN1 clients and SERIALIZABLE defaults"
else not_ok "$total messages settled under LATIN1 clients and SERIALIZABLE defaults" \
    "settled $(usql "SELECT count(*) FROM messages WHERE state <> 'fetched'"), status $(route_status dbc)" \
    "$(grep -h "error\|warn" "$CASEMAIL_HOME"/log/*.log | tail -3)"; fi
sleep 1
check_eq "each once, each an incident or a rejection with a reason" "$total $total $total" \
    "$(usql "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' ||
             count(*) FILTER (WHERE incident_id IS NOT NULL OR (state = 'rejected' AND reason <> '')) FROM messages")"
i=0
for s in "${subjects[@]}"; do
    i=$((i + 1))
    check_eq "subject $i stored as written: $s" "$s|$s" \
        "$(usql "SELECT i.title || '|' || rtrim(i.description, E'\r\n') FROM incidents i JOIN messages m ON m.incident_id = i.id WHERE m.message_id = 'dbconfig.$i@outside.test'")"
done
check_contains "the CLI shows them as written too" "${subjects[1]}" "$("$CM" incident list)"
check_eq "no serialization failure or encoding error in any log" 0 \
    "$(cat "$CASEMAIL_HOME"/log/*.log | grep -ci "could not serialize\|has no equivalent\|invalid byte sequence")"
check_eq "the route is RUNNING" RUNNING "$(route_status dbc)"
