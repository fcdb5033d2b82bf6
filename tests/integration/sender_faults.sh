#!/usr/bin/env bash
# tests/integration/sender_faults.sh: the sender stage under faults, with
# the real Postfix (issue 4, items 4 and 5).
#   4. with Postfix stopped an email stays queued (attempts grow, last error
#      set) and is sent once Postfix is back; a 5xx at RCPT (reject.test)
#      fails at once with Postfix's text; a wrong route password fails with
#      an authentication reason;
#   5. 500 emails queued while the senders are killed with kill -9 again
#      and again: every one ends `sent` and reaches the sink (none lost);
#      duplicates (at-least-once) are reported, not failed;
#   and a reply in Latin-1, and an answer to the end of the data after
#   130 s (men in the middle before Postfix's relay port): sent once; of
#   three recipients, one refused for good and one for now: the email
#   reaches the others, each once; a server that stops answering (at
#   RCPT TO, at DATA, while the data is sent): the attempt ends after the
#   stall time naming it, the email is sent at a later attempt, each
#   recipient once; an email to 520 recipients reaches every one.
# Uses the users u11 and u12 and the shared sink mailbox (messages found by
# Message-ID or a subject token unique to this run).
. "$CM_TOP/tests/lib.sh"
export CASEMAIL_SEND_RETRY_BASE_MS=500
export CASEMAIL_SEND_MAX_ATTEMPTS=30
export CASEMAIL_SEND_STALL_MS=4000
export CASEMAIL_SENDERS=2
export CASEMAIL_SENDER_THREADS=3

T=$CM_WORK/$CM_TEST.d
rm -rf "$T"
mkdir -p "$T"
TOK="sf$$x$RANDOM"
BULK=500

postfix_ctl() { "$CM_TOP/tests/stack/ctl.sh" "$CM_STACK_DIR" "$1" postfix; }
# Postfix is started again whatever happens to this script.
cleanup() {
    if [ "$(postfix_ctl status 2>/dev/null)" != running ]; then postfix_ctl start >/dev/null 2>&1; fi
    cm_stop
}
trap cleanup EXIT

cm_start || exit 1

cat > "$T/sink.py" <<'PY'
import email, imaplib, json, os, ssl, sys
def imap(user="sink"):
    ctx = ssl.create_default_context(cafile=os.environ["CM_CA_FILE"])
    m = imaplib.IMAP4_SSL("localhost", int(os.environ["CM_IMAPS_PORT"]), ssl_context=ctx)
    m.login("%s@example.test" % user, "%s-pw-Secret1" % user)
    return m
def headers(m, uids, fields):
    """{uid: email.message} of the given header fields, in batches."""
    out = {}
    for i in range(0, len(uids), 200):
        batch = b",".join(uids[i:i + 200])
        typ, data = m.uid("FETCH", batch, "(UID BODY.PEEK[HEADER.FIELDS (%s)])" % fields)
        for part in data:
            if isinstance(part, tuple):
                uid = part[0].split(b"UID ")[1].split()[0]
                out[uid] = email.message_from_bytes(part[1])
    return out
cmd = sys.argv[1]
if cmd == "clear":                  # clear USER: empties the user's INBOX
    m = imap(sys.argv[2]); m.select("INBOX")
    m.store("1:*", "+FLAGS", "\\Deleted") if int(m.select("INBOX")[1][0]) else None
    m.expunge()
elif cmd == "count":                # count MSGID: copies of that Message-ID in the sink
    m = imap(); m.select("INBOX", readonly=True)
    mid = sys.argv[2]
    typ, data = m.uid("SEARCH", "HEADER", "Message-ID", '"<%s>"' % mid)
    uids = data[0].split() if data and data[0] else []
    hs = headers(m, uids, "MESSAGE-ID")
    print(sum(1 for h in hs.values() if (h.get("Message-ID") or "").strip() == "<%s>" % mid))
