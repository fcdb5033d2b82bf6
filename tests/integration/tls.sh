#!/usr/bin/env bash
# TLS fails closed (DESIGN invariant 6): a man in the middle that strips
# STARTTLS from IMAP CAPABILITY and SMTP EHLO makes a route that asked for
# STARTTLS refuse to log in (test, start and send), with nothing sent in
# clear; an untrusted or wrong-host certificate fails; --ca-file makes a
# private CA work; and a server with a UIDNEXT over 2^32 (--since), and
# one whose RFC822.SIZE is not its messages' (and one whose bytes change
# between two fetches), and a processed folder made by another client
# meanwhile ([ALREADYEXISTS]), and one that will not LIST the processed
# folder, and FETCH answers with odd flags or without their UID, and one
# that ends IDLE itself (after 2 s, or at once). Users u20, u21, u27, u29,
# u30, u31, u32, u33, u35.
. "$(dirname "$0")/../lib.sh"
export CASEMAIL_SEND_MAX_ATTEMPTS=1   # a refused send is final at once here
cm_start || exit 1


IMAP_LOG=$CM_WORK/tls-imap-client.log
SMTP_LOG=$CM_WORK/tls-smtp-client.log
: > "$IMAP_LOG"; : > "$SMTP_LOG"
IP=$(free_port); SP=$(free_port)
mitm "127.0.0.1:$IP" "127.0.0.1:$CM_IMAP_PORT" strip-imap "$IMAP_LOG"
mitm "127.0.0.1:$SP" "127.0.0.1:$CM_SUBMISSION_PORT" strip-smtp "$SMTP_LOG"
export PW20=u20-pw-Secret1

# inbound test through the stripper
run_cm route test-inbound --email u20@example.test --username u20@example.test \
    --password-env PW20 --inbound-host 127.0.0.1 --inbound-protocol imap+starttls \
    --inbound-port "$IP" --ca-file "$CM_CA_FILE"
check_eq "inbound test refuses a server whose STARTTLS was stripped (exit 1)" 1 "$RC"
check_contains "the reason names STARTTLS" "STARTTLS not offered" "$OUT"

# outbound test through the stripper
run_cm route test-outbound --email u20@example.test --username u20@example.test \
    --password-env PW20 --outbound-host 127.0.0.1 --outbound-protocol smtp+starttls \
    --outbound-port "$SP" --ca-file "$CM_CA_FILE"
check_eq "outbound test refuses a server whose STARTTLS was stripped (exit 1)" 1 "$RC"
check_contains "the outbound reason names STARTTLS" "STARTTLS not offered" "$OUT"

# a saved route through both: start shows FAILED with the reason
CM_PW=$PW20 "$CM" route add mitm --email u20@example.test --username u20@example.test \
    --password-env CM_PW --inbound-host 127.0.0.1 --inbound-protocol imap+starttls \
    --inbound-port "$IP" --outbound-host 127.0.0.1 --outbound-protocol smtp+starttls \
    --outbound-port "$SP" --ca-file "$CM_CA_FILE" --log-level verbose >/dev/null
"$CM" route start mitm >/dev/null
if wait_until 20 status_is mitm FAILED; then ok "route through the stripper is FAILED"; else not_ok "route through the stripper is FAILED" "status $(route_status mitm)"; fi
check_contains "its last error names STARTTLS" "STARTTLS" "$("$CM" route show mitm)"

# an incident on this route, and an email from it: refused, not sent in clear
sql "INSERT INTO incidents (number, route_id, title) SELECT nextval('incident_number_seq'), id, 'tls test' FROM routes WHERE name = 'mitm'" >/dev/null
INC=$(sql "SELECT 'INC-' || number FROM incidents WHERE title = 'tls test'")
run_cm incident email "$INC" --to someone@outside.test --body "secret incident text" --wait --wait-timeout 60
check_eq "an email through the stripper is not sent (exit 1)" 1 "$RC"
check_contains "the send failure names STARTTLS" "STARTTLS" "$OUT"

