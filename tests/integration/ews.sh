#!/usr/bin/env bash
# tests/integration/ews.sh: Exchange routes over EWS against the stand-in
# (tests/ews/standin.py; issue 6, items 1-4 and 6).
#   1. BASIC, NTLM and OAUTH2 routes pass TEST INBOUND and TEST OUTBOUND;
#      a wrong password, a wrong client secret, an unknown tenant and a
#      refused version each fail with their reason;
#   2. 1,000 messages become incidents exactly once while the fetcher is
#      killed (kill -9) and restarted and the tokens expire twice; marked
#      read (after_fetch seen) or moved (after_fetch move);
#   3. incident email sent over EWS reaches the sent folder with the
#      headers (From, To, Subject with tag, Message-ID, In-Reply-To) and
#      attachments; a reply dropped into the mailbox lands on the incident;
#   4. "other" settles on Exchange2010_SP2 against a 2010 SP2 server and on
#      Exchange2016 against a current one (route show);
#   6. no token, client secret or password in any log, API answer or dump.
. "$CM_TOP/tests/lib.sh"
export CASEMAIL_SEND_RETRY_BASE_MS=500
export CASEMAIL_SEND_STALL_MS=4000      # the sender's stall time (section 3)
E=$CM_WORK/ews
T=$CM_WORK/$CM_TEST.d
rm -rf "$T"; mkdir -p "$T"
ews_stop() {
    cm_stop
    EWS_NAME=old "$CM_TOP/tests/ews/stop.sh" "$E" >/dev/null 2>&1 || true
    "$CM_TOP/tests/ews/stop.sh" "$E" >/dev/null 2>&1 || true
}
trap ews_stop EXIT
if "$CM_TOP/tests/ews/start.sh" "$E" > "$T/ews-start.log" 2>&1 \
   && EWS_NAME=old "$CM_TOP/tests/ews/start.sh" "$E" "$CM_TOP/tests/ews/config.json" \
        --server-version 2010sp2 > "$T/old-start.log" 2>&1; then
    ok "EWS stand-ins start (current and 2010sp2)"
else
    not_ok "EWS stand-ins start" "$(tail -5 "$T"/*start.log)"; exit 1
fi
OLD_PORT=$(. "$E/old.env"; echo "$EWS_PORT")
OLD_CONTROL=$(. "$E/old.env"; echo "$EWS_CONTROL_URL")
. "$E/ews.env"
cm_start || exit 1

TENANT=11111111-2222-3333-4444-555555555555
APP=aaaaaaaa-aaaa-4aaa-aaaa-aaaaaaaaaaaa
export APP_SECRET='Ews~App~Secret~1'
TOKEN_PREFIX=eyJ0eXAiOiAiSldUIiwgImFsZyI6ICJIUzI1NiIsICJraWQiOiAic3RhbmRpbiJ9

ctl() { local m=$1 p=$2; shift 2; curl -sf -X "$m" "$EWS_CONTROL_URL/$p" "$@"; }
# ews_add NAME ADDRESS [OPTIONS...]: an Exchange route on the current stand-in
ews_add() {
    local name=$1 addr=$2; shift 2
    "$CM" route add "$name" --email "$addr" --exchange --exchange-host 127.0.0.1 \
        --exchange-port "${PORT:-$EWS_PORT}" --ca-file "$EWS_CA_FILE" "$@"
}
oauth_opts=(--auth oauth2 --oauth-client-id "$APP" --oauth-client-secret-env APP_SECRET
            --oauth-tenant-id "$TENANT" --oauth-authority "$TOKEN_URL")
test_both() {      # test_both NAME DESC: TEST INBOUND and TEST OUTBOUND pass
    run_cm route test-inbound "$1"
    if [ "$RC" = 0 ]; then ok "$2: TEST INBOUND passes ($(printf '%s' "$OUT" | head -1))"
    else not_ok "$2: TEST INBOUND passes" "$OUT"; fi
    run_cm route test-outbound "$1"
    if [ "$RC" = 0 ]; then ok "$2: TEST OUTBOUND passes"; else not_ok "$2: TEST OUTBOUND passes" "$OUT"; fi
}
test_fails() {     # test_fails NAME DESC NEEDLE
    run_cm route test-inbound "$1"
    if [ "$RC" != 0 ]; then check_contains "$2 fails with its reason ($(printf '%s' "$OUT" | head -c 300))" "$3" "$OUT"
    else not_ok "$2 fails" "$OUT"; fi
}