elif cmd == "tally":                # tally TOKEN: {message_id: [dates]} of sink mail whose subject has TOKEN
    m = imap(); m.select("INBOX", readonly=True)
    typ, data = m.uid("SEARCH", "HEADER", "Subject", '"%s"' % sys.argv[2])
    uids = data[0].split() if data and data[0] else []
    hs = headers(m, uids, "MESSAGE-ID DATE SUBJECT")
    out = {}
    for h in hs.values():
        if sys.argv[2] in (h.get("Subject") or ""):
            out.setdefault((h.get("Message-ID") or "").strip().strip("<>"), []).append(h.get("Date"))
    print(json.dumps(out))
elif cmd == "envelopes":            # envelopes MSGID: each copy's envelope recipients, sorted
    m = imap(); m.select("INBOX", readonly=True)
    mid = sys.argv[2]
    typ, data = m.uid("SEARCH", "HEADER", "Message-ID", '"<%s>"' % mid)
    uids = data[0].split() if data and data[0] else []
    hs = headers(m, uids, "MESSAGE-ID X-ENVELOPE-TO")
    print(" ".join(sorted(",".join(sorted(h.get_all("X-Envelope-To") or []))
                          for h in hs.values()
                          if (h.get("Message-ID") or "").strip() == "<%s>" % mid)))
PY
sinkpy() { python3 "$T/sink.py" "$@"; }
outbox_json() { "$CM" outbox list --json; }
outbox_field() { outbox_json | json "[e for e in j['emails'] if e['id']==$1][0].get('$2')"; }
outbox_state_is() { [ "$(outbox_field "$1" state)" = "$2" ]; }
attempts_at_least() { [ "$(outbox_field "$1" attempts)" -ge "$2" ]; }
sink_count_is() { [ "$(sinkpy count "$1")" = "$2" ]; }
email_id() { printf '%s' "$1" | sed -n 's/.*email \([0-9][0-9]*\).*/\1/p' | head -1; }
# sent_within SECONDS EMAIL WHAT: the email is sent within SECONDS.
sent_within() {
    if wait_until "$1" outbox_state_is "$2" sent; then ok "$3"
    else not_ok "$3" "state $(outbox_field "$2" state): $(outbox_field "$2" last_error)"; fi
}
# sink_once EMAIL: its one copy reaches the sink.
sink_once() {
    local mid; mid=$(outbox_field "$1" message_id)
    wait_until 30 sink_count_is "$mid" 1
    check_eq "... and it reaches the sink once" 1 "$(sinkpy count "$mid")"
}
# open_incident ROUTE USER SUBJECT: delivers a message; prints the INC-n it opened
open_incident() {
    deliver "$2@$CM_MAIL_DOMAIN" "$3" --body "opening $3"
    wait_until 30 sh -c "'$CM' incident list --json | grep -q '$3'" || return 1
    "$CM" incident list --json | json "[i['number'] for i in j['incidents'] if i['title']=='$3'][0]"
}

sinkpy clear u11 || not_ok "the u11 mailbox is emptied before the test"
sinkpy clear u12 || not_ok "the u12 mailbox is emptied before the test"
route_add sf u11 >/dev/null
route_add sfpw u12 >/dev/null
"$CM" route start sf >/dev/null
"$CM" route start sfpw >/dev/null
wait_until 30 status_is sf RUNNING || not_ok "route sf RUNNING" "$(route_status sf)"
wait_until 30 status_is sfpw RUNNING || not_ok "route sfpw RUNNING" "$(route_status sfpw)"
INC=$(open_incident sf u11 "Faults $TOK")
INCPW=$(open_incident sfpw u12 "Password $TOK")
case "$INC$INCPW" in INC-*INC-*) ok "incidents opened on both routes ($INC, $INCPW)" ;;
    *) not_ok "incidents opened on both routes" "got '$INC' and '$INCPW'"; exit 1 ;; esac

