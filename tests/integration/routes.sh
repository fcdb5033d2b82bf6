#!/usr/bin/env bash
# tests/integration/routes.sh: route configuration (issue 2, proofs 1 and 3).
# A route with every field, and an Exchange/OAuth2 route, round-trip through
# `route show --json`; secrets never appear in the CLI's or the API's
# output, in a dump of the database or in a verbose route's logs; invalid
# input exits 2 naming the field and saves nothing; one route per mailbox
# account; set and rm; an Exchange route's test fails plainly when its
# servers can't be reached (tests/integration/ews.sh tests EWS itself).
# Users: alice, bob, carol.
. tests/lib.sh
cm_start || exit 1

D=$CM_MAIL_DOMAIN
PG_DUMP=/usr/lib/postgresql/15/bin/pg_dump
[ -x "$PG_DUMP" ] || PG_DUMP=$(command -v pg_dump)
ALICE_PW="alice-pw-Secret1"
BOB_PW="bob-pw-Secret1"
CAROL_PW="carol-pw-Secret1"
OAUTH_SECRET="oauth-Client-S3cret-7f3a9c"
export ALICE_PW BOB_PW CAROL_PW OAUTH_SECRET

b64() { printf "$1" | base64 -w0; }   # printf format: \0 allowed

# route_count NAME: rows with that name in the routes table.
route_count() { sql "SELECT count(*) FROM routes WHERE name = '$1'"; }
total_routes() { sql "SELECT count(*) FROM routes"; }

# field_lines NAME: "key=value" for every field of `route show --json`.
field_lines() {
    "$CM" route show "$1" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
for k, v in j.items():
    print("%s=%s" % (k, json.dumps(v)))'
}
# check_fields NAME key=json-value...: each field as given.
check_fields() {
    local name=$1; shift
    local lines kv key
    lines=$(field_lines "$name")
    for kv in "$@"; do
        key=${kv%%=*}
        check_eq "route $name round-trips $key" "$kv" "$(printf '%s\n' "$lines" | grep -m1 "^$key=")"
    done
}

# ---------------------------------------------------------------- full route
# Every IMAP/SMTP-side field set to a non-default value.
run_cm route add feed-a --kind ingest --email "alice@$D" --username "alice@$D" \
    --password-env ALICE_PW --folder INBOX \
    --inbound-host localhost --inbound-protocol imaps --inbound-port "$CM_IMAPS_PORT" \
    --outbound-host localhost --outbound-protocol smtp+starttls --outbound-port "$CM_SUBMISSION_PORT" \
    --ca-file "$CM_CA_FILE" --log-level verbose \
    --after-fetch keep --processed-folder Processed --since 2024-02-29 --poll-interval 17
check_eq "route add with every IMAP/SMTP field exits 0" 0 "$RC"
check_contains "route add says added (STOPPED)" "route feed-a added (STOPPED)" "$OUT"
ADD_A=$OUT
check_fields feed-a \
    'name="feed-a"' 'kind="ingest"' "email=\"alice@$D\"" "username=\"alice@$D\"" \
    'password_set=true' 'folder="INBOX"' 'inbound_host="localhost"' \
    'inbound_protocol="imaps"' "inbound_port=$CM_IMAPS_PORT" 'outbound_host="localhost"' \
    'outbound_protocol="smtp+starttls"' "outbound_port=$CM_SUBMISSION_PORT" \
    "ca_file=\"$CM_CA_FILE\"" 'log_level="verbose"' 'exchange=false' \
    'oauth_client_secret_set=false' 'after_fetch="keep"' 'processed_folder="Processed"' \
    'since="2024-02-29"' 'poll_interval=17' 'desired="stopped"' 'status="STOPPED"' \
    'fail_count=0' 'last_error=null'