# --- 1. authentication types and their failures ----------------------
export PW1=ews1-pw-Secret1 PW2=ews2-pw-Secret1 BADPW=not-the-password
ews_add basic1 ews1@contoso.test --auth basic --username ews1@contoso.test --password-env PW1 >/dev/null \
    || not_ok "basic route added"
ews_add ntlm2 ews2@contoso.test --auth ntlm --username 'CONTOSO\ews2' --password-env PW2 >/dev/null \
    || not_ok "ntlm route added"
ews_add oauth3 ews3@contoso.test "${oauth_opts[@]}" >/dev/null || not_ok "oauth2 route added"
test_both basic1 "BASIC (ews1@contoso.test)"
test_both ntlm2 "NTLM (CONTOSO\\ews2)"
test_both oauth3 "OAUTH2 (app-only, impersonating ews3)"
ntlm=$(ctl GET stats | json 'j.get("ntlm")')
check_contains "the stand-in saw NTLM handshakes" "type1" "$ntlm"

ews_add badpw ews1@contoso.test --auth basic --username 'CONTOSO\ews1' --password-env BADPW >/dev/null
test_fails badpw "a wrong password" "BASIC refused"
export BAD_SECRET='Wrong~Secret~9'
ews_add badsecret ews4@contoso.test --auth oauth2 --oauth-client-id "$APP" \
    --oauth-client-secret-env BAD_SECRET --oauth-tenant-id "$TENANT" --oauth-authority "$TOKEN_URL" \
    --username badsecret@contoso.test >/dev/null
test_fails badsecret "a wrong client secret" "AADSTS7000215"
ews_add badtenant ews4@contoso.test --auth oauth2 --oauth-client-id "$APP" \
    --oauth-client-secret-env APP_SECRET --oauth-tenant-id 99999999-9999-4999-9999-999999999999 \
    --oauth-authority "$TOKEN_URL" --username badtenant@contoso.test >/dev/null
test_fails badtenant "an unknown tenant" "AADSTS90002"

# --- 4. version negotiation (and 1: a refused version) --------------
export PW3=ews3-pw-Secret1 PW4=ews4-pw-Secret1 PW5=ews5-pw-Secret1
PORT=$OLD_PORT ews_add other-old ews4@contoso.test --auth ntlm --username 'CONTOSO\ews4' \
    --password-env PW4 --exchange-version other --kind ingest >/dev/null || not_ok "route other-old added"
ews_add other-new ews5@contoso.test --auth basic --username 'CONTOSO\ews5' \
    --password-env PW5 --exchange-version other --kind ingest >/dev/null || not_ok "route other-new added"
"$CM" route start other-old >/dev/null
"$CM" route start other-new >/dev/null
vused() { "$CM" route show "$1" --json | json 'j.get("exchange_version_used")'; }
wait_until 20 status_is other-old RUNNING
wait_until 10 status_is other-new RUNNING
check_eq "\"other\" against a 2010 SP2 server settles on Exchange2010_SP2" Exchange2010_SP2 "$(vused other-old)"
check_eq "\"other\" against a current server settles on Exchange2016" Exchange2016 "$(vused other-new)"
check_contains "route show prints the version in use" "exchange_version_used:" "$("$CM" route show other-old)"
"$CM" route stop other-old >/dev/null
"$CM" route stop other-new >/dev/null
curl -sf -X POST "$OLD_CONTROL/server-version?value=2007sp1" >/dev/null
PORT=$OLD_PORT ews_add refused ews3@contoso.test --auth basic --username 'CONTOSO\ews3' \
    --password-env PW3 --exchange-version 2010sp2 >/dev/null || not_ok "route refused added"
test_fails refused "a version the server refuses (2010sp2 against 2007 SP1)" "ErrorInvalidServerVersion"