# --- 4a. outbound server down: queued, retried, sent once it is back ----
postfix_ctl stop >/dev/null 2>&1
check_eq "Postfix is stopped" stopped "$(postfix_ctl status 2>/dev/null)"
run_cm incident email "$INC" --to "down-$TOK@outside.test" --subject "While down $TOK" --body "Queued."
check_eq "the email is accepted while Postfix is down" 0 "$RC"
E1=$(email_id "$OUT")
if wait_until 30 attempts_at_least "$E1" 3; then ok "attempts grow while Postfix is down"
else not_ok "attempts grow while Postfix is down" "attempts: $(outbox_field "$E1" attempts)"; fi
check_eq "the email stays queued (not failed)" queued "$(outbox_field "$E1" state)"
ERR1=$(outbox_field "$E1" last_error)
echo "# last_error while down: $ERR1"
if [ -n "$ERR1" ] && [ "$ERR1" != None ]; then ok "last_error says why it is waiting"
else not_ok "last_error says why it is waiting" "last_error: $ERR1"; fi
check_eq "the outbox list shows no sent_at while down" None "$(outbox_field "$E1" sent_at)"
postfix_ctl start >/dev/null 2>&1
check_eq "Postfix is started again" running "$(postfix_ctl status 2>/dev/null)"
if wait_until 60 outbox_state_is "$E1" sent; then ok "the email is sent once Postfix is back"
else not_ok "the email is sent once Postfix is back" "state $(outbox_field "$E1" state): $(outbox_field "$E1" last_error)"; fi
MID1=$(outbox_field "$E1" message_id)
if wait_until 30 sink_count_is "$MID1" 1; then ok "the delayed email reaches the sink once"
else not_ok "the delayed email reaches the sink once" "copies: $(sinkpy count "$MID1")"; fi

# --- 4b. a 5xx at RCPT fails at once with Postfix's text ----------------
run_cm incident email "$INC" --to "nobody-$TOK@reject.test" --subject "Rejected $TOK" --body "x" \
    --wait --wait-timeout 30
check_eq "incident email --wait exits 1 for a rejected recipient" 1 "$RC"
check_contains "--wait prints the failure" "failed" "$OUT"
E2=$(email_id "$OUT")
check_eq "the rejected email is failed" failed "$(outbox_field "$E2" state)"
check_eq "it failed at once (one attempt)" 1 "$(outbox_field "$E2" attempts)"
ERR2=$(outbox_field "$E2" last_error)
check_contains "last_error has Postfix's code" "550" "$ERR2"
check_contains "last_error has Postfix's text" "Recipient rejected by the casemail test stack" "$ERR2"
check_contains "the failure shows on the incident's timeline" "failed" \
    "$("$CM" incident show "$INC" --json | json "[e.get('state') for e in j['timeline'] if e.get('outbox_id')==$E2]")"

# --- 4c. a wrong password fails with an authentication reason -----------
BADPW=wrong-password-$TOK "$CM" route set sfpw --password-env BADPW >/dev/null 2>&1
check_eq "route set --password-env changes the password" 0 "$?"
run_cm incident email "$INCPW" --to "pw-$TOK@outside.test" --subject "Wrong password $TOK" \
    --body "x" --wait --wait-timeout 30
check_eq "incident email --wait exits 1 with a wrong password" 1 "$RC"
E3=$(email_id "$OUT")
check_eq "the email is failed" failed "$(outbox_field "$E3" state)"
check_eq "it failed at once (one attempt)" 1 "$(outbox_field "$E3" attempts)"
ERR3=$(outbox_field "$E3" last_error)
echo "# last_error with a wrong password: $ERR3"
check_contains "last_error gives an authentication reason" "authentication" \
    "$(printf '%s' "$ERR3" | tr 'A-Z' 'a-z')"
check_lacks "last_error never shows the password" "wrong-password-$TOK" "$ERR3"
"$CM" route stop sfpw >/dev/null 2>&1

# --- 4d. a server's words that are not UTF-8 ---------------------------
# A localised server answers the end of the data in Latin-1 (a man in the
# middle before Postfix's relay port, which offers no AUTH: the route's
# password is not asked for). The email is sent once and recorded sent,
# the reply kept with the bytes it cannot store as '?'; it is not sent
# again and again because its outcome could not be written.
L1P=$(free_port)
mitm "127.0.0.1:$L1P" "127.0.0.1:$CM_SMTP_NOTLS_PORT" latin1-smtp "$T/latin1.log"
"$CM" route set sfpw --outbound-protocol smtp --outbound-host 127.0.0.1 --outbound-port "$L1P" >/dev/null
run_cm incident email "$INCPW" --to "l1-$TOK@outside.test" --subject "Latin-1 $TOK" \
    --body "x" --wait --wait-timeout 30