imap_bytes=$(cat "$IMAP_LOG"); smtp_bytes=$(cat "$SMTP_LOG")
check_lacks "no password crossed the IMAP stripper" "$PW20" "$imap_bytes"
check_lacks "no LOGIN crossed the IMAP stripper" "LOGIN" "$imap_bytes"
check_lacks "no AUTHENTICATE crossed the IMAP stripper" "AUTHENTICATE" "$imap_bytes"
check_lacks "no AUTH crossed the SMTP stripper" "AUTH" "$smtp_bytes"
check_lacks "no MAIL FROM crossed the SMTP stripper" "MAIL FROM" "$smtp_bytes"
check_lacks "no message text crossed the SMTP stripper" "secret incident text" "$smtp_bytes"
check_lacks "no password in the route's verbose logs" "$PW20" "$(cat "$CASEMAIL_HOME"/log/*.log)"
case "$imap_bytes" in *CAPABILITY*|*capability*) ok "the client did talk to the stripper (sanity)";; *) not_ok "the client did talk to the stripper (sanity)" "log: $(head -c 200 "$IMAP_LOG")";; esac

# certificates: untrusted, wrong host, private CA
export PW21=u21-pw-Secret1
imaps() { run_cm route test-inbound --email u21@example.test --username u21@example.test \
    --password-env PW21 --inbound-protocol imaps "$@"; }
imaps --inbound-host localhost --inbound-port "$CM_IMAPS_PORT"
check_eq "imaps with the private CA unknown fails (exit 1)" 1 "$RC"
check_contains "the reason is an untrusted certificate" "certificate" "$OUT"
imaps --inbound-host localhost --inbound-port "$CM_IMAPS_PORT" --ca-file "$CM_CA_FILE"
check_eq "--ca-file makes the private CA work" 0 "$RC"
imaps --inbound-host "$CM_IMAPS_UNTRUSTED_HOST" --inbound-port "$CM_IMAPS_UNTRUSTED_PORT" --ca-file "$CM_CA_FILE"
check_eq "a self-signed certificate fails even with a CA file" 1 "$RC"
check_contains "the self-signed reason names the certificate" "certificate" "$OUT"
WP=$(free_port)
mitm "127.0.0.4:$WP" "127.0.0.1:$CM_IMAPS_PORT" plain "$CM_WORK/tls-plain.log"
imaps --inbound-host 127.0.0.4 --inbound-port "$WP" --ca-file "$CM_CA_FILE"
check_eq "a certificate for another host fails (exit 1)" 1 "$RC"
check_contains "the wrong-host reason names the certificate" "certificate" "$OUT"
run_cm route test-outbound --email u21@example.test --username u21@example.test \
    --password-env PW21 --outbound-host localhost --outbound-protocol smtps --outbound-port "$CM_SMTPS_PORT"
check_eq "smtps with the private CA unknown fails" 1 "$RC"
check_contains "the smtps reason names the certificate" "certificate" "$OUT"