# --- 2. 1,000 messages, exactly once, kill -9 and expiring tokens ----
N=1000; NMOVE=60
python3 - "$T" "$N" "$NMOVE" <<'PY'
import json, sys
d, n, nm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def msg(i, to, tag):
    return ("From: Reporter %d <rep%d@outside.test>\r\nTo: %s\r\nSubject: %s report %d\r\n"
            "Message-ID: <%s-%d@outside.test>\r\nDate: Sat, 28 Nov 2026 12:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Report number %d.\r\n" % (i, i, to, tag, i, tag, i, i))
json.dump({"mailbox": "ews1@contoso.test", "folder": "inbox",
           "messages": [msg(i, "ews1@contoso.test", "bulk") for i in range(n)]},
          open(d + "/bulk.json", "w"))
json.dump({"mailbox": "ews5@contoso.test", "folder": "inbox",
           "messages": [msg(i, "ews5@contoso.test", "moved") for i in range(nm)]},
          open(d + "/move.json", "w"))
PY
ctl POST token-lifetime?seconds=3600 >/dev/null
got=$(ctl POST deliver-many -H 'Content-Type: application/json' --data-binary @"$T/bulk.json" | json 'j["delivered"]')
check_eq "the stand-in's ews1 mailbox holds $N new messages" "$N" "$got"
ctl POST deliver-many -H 'Content-Type: application/json' --data-binary @"$T/move.json" >/dev/null
tokens0=$(ctl GET stats | json 'sum(j.get("tokens_issued", {}).values()) if isinstance(j.get("tokens_issued"), dict) else j.get("tokens_issued", 0)')
"$CM" route rm basic1 >/dev/null          # the bulk route takes its mailbox account
ews_add bulk ews1@contoso.test "${oauth_opts[@]}" --after-fetch seen --log-level verbose >/dev/null
ews_add mover ews5@contoso.test --auth basic --username ews5@contoso.test \
    --password-env PW5 --after-fetch move --processed-folder Processed --kind ingest >/dev/null \
    || not_ok "move route added"
# A move route's processed folder: the fetcher looks it up at the start
# and does not make it, so the inbound test checks it.
run_cm route test-inbound mover
check_contains "TEST INBOUND of a move route names its processed folder" "processed folder Processed exists" "$OUT"
run_cm route test-inbound --email ews5@contoso.test --exchange --exchange-host 127.0.0.1 \
    --exchange-port "$EWS_PORT" --ca-file "$EWS_CA_FILE" --auth basic --username ews5@contoso.test \
    --password-env PW5 --after-fetch move --processed-folder "Nowhere$$"
check_eq "... one that does not exist fails the test" 1 "$RC"
check_contains "... naming it" "processed folder: folder Nowhere$$ not found" "$OUT"
t0=$(date +%s)
"$CM" route start bulk >/dev/null
"$CM" route start mover >/dev/null
msgs() { sql "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = '$1'"; }
wait_until 60 sql_at_least 150 "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = 'bulk'"
ctl POST expire-tokens >/dev/null && ok "tokens expired (1st) after $(msgs bulk) messages"
fpid=$("$CM" stage list --json | json '[s["pid"] for s in j["stages"] if s["kind"] == "fetcher" and s.get("state") == "alive"][0]')
wait_until 60 sql_at_least 400 "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = 'bulk'"
before=$(msgs bulk)
if kill -9 "$fpid" 2>/dev/null; then ok "fetcher $fpid killed (kill -9) after $before messages"
else not_ok "fetcher killed" "pid '$fpid'"; fi
wait_until 30 sh -c "\"$CM\" stage list --json | grep -q fetcher && ! kill -0 $fpid" || true
wait_until 60 sql_at_least 700 "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = 'bulk'"
ctl POST expire-tokens >/dev/null && ok "tokens expired (2nd) after $(msgs bulk) messages"
all_parsed() {
    [ "$(sql "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = 'bulk' AND m.state = 'parsed'")" -ge "$N" ]
}
if wait_until 180 all_parsed; then ok "all $N messages fetched and parsed in $(( $(date +%s) - t0 )) s"
else not_ok "all $N messages fetched and parsed" "messages $(msgs bulk)" "$("$CM" route show bulk | grep -E 'status|error')"; fi
check_eq "$N messages stored for the route, each once" "$N $N" \
    "$(sql "SELECT count(*), count(DISTINCT message_id) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = 'bulk'" | tr '|' ' ')"