check_eq "a reply in Latin-1: incident email --wait exits 0" 0 "$RC"
E4=$(email_id "$OUT")
check_eq "... the email is sent, at the first attempt" "sent 1" \
    "$(outbox_field "$E4" state) $(outbox_field "$E4" attempts)"
check_contains "... the reply kept, its Latin-1 byte as '?'" "250 2.0.0 Ok: re?u, queued as" \
    "$(outbox_field "$E4" smtp_reply)"
MID4=$(outbox_field "$E4" message_id)
wait_until 30 sink_count_is "$MID4" 1
sleep 3     # a send repeated every second would show by now
check_eq "... and it reaches the sink once" 1 "$(sinkpy count "$MID4")"

# --- 4e. a server that takes two minutes to answer the end of the data ---
# (content scanning before it answers, which RFC 5321 gives 10 minutes):
# the sender waits for the answer; the email is sent once, not given up
# and sent again.
SDP=$(free_port)
mitm "127.0.0.1:$SDP" "127.0.0.1:$CM_SMTP_NOTLS_PORT" slow-dot "$T/slow.log"
"$CM" route set sfpw --outbound-port "$SDP" >/dev/null
run_cm incident email "$INCPW" --to "slow-$TOK@outside.test" --subject "Slow $TOK" --body "x"
E5=$(email_id "$OUT")
sent_within 200 "$E5" "an answer to the end of the data after 130 s: the email is sent"
check_eq "... at the first attempt" 1 "$(outbox_field "$E5" attempts)"
sink_once "$E5"

# --- 4f. recipients settled one by one ----------------------------------
# Of three recipients, Postfix refuses one for good (reject.test: 550)
# and a proxy refuses another for now (its mailbox full: 452, once). The
# third takes the email at the first attempt; the second attempt goes to
# the waiting one alone; the refused one is never tried again.
DRP=$(free_port)
mitm "127.0.0.1:$DRP" "127.0.0.1:$CM_SMTP_NOTLS_PORT" defer-rcpt "$T/defer.log"
"$CM" route set sfpw --outbound-port "$DRP" >/dev/null
run_cm incident email "$INCPW" --to "first-$TOK@outside.test" --cc "nobody-$TOK@reject.test" \
    --cc "later-$TOK@outside.test" --subject "Partial $TOK" --body "x" --wait --wait-timeout 60
check_eq "one refused and one waiting recipient: incident email --wait exits 0" 0 "$RC"
check_contains "... and prints the refused recipient" "not delivered to nobody-$TOK@reject.test (550" "$OUT"
E6=$(email_id "$OUT")
check_eq "... the email is sent, at the second attempt" "sent 2" \
    "$(outbox_field "$E6" state) $(outbox_field "$E6" attempts)"
check_eq "... delivered to the two that took it" "first-$TOK@outside.test later-$TOK@outside.test" \
    "$(outbox_json | json "' '.join(sorted([e for e in j['emails'] if e['id']==$E6][0]['delivered']))")"
check_eq "... refused for the one refused for good" "nobody-$TOK@reject.test" \
    "$(outbox_json | json "' '.join([e for e in j['emails'] if e['id']==$E6][0]['refused'])")"
check_contains "... its last error names the refusal" "Recipient rejected by the casemail test stack" \
    "$(outbox_field "$E6" last_error)"
check_eq "... the refused recipient was asked once" 1 "$(grep -c "^RCPT TO:<nobody-$TOK@reject.test>" "$T/defer.log")"
MID6=$(outbox_field "$E6" message_id)
wait_until 30 sink_count_is "$MID6" 2
check_eq "... each recipient got one copy: the first at once, the waiting one later" \
    "first-$TOK@outside.test later-$TOK@outside.test" "$(sinkpy envelopes "$MID6")"