# Exchange + OAuth2 route with every Exchange field (carol).
run_cm route add feed-ex --kind two-way --email "carol@$D" --username "carol@$D" \
    --password-env CAROL_PW --folder INBOX \
    --inbound-host localhost --inbound-protocol imap+starttls --inbound-port "$CM_IMAP_PORT" \
    --outbound-host localhost --outbound-protocol smtps --outbound-port "$CM_SMTPS_PORT" \
    --log-level low --exchange --exchange-host ews.example.test --no-exchange-ssl \
    --exchange-port 8081 --auth oauth2 --exchange-version 2010sp2 \
    --oauth-client-id "client-id-1234" --oauth-client-secret-env OAUTH_SECRET \
    --oauth-tenant-id "tenant-5678" --national-cloud usgovernment \
    --oauth-authority "https://login.microsoftonline.us/"
check_eq "route add of an Exchange/OAuth2 route exits 0" 0 "$RC"
ADD_EX=$OUT
check_fields feed-ex \
    'name="feed-ex"' 'kind="two-way"' "email=\"carol@$D\"" "username=\"carol@$D\"" \
    'password_set=true' 'inbound_protocol="imap+starttls"' "inbound_port=$CM_IMAP_PORT" \
    'outbound_protocol="smtps"' "outbound_port=$CM_SMTPS_PORT" 'log_level="low"' \
    'exchange=true' 'exchange_host="ews.example.test"' 'exchange_ssl=false' \
    'exchange_port=8081' 'auth="oauth2"' 'exchange_version="2010sp2"' \
    'oauth_client_id="client-id-1234"' 'oauth_client_secret_set=true' \
    'oauth_tenant_id="tenant-5678"' 'national_cloud="usgovernment"' \
    'oauth_authority="https://login.microsoftonline.us/"'

# Defaults (bob): password from a file, default ports and values.
printf '%s\n' "$BOB_PW" > "$CM_WORK/bob.pw"
run_cm route add feed-b --email "bob@$D" --username "bob@$D" --password-file "$CM_WORK/bob.pw" \
    --inbound-host localhost --inbound-protocol imaps \
    --outbound-host localhost --outbound-protocol smtp+starttls
check_eq "route add with defaults exits 0" 0 "$RC"
check_fields feed-b 'kind="two-way"' 'folder="INBOX"' 'inbound_port=993' 'outbound_port=587' \
    'log_level="low"' 'exchange=false' 'auth="basic"' 'exchange_version="other"' \
    'national_cloud="global"' 'after_fetch="seen"' 'poll_interval=30' 'password_set=true'

# ---------------------------------------------------------------- no secret in output
secrets_absent() {   # DESC TEXT: neither secret (nor its sealed form) in TEXT
    check_lacks "$1: no password" "$ALICE_PW" "$2"
    check_lacks "$1: no carol password" "$CAROL_PW" "$2"
    check_lacks "$1: no OAuth client secret" "$OAUTH_SECRET" "$2"
    check_lacks "$1: no sealed secret" "_sealed" "$2"
}
secrets_absent "route add output" "$ADD_A$ADD_EX"
run_cm route show feed-a;        SHOW_A=$OUT
check_contains "route show prints password: (set)" "(set)" "$(printf '%s\n' "$SHOW_A" | grep '^password:')"
secrets_absent "route show" "$SHOW_A"
run_cm route show feed-ex;       secrets_absent "route show (exchange)" "$OUT"
check_contains "route show prints oauth_client_secret: (set)" "(set)" "$(printf '%s\n' "$OUT" | grep '^oauth_client_secret:')"
run_cm route show feed-ex --json; secrets_absent "route show --json" "$OUT"
check_lacks "route show --json has no password key" '"password"' "$OUT"
check_lacks "route show --json has no oauth_client_secret key" '"oauth_client_secret"' "$OUT"
run_cm route list;               secrets_absent "route list" "$OUT"
check_contains "route list shows feed-a" "feed-a" "$OUT"
run_cm route list --json;        secrets_absent "route list --json" "$OUT"
check_eq "route list --json has three routes" 3 "$(printf '%s' "$OUT" | json 'len(j["routes"])')"
API_URL=$(cat "$CASEMAIL_HOME/run/api.url")
TOKEN=$(cat "$CASEMAIL_HOME/api.token")
RAW=$(curl -sS -H "Authorization: Bearer $TOKEN" "$API_URL/v1/routes/feed-ex")
secrets_absent "raw API GET" "$RAW"