check_eq "$N incidents, one per message" "$N" \
    "$(sql "SELECT count(*) FROM incidents i JOIN routes r ON r.id = i.route_id WHERE r.name = 'bulk'")"
unread() { ctl GET "items?mailbox=ews1@contoso.test&folder=inbox" | json 'j["unread"]'; }
wait_until 20 sh -c '[ "$(curl -sf "'"$EWS_CONTROL_URL"'/items?mailbox=ews1@contoso.test&folder=inbox" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"unread\"])")" = 0 ]'
check_eq "every message is marked read in the mailbox (after_fetch seen)" "0 $N" \
    "$(ctl GET "items?mailbox=ews1@contoso.test&folder=inbox" | json '"%d %d" % (j["unread"], j["count"])')"
tokens1=$(ctl GET stats | json 'sum(j.get("tokens_issued", {}).values()) if isinstance(j.get("tokens_issued"), dict) else j.get("tokens_issued", 0)')
if [ "$((tokens1 - tokens0))" -ge 3 ]; then ok "tokens were fetched again after expiring ($((tokens1 - tokens0)) issued)"
else not_ok "tokens were fetched again after expiring" "issued $((tokens1 - tokens0))"; fi
check_eq "the bulk route is RUNNING" RUNNING "$(route_status bulk)"
fpid2=$("$CM" stage list --json | json '[s["pid"] for s in j["stages"] if s["kind"] == "fetcher" and s.get("state") == "alive"][0]')
if [ -n "$fpid2" ] && [ "$fpid2" != "$fpid" ]; then ok "a new fetcher ($fpid2) took over the route"
else not_ok "a new fetcher took over the route" "before $fpid, now '$fpid2'"; fi
wait_until 30 sh -c '[ "$(curl -sf "'"$EWS_CONTROL_URL"'/items?mailbox=ews5@contoso.test&folder=Processed" | python3 -c "import json,sys; print(json.load(sys.stdin)[\"count\"])")" = '"$NMOVE"' ]'
check_eq "after_fetch move: $NMOVE messages moved to Processed, inbox empty" "$NMOVE 0" \
    "$(ctl GET "items?mailbox=ews5@contoso.test&folder=Processed" | json 'j["count"]') $(ctl GET "items?mailbox=ews5@contoso.test&folder=inbox" | json 'j["count"]')"
check_eq "after_fetch move: $NMOVE messages stored" "$NMOVE" "$(msgs mover)"

# --- 3. incident email over EWS, and the reply -----------------------
INC=$(sql "SELECT 'INC-' || i.number FROM incidents i JOIN routes r ON r.id = i.route_id WHERE r.name = 'bulk' ORDER BY i.id LIMIT 1")
FIRST=$(sql "SELECT m.message_id FROM messages m JOIN incidents i ON i.source_message = m.id WHERE 'INC-' || i.number = '$INC'")
head -c 3000 /dev/urandom > "$T/evidence.bin"
ATT_SHA=$(sha256sum "$T/evidence.bin" | cut -d' ' -f1)
run_cm incident email "$INC" --to rep0@outside.test --subject "Your report" --body "We are on it." \
    --attach "$T/evidence.bin" --wait --wait-timeout 30
check_eq "incident email over EWS exits 0" 0 "$RC"
check_contains "the reply says sent over EWS" "sent over EWS (Exchange2016)" "$OUT"
OUTMID=$(sql "SELECT message_id FROM outbox ORDER BY id DESC LIMIT 1")
run_cm incident email "$INC" --to rep0@outside.test --cc rep1@outside.test --subject "Update" \
    --body "Second note." --wait --wait-timeout 30
