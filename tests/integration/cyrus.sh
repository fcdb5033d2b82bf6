#!/usr/bin/env bash
# A second IMAP server: Cyrus IMAP (Debian's cyrus-imapd), run privately on
# loopback by tests/stack/cyrus.sh beside the stack's Dovecot. Every other
# test fetches from Dovecot; this one checks that the fetcher relies on
# IMAP, not on one server's habits. Mail is put in by IMAP APPEND, as a
# user's client would (tests/tools/imapctl.py). Checked, over implicit TLS
# with the test CA: a first pass with --since (by internal date) and
# --after-fetch move, the bytes stored equal to what the server sends;
# new mail noticed while the route runs; the server stopped (the route
# FAILED with the cause) and started again; the folder deleted and made
# again (a new UIDVALIDITY: nothing stored twice); and, over STARTTLS,
# --after-fetch seen and keep with the flags the server then shows.
# And a server that announces no MOVE, no UIDPLUS and no IDLE (the same
# Cyrus, suppress_capabilities): moves by COPY, \Deleted and UID EXPUNGE,
# or without UIDPLUS by COPY and \Deleted alone, and new mail by polling.
# And Cyrus's own default namespace, where every folder of a user is
# under "INBOX." (a route on INBOX.Reports is not a subfolder's).
# And a folder of 600 with a gap of 200 expunged UIDs, searched in windows
# of 50 UIDs, while another client expunges and appends.
# And a processed folder the server will not make: the route FAILED with
# the server's answer, its logins backing off.
# Cyrus's own users (alice, bob, carol, dave, erin, frank, gina, hank).
. "$(dirname "$0")/../lib.sh"
export CASEMAIL_SEARCH_UIDS=50     # the first passes search in windows here
cm_start || exit 1

CY=$CM_WORK/$CM_TEST.cyrus       # its own per run (make test runs every test twice)
rm -rf "$CY"
# five free ports at once (held together while chosen: all different)
read -r CP CPS CP1 CP2 CPC < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
cyrus() { "$CM_TOP/tests/stack/cyrus.sh" "$CY" "$@"; }
# plain IMAP, implicit TLS, and two plain ports of a poorer server: one
# without MOVE and IDLE, one without MOVE, UIDPLUS and IDLE
cyrus_start() { cyrus start "$CP" "$CPS" "$CM_STACK_DIR/tls/server.crt" "$CM_STACK_DIR/tls/server.key" \
                    "$CP1=MOVE,IDLE" "$CP2=MOVE,UIDPLUS,IDLE" "$CPC@classic"; }
trap 'cyrus stop >/dev/null 2>&1; cm_stop' EXIT
for u in alice bob carol dave erin frank gina hank; do cyrus user "$u" "$u-cy-Secret1"; done
if out=$(cyrus_start 2>&1); then
    ok "Cyrus IMAP starts on loopback ($out)"
else not_ok "Cyrus IMAP starts on loopback" "$out"; exit 1; fi
# imapctl USER ARGS...: the mailbox as USER's own client sees it, over TLS
imapctl() {
    local u=$1; shift
    PW="$u-cy-Secret1" python3 "$CM_TOP/tests/tools/imapctl.py" --port "$CPS" --tls \
        --ca "$CM_CA_FILE" --user "$u" --password-env PW "$@"
}
# cy_route NAME USER PROTOCOL PORT [OPTIONS...]: an ingest route on Cyrus
cy_route() {
    local name=$1 user=$2 proto=$3 port=$4; shift 4
    CM_PW="$user-cy-Secret1" "$CM" route add "$name" --kind ingest --email "$user@cyrus.test" \
        --username "$user" --password-env CM_PW --folder "${FOLDER:-INBOX}" \
        --inbound-host localhost --inbound-protocol "$proto" --inbound-port "$port" \
        --outbound-host localhost --outbound-protocol smtp+starttls \
        --outbound-port "$CM_SUBMISSION_PORT" --ca-file "$CM_CA_FILE" "$@"
}
settled() { sql "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = '$1' AND m.state <> 'fetched'"; }
of_route() { sql "SELECT $2 FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = '$1'"; }

PW=alice-cy-Secret1 run_cm route test-inbound --email alice@cyrus.test --username alice \
    --password-env PW --inbound-host localhost --inbound-protocol imaps --inbound-port "$CPS" \
    --ca-file "$CM_CA_FILE"
check_eq "route test-inbound logs in to Cyrus over TLS" 0 "$RC"