# ---------------------------------------------------------------- the database
DUMP=$CM_WORK/routes.dump.sql
"$PG_DUMP" "$CASEMAIL_DB" > "$DUMP" 2>"$CM_WORK/routes.dump.err"
check_eq "pg_dump of the test database works" 0 "$?"
DUMPTXT=$(cat "$DUMP")
check_contains "the dump holds the routes (sanity)" "ews.example.test" "$DUMPTXT"
check_contains "the dump holds a sealed password" "password_sealed" "$DUMPTXT"
check_lacks "the dump does not contain alice's password" "$ALICE_PW" "$DUMPTXT"
check_lacks "the dump does not contain carol's password" "$CAROL_PW" "$DUMPTXT"
check_lacks "the dump does not contain bob's password" "$BOB_PW" "$DUMPTXT"
check_lacks "the dump does not contain the OAuth client secret" "$OAUTH_SECRET" "$DUMPTXT"
check_lacks "the dump does not contain the password in base64" "$(b64 "$ALICE_PW")" "$DUMPTXT"
check_lacks "the dump does not contain the client secret in base64" "$(b64 "$OAUTH_SECRET")" "$DUMPTXT"
check_lacks "the dump does not contain the password in hex" \
    "$(printf '%s' "$ALICE_PW" | od -An -tx1 | tr -d ' \n')" "$DUMPTXT"