check_eq "a second email over EWS (the sender's client is reused) is sent" 0 "$RC"
ctl GET "sent?mailbox=ews1@contoso.test" > "$T/sent.json"
python3 - "$T/sent.json" "$OUTMID" > "$T/sent.out" <<'PY'
import base64, email, email.policy, hashlib, json, sys
j = json.load(open(sys.argv[1])); mid = sys.argv[2].strip("<>")
for s in j["sent"]:
    m = email.message_from_bytes(base64.b64decode(s["mime_b64"]), policy=email.policy.default)
    if (m.get("Message-ID") or "").strip().strip("<>") == mid:
        atts = [hashlib.sha256(p.get_payload(decode=True)).hexdigest() + ":" + (p.get_filename() or "")
                for p in m.walk() if p.get_content_disposition() == "attachment"]
        print("FROM=" + str(m["From"])); print("TO=" + str(m["To"])); print("SUBJECT=" + str(m["Subject"]))
        print("IRT=" + str(m["In-Reply-To"])); print("RCPT=" + ",".join(s["recipients"]))
        print("FOLDER=" + str(s.get("folder"))); print("ATT=" + " ".join(atts))
        break
PY
S=$(cat "$T/sent.out")
check_contains "sent: the email is in the stand-in's sent items" "FOLDER=sentitems" "$S"
check_contains "sent: From is the route's address" "ews1@contoso.test" "$(grep ^FROM= <<<"$S")"
check_contains "sent: To and recipients" "RCPT=rep0@outside.test" "$S"
check_contains "sent: Subject carries the tag" "[$INC]" "$(grep ^SUBJECT= <<<"$S")"
check_contains "sent: In-Reply-To names the incident's first message" "$FIRST" "$(grep ^IRT= <<<"$S")"
check_contains "sent: the attachment is byte-identical" "$ATT_SHA:evidence.bin" "$S"
RMID="reply-$$-$RANDOM@outside.test"
printf 'From: rep0@outside.test\r\nTo: ews1@contoso.test\r\nSubject: Re: [%s] Your report\r\nMessage-ID: <%s>\r\nIn-Reply-To: <%s>\r\nReferences: <%s>\r\nDate: Sat, 28 Nov 2026 12:30:00 +0000\r\n\r\nThanks, more details here.\r\n' \
    "$INC" "$RMID" "${OUTMID//[<>]/}" "${OUTMID//[<>]/}" > "$T/reply.eml"
ctl POST "deliver?mailbox=ews1@contoso.test&folder=inbox" --data-binary @"$T/reply.eml" >/dev/null
reply_inc() { sql "SELECT 'INC-' || i.number FROM timeline t JOIN incidents i ON i.id = t.incident_id WHERE t.message_id IN ('$RMID', '<$RMID>')"; }
wait_until 20 sh -c "[ -n \"\$(psql -X -q -t -A \"$CASEMAIL_DB\" -c \"SELECT 1 FROM timeline WHERE message_id IN ('$RMID', '<$RMID>')\")\" ]"
check_eq "a reply dropped into the mailbox lands on $INC" "$INC" "$(reply_inc)"

# A server that stops reading in the middle of a send (a 12 MB file): no
# byte moves for the stall time (4 s here), the attempt ends as a
# temporary failure naming the phase, twice, and the email goes out once
# at the third attempt. A server that is silent before it answers (as
# Exchange scanning a message) is waited for: that is no stall.
stalled() { ctl GET stats | json 'j.get("stalled", {}).get("upload", 0)'; }
sender_log() { cat "$CASEMAIL_HOME"/log/sender*.log; }
sent_copies() {     # sent_copies MESSAGE-ID: copies in the stand-in's sent items
    ctl GET "sent?mailbox=ews1@contoso.test" | python3 -c '
import base64, email, json, sys
mid = sys.argv[1].strip("<>"); n = 0
for s in json.load(sys.stdin)["sent"]:
    m = email.message_from_bytes(base64.b64decode(s["mime_b64"]))
    n += (m.get("Message-ID") or "").strip().strip("<>") == mid
print(n)' "$1"
}
head -c 12000000 /dev/urandom > "$T/big.bin"
ST0=$(stalled)
ctl POST "stall?min_body=8000000&count=2&after=1000000&hold=30" >/dev/null
run_cm incident email "$INC" --to rep0@outside.test --subject "Big evidence" --body "Attached." \
    --attach "$T/big.bin" --wait --wait-timeout 120