# ------------------------------------------- first pass, --since, move
src=$CM_WORK/cyrus-mail
# mkbulk N NAME: N messages cycled from the corpus in $src/NAME, Message-IDs
# <NAME.i@bench.test>
mkbulk() { python3 "$CM_TOP/tests/tools/mkmail.py" bulk "$1" "$src/$2" --corpus "$CM_TOP/../shared/corpus/hunnysoft" --prefix "$2" >/dev/null; }
mkbulk 40 new
mkbulk 5 old
check_eq "5 messages of 2020 appended to Reports" 5 \
    "$(imapctl alice append Reports "$src"/old/* --date "15-Mar-2020 10:00:00 +0000")"
check_eq "40 of today appended to Reports" 40 "$(imapctl alice append Reports "$src"/new/*)"
FOLDER=Reports cy_route cya alice imaps "$CPS" --since 2024-01-01 --after-fetch move \
    --processed-folder Done >/dev/null
"$CM" route start cya >/dev/null
if wait_until 60 eval '[ "$(settled cya)" -ge 40 ]'; then ok "the route on Cyrus takes the 40 new messages"
else not_ok "the route on Cyrus takes the 40 new messages" "settled $(settled cya), status $(route_status cya)" \
    "$(grep -h "cya" "$CASEMAIL_HOME"/log/fetcher-*.log | tail -3)"; fi
wait_until 20 eval '[ "$(imapctl alice count Done)" = 40 ]'
sleep 1     # a duplicate or a late old message would show by now
check_eq "40 messages, each once, each an incident or a rejection with a reason" "40 40 40" \
    "$(sql "SELECT count(*) || ' ' || count(DISTINCT message_id) || ' ' ||
                   count(*) FILTER (WHERE incident_id IS NOT NULL OR (state = 'rejected' AND reason <> ''))
            FROM messages")"
check_eq "the 5 of 2020 stay in Reports (--since), the 40 are moved to Done" "5 40" \
    "$(imapctl alice count Reports) $(imapctl alice count Done)"
served=$(imapctl alice sha Done)
check_eq "the bytes stored are the bytes Cyrus sends, for each of the 40" "40|$served" \
    "$(grep -c . <<<"$served")|$(of_route cya raw_sha256 | sort)"
check_eq "the route is RUNNING" RUNNING "$(route_status cya)"