# ---------------------------------------------------------------- verbose logs
run_cm route test-inbound feed-a
check_eq "test-inbound of the verbose route passes" 0 "$RC"
check_contains "test-inbound prints Inbound connection OK" "Inbound connection OK: imaps://localhost:$CM_IMAPS_PORT, folder INBOX" "$OUT"
run_cm route test-outbound feed-a
check_eq "test-outbound of the verbose route passes" 0 "$RC"
check_contains "test-outbound prints Outbound connection OK" "Outbound connection OK:" "$OUT"
run_cm route start feed-a
check_eq "route start of the verbose route exits 0" 0 "$RC"
if wait_until 20 status_is feed-a RUNNING; then ok "verbose route is RUNNING"; else not_ok "verbose route is RUNNING" "$("$CM" route show feed-a | grep -E 'status|error')"; fi
run_cm route stop feed-a
LOGS=$(cat "$CASEMAIL_HOME"/log/*.log)
check_contains "verbose logs hold protocol traces (sanity)" "AUTHENTICATE" "$LOGS"
check_contains "verbose logs hold the SMTP dialogue (sanity)" "EHLO" "$LOGS"
check_lacks "logs do not contain the password" "$ALICE_PW" "$LOGS"
check_lacks "logs do not contain the password in base64" "$(b64 "$ALICE_PW")" "$LOGS"
check_lacks "logs do not contain AUTH PLAIN of the password" "$(b64 "\\0alice@$D\\0$ALICE_PW")" "$LOGS"
check_lacks "logs do not contain AUTH PLAIN (authzid form)" "$(b64 "alice@$D\\0alice@$D\\0$ALICE_PW")" "$LOGS"
check_lacks "logs do not contain the OAuth client secret" "$OAUTH_SECRET" "$LOGS"

# ---------------------------------------------------------------- validation
BASE=(--email "dan@$D" --username "dan@$D" --password-env BOB_PW
      --inbound-host localhost --inbound-protocol imaps --inbound-port "$CM_IMAPS_PORT"
      --outbound-host localhost --outbound-protocol smtps --outbound-port "$CM_SMTPS_PORT")
# invalid DESC WORD ARGS...: route add $BAD ARGS exits 2, names WORD,
# saves nothing (BAD, the route name, is "bad" unless set).
invalid() {
    local desc=$1 word=$2; shift 2
    local before
    before=$(total_routes)
    run_cm route add "${BAD:-bad}" "$@"
    if [ "$RC" = 2 ]; then ok "$desc: exit 2"; else not_ok "$desc: exit 2" "exit $RC" "$OUT"; fi
    check_contains "$desc: the error names $word" "$word" "$OUT"
    check_eq "$desc: nothing saved" "$before" "$(total_routes)"
}
without() {   # without OPT: BASE minus OPT and its value
    local skip=$1 i
    ARGS=()
    for ((i = 0; i < ${#BASE[@]}; i += 2)); do
        [ "${BASE[i]}" = "$skip" ] || ARGS+=("${BASE[i]}" "${BASE[i+1]}")
    done
}
without --email;             invalid "missing email" "email" "${ARGS[@]}"
without --username;          invalid "missing username" "username" "${ARGS[@]}"
without --password-env;      invalid "missing password" "password" "${ARGS[@]}"
without --inbound-host;      invalid "missing inbound host" "inbound_host" "${ARGS[@]}"
without --inbound-protocol;  invalid "missing inbound protocol" "inbound_protocol" "${ARGS[@]}"
without --outbound-host;     invalid "missing outbound host" "outbound_host" "${ARGS[@]}"
without --outbound-protocol; invalid "missing outbound protocol" "outbound_protocol" "${ARGS[@]}"
without --inbound-port; invalid "inbound port 0" "inbound-port" "${ARGS[@]}" --inbound-port 0
without --inbound-port; invalid "inbound port 70000" "inbound-port" "${ARGS[@]}" --inbound-port 70000
without --outbound-port; invalid "outbound port 0" "outbound-port" "${ARGS[@]}" --outbound-port 0
without --outbound-port; invalid "outbound port 70000" "outbound-port" "${ARGS[@]}" --outbound-port 70000
invalid "exchange port 70000" "exchange-port" "${BASE[@]}" --exchange-port 70000
without --inbound-protocol; invalid "unknown inbound protocol" "inbound-protocol" "${ARGS[@]}" --inbound-protocol pop3
without --outbound-protocol; invalid "unknown outbound protocol" "outbound-protocol" "${ARGS[@]}" --outbound-protocol lmtp
invalid "unknown kind" "kind" "${BASE[@]}" --kind both
invalid "unknown auth" "auth" "${BASE[@]}" --auth kerberos
invalid "unknown exchange version" "exchange-version" "${BASE[@]}" --exchange-version 2013
invalid "unknown national cloud" "national-cloud" "${BASE[@]}" --national-cloud mars
invalid "exchange without host" "exchange_host" "${BASE[@]}" --exchange
invalid "oauth2 without client id" "oauth_client_id" "${BASE[@]}" --exchange \
    --exchange-host ews.example.test --auth oauth2 --oauth-client-secret-env OAUTH_SECRET --oauth-tenant-id t1
invalid "oauth2 without client secret" "oauth_client_secret" "${BASE[@]}" --exchange \
    --exchange-host ews.example.test --auth oauth2 --oauth-client-id c1 --oauth-tenant-id t1
invalid "oauth2 without tenant id" "oauth_tenant_id" "${BASE[@]}" --exchange \
    --exchange-host ews.example.test --auth oauth2 --oauth-client-id c1 --oauth-client-secret-env OAUTH_SECRET
invalid "CR/LF in the folder" "folder" "${BASE[@]}" --folder $'IN\r\nBOX'
invalid "moves into its own folder" "is the route's folder" "${BASE[@]}" --after-fetch move \
    --processed-folder Inbox
invalid "moves into its own folder, named" "processed_folder 'Reports' is the route's folder" \
    "${BASE[@]}" --folder Reports --after-fetch move --processed-folder Reports
without --username; invalid "LF in the username" "username" "${ARGS[@]}" --username $'dan@example.test\nX'
without --inbound-host; invalid "CR in the inbound host" "inbound_host" "${ARGS[@]}" --inbound-host $'localhost\r'
without --email; invalid "malformed email (no @)" "email" "${ARGS[@]}" --email "dan.example.test"
without --email; invalid "malformed email (two @)" "email" "${ARGS[@]}" --email "dan@@example.test"
without --email; invalid "malformed email (angle bracket)" "email" "${ARGS[@]}" --email "dan@example.test>"
without --email; invalid "malformed email (space)" "email" "${ARGS[@]}" --email "dan smith@example.test"
invalid "--password on the command line" "--password-env" "${BASE[@]}" --password hunter2
check_lacks "--password refusal does not echo the secret" "hunter2" "$OUT"
invalid "--password= on the command line" "--password-env" "${BASE[@]}" --password=hunter2
invalid "--oauth-client-secret on the command line" "--oauth-client-secret-env" "${BASE[@]}" \
    --oauth-client-secret hunter2
BAD=feed-a invalid "duplicate route name" "feed-a" --email "dan@$D" --username "dan@$D" --password-env BOB_PW \
    --inbound-host other.example.test --inbound-protocol imaps --outbound-host localhost --outbound-protocol smtps
check_eq "duplicate name leaves the first route as it was" '"alice@example.test"' \
    "$(field_lines feed-a | grep '^email=' | cut -d= -f2-)"

# The router validates too (the API, bypassing the CLI's own checks):
# 400 with the field named, nothing saved.
api_invalid() {   # DESC FIELD JSON-FIELDS
    local desc=$1 field=$2 extra=$3 body before code
    before=$(total_routes)
    body="{\"name\":\"bad\",\"email\":\"dan@$D\",\"username\":\"dan@$D\",\"password\":\"x\",\"inbound_host\":\"localhost\",\"inbound_protocol\":\"imaps\",\"outbound_host\":\"localhost\",\"outbound_protocol\":\"smtps\"}"
    # EXTRA replaces a field of the body rather than repeat its key (the
    # router refuses a key given twice)
    body=$(python3 -c 'import json, sys; b = json.loads(sys.argv[1]); b.update(json.loads("{" + sys.argv[2] + "}")); print(json.dumps(b))' "$body" "$extra")
    code=$(curl -sS -o "$CM_WORK/api.out" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -X POST --data-binary "$body" "$API_URL/v1/routes")
    check_eq "API $desc: 400" 400 "$code"
    check_eq "API $desc: the error names field $field" "$field" \
        "$(json 'j.get("field")' < "$CM_WORK/api.out" 2>/dev/null)"
    check_eq "API $desc: nothing saved" "$before" "$(total_routes)"
}
api_invalid "port 0" inbound_port '"inbound_port":0'
api_invalid "port 70000" outbound_port '"outbound_port":70000'
api_invalid "unknown protocol" inbound_protocol '"inbound_protocol":"pop3"'
api_invalid "unknown kind" kind '"kind":"both"'
api_invalid "unknown auth" auth '"auth":"kerberos"'
api_invalid "unknown exchange version" exchange_version '"exchange_version":"2013"'
api_invalid "unknown national cloud" national_cloud '"national_cloud":"mars"'
api_invalid "CR LF in the folder" folder '"folder":"IN\r\nBOX"'
api_invalid "NUL in the folder" folder '"folder":"IN\u0000BOX"'
api_invalid "malformed email" email '"email":"dan@"'
api_invalid "since 2026-02-30 (no such day)" since '"since":"2026-02-30"'
api_invalid "since 2026-1-011" since '"since":"2026-1-011"'
api_invalid "poll_interval 7200" poll_interval '"poll_interval":7200'
run_cm route set feed-a --poll-interval 7200
check_eq "route set --poll-interval 7200 exits 2" 2 "$RC"
check_contains "... naming the range the router takes" "(1-3600)" "$OUT"

# ---------------------------------------------------------------- one route per account
run_cm route add feed-b2 --email "other@$D" --username "BOB@Example.TEST" --password-env BOB_PW \
    --inbound-host LOCALHOST --inbound-protocol imap --inbound-port "$CM_IMAP_PORT" \
    --outbound-host localhost --outbound-protocol smtps
check_eq "second route on bob's account (other case) exits 2" 2 "$RC"
check_contains "the refusal names the first route" "feed-b" "$OUT"
check_contains "the refusal says the account is in use" "already used" "$OUT"
check_eq "the second route is not saved" 0 "$(route_count feed-b2)"
run_cm route set feed-a --username "Bob@EXAMPLE.test"
check_eq "changing a route onto bob's account exits 2" 2 "$RC"
check_contains "that refusal names the first route" "feed-b" "$OUT"
check_eq "the refused change is not saved" "\"alice@$D\"" "$(field_lines feed-a | grep '^username=' | cut -d= -f2-)"
run_cm route add feed-b3 --email "bob@$D" --username "bob@$D" --password-env BOB_PW \
    --inbound-host mail.other.test --inbound-protocol imaps --outbound-host localhost --outbound-protocol smtps
check_eq "the same username at another inbound host is a different account" 0 "$RC"
"$CM" route rm feed-b3 >/dev/null 2>&1

# ---------------------------------------------------------------- set and rm
run_cm route set feed-b --folder Archive --poll-interval 45 --log-level verbose
check_eq "route set exits 0" 0 "$RC"
check_contains "route set says changed" "route feed-b changed" "$OUT"
check_fields feed-b 'folder="Archive"' 'poll_interval=45' 'log_level="verbose"' \
    "email=\"bob@$D\"" 'password_set=true' 'inbound_port=993'
run_cm route set feed-b --inbound-port 0
check_eq "route set with a bad port exits 2" 2 "$RC"
check_fields feed-b 'inbound_port=993'
run_cm route set feed-b
check_eq "route set with nothing to change exits 2" 2 "$RC"
run_cm route set nosuch --folder INBOX
check_eq "route set of an unknown route exits 2" 2 "$RC"
# A new password through stdin replaces the old one: a wrong one fails the
# test, the right one passes it again.
run_cm route set feed-b --inbound-port "$CM_IMAPS_PORT" --folder INBOX --ca-file "$CM_CA_FILE"
OUT=$(printf 'not-the-password\n' | "$CM" route set feed-b --password-stdin 2>&1); RC=$?
check_eq "route set --password-stdin exits 0" 0 "$RC"
run_cm route test-inbound feed-b
check_eq "after a wrong new password the inbound test fails" 1 "$RC"
check_contains "... naming authentication" "authentication" "$OUT"
OUT=$(printf '%s\n' "$BOB_PW" | "$CM" route set feed-b --password-stdin 2>&1)
run_cm route test-inbound feed-b
check_eq "with the right password set again the inbound test passes" 0 "$RC"

run_cm route rm feed-b
check_eq "route rm exits 0" 0 "$RC"
check_contains "route rm says deleted" "route feed-b deleted" "$OUT"
check_eq "route rm removes the row" 0 "$(route_count feed-b)"
run_cm route show feed-b
check_eq "route show of a removed route exits 2" 2 "$RC"
check_contains "... saying there is no such route" "no route named feed-b" "$OUT"
run_cm route rm feed-b
check_eq "route rm of an unknown route exits 2" 2 "$RC"
run_cm route add feed-b2 --email "bob@$D" --username "BOB@Example.TEST" --password-env BOB_PW \
    --inbound-host localhost --inbound-protocol imaps --outbound-host localhost --outbound-protocol smtps
check_eq "after rm the account is free for a new route" 0 "$RC"

# ---------------------------------------------------------------- Exchange tests
run_cm route test-inbound feed-ex
check_eq "test-inbound of an Exchange route exits 1" 1 "$RC"
check_contains "... with the failure prefix" "Failed to test Service connectivity:" "$OUT"
check_contains "... naming the sign-in service it could not reach" "token endpoint" "$OUT"
run_cm route test-outbound feed-ex
check_eq "test-outbound of an Exchange route exits 1" 1 "$RC"
check_contains "... with the failure prefix" "Failed to test Service connectivity:" "$OUT"
check_lacks "the Exchange test does not echo the client secret" "$OAUTH_SECRET" "$OUT"

# ---------------------------------------------------------------- names, repeats, files
# "." and ".." are path segments, not route names: the router refuses to
# save them, and the CLI sends /v1/routes/. as it is (libcurl made it
# /v1/routes/, the route list, shown with "-" fields and exit 0).
ROUTES0=$(total_routes)
BAD=. invalid "route name ." "name" "${BASE[@]}"
BAD=.. invalid "route name .." "name" "${BASE[@]}"
api_invalid "name .." name '"name":".."'
for n in . ..; do
    run_cm route show "$n"
    check_eq "route show $n exits 2 (not the route list)" 2 "$RC"
    check_contains "... the router says there is no route $n" "no route named $n" "$OUT"
    check_lacks "... and nothing of the list is shown" "feed-a" "$OUT"
done
empty_name() {   # empty_name VERB [OPTIONS...]: route VERB '' exits 2
    run_cm route "$1" '' "${@:2}"
    check_eq "route $1 '' exits 2" 2 "$RC"
    check_contains "... saying the route NAME is empty" "the route NAME is empty" "$OUT"
}
empty_name show; empty_name rm; empty_name start; empty_name stop
empty_name test-inbound; empty_name set --folder INBOX
check_eq "... and every route is still there" "$ROUTES0" "$(total_routes)"

# A single-value option given twice is refused (the last one won), and
# so are two options for the same field; nothing is changed. (So the
# checks above leave BASE's own option out when they give a bad one.)
run_cm route set feed-a --kind ingest --kind two-way
check_eq "route set --kind twice exits 2" 2 "$RC"
check_contains "... saying --kind is given twice" "--kind is given twice" "$OUT"
run_cm route set feed-a --kind ingest --kind ingest
check_eq "route set --kind twice with the same value exits 2" 2 "$RC"
run_cm route set feed-a --exchange --no-exchange
check_eq "route set --exchange --no-exchange exits 2" 2 "$RC"
check_contains "... naming both" "--exchange and --no-exchange both set exchange" "$OUT"
run_cm route set feed-a --folder A --folder B
check_contains "route set --folder twice is refused" "--folder is given twice" "$OUT"
run_cm route show feed-a --json --json
check_contains "route show --json twice is refused" "--json is given twice" "$OUT"
check_fields feed-a 'kind="ingest"' 'exchange=false' 'folder="INBOX"'

# A number starts with a digit: strtol skipped a tab, LF, CR, VT or FF.
for ws in $'\t' $'\n' $'\r' $'\v' $'\f'; do
    run_cm route set feed-a --poll-interval "${ws}19"
    check_eq "route set --poll-interval $(printf '%q' "${ws}19") exits 2" 2 "$RC"
    check_contains "... not a number of seconds" "is not a number of seconds" "$OUT"
done
run_cm route set feed-a --inbound-port $'\t993'
check_eq "route set --inbound-port TAB993 exits 2" 2 "$RC"
check_fields feed-a 'poll_interval=17' "inbound_port=$CM_IMAPS_PORT"

# --ca-file is a regular file, not a folder.
run_cm route set feed-a --ca-file "$CM_WORK"
check_eq "route set --ca-file FOLDER exits 2" 2 "$RC"
check_contains "... saying it is not a regular file" "is not a regular file" "$OUT"
check_fields feed-a "ca_file=\"$CM_CA_FILE\""

# A secret read from a file or stdin is text: a NUL byte is refused (the
# secret was cut there, and the route saved with the password "pw").
printf 'pw\0rest\n' > "$CM_WORK/nul.pw"
without --password-env; invalid "a NUL byte in --password-file" "contains a NUL byte (not text)" \
    "${ARGS[@]}" --password-file "$CM_WORK/nul.pw"
invalid "a NUL byte in --oauth-client-secret-file" "contains a NUL byte" \
    "${BASE[@]}" --exchange --exchange-host ews.example.test --auth oauth2 \
    --oauth-client-id c1 --oauth-tenant-id t1 --oauth-client-secret-file "$CM_WORK/nul.pw"
printf 'caf\351\n' > "$CM_WORK/latin1.pw"
without --password-env; invalid "--password-file not UTF-8" "is not valid UTF-8 (not text)" \
    "${ARGS[@]}" --password-file "$CM_WORK/latin1.pw"
OUT=$(printf 'pw\0rest\n' | "$CM" route set feed-b2 --password-stdin 2>&1); RC=$?
check_eq "a NUL byte on stdin for --password-stdin exits 2" 2 "$RC"
check_contains "... saying stdin contains a NUL byte" "stdin contains a NUL byte" "$OUT"
invalid "--password-env and --password-file" "--password-env and --password-file both set password" \
    "${BASE[@]}" --password-file "$CM_WORK/bob.pw"

# Final look at every log: no secret appeared later either.
LOGS=$(cat "$CASEMAIL_HOME"/log/*.log)
check_lacks "no log contains bob's password" "$BOB_PW" "$LOGS"
check_lacks "no log contains carol's password" "$CAROL_PW" "$LOGS"
check_lacks "no log contains the client secret" "$OAUTH_SECRET" "$LOGS"