check_eq "a send the server stops reading: incident email still exits 0" 0 "$RC"
BIGID=$(sql "SELECT id FROM outbox ORDER BY id DESC LIMIT 1")
BIGMID=$(sql "SELECT message_id FROM outbox WHERE id = $BIGID")
check_eq "... the server stopped reading twice" 2 "$(( $(stalled) - ST0 ))"
check_eq "... sent at the third attempt" "sent 3" "$(sql "SELECT state || ' ' || attempts FROM outbox WHERE id = $BIGID")"
check_eq "... and once" 1 "$(sent_copies "$BIGMID")"
check_contains "... each stalled attempt names the stall and its phase" \
    "email $BIGID attempt 2: deferred: the server stalled: no byte moved for 4 s while the request was sent (" \
    "$(sender_log)"
# waited_busy INJECT SUBJECT DESC WHAT NOSTALL: a send the server answers
# with a busy fault after 8 s of silence (INJECT: the inject query) is
# waited for, not cut as a stall, and goes out once at the second attempt.
waited_busy() {
    ctl POST "inject?operation=CreateItem&count=1&hang=8&backoff=500$1" >/dev/null
    run_cm incident email "$INC" --to rep0@outside.test --subject "$2" --body "Slow answer." \
        --wait --wait-timeout 60
    check_eq "$3: incident email exits 0" 0 "$RC"
    local id log
    id=$(sql "SELECT id FROM outbox ORDER BY id DESC LIMIT 1")
    log=$(sender_log | grep "email $id attempt 1:")
    check_contains "... its answer was waited for ($4, 8 s later)" "ErrorServerBusy" "$log"
    check_lacks "... $5" "stalled" "$log"
    check_eq "... sent once, at the second attempt" "sent 2 1" \
        "$(sql "SELECT state || ' ' || attempts FROM outbox WHERE id = $id") $(sent_copies "$(sql "SELECT message_id FROM outbox WHERE id = $id")")"
}
waited_busy "" "Scanned" "a server silent for 8 s before it answers a send" \
    "the server's busy fault" "no stall in the wait for the answer"
# The same wait opened by an interim answer (HTTP 102 Processing, or any
# 1xx, as soon as the request is read): still the wait, no stall. Cut as
# a stall "while its answer was read", a send Exchange goes on to make
# would be made again at each attempt.
waited_busy "&interim=102" "Scanned, said so" "a server that answers 102 and is then silent for 8 s" \
    "the busy fault" "the interim answer is no stall"
# A success whose last bytes come 8 s late: the message went out, so the
# rest is waited for (cut and tried again, it would go out twice).
ctl POST "slow_answer?operation=CreateItem&count=1&pause=8" >/dev/null
run_cm incident email "$INC" --to rep0@outside.test --subject "Slow success" \
    --body "A 200 that ends late." --wait --wait-timeout 60
check_eq "a success answer that stops halfway for 8 s: incident email exits 0" 0 "$RC"
S200ID=$(sql "SELECT id FROM outbox ORDER BY id DESC LIMIT 1")
check_eq "... the answer was slowed" 1 "$(ctl GET stats | json 'j.get("slow_answers", {}).get("CreateItem", 0)')"
check_lacks "... and is no stall" "stalled" "$(sender_log | grep "email $S200ID attempt")"
check_eq "... sent once, at the first attempt" "sent 1 1" \
    "$(sql "SELECT state || ' ' || attempts FROM outbox WHERE id = $S200ID") $(sent_copies "$(sql "SELECT message_id FROM outbox WHERE id = $S200ID")")"