# ------------------------------------------- new mail while running
mkbulk 3 idle
imapctl alice append Reports "$src"/idle/* >/dev/null
if wait_until 30 eval '[ "$(settled cya)" -ge 43 ]'; then ok "3 messages appended while the route runs come in"
else not_ok "3 messages appended while the route runs come in" "settled $(settled cya)"; fi

# ------------------------------------------- the server stops and comes back
cyrus stop >/dev/null
if wait_until 30 status_is cya FAILED; then ok "Cyrus stopped: the route shows FAILED"
else not_ok "Cyrus stopped: the route shows FAILED" "status $(route_status cya)"; fi
check_contains "with the cause" "localhost:$CPS" \
    "$("$CM" route show cya --json | json "j['last_error']")"
cyrus_start >/dev/null
if wait_until 30 status_is cya RUNNING; then ok "Cyrus back: the route is RUNNING again"
else not_ok "Cyrus back: the route is RUNNING again" "status $(route_status cya)"; fi
mkbulk 2 back
imapctl alice append Reports "$src"/back/* >/dev/null
if wait_until 30 eval '[ "$(settled cya)" -ge 45 ]'; then ok "and takes the 2 messages sent after"
else not_ok "and takes the 2 messages sent after" "settled $(settled cya)"; fi

# ------------------------------------------- a new UIDVALIDITY
# The folder is deleted and made again under the running route, and
# three messages already stored come back into it with two new ones: the
# three are recognised, the two taken.
uvs=$(imapctl alice recreate Reports)
[ "${uvs% *}" != "${uvs#* }" ] && ok "Reports made again with a new UIDVALIDITY ($uvs)" \
    || not_ok "Reports made again with a new UIDVALIDITY" "$uvs"
mkbulk 2 uv
imapctl alice append Reports "$src"/new/000000.eml "$src"/new/000001.eml "$src"/new/000002.eml "$src"/uv/* >/dev/null
if wait_until 40 eval '[ "$(settled cya)" -ge 47 ] && [ "$(imapctl alice count Reports)" = 0 ]'; then
    ok "after the new UIDVALIDITY the 2 new messages come in and all 5 are moved"
else not_ok "after the new UIDVALIDITY the 2 new messages come in and all 5 are moved" \
    "settled $(settled cya), left in Reports $(imapctl alice count Reports), status $(route_status cya)"; fi
sleep 1
check_eq "nothing stored twice: 47 messages, 47 Message-IDs" "47 47" \
    "$(sql "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM messages")"
check_eq "the route's cursor has the new UIDVALIDITY" "${uvs#* }" \
    "$(sql "SELECT c.uidvalidity FROM route_cursors c JOIN routes r ON r.id = c.route_id WHERE r.name = 'cya'")"
check_contains "the fetcher logged the change" "UIDVALIDITY of Reports changed" "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"

# ------------------------------------------- STARTTLS, seen and keep
mkbulk 4 seen
mkbulk 4 keep
imapctl bob append INBOX "$src"/seen/* >/dev/null
imapctl carol append INBOX "$src"/keep/* >/dev/null
cy_route cys bob imap+starttls "$CP" --after-fetch seen >/dev/null
cy_route cyk carol imap+starttls "$CP" --after-fetch keep >/dev/null
"$CM" route start cys >/dev/null
"$CM" route start cyk >/dev/null
wait_until 40 eval '[ "$(settled cys)" -ge 4 ] && [ "$(settled cyk)" -ge 4 ]'
check_eq "over STARTTLS, both routes take their 4 messages" "4 4" "$(settled cys) $(settled cyk)"
seen_flags() { imapctl "$1" flags INBOX | grep -c '\\Seen'; }
wait_until 20 eval '[ "$(seen_flags bob)" = 4 ]'
check_eq "--after-fetch seen: Cyrus shows all 4 \\Seen, still in INBOX" "4 4" \
    "$(seen_flags bob) $(imapctl bob count INBOX)"
sleep 1     # a flag set late would show by now
check_eq "--after-fetch keep: none \\Seen, all 4 in INBOX" "0 4" \
    "$(seen_flags carol) $(imapctl carol count INBOX)"
check_eq "the three routes are RUNNING" "RUNNING RUNNING RUNNING" \
    "$(route_status cya) $(route_status cys) $(route_status cyk)"

# ------------------------------------------- a server without MOVE, UIDPLUS, IDLE
mkbulk 5 nomove; mkbulk 2 nomove2; mkbulk 3 noplus; mkbulk 1 noplus2
imapctl dave append INBOX "$src"/nomove/* >/dev/null
imapctl erin append INBOX "$src"/noplus/* >/dev/null
cy_route cym dave imap "$CP1" --after-fetch move --processed-folder Done --poll-interval 1 --log-level verbose >/dev/null
cy_route cyp erin imap "$CP2" --after-fetch move --processed-folder Done --poll-interval 1 --log-level verbose >/dev/null
"$CM" route start cym >/dev/null
"$CM" route start cyp >/dev/null
wait_until 40 eval '[ "$(settled cym)" -ge 5 ] && [ "$(settled cyp)" -ge 3 ]'
check_eq "without MOVE and IDLE, and without UIDPLUS too, the routes take their 5 and 3" "5 3" \
    "$(settled cym) $(settled cyp)"
wait_until 20 eval '[ "$(imapctl dave count INBOX)" = 0 ]'
check_eq "without MOVE: copied to Done, flagged and expunged (UID EXPUNGE) from INBOX" "5 0" \
    "$(imapctl dave count Done) $(imapctl dave count INBOX)"
deleted() { imapctl "$1" flags INBOX | grep -c 'Deleted'; }
wait_until 20 eval '[ "$(deleted erin)" = 3 ]'
check_eq "without UIDPLUS: copied to Done and flagged \\Deleted, not expunged (no EXPUNGE of others' mail)" "3 3 3" \
    "$(imapctl erin count Done) $(imapctl erin count INBOX) $(deleted erin)"
check_contains "... and the fetcher says so" "has no UIDPLUS" "$(grep -h cyp "$CASEMAIL_HOME"/log/fetcher-*.log)"
# the verbose trace of the login names the extensions the fetcher found
caps_seen() { grep -h "IMAP imap://localhost:$1 folder INBOX: UIDVALIDITY" "$CASEMAIL_HOME"/log/fetcher-*.log \
                  | tail -1 | sed -n 's/.* EXISTS [0-9]*//p'; }
check_eq "the fetcher found UIDPLUS alone on the one, nothing on the other" " UIDPLUS|" \
    "$(caps_seen "$CP1")|$(caps_seen "$CP2")"