# Not TLS, but this file's man in the middle: a server whose UIDNEXT is
# not a 32-bit number (2^64 - 1) does not stop a route started with
# --since: the limit recorded is the last message's UID instead, and the
# mail in the folder comes in.
deliver u21@example.test "huge uidnext one" >/dev/null
deliver u21@example.test "huge uidnext two" >/dev/null
wait_until 20 eval '[ "$(curl -s --cacert "$CM_CA_FILE" -u "u21@example.test:$PW21" "imaps://localhost:$CM_IMAPS_PORT/INBOX" -X "STATUS INBOX (MESSAGES)" | grep -o "MESSAGES [0-9]*")" = "MESSAGES 2" ]'
HP=$(free_port)
mitm "127.0.0.1:$HP" "127.0.0.1:$CM_IMAP_PORT" huge-uidnext "$CM_WORK/tls-huge.log"
# mitm_route NAME USER PORT [OPTIONS...]: an ingest route of USER over
# plain IMAP through the man in the middle on PORT, started
mitm_route() {
    local name=$1 user=$2 port=$3; shift 3
    CM_PW=$user-pw-Secret1 "$CM" route add "$name" --email "$user@example.test" \
        --username "$user@example.test" --password-env CM_PW --inbound-host 127.0.0.1 \
        --inbound-protocol imap --inbound-port "$port" --outbound-host localhost \
        --outbound-protocol smtps --outbound-port "$CM_SMTPS_PORT" --ca-file "$CM_CA_FILE" \
        --kind ingest "$@" >/dev/null
    "$CM" route start "$name" >/dev/null
}
# route_takes NAME N DESC: ok when N of the route's messages are settled
route_takes() {
    local r="route_id = (SELECT id FROM routes WHERE name = '$1')"
    if wait_until 30 sql_at_least "$2" "SELECT count(*) FROM messages WHERE $r AND state <> 'fetched'"; then ok "$3"
    else not_ok "$3" "status $(route_status "$1"): $("$CM" route show "$1" --json | json 'j.get("last_error")')"; fi
}
# mailbox_gets USER N NAME: N corpus messages, made into $CM_WORK/tls-NAME,
# put into USER's INBOX.
mailbox_gets() {
    rm -rf "$CM_WORK/tls-$3"
    python3 "$CM_TOP/tests/tools/mkmail.py" bulk "$2" "$CM_WORK/tls-$3" --corpus "$CM_TOP/../shared/corpus/hunnysoft" --prefix "$3" >/dev/null
    "$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" "$1" INBOX -d "$CM_WORK/tls-$3" >/dev/null
}
# via_mitm NAME USER N MODE [route options]: N messages for USER (as
# mailbox_gets), a man in the middle in MODE before Dovecot's plain port
# (its port in VIA_PORT, its log $CM_WORK/tls-NAME.log), and route NAME
# through it, started.
via_mitm() {
    local name=$1 user=$2 n=$3 mode=$4; shift 4
    mailbox_gets "$user" "$n" "$name"
    VIA_PORT=$(free_port)
    mitm "127.0.0.1:$VIA_PORT" "127.0.0.1:$CM_IMAP_PORT" "$mode" "$CM_WORK/tls-$name.log"
    mitm_route "$name" "$user" "$VIA_PORT" "$@"
}
# file_shas DIR: SHA-256 of each file in DIR with CRLF line ends (as IMAP
# sends it), sorted
file_shas() {
    for f in "$1"/*; do python3 -c 'import hashlib, sys
d = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
print(hashlib.sha256(d).hexdigest())' "$f"; done | sort
}
# unseen USER: how many messages of USER's INBOX are unread
unseen() { curl -s --cacert "$CM_CA_FILE" -u "$1@example.test:$1-pw-Secret1" "imaps://localhost:$CM_IMAPS_PORT/INBOX" -X "SEARCH UNSEEN" | tr -d '\r' | sed -n 's/^\* SEARCH//p' | wc -w; }
mitm_route huge u21 "$HP" --since 2024-01-01
H="route_id = (SELECT id FROM routes WHERE name = 'huge')"
route_takes huge 2 "a UIDNEXT over 2^32 with --since: the folder's 2 messages come in"
check_eq "the route is RUNNING, the limit recorded the last message's UID" "RUNNING|t" \
    "$(route_status huge)|$(sql "SELECT since_top = last_uid FROM route_cursors WHERE $H")"


# A server whose announced sizes (RFC822.SIZE) are not its messages'
# (hMailServer, some hosted Exchange do this on every message): each
# message is fetched twice the first time, the same bytes both times, and
# kept; the route does not stop on it.
src=$CM_WORK/tls-badsize
via_mitm badsize u27 12 bad-size --after-fetch seen
B="route_id = (SELECT id FROM routes WHERE name = 'badsize')"
route_takes badsize 12 "a server announcing wrong sizes: its 12 messages come in"
check_eq "each stored as the server sent it, not cut to the announced size" "$(file_shas "$src")" \
    "$(sql "SELECT raw_sha256 FROM messages WHERE $B ORDER BY 1")"
check_eq "and each acknowledged (seen), the route RUNNING" "0 RUNNING" \
    "$(unseen u27) $(route_status badsize)"
check_contains "the fetcher says the server's sizes are not its messages'" "announces sizes that are not its messages'" \
    "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"

# A connection that sends other bytes when a message is fetched a second
# time (its sizes are wrong too, so each message is fetched twice): none
# of it is committed, the route is FAILED naming the sizes, and the mail
# stays in the mailbox unread. Straight to the server, it all comes in.
src=$CM_WORK/tls-changing
via_mitm changing u29 6 changing --after-fetch seen
C="route_id = (SELECT id FROM routes WHERE name = 'changing')"
if wait_until 30 status_is changing FAILED; then ok "other bytes the second time: the route is FAILED"
else not_ok "other bytes the second time: the route is FAILED" "status $(route_status changing)"; fi
check_contains "... naming both fetches" "bytes the second time" \
    "$("$CM" route show changing --json | json 'j.get("last_error")')"
check_eq "nothing of it is committed" 0 "$(sql "SELECT count(*) FROM messages WHERE $C")"
check_eq "the mail stays in the mailbox, unread" 6 "$(unseen u29)"
"$CM" route set changing --inbound-port "$CM_IMAP_PORT" >/dev/null
route_takes changing 6 "straight to the server, its 6 messages come in"
check_eq "each as the server has it" "$(file_shas "$src")" "$(sql "SELECT raw_sha256 FROM messages WHERE $C ORDER BY 1")"

# Another client makes the processed folder between the move that found
# it missing ([TRYCREATE]) and casemail's CREATE ([ALREADYEXISTS]): the
# move is made again, into that folder.
via_mitm race u30 5 create-race --after-fetch move --processed-folder Handled
route_takes race 5 "a processed folder another client made meanwhile: the 5 messages come in"
count_in() { curl -s --cacert "$CM_CA_FILE" -u "u30@example.test:u30-pw-Secret1" "imaps://localhost:$CM_IMAPS_PORT/" -X "STATUS $1 (MESSAGES)" | tr -d '\r' | sed -n 's/.*MESSAGES \([0-9]*\).*/\1/p'; }
moved() { [ "$(count_in Handled)" = 5 ] && [ "$(count_in INBOX)" = 0 ]; }
if wait_until 20 moved; then ok "... and are moved into it"
else not_ok "... and are moved into it" "Handled: $(count_in Handled), INBOX: $(count_in INBOX); $(route_status race)"; fi
check_contains "casemail asked to create it" "CREATE" "$(cat "$CM_WORK/tls-race.log")"
check_lacks "... and does not say it made it" "processed folder Handled did not exist" "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"
check_eq "the route is RUNNING, with no error on the way" "RUNNING None" \
    "$("$CM" route show race --json | json '"%s %s" % (j["status"], j["last_error"])')"

# A server that refuses to LIST the processed folder: `route test-inbound`
# fails, naming the folder and the server's answer (the proxy answers NO
# itself, so Dovecot never sees the LIST); the same route with a folder
# the server lists passes through the same proxy.
LP=$(free_port)
mitm "127.0.0.1:$LP" "127.0.0.1:$CM_IMAP_PORT" refuse-list "$CM_WORK/tls-list.log"
list_test() {
    OUT=$(CM_PW=u30-pw-Secret1 "$CM" route test-inbound --email u30@example.test \
        --username u30@example.test --password-env CM_PW --inbound-host 127.0.0.1 \
        --inbound-protocol imap --inbound-port "$LP" --after-fetch move --processed-folder "$1" 2>&1)
    RC=$?
}
list_test Refused
check_eq "a processed folder the server will not list: the test fails" 1 "$RC"
check_contains "... naming the folder and the answer" \
    "processed folder Refused: LIST refused: " "$OUT"
check_contains "... with the server's words" "LIST failed: internal error" "$OUT"
check_contains "... and the proxy did refuse a LIST of it" 'LIST "" "Refused"' "$(cat "$CM_WORK/tls-list.log")"
list_test Handled
check_eq "... through the same proxy a listed folder passes" 0 "$RC"
check_contains "... and is reported" "processed folder Handled exists" "$OUT"

# FETCH answers this parser cannot match to the message asked about are
# never taken for "expunged meanwhile" (which skips the message): flags
# holding NIL and a keyword of 300 characters (set by another client) are
# read, and an answer without its UID item is settled by UID SEARCH: the
# message is there, and is fetched without its size.
odd_route() { # NAME USER MODE DESC
    local src=$CM_WORK/tls-$1
    via_mitm "$1" "$2" 12 "$3" --after-fetch seen
    ODD_PORT=$VIA_PORT
    route_takes "$1" 12 "$4: its 12 messages come in"
    check_eq "... each stored as the server holds it" "$(file_shas "$src")" \
        "$(sql "SELECT raw_sha256 FROM messages WHERE route_id = (SELECT id FROM routes WHERE name = '$1') ORDER BY 1")"
    if wait_until 20 sh -c "[ \"\$(curl -s --cacert '$CM_CA_FILE' -u '$2@example.test:$2-pw-Secret1' 'imaps://localhost:$CM_IMAPS_PORT/INBOX' -X 'SEARCH UNSEEN' | tr -d '\r' | sed -n 's/^\* SEARCH//p' | wc -w)\" = 0 ]"
    then ok "... each acknowledged (seen)"; else not_ok "... each acknowledged (seen)" "$(unseen "$2") unread"; fi
    check_eq "... the route RUNNING" "RUNNING" "$(route_status "$1")"
}
odd_route oddflags u31 odd-flags "FLAGS with NIL and a 300-character keyword"
check_contains "... the proxy does send them" "FLAGS (NIL \$kkkk" \
    "$(curl -s -u u31@example.test:u31-pw-Secret1 "imap://127.0.0.1:$ODD_PORT/INBOX" -X "FETCH 1 (UID FLAGS RFC822.SIZE)")"
odd_route nouid u32 no-uid "FETCH answers without their UID"
check_contains "... the fetcher says it fetched them without their size" \
    "the server's answer to UID FETCH (UID FLAGS RFC822.SIZE) could not be read" \
    "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"

# A server that ends IDLE itself (its own time limit: a tagged OK the
# client did not ask for with DONE): the fetcher looks at the folder
# again and idles anew, so mail that arrives later still comes in at
# once, not after its own re-check a minute on.
via_mitm endidle u33 3 end-idle
route_takes endidle 3 "a server that ends IDLE itself: the folder's 3 messages come in"
idles() { grep -c " IDLE" "$CM_WORK/tls-endidle.log"; }
wait_until 20 sh -c "[ \$(grep -c ' IDLE' '$CM_WORK/tls-endidle.log') -ge 3 ]" \
    || not_ok "the fetcher idles again after the server ended IDLE" "IDLE commands: $(idles)"
mailbox_gets u33 1 endidle-late
route_takes endidle 4 "... and a message that arrives later comes in"
check_eq "... the route RUNNING, with no error" "RUNNING None" \
    "$("$CM" route show endidle --json | json '"%s %s" % (j["status"], j["last_error"])')"
check_contains "... the fetcher noted the server's end of IDLE" "127.0.0.1 ended IDLE: OK" \
    "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"

# One that ends every IDLE at once: the fetcher polls that server instead
# (a NOOP every 10 s), not a busy loop of IDLE and search; mail still
# comes in.
export MITM_IDLE_END=0
via_mitm idle0 u35 2 end-idle
unset MITM_IDLE_END
route_takes idle0 2 "a server that ends IDLE at once: the folder's 2 messages come in"
sleep 8
check_eq "... it is polled, not sent IDLE again and again" "yes" \
    "$([ "$(grep -c ' IDLE' "$CM_WORK/tls-idle0.log")" -le 3 ] && echo yes || echo "no: $(grep -c ' IDLE' "$CM_WORK/tls-idle0.log") IDLE commands")"
mailbox_gets u35 1 idle0-late
route_takes idle0 3 "... and a message that arrives later comes in"