# A request that fails after a whole pass (the server busy once, asking
# for 4 s): the route waits that long, signs in again and stays RUNNING,
# the reason as its last error.
# (The fault goes to the next request of any route: bulk's is the only
# one left running.)
route_stop mover
wait_until 20 lease_free mover || not_ok "route mover's worker stopped" "its lease is still held"
status_log_start
ctl POST "inject?operation=SyncFolderItems&count=1&backoff=4000" >/dev/null
# ews_takes SUBJECT DESC: a message delivered to ews1's inbox; DESC passes
# once it is stored and parsed (route bulk's status and error if not).
ews_takes() {
    local mid="take-$$-$RANDOM@outside.test"
    printf 'From: rep0@outside.test\r\nTo: ews1@contoso.test\r\nSubject: %s\r\nMessage-ID: <%s>\r\nDate: Sat, 28 Nov 2026 12:40:00 +0000\r\n\r\nStill here.\r\n' "$1" "$mid" > "$T/take.eml"
    ctl POST "deliver?mailbox=ews1@contoso.test&folder=inbox" --data-binary @"$T/take.eml" >/dev/null
    if wait_until 30 sql_at_least 1 "SELECT count(*) FROM messages WHERE message_id IN ('$mid', '<$mid>') AND state <> 'fetched'"; then ok "$2"
    else not_ok "$2" "$("$CM" route show bulk --json | json '"%s %s" % (j["status"], j["last_error"])')"; fi
}
ews_takes "after a busy server" "a server busy once: the mail after it comes in"
check_eq "... the route RUNNING throughout" "" "$(status_log bulk)"
check_contains "... the busy answer as its last error" "ErrorServerBusy" "$("$CM" route show bulk --json | json 'j["last_error"]')"
check_contains "... and in the log, waiting the 4 s the server asked for" \
    "bulk warn: Exchange connection lost: server busy, try again later (ErrorServerBusy) (retry in 4000 ms)" \
    "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"
status_log_stop

# A sign-in that is itself throttled (the route's first GetFolder answered
# busy, asking for 3 s): the route is FAILED with the cause, waits what
# the server asked, signs in again and takes the mail.
route_stop bulk
wait_until 20 lease_free bulk || not_ok "route bulk's worker stopped" "its lease is still held"
status_log_start
ctl POST "inject?operation=GetFolder&count=1&backoff=3000" >/dev/null
"$CM" route start bulk >/dev/null
ews_takes "after a busy sign-in" "a throttled sign-in: the mail comes in once the route signs in again"
check_contains "... the route was FAILED, then RUNNING" "FAILED RUNNING" "$(status_log bulk)"
check_contains "... its last error the busy answer" "ErrorServerBusy" "$("$CM" route show bulk --json | json 'j["last_error"]')"
check_contains "... and it waited the 3 s the server asked for" \
    "bulk warn: cannot reach the mailbox: server busy, try again later (ErrorServerBusy) (retry in 3000 ms)" \
    "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"
status_log_stop

# Items that are not messages never stop the route: a contact dropped
# into the folder has no MIME form (ErrorUnsupportedMimeConversion), and
# a calendar item (IPM.Appointment) has no IsRead to set
# (ErrorInvalidPropertySet). The contact is recorded rejected with the
# reason and left in the mailbox; the calendar item is stored and left
# unread, the reason the route's last error; a message after them comes
# in and is marked read.
status_log_start
stamp=$$-$RANDOM
printf 'From: rep0@outside.test\r\nSubject: a contact %s\r\nMessage-ID: <contact-%s@outside.test>\r\n\r\nBEGIN:VCARD\r\n' "$stamp" "$stamp" > "$T/contact.eml"
printf 'From: rep0@outside.test\r\nTo: ews1@contoso.test\r\nSubject: an appointment %s\r\nMessage-ID: <post-%s@outside.test>\r\nDate: Sat, 28 Nov 2026 13:00:00 +0000\r\n\r\nPosted.\r\n' "$stamp" "$stamp" > "$T/post.eml"
printf 'From: rep0@outside.test\r\nTo: ews1@contoso.test\r\nSubject: after them %s\r\nMessage-ID: <after-%s@outside.test>\r\nDate: Sat, 28 Nov 2026 13:01:00 +0000\r\n\r\nStill flowing.\r\n' "$stamp" "$stamp" > "$T/after.eml"
CID=$(ctl POST "deliver?mailbox=ews1@contoso.test&folder=inbox&class=IPM.Contact" --data-binary @"$T/contact.eml" | json 'j["id"]')
PID=$(ctl POST "deliver?mailbox=ews1@contoso.test&folder=inbox&class=IPM.Appointment" --data-binary @"$T/post.eml" | json 'j["id"]')
ctl POST "deliver?mailbox=ews1@contoso.test&folder=inbox" --data-binary @"$T/after.eml" >/dev/null
if wait_until 30 sql_at_least 1 "SELECT count(*) FROM messages WHERE message_id IN ('after-$stamp@outside.test', '<after-$stamp@outside.test>') AND state <> 'fetched'"; then
    ok "a contact and a calendar item in the folder: the message after them comes in"