# without IDLE new mail is found by polling (--poll-interval 1); the
# messages flagged \Deleted are behind the cursor and not taken again
imapctl dave append INBOX "$src"/nomove2/* >/dev/null
imapctl erin append INBOX "$src"/noplus2/* >/dev/null
if wait_until 30 eval '[ "$(settled cym)" -ge 7 ] && [ "$(settled cyp)" -ge 4 ]'; then
    ok "without IDLE, mail appended later is found by polling"
else not_ok "without IDLE, mail appended later is found by polling" "settled $(settled cym) $(settled cyp)"; fi
sleep 2     # a message taken twice would show by now
check_eq "nothing taken twice: 7 and 4 messages, as many Message-IDs" "7 7 4 4" \
    "$(of_route cym 'count(*) || '"' '"' || count(DISTINCT message_id)') $(of_route cyp 'count(*) || '"' '"' || count(DISTINCT message_id)')"
check_eq "both RUNNING" "RUNNING RUNNING" "$(route_status cym) $(route_status cyp)"

# ------------------------------------------- Cyrus's default namespace: INBOX.Reports
mkbulk 4 classic
imapctl frank append Reports "$src"/classic/* >/dev/null    # INBOX.Reports there
cyt() { PW=frank-cy-Secret1 run_cm route test-inbound --email frank@cyrus.test --username frank \
            --password-env PW --inbound-host localhost --inbound-protocol imap --inbound-port "$CPC" --folder "$1"; }
cyt INBOX.Reports
check_eq "with folders under INBOX. and '.' between levels, INBOX.Reports is a route's folder" 0 "$RC"
cyt INBOX.Reports.Sub
check_contains "INBOX.Reports.Sub is a subfolder" "folder INBOX.Reports.Sub is a subfolder" "$OUT"
FOLDER=INBOX.Reports cy_route cyc frank imap "$CPC" --after-fetch move --processed-folder INBOX.Done >/dev/null
"$CM" route start cyc >/dev/null
wait_until 40 eval '[ "$(settled cyc)" -ge 4 ] && [ "$(imapctl frank count Done)" = 4 ]'
check_eq "the route on INBOX.Reports takes its 4 and moves them to INBOX.Done, made for it" "4 4 0" \
    "$(settled cyc) $(imapctl frank count Done) $(imapctl frank count Reports)"
check_eq "RUNNING" RUNNING "$(route_status cyc)"

# ------------------------------------------- 600 with a gap, windows of 50, another client
mkbulk 600 gap; mkbulk 5 gap2
imapctl gina append INBOX "$src"/gap/* >/dev/null
check_eq "another client expunges UIDs 101 to 300 before the start" 200 "$(imapctl gina expunge INBOX 101:300)"
cy_route cyw gina imaps "$CPS" --after-fetch keep >/dev/null
"$CM" route start cyw >/dev/null
if wait_until 90 eval '[ "$(settled cyw)" -ge 400 ]'; then ok "the 400 left, over a gap of 200 UIDs, searched in windows of 50"
else not_ok "the 400 left, over a gap of 200 UIDs, searched in windows of 50" "settled $(settled cyw)"; fi
check_eq "UIDs 1-100 and 301-600, each once" "400 400 1 100 301 600" \
    "$(of_route cyw "count(*) || ' ' || count(DISTINCT uid) || ' ' || min(uid) || ' ' || max(uid) FILTER (WHERE uid < 200) || ' ' || min(uid) FILTER (WHERE uid > 200) || ' ' || max(uid)")"
# while the route runs, the other client expunges 50 it has taken and
# puts 5 new ones in
check_eq "the other client expunges 50 while the route runs" 50 "$(imapctl gina expunge INBOX 1:50)"
imapctl gina append INBOX "$src"/gap2/* >/dev/null
if wait_until 30 eval '[ "$(settled cyw)" -ge 405 ]'; then ok "the 5 appended after the expunge come in"
else not_ok "the 5 appended after the expunge come in" "settled $(settled cyw), status $(route_status cyw)"; fi
sleep 1
check_eq "405 messages, each once, the route RUNNING" "405 405 RUNNING" \
    "$(of_route cyw "count(*) || ' ' || count(DISTINCT message_id)") $(route_status cyw)"

# ------------------------------------------- a processed folder that cannot be made
# In Cyrus's own namespace a user makes folders under INBOX. only: a
# top-level Nowhere is refused. The 2 messages are stored and left in
# INBOX; the route is FAILED with the answer and logs in again backing
# off (1, 2, 3 s here), as after a failed login, not every second.
mkbulk 2 nowhere
imapctl hank append INBOX "$src"/nowhere/* >/dev/null
cy_route cyx hank imap "$CPC" --after-fetch move --processed-folder Nowhere >/dev/null
"$CM" route start cyx >/dev/null
retries() { grep -h " cyx warn: mailbox connection lost" "$CASEMAIL_HOME"/log/fetcher-*.log | sed -n 's/.*(retry in \([0-9]*\) ms)$/\1/p' | head -4 | tr '\n' ' '; }
wait_until 40 eval '[ "$(retries | wc -w)" -ge 4 ]'
check_eq "its retries back off" "1000 2000 3000 3000 " "$(retries)"
check_eq "the 2 messages are stored, and left in INBOX" "2 2" "$(settled cyx) $(imapctl hank count INBOX)"
check_eq "the route is FAILED" FAILED "$(route_status cyx)"
check_contains "with the server's answer" "Nowhere" "$("$CM" route show cyx --json | json "j['last_error']")"
route_stop cyx