mitm_stop

# --- 4g. a server that stops answering ----------------------------------
# (CASEMAIL_SEND_STALL_MS=4000 here.) A proxy holds back commands, as a
# stalled server: each attempt it holds ends after the stall time, names
# the stall and its phase, and leaves the email queued; the next attempt
# goes on. Of two recipients, one takes the email at the first attempt
# and the other is refused for now (452); the next two attempts, for the
# waiting one alone, stall at its RCPT TO; the fourth delivers it. Each
# recipient gets one copy. A second email stalls once at DATA, a third
# twice while its data is sent.
STP=$(free_port)
mitm "127.0.0.1:$STP" "127.0.0.1:$CM_SMTP_NOTLS_PORT" stall-smtp "$T/stall.log"
"$CM" route set sfpw --outbound-port "$STP" >/dev/null
run_cm incident email "$INCPW" --to "first-$TOK-s@outside.test" --cc "hold-$TOK@outside.test" \
    --subject "Stall $TOK" --body "x"
E7=$(email_id "$OUT")
last_error_has() { case "$(outbox_field "$1" last_error)" in *"$2"*) return 0 ;; esac; return 1; }
# stall_named EMAIL WHAT: within 60 s the email waits, its last error naming a stall.
stall_named() {
    if wait_until 60 last_error_has "$1" "stalled"; then ok "$2: the email waits, its last error names the stall"
    else not_ok "$2: the email waits, its last error names the stall" \
        "state $(outbox_field "$1" state): $(outbox_field "$1" last_error)"; fi
}
stall_named "$E7" "a stalled RCPT TO"
ERR7=$(outbox_field "$E7" last_error)
echo "# last_error after a stall: $ERR7"
check_contains "... and the phase: the answer to RCPT TO of the waiting recipient" \
    "the server stalled: no byte moved for 4 s waiting for the answer to RCPT TO:<hold-$TOK@outside.test>" "$ERR7"
if wait_until 90 outbox_state_is "$E7" sent; then ok "... the email is sent once the server answers again"
else not_ok "... the email is sent once the server answers again" "state $(outbox_field "$E7" state): $(outbox_field "$E7" last_error)"; fi
check_eq "... at the fourth attempt (452, stall, stall, delivered)" 4 "$(outbox_field "$E7" attempts)"
check_eq "... delivered to both" "first-$TOK-s@outside.test hold-$TOK@outside.test" \
    "$(outbox_json | json "' '.join(sorted([e for e in j['emails'] if e['id']==$E7][0]['delivered']))")"
MID7=$(outbox_field "$E7" message_id)
wait_until 30 sink_count_is "$MID7" 2
check_eq "... each recipient got one copy: nothing delivered was sent again" \
    "first-$TOK-s@outside.test hold-$TOK@outside.test" "$(sinkpy envelopes "$MID7")"
check_eq "... the first recipient was asked once" 1 "$(grep -c "^RCPT TO:<first-$TOK-s@outside.test>" "$T/stall.log")"
check_contains "the sender's log names the stall of the email" \
    "email $E7 attempt 2: deferred: the server stalled" "$(cat "$CASEMAIL_HOME"/log/sender*.log)"
run_cm incident email "$INCPW" --to "stalldata-$TOK@outside.test" --subject "Stall data $TOK" --body "x" \
    --wait --wait-timeout 60
check_eq "a stalled DATA: incident email --wait exits 0 once the retry went through" 0 "$RC"
E8=$(email_id "$OUT")
check_eq "... sent at the second attempt" "sent 2" "$(outbox_field "$E8" state) $(outbox_field "$E8" attempts)"
check_contains "... the first attempt named the stall at DATA" \
    "email $E8 attempt 1: deferred: the server stalled: no byte moved for 4 s waiting for the answer to DATA" \
    "$(cat "$CASEMAIL_HOME"/log/sender*.log)"