else not_ok "a contact and a calendar item in the folder: the message after them comes in" "$("$CM" route show bulk --json | json '"%s %s" % (j["status"], j["last_error"])')"; fi
check_contains "... the contact recorded rejected, with the reason" \
    "rejected|Exchange could not give this item as a message: ErrorUnsupportedMimeConversion" \
    "$(sql "SELECT state || '|' || reason FROM messages WHERE item_id = '$CID'")"
check_eq "... the calendar item stored and parsed" "parsed" \
    "$(sql "SELECT state FROM messages WHERE message_id IN ('post-$stamp@outside.test', '<post-$stamp@outside.test>')")"
read_of() { ctl GET "items?mailbox=ews1@contoso.test&folder=inbox" | json 'str([i["is_read"] for i in j["items"] if (i["subject"] or "").endswith("'"$1 $stamp"'")]).lower()'; }
check_eq "... the contact and the calendar item left unread, the message after them read" \
    "[false] [false] [true]" "$(read_of "a contact") $(read_of "an appointment") $(read_of "after them")"
check_contains "... the calendar item's refusal is the route's last error" \
    "an item could not be marked read: ErrorInvalidPropertySet" \
    "$("$CM" route show bulk --json | json 'j["last_error"]')"
check_eq "... and the route RUNNING throughout" "" "$(status_log bulk)"
status_log_stop

# A server that goes silent mid-request (no answer for 90 s): stopping
# the route does not wait it out; the request is given up, the lease is
# free at once, and the stop is no error of the route.
hung() { ctl GET stats | json 'j.get("hung", {}).get("SyncFolderItems", 0)'; }
H0=$(hung)
ctl POST "inject?operation=SyncFolderItems&count=1&hang=90" >/dev/null
hung_more() { [ "$(hung)" -gt "$H0" ]; }
wait_until 30 hung_more \
    || not_ok "the stand-in holds a SyncFolderItems" "hung: $(hung)"
L0=$(cat "$CASEMAIL_HOME"/log/fetcher-*.log | wc -l)
"$CM" route stop bulk >/dev/null
if wait_until 20 lease_free bulk; then ok "a silent server: the stopped route's lease is free at once"
else not_ok "a silent server: the stopped route's lease is free at once" "still held"; fi
check_eq "... the route STOPPED" "STOPPED" "$(route_status bulk)"
check_lacks "... and the request given up is no error of the route" "aborted" \
    "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log | tail -n +"$((L0 + 1))" | grep -E ' bulk (warn|error)')"

# --- 6. no token, secret or password anywhere ------------------------
"$CM" route show bulk --json > "$T/api-bulk.json"; "$CM" route list --json > "$T/api-list.json"
"$CM" route show ntlm2 --json > "$T/api-ntlm2.json"
pg_dump "$CASEMAIL_DB" > "$T/dump.sql" 2>/dev/null || sql "SELECT config::text FROM routes" > "$T/dump.sql"
files=$(find "$CASEMAIL_HOME" -name '*.log'; ls "$CM_WORK/$CM_TEST.up.log" "$T"/api-*.json "$T/dump.sql")
for s in "$APP_SECRET" "$BAD_SECRET" "$BADPW" ews1-pw-Secret1 ews2-pw-Secret1 ews3-pw-Secret1 ews4-pw-Secret1 ews5-pw-Secret1 "$TOKEN_PREFIX"; do
    hits=$(printf '%s\n' $files | xargs -r grep -lF -- "$s" 2>/dev/null)
    if [ -z "$hits" ]; then ok "no '${s:0:12}...' in any log, API answer or database dump"
    else not_ok "no '${s:0:12}...' in any log, API answer or database dump" $hits; fi
done
