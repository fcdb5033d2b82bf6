#!/usr/bin/env bash
# Secrets stay sealed (DESIGN invariant 5), over the WHOLE test run: runs
# last and searches every casemail log of every earlier test, a dump of
# every test database and the answers of every API call of an install of
# its own for every password and secret the tests used (all test mailbox
# passwords end in "-pw-Secret1"; the OAuth client secrets are listed).
# None may appear in clear. Users u24.
. "$(dirname "$0")/../lib.sh"
SECRETS=("-pw-Secret1" "oauth-Client-S3cret-7f3a9c" "app-secret-")
# 1. this test's own install: secrets in, every API answer out
cm_start || exit 1
export OSEC="oauth-Client-S3cret-7f3a9c"
route_add s1 u24 --log-level verbose >/dev/null
CM_PW=u24-pw-Secret1 "$CM" route add s2 --exchange --exchange-host ews.example.test --auth oauth2 \
    --email ews@example.test --username ews@example.test --oauth-client-id cid \
    --oauth-client-secret-env OSEC --oauth-tenant-id contoso.test >/dev/null
"$CM" route start s1 >/dev/null
wait_until 20 status_is s1 RUNNING
"$CM" route test-inbound s1 >/dev/null; "$CM" route test-outbound s1 >/dev/null
deliver u24@example.test "secret test"
wait_until 20 sql_at_least 1 "SELECT count(*) FROM incidents"
URL=$(cat "$CASEMAIL_HOME/run/api.url"); TOKEN=$(cat "$CASEMAIL_HOME/api.token")
answers=""
for path in /v1/routes /v1/routes/s1 /v1/routes/s2 /v1/stages /v1/incidents /v1/incidents/INC-1 /v1/inbox /v1/outbox; do
    answers+=$(curl -s -H "Authorization: Bearer $TOKEN" "$URL$path")
done
answers+=$(curl -s -H "Authorization: Bearer $TOKEN" -X POST "$URL/v1/routes/s1/test-inbound")
check_contains "the API answered (sanity)" '"routes"' "$answers"
for s in "${SECRETS[@]}"; do
    check_lacks "no '$s' in any API answer" "$s" "$answers"
done
cm_stop

# 2. every casemail log of the whole run (router, stages, up/down output)
logs=$(find "$CM_WORK" -path '*/home-*/log/*.log' -o -name '*.up.log' | sort)
nlogs=$(printf '%s\n' "$logs" | grep -c .)
[ "$nlogs" -ge 5 ] && ok "found $nlogs casemail log files of this run" || not_ok "found casemail log files of this run" "only $nlogs"
for s in "${SECRETS[@]}"; do
    hits=$(printf '%s\n' "$logs" | xargs -r grep -l -- "$s" 2>/dev/null)
    if [ -z "$hits" ]; then ok "no '$s' in any casemail log of the run"; else not_ok "no '$s' in any casemail log of the run" $hits; fi
done
b64=$(printf '\0u24@example.test\0u24-pw-Secret1' | base64)
hits=$(printf '%s\n' "$logs" | xargs -r grep -l -- "$b64" 2>/dev/null)
[ -z "$hits" ] && ok "no SASL PLAIN credentials (base64) in any log" || not_ok "no SASL PLAIN credentials (base64) in any log" $hits
grep -q "REDACTED" $(printf '%s\n' "$logs") 2>/dev/null && ok "verbose traces were written and redacted (sanity)" || not_ok "verbose traces were written and redacted (sanity)"

# 3. a dump of every test database of the run
dbs=$(psql -X -t -A "$CM_DB" -c "SELECT datname FROM pg_database WHERE datname LIKE 't\_%'")
ndb=0
for db in $dbs; do
    ndb=$((ndb + 1))
    # in UTF-8, whatever the database's default client encoding (one test
    # makes it LATIN1, which cannot hold its subjects: the dump would fail)
    dump=$(/usr/lib/postgresql/15/bin/pg_dump -E UTF8 "host=$CM_PG_HOST port=$CM_PG_PORT dbname=$db user=casemail" 2>/dev/null)
    for s in "${SECRETS[@]}"; do
        case "$dump" in *"$s"*) not_ok "database $db holds '$s' in clear" ;; esac
    done
    case "$dump" in *_sealed*) ;; *) [ "$(psql -X -tA "host=$CM_PG_HOST port=$CM_PG_PORT dbname=$db user=casemail" -c "SELECT count(*) FROM routes" 2>/dev/null || echo 0)" = 0 ] || not_ok "database $db has routes but no sealed secret (sanity)";; esac
done
[ "$ndb" -ge 3 ] && ok "dumped $ndb test databases: no secret in clear" || not_ok "dumped test databases" "only $ndb"