sink_once "$E8"
# A stall while the message is sent: the proxy passes DATA on, then
# stops reading (the first two times), so of an email of some 8 MB (a
# 6 MiB attachment) no more than the socket buffers can take goes out.
# The attempt ends after the stall time naming that phase; the third
# attempt delivers it, once.
head -c $((6 * 1024 * 1024)) /dev/urandom > "$T/stallbody.bin"
run_cm incident email "$INCPW" --to "stallbody-$TOK@outside.test" --subject "Stall body $TOK" \
    --body "x" --attach "$T/stallbody.bin"
E_STALL=$(email_id "$OUT")
stall_named "$E_STALL" "a stall while the message is sent"
ERR_STALL=$(outbox_field "$E_STALL" last_error)
echo "# last_error after a stall in the data: $ERR_STALL"
check_contains "... and the phase: while the message was sent" \
    "the server stalled: no byte moved for 4 s while the message was sent (" "$ERR_STALL"
check_contains "... the first attempt named it in the sender's log" \
    "email $E_STALL attempt 1: deferred: the server stalled: no byte moved for 4 s while the message was sent (" \
    "$(cat "$CASEMAIL_HOME"/log/sender*.log)"
sent_within 120 "$E_STALL" "... the email is sent once the server reads again"
check_eq "... at the third attempt (stall, stall, delivered)" 3 "$(outbox_field "$E_STALL" attempts)"
sink_once "$E_STALL"
mitm_stop


# --- 4h. every recipient of an email is asked, none cut -----------------
# The API takes at most 100 addresses in each of to, cc and bcc; an email
# row with more (written by another client of the database, or an older
# version) is still sent to every one: 520 recipients, one in To and 519
# in Bcc, the last ones beyond the 512 the sender once cut silently.
BIGMID="big-$TOK@example.test"
sql "INSERT INTO outbox (incident_id, route_id, message_id, mail_from, rcpt_to, bcc, subject, body)
     SELECT incident_id, route_id, '$BIGMID', mail_from, ARRAY['big000-$TOK@outside.test'],
            ARRAY(SELECT 'big' || lpad(g::text, 3, '0') || '-$TOK@outside.test' FROM generate_series(1, 519) g),
            'Many $TOK', 'To 520.' FROM outbox WHERE id = $E1" >/dev/null
E9=$(sql "SELECT id FROM outbox WHERE message_id = '$BIGMID'")
if wait_until 90 outbox_state_is "$E9" sent; then ok "an email to 520 recipients is sent"
else not_ok "an email to 520 recipients is sent" "state $(outbox_field "$E9" state): $(outbox_field "$E9" last_error)"; fi
check_eq "... delivered to all 520, none refused" "520 0" \
    "$(sql "SELECT cardinality(delivered), cardinality(refused) FROM outbox WHERE id = $E9" | tr "|" " ")"
big_seen() { sinkpy envelopes "$BIGMID" | tr ' ,' '\n\n' | grep "^big[0-9]*-$TOK@outside.test$" | sort -u; }
big_arrived() { [ "$(big_seen | wc -l)" -ge 520 ]; }
wait_until 60 big_arrived
check_eq "... at the first attempt" 1 "$(outbox_field "$E9" attempts)"
check_eq "... and the sink saw each of the 520 as an envelope recipient (the last is big519)" \
    "520 big519-$TOK@outside.test" "$(big_seen | wc -l) $(big_seen | tail -1)"
echo "# copies of the 520-recipient email in the sink: $(sinkpy count "$BIGMID")"

# --- 4i. a bounce, then the last waiting recipient refused --------------
# An email whose one delivered recipient a delivery report took back (the
# parser left it queued: another recipient still waited) and whose
# waiting recipient is then refused for good reached nobody because of a
# bounce: it ends bounced, not failed.
BNCMID="bnc-$TOK@example.test"
sql "INSERT INTO outbox (incident_id, route_id, message_id, mail_from, rcpt_to, subject, body,
                         refused, refusals, dsn_status, attempts)
     SELECT incident_id, route_id, '$BNCMID', mail_from,
            ARRAY['gone-$TOK@outside.test', 'nobody2-$TOK@reject.test'], 'Bounced $TOK', 'x',
            ARRAY['gone-$TOK@outside.test'], 'gone-$TOK@outside.test bounced (5.1.1)', '5.1.1', 1
     FROM outbox WHERE id = $E1" >/dev/null
E10=$(sql "SELECT id FROM outbox WHERE message_id = '$BNCMID'")
bnc_settled() { case "$(outbox_field "$E10" state)" in bounced|failed|sent) true ;; *) false ;; esac; }
wait_until 90 bnc_settled
check_eq "an email bounced for one recipient and refused by the server for the other ends bounced" \
    bounced "$(outbox_field "$E10" state)"
check_contains "... its last error names both" "gone-$TOK@outside.test bounced (5.1.1)" "$(outbox_field "$E10" last_error)"
check_contains "... the refusal too" "nobody2-$TOK@reject.test" "$(outbox_field "$E10" last_error)"

# --- 5. 500 emails, senders killed with kill -9 while sending ----------
# stage_sender_pids: the live senders the router reports (stage list);
# child_sender_pids: the router's sender children right now (no stale
# entries, and fast enough to aim kills under load).
stage_sender_pids() {
    "$CM" stage list --json | json "' '.join(sorted(str(s['pid']) for s in j['stages'] if s['kind']=='sender' and s['state']=='alive'))"
}
ROUTER_PID=$(cat "$CASEMAIL_HOME/run/router.pid")
child_sender_pids() { pgrep -P "$ROUTER_PID" -x casemail-sender | sort | tr '\n' ' ' | sed 's/ $//'; }
bulk_states() {   # "total queued sending sent failed bounced" of this run's bulk emails
    sql "SELECT count(*), count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'sending'),
         count(*) FILTER (WHERE state = 'sent'), count(*) FILTER (WHERE state = 'failed'),
         count(*) FILTER (WHERE state = 'bounced') FROM outbox WHERE subject LIKE '%Bulk $TOK #%'" | tr '|' ' '
}
all_sent() { [ "$(bulk_states | cut -d' ' -f4)" = "$BULK" ]; }
PIDS0=$(stage_sender_pids)
check_eq "stage list names the router's sender processes" "$(child_sender_pids)" "$PIDS0"
# the queue is filled through the API by 8 parallel clients
cat > "$T/queue.py" <<'PY'
import json, os, sys, threading, urllib.request
url = open(os.environ["CASEMAIL_HOME"] + "/run/api.url").read().strip()
token = open(os.environ["CASEMAIL_HOME"] + "/api.token").read().strip()
inc, tok, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
codes, lock, todo = [], threading.Lock(), list(range(1, n + 1))
def worker():
    while True:
        with lock:
            if not todo:
                return
            i = todo.pop(0)
        body = json.dumps({"to": ["bulk-%s@outside.test" % tok], "subject": "Bulk %s #%d" % (tok, i),
                           "body": "email %d of the kill -9 test\n" % i}).encode()
        req = urllib.request.Request("%s/v1/incidents/%s/email" % (url, inc), data=body, method="POST",
              headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        try:
            code = urllib.request.urlopen(req, timeout=60).status
        except urllib.error.HTTPError as e:
            code = e.code
        except Exception as e:
            code = "error %s" % e
        with lock:
            codes.append(code)
threads = [threading.Thread(target=worker) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("\n".join(str(c) for c in codes))
PY
START=$(date +%s)
python3 "$T/queue.py" "$INC" "$TOK" "$BULK" > "$T/codes" &
QPID=$!
# kill the senders again and again while emails are queued and sent: each
# time the router has restarted them and they have worked for a moment
KILLS=0
KILLS_MIDWAY=0
KILLED=" "
bulk_queued_at_least() { [ "$(bulk_states | cut -d' ' -f1)" -ge "$1" ]; }
wait_until 60 bulk_queued_at_least 100
new_senders() {   # every sender child is one we have not killed yet
    local p pids
    pids=$(child_sender_pids)
    [ -n "$pids" ] || return 1
    for p in $pids; do case "$KILLED" in *" $p "*) return 1 ;; esac; done
}
for round in 1 2 3 4 5; do
    wait_until 40 new_senders || { echo "# round $round: no new sender came up"; continue; }
    sleep 0.5
    set -- $(bulk_states)
    [ "$1" = "$BULK" ] && [ "$4" = "$BULK" ] && break
    pids=$(child_sender_pids)
    kill -9 $pids 2>/dev/null && KILLS=$((KILLS + 1))
    KILLED="$KILLED$pids "
    echo "# round $round: kill -9 $pids with $1 bulk emails queued so far: $2 queued, $3 sending, $4 sent"
    [ $(( $2 + $3 )) -gt 0 ] && KILLS_MIDWAY=$((KILLS_MIDWAY + 1))
done
wait "$QPID"
check_eq "$BULK emails queued through the API (201 each)" "$BULK" "$(grep -c '^201$' "$T/codes")"
if [ "$KILLS" -ge 3 ] && [ "$KILLS_MIDWAY" -ge 3 ]; then
    ok "senders killed with kill -9 $KILLS times, $KILLS_MIDWAY of them with emails queued or sending"
else not_ok "senders killed with kill -9 at least 3 times while emails were queued or sending" \
    "kills $KILLS, with work pending $KILLS_MIDWAY"; fi
if wait_until 150 all_sent; then ok "after the kills every email is sent ($BULK)"
else not_ok "after the kills every email is sent" "total queued sending sent failed bounced: $(bulk_states)"; fi
echo "# all sent after $(( $(date +%s) - START )) s; bulk states: $(bulk_states)"
wait_until 20 new_senders
PIDS1=$(stage_sender_pids)
echo "# sender pids before: $PIDS0, after: $PIDS1"
if [ -n "$PIDS1" ] && [ "$PIDS1" = "$(child_sender_pids)" ] && [ "$PIDS1" != "$PIDS0" ]; then
    ok "the router restarted the killed senders (stage list shows the new pids)"
else not_ok "the router restarted the killed senders" "before: $PIDS0, after: $PIDS1, children: $(child_sender_pids)"; fi
check_eq "no bulk email failed" 0 "$(bulk_states | cut -d' ' -f5)"

# every Message-ID reaches the sink; duplicates are counted, not failed
outbox_json | json "'\n'.join(e['message_id'] for e in j['emails'] if 'Bulk $TOK' in e['subject'])" \
    | sort > "$T/sent.ids"
check_eq "$BULK distinct Message-IDs in the outbox" "$BULK" "$(sort -u "$T/sent.ids" | wc -l)"
sink_complete() {
    sinkpy tally "Bulk $TOK" > "$T/tally.json" &&
    [ "$(json 'sum(1 for k in j if k)' < "$T/tally.json")" -ge "$BULK" ]
}
wait_until 120 sink_complete
json "'\n'.join(sorted(j))" < "$T/tally.json" > "$T/sink.ids"
MISSING=$(comm -23 "$T/sent.ids" "$T/sink.ids" | wc -l)
EXTRA=$(comm -13 "$T/sent.ids" "$T/sink.ids" | wc -l)
check_eq "no email is missing from the sink (none lost)" 0 "$MISSING"
[ "$MISSING" = 0 ] || comm -23 "$T/sent.ids" "$T/sink.ids" | head -5 | sed 's/^/# missing: /'
check_eq "no unknown Message-ID in the sink" 0 "$EXTRA"
DUPS=$(json 'sum(len(v) - 1 for v in j.values())' < "$T/tally.json")
DUPIDS=$(json 'sum(1 for v in j.values() if len(v) > 1)' < "$T/tally.json")
echo "# duplicates: $DUPIDS Message-ID(s) arrived more than once ($DUPS extra copies) of $BULK emails (at-least-once)"
if [ "$DUPIDS" -gt 0 ]; then
    # a resend is the stored MIME, byte for byte: same Date header in every copy
    check_eq "a resent email is the same message (same Date in every copy)" 0 \
        "$(json 'sum(1 for v in j.values() if len(set(v)) > 1)' < "$T/tally.json")"
fi

cleanup
trap - EXIT
