#!/usr/bin/env bash
# tests/integration/twoway.sh: two-way incident email with the real Postfix
# and Dovecot (issue 4, items 1, 2, 3 and 6).
#   1. an email sent from an incident reaches an outside address (the sink
#      mailbox) with the right From, To, Cc, subject tag (once), Message-ID,
#      thread headers, body and attachments (byte-identical after decoding,
#      a non-ASCII file name, a binary file, an inbound attachment re-sent);
#      a bcc recipient gets it but shows in no header;
#   2. replies (threaded, subject tag only, reply to the reply) come back to
#      the same incident, quoted history kept apart from the new text;
#   3. an out-of-office answer is flagged and opens nothing, sends nothing;
#      a bounce for an unknown recipient marks the email bounced (5.1.1);
#      a report failing one recipient of three refuses that one alone and
#      leaves the email sent (the same report again changes nothing), and
#      the email is bounced once every recipient bounced;
#   6. CR/LF in a subject or an address, and more addresses than the limit,
#      are refused (CLI exit 2, API 400) and nothing is queued;
#   7. a recipient on an internationalised domain gets the email at the
#      domain's A-label; a non-ASCII local part is refused, naming SMTPUTF8.
# Uses only the user u10 and the shared sink mailbox (messages found by
# Message-ID or by a subject token unique to this run).
. "$CM_TOP/tests/lib.sh"
export CASEMAIL_SEND_RETRY_BASE_MS=500
cm_start || exit 1

T=$CM_WORK/$CM_TEST.d
rm -rf "$T"
mkdir -p "$T"
TOK="tw$$x$RANDOM"                       # unique to this run
ROUTE_ADDR=u10@$CM_MAIL_DOMAIN
EXT1="ext1-$TOK@outside.test"
EXT2="ext2-$TOK@outside.test"
HIDDEN="hidden-$TOK@outside.test"

# --- helpers -----------------------------------------------------------
# mail.py: builds raw messages and reads the sink over IMAPS.
cat > "$T/mail.py" <<'PY'
import email, email.policy, hashlib, imaplib, json, os, ssl, sys
from email.message import EmailMessage
from email.utils import format_datetime, localtime

def imap():
    ctx = ssl.create_default_context(cafile=os.environ["CM_CA_FILE"])
    m = imaplib.IMAP4_SSL("localhost", int(os.environ["CM_IMAPS_PORT"]), ssl_context=ctx)
    m.login("sink@example.test", "sink-pw-Secret1")
    m.select("INBOX", readonly=True)
    return m

def uids_by_msgid(m, mid):
    typ, data = m.uid("SEARCH", "HEADER", "Message-ID", '"<%s>"' % mid)
    uids = data[0].split() if typ == "OK" and data and data[0] else []
    out = []
    for u in uids:   # SEARCH HEADER is a substring match: confirm exactly
        typ, d = m.uid("FETCH", u, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for part in d:
            if isinstance(part, tuple):
                h = email.message_from_bytes(part[1])
                if (h.get("Message-ID") or "").strip() == "<%s>" % mid:
                    out.append(u)
    return out

cmd = sys.argv[1]
if cmd == "get":                     # get MSGID OUT: first copy; prints the count
    m = imap()
    uids = uids_by_msgid(m, sys.argv[2])
    if uids:
        typ, d = m.uid("FETCH", uids[0], "(BODY.PEEK[])")
        raw = [p[1] for p in d if isinstance(p, tuple)][0]
        open(sys.argv[3], "wb").write(raw)
    print(len(uids))
    sys.exit(0 if uids else 1)
elif cmd == "clear":                 # clear USER: empties the user's INBOX
    ctx = ssl.create_default_context(cafile=os.environ["CM_CA_FILE"])
    m = imaplib.IMAP4_SSL("localhost", int(os.environ["CM_IMAPS_PORT"]), ssl_context=ctx)
    m.login("%s@example.test" % sys.argv[2], "%s-pw-Secret1" % sys.argv[2])
    if int(m.select("INBOX")[1][0]):
        m.store("1:*", "+FLAGS", "\\Deleted")
        m.expunge()
elif cmd == "inspect":               # inspect FILE: the parts we check, as JSON
    raw = open(sys.argv[2], "rb").read()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    atts = []
    body = None
    for part in msg.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() == "attachment":
            data = part.get_payload(decode=True) or b""
            atts.append({"filename": part.get_filename(), "sha256": hashlib.sha256(data).hexdigest(),
                         "size": len(data), "content_type": part.get_content_type()})
        elif body is None and part.get_content_type() == "text/plain":
            body = part.get_content()
    hdr = lambda n: str(msg.get(n, ""))
    headers_no_env = "\n".join("%s: %s" % (k, v) for k, v in msg.items()
                               if k.lower() != "x-envelope-to")
    print(json.dumps({
        "from": hdr("From"), "to": hdr("To"), "cc": hdr("Cc"), "bcc": hdr("Bcc"),
        "subject": hdr("Subject"), "message_id": hdr("Message-ID"),
        "in_reply_to": hdr("In-Reply-To"), "references": hdr("References"),
        "date": hdr("Date"), "auto_submitted": hdr("Auto-Submitted"),
        "envelope_to": [str(v) for v in msg.get_all("X-Envelope-To") or []],
        "headers_no_env": headers_no_env, "body": body, "attachments": atts}))
elif cmd == "dsn":                   # dsn OUT KEY=VALUE...: a delivery status report (CRLF)
    out = sys.argv[2]
    kv = dict(a.split("=", 1) for a in sys.argv[3:])
    lines = [
        "From: MAILER-DAEMON@mx.outside.test", "To: %s" % kv["to"], "Subject: %s" % kv["subject"],
        "Date: %s" % format_datetime(localtime()), "Message-ID: <%s>" % kv["message_id"],
        "Auto-Submitted: auto-replied", "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B-dsn"', "",
        "--B-dsn", "Content-Type: text/plain", "", kv["text"], "",
        "--B-dsn", "Content-Type: message/delivery-status", "",
        "Reporting-MTA: dns; mx.outside.test", ""]
    # blocks=ADDR|ACTION|STATUS;... (ADDR may be ORIGINAL>FINAL): one
    # per-recipient block each; else recipient=, action=, status=
    blocks = [b.split("|") for b in kv["blocks"].split(";")] if "blocks" in kv \
        else [[kv["recipient"], kv["action"], kv["status"]]]
    for addr, action, status in blocks:
        if ">" in addr:
            orig, addr = addr.split(">", 1)
            lines.append("Original-Recipient: rfc822;%s" % orig)
        lines += ["Final-Recipient: rfc822; %s" % addr, "Action: %s" % action,
                  "Status: %s" % status, ""]
    lines += [
        "--B-dsn", "Content-Type: text/rfc822-headers", "",
        "From: %s" % kv["to"], "To: %s" % kv.get("recipient", blocks[0][0]), "Subject: returned",
        "Message-ID: <%s>" % kv["original"], "",
        "--B-dsn--", ""]
    open(out, "wb").write("\r\n".join(lines).encode())
elif cmd == "build":                 # build OUT KEY=VALUE...: a raw message (CRLF)
    out = sys.argv[2]
    kv = dict(a.split("=", 1) for a in sys.argv[3:])
    m = EmailMessage(policy=email.policy.SMTP)
    m["From"] = kv.pop("from")
    m["To"] = kv.pop("to")
    m["Subject"] = kv.pop("subject")
    m["Date"] = format_datetime(localtime())
    m["Message-ID"] = "<%s>" % kv.pop("message_id")
    for k in ("in_reply_to", "references"):
        if k in kv:
            m[k.replace("_", "-").title()] = kv.pop(k)
    attach = kv.pop("attach", None)
    body = kv.pop("body", "").replace("\\n", "\n")
    for k, v in kv.items():          # any other header, as given
        m[k] = v
    m.set_content(body)
    if attach:
        m.add_attachment(open(attach, "rb").read(), maintype="application",
                         subtype="octet-stream", filename=os.path.basename(attach))
    open(out, "wb").write(m.as_bytes())
PY
mailpy() { python3 "$T/mail.py" "$@"; }
# send_raw FILE FROM TO: a raw message through Postfix's open relay port.
send_raw() {
    swaks --silent 2 -s 127.0.0.1 -p "$CM_SMTP_PORT" -f "$2" -t "$3" --data "@$1" >/dev/null
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
api_post() {   # api_post PATH JSON-FILE: prints the HTTP code, body in $T/api.out
    curl -s -o "$T/api.out" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $(cat "$CASEMAIL_HOME/api.token")" \
        -H 'Content-Type: application/json' --data-binary "@$2" \
        "$(cat "$CASEMAIL_HOME/run/api.url")$1"
}
outbox_json() { "$CM" outbox list --json; }
outbox_count() { outbox_json | json 'len(j["emails"])'; }
# outbox_field ID FIELD
outbox_field() { outbox_json | json "[e for e in j['emails'] if e['id']==$1][0].get('$2')"; }
outbox_state_is() { [ "$(outbox_field "$1" state)" = "$2" ]; }
incident_count() { "$CM" incident list --json | json 'len(j["incidents"])'; }
# inbox_by_msgid MSGID EXPR: EXPR over the inbox row m with that Message-ID
inbox_by_msgid() {
    "$CM" inbox list --json | python3 -c "
import json,sys
j=json.load(sys.stdin); r=[m for m in j['messages'] if (m.get('message_id') or '').strip('<>')=='$1']
m=r[0] if r else None
print($2)"
}
parsed() { [ "$(inbox_by_msgid "$1" "m and m['state']")" = parsed ]; }
sink_has() { mailpy get "$1" "$2" >/dev/null; }
# the timeline entry of INC with that Message-ID: EXPR over e
timeline_entry() {
    "$CM" incident show "$1" --json | python3 -c "
import json,sys
j=json.load(sys.stdin); r=[e for e in j['timeline'] if (e.get('message_id') or '').strip('<>')=='$2']
e=r[0] if r else None
print($3)"
}

# --- the route and the incident ---------------------------------------
mailpy clear u10 || not_ok "the u10 mailbox is emptied before the test"
route_add tw u10 >/dev/null || not_ok "route tw on u10 added" "$(route_add tw u10 2>&1)"
"$CM" route start tw >/dev/null
wait_until 30 status_is tw RUNNING || not_ok "route tw RUNNING" "status: $(route_status tw)"

# the opening message carries a binary attachment (re-sent later with --attach-from)
head -c 3000 /dev/urandom > "$T/evidence.bin"
FIRST_ID="first-$TOK@outside.test"
mailpy build "$T/first.eml" from="Reporter <reporter-$TOK@outside.test>" to="$ROUTE_ADDR" \
    subject="Suspicious login $TOK" message_id="$FIRST_ID" body="I saw a strange login.\n" \
    attach="$T/evidence.bin"
send_raw "$T/first.eml" "reporter-$TOK@outside.test" "$ROUTE_ADDR"
if wait_until 60 parsed "$FIRST_ID"; then ok "the opening message is parsed"
else not_ok "the opening message is parsed" "$("$CM" inbox list 2>&1 | tail -3)"; fi
INC=$(inbox_by_msgid "$FIRST_ID" "m and m['incident']")
case "$INC" in INC-[0-9]*) ok "the opening message opened an incident ($INC)" ;;
    *) not_ok "the opening message opened an incident" "incident: $INC"; exit 1 ;; esac
N=${INC#INC-}
INBOUND_ATT=$("$CM" incident show "$INC" --json | json '[a["id"] for a in j["timeline"][0]["attachments"] if a["filename"]=="evidence.bin"][0]')
check_eq "the inbound attachment is stored byte for byte" "$(sha "$T/evidence.bin")" \
    "$("$CM" incident show "$INC" --json | json '[a["sha256"] for a in j["timeline"][0]["attachments"]][0]')"

# --- 1. an email from the incident to outside addresses ---------------
NONASCII_NAME="Rapport d'été – Übersicht.txt"
printf 'Zusammenfassung: Grüße aus Köln, ça va?\r\nline two\n' > "$T/$NONASCII_NAME"
head -c 70000 /dev/urandom > "$T/memory.dump"
printf 'GIF89a\x01\x00\x01\x00\x00\xff\x00,' > "$T/pixel.gif"
BODY1="Hello,

we are looking into your report $TOK.
Grüße, the SOC"
run_cm incident email "$INC" --to "$EXT1" --cc "$EXT2" --subject "[INC-$N] Your report $TOK" \
    --body "$BODY1" --attach "$T/$NONASCII_NAME" --attach "$T/memory.dump" --attach "$T/pixel.gif" \
    --attach-from "$INBOUND_ATT" --wait --wait-timeout 60
check_eq "incident email --wait exits 0 (sent)" 0 "$RC"
check_contains "incident email --wait says sent" "sent" "$OUT"
E1=$(printf '%s' "$OUT" | sed -n 's/^email \([0-9]*\) sent.*/\1/p' | head -1)
[ -n "$E1" ] || E1=$(outbox_json | json 'j["emails"][-1]["id"]')
E1_MID=$(outbox_field "$E1" message_id)
check_eq "outbox list shows the email sent" sent "$(outbox_field "$E1" state)"
check_contains "the Message-ID is on the route's domain" "@example.test" "$E1_MID"

if wait_until 30 sink_has "$E1_MID" "$T/e1.eml"; then ok "the email arrives in the sink mailbox"
else not_ok "the email arrives in the sink mailbox" "no message with Message-ID <$E1_MID>"; fi
mailpy inspect "$T/e1.eml" > "$T/e1.json" 2>"$T/e1.err" || echo '{}' > "$T/e1.json"
e1() { json "$1" < "$T/e1.json" 2>/dev/null; }
check_eq "From is the route's address" "$ROUTE_ADDR" "$(e1 'j["from"]')"
check_eq "To is the --to address" "$EXT1" "$(e1 'j["to"]')"
check_eq "Cc is the --cc address" "$EXT2" "$(e1 'j["cc"]')"
check_eq "the subject carries the tag once (not doubled)" "[INC-$N] Your report $TOK" "$(e1 'j["subject"]')"
check_eq "Message-ID equals the outbox's message_id" "<$E1_MID>" "$(e1 'j["message_id"]')"
check_eq "In-Reply-To names the incident's first message" "<$FIRST_ID>" "$(e1 'j["in_reply_to"]')"
check_contains "References names the incident's first message" "<$FIRST_ID>" "$(e1 'j["references"]')"
check_contains "a Date header is set" "20" "$(e1 'j["date"]')"
check_eq "no Auto-Submitted on a person's email" "" "$(e1 'j["auto_submitted"]')"
check_eq "the body arrives intact" "$BODY1" "$(e1 'j["body"].rstrip("\n").replace("\r\n","\n")')"
check_eq "four attachments arrive" 4 "$(e1 'len(j["attachments"])')"
att_sha() { e1 "[a['sha256'] for a in j['attachments'] if a['filename']==$(printf '%s' "$1" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')][:1] or ['missing']" | tr -d "[]'"; }
check_eq "the non-ASCII file name survives encoding, content byte-identical" \
    "$(sha "$T/$NONASCII_NAME")" "$(att_sha "$NONASCII_NAME")"
check_eq "the binary attachment is byte-identical" "$(sha "$T/memory.dump")" "$(att_sha memory.dump)"
check_eq "the small GIF attachment is byte-identical" "$(sha "$T/pixel.gif")" "$(att_sha pixel.gif)"
check_eq "the --attach-from attachment (inbound evidence.bin) is byte-identical" \
    "$(sha "$T/evidence.bin")" "$(att_sha evidence.bin)"
check_eq "the GIF's content type comes from its extension" "image/gif" \
    "$(e1 '[a["content_type"] for a in j["attachments"] if a["filename"]=="pixel.gif"][:1]' | tr -d "[]'")"
ENV1=$(e1 '" ".join(j["envelope_to"])')
check_contains "the To recipient is an envelope recipient" "$EXT1" "$ENV1"
check_contains "the Cc recipient is an envelope recipient" "$EXT2" "$ENV1"
check_eq "the sink got the email exactly once" 1 "$(mailpy get "$E1_MID" "$T/e1b.eml")"
check_contains "the email shows on the incident's timeline as sent" "sent" \
    "$(timeline_entry "$INC" "$E1_MID" "e and e.get('state')")"

# 1b. an email with a bcc recipient through the API; its subject has no tag yet
cat > "$T/bcc.json" <<EOF
{"to": ["$EXT1"], "bcc": ["$HIDDEN"], "subject": "Follow-up – Grüße $TOK",
 "body": "A second note for $TOK.\n"}
EOF
code=$(api_post "/v1/incidents/$INC/email" "$T/bcc.json")
check_eq "POST /v1/incidents/$INC/email with bcc answers 201" 201 "$code"
E2=$(json 'j["id"]' < "$T/api.out" 2>/dev/null)
E2_MID=$(json 'j["message_id"]' < "$T/api.out" 2>/dev/null)
if [ -n "$E2" ] && wait_until 30 outbox_state_is "$E2" sent; then ok "the bcc email is sent"
else not_ok "the bcc email is sent" "$(outbox_json | tail -30)"; fi
if wait_until 30 sink_has "$E2_MID" "$T/e2.eml"; then ok "the bcc email arrives in the sink"
else not_ok "the bcc email arrives in the sink" "no <$E2_MID>"; fi
mailpy inspect "$T/e2.eml" > "$T/e2.json" 2>/dev/null || echo '{}' > "$T/e2.json"
e2() { json "$1" < "$T/e2.json" 2>/dev/null; }
check_eq "the tag is added to an untagged subject, once" "[INC-$N] Follow-up – Grüße $TOK" "$(e2 'j["subject"]')"
check_contains "the bcc recipient is an envelope recipient (X-Envelope-To)" "$HIDDEN" \
    "$(e2 '" ".join(j["envelope_to"])')"
check_lacks "the bcc recipient appears in no header" "hidden-$TOK" "$(e2 'j["headers_no_env"]')"
check_eq "no Bcc header" "" "$(e2 'j["bcc"]')"
check_lacks "the non-ASCII subject is encoded on the wire (RFC 2047)" "Grüße" "$(grep -a '^Subject:' "$T/e2.eml")"
check_contains "the follow-up's References still name the first message" "<$FIRST_ID>" \
    "$(e2 'j["references"]')"
check_eq "the follow-up answers the latest message (In-Reply-To: the first email)" "<$E1_MID>" \
    "$(e2 'j["in_reply_to"]')"

# --- 2. replies come back to the same incident ------------------------
INCIDENTS0=$(incident_count)
R1_ID="reply1-$TOK@outside.test"
mailpy build "$T/r1.eml" from="$EXT1" to="$ROUTE_ADDR" subject="RE: [INC-$N] Your report $TOK" \
    message_id="$R1_ID" in_reply_to="<$E1_MID>" references="<$FIRST_ID> <$E1_MID>" \
    body="Thanks, here is what I found: fresh-$TOK.\n\nOn Mon, 3 Feb 2025 at 10:00, SOC <$ROUTE_ADDR> wrote:\n> Hello,\n> we are looking into your report quoted-$TOK.\n"
send_raw "$T/r1.eml" "$EXT1" "$ROUTE_ADDR"
wait_until 60 parsed "$R1_ID" || not_ok "the threaded reply is parsed" "$("$CM" inbox list | tail -3)"
check_eq "a reply with In-Reply-To/References lands on $INC" "$INC" "$(inbox_by_msgid "$R1_ID" "m and m['incident']")"
check_contains "the reply is flagged as a reply" "reply" "$(inbox_by_msgid "$R1_ID" "m and m['flags']")"
check_contains "the reply's new text is on the timeline" "fresh-$TOK" \
    "$(timeline_entry "$INC" "$R1_ID" "e and e['new_text']")"
check_lacks "the reply's new text leaves out the quoted history" "quoted-$TOK" \
    "$(timeline_entry "$INC" "$R1_ID" "e and e['new_text']")"
check_lacks "the reply's new text leaves out the 'wrote:' line" "wrote:" \
    "$(timeline_entry "$INC" "$R1_ID" "e and e['new_text']")"
check_contains "the quoted history is kept apart" "quoted-$TOK" \
    "$(timeline_entry "$INC" "$R1_ID" "e and e['quoted_text']")"

R2_ID="reply2-$TOK@outside.test"
mailpy build "$T/r2.eml" from="$EXT2" to="$ROUTE_ADDR" subject="AW: [INC-$N] edited" \
    message_id="$R2_ID" body="Only the subject tag is left in this one.\n"
send_raw "$T/r2.eml" "$EXT2" "$ROUTE_ADDR"
wait_until 60 parsed "$R2_ID" || not_ok "the tag-only reply is parsed" "$("$CM" inbox list | tail -3)"
check_eq "a reply with only the subject tag (AW:, edited) lands on $INC" "$INC" \
    "$(inbox_by_msgid "$R2_ID" "m and m['incident']")"

R3_ID="reply3-$TOK@outside.test"
mailpy build "$T/r3.eml" from="$EXT2" to="$ROUTE_ADDR" subject="SV: more details" \
    message_id="$R3_ID" in_reply_to="<$R1_ID>" body="Replying to the reply.\n"
send_raw "$T/r3.eml" "$EXT2" "$ROUTE_ADDR"
wait_until 60 parsed "$R3_ID" || not_ok "the reply to the reply is parsed" "$("$CM" inbox list | tail -3)"
check_eq "a reply to the reply (In-Reply-To only, no tag) lands on $INC" "$INC" \
    "$(inbox_by_msgid "$R3_ID" "m and m['incident']")"
check_eq "no reply opened a new incident" "$INCIDENTS0" "$(incident_count)"

# control: an unrelated message does open an incident (the count can move)
NEW_ID="unrelated-$TOK@outside.test"
mailpy build "$T/new.eml" from="other-$TOK@outside.test" to="$ROUTE_ADDR" subject="Another matter $TOK" \
    message_id="$NEW_ID" body="Not a reply.\n"
send_raw "$T/new.eml" "other-$TOK@outside.test" "$ROUTE_ADDR"
wait_until 60 parsed "$NEW_ID"
INC_NEW=$(inbox_by_msgid "$NEW_ID" "m and m['incident']")
if [ "$INC_NEW" != "$INC" ] && [ "$INC_NEW" != None ] && [ "$(incident_count)" = $((INCIDENTS0 + 1)) ]; then
    ok "an unrelated message opens its own incident ($INC_NEW)"
else not_ok "an unrelated message opens its own incident" "incident: $INC_NEW, count $(incident_count)"; fi
INCIDENTS1=$(incident_count)

# --- 3. out-of-office answers and bounces -----------------------------
OUTBOX0=$(outbox_count)
OOO_ID="ooo-$TOK@outside.test"
mailpy build "$T/ooo.eml" from="$EXT1" to="$ROUTE_ADDR" subject="Automatic reply: [INC-$N] Your report $TOK" \
    message_id="$OOO_ID" in_reply_to="<$E1_MID>" Auto-Submitted=auto-replied \
    X-Auto-Response-Suppress=All body="I am out of the office until Monday.\n"
send_raw "$T/ooo.eml" "$EXT1" "$ROUTE_ADDR"
wait_until 60 parsed "$OOO_ID" || not_ok "the out-of-office answer is parsed" "$("$CM" inbox list | tail -3)"
check_contains "the out-of-office answer is flagged auto-reply" "auto-reply" \
    "$(inbox_by_msgid "$OOO_ID" "m and m['flags']")"
check_eq "the out-of-office answer is attached to $INC" "$INC" "$(inbox_by_msgid "$OOO_ID" "m and m['incident']")"
# one that matches no incident (no thread, no tag) must still open nothing
OOO2_ID="ooo2-$TOK@outside.test"
mailpy build "$T/ooo2.eml" from="away-$TOK@outside.test" to="$ROUTE_ADDR" subject="Out of Office: away $TOK" \
    message_id="$OOO2_ID" X-Autoreply=yes body="Away.\n"
send_raw "$T/ooo2.eml" "away-$TOK@outside.test" "$ROUTE_ADDR"
wait_until 60 parsed "$OOO2_ID" || not_ok "the unthreaded auto-reply is parsed" "$("$CM" inbox list | tail -3)"
check_contains "an unthreaded auto-reply (X-Autoreply) is flagged" "auto-reply" \
    "$(inbox_by_msgid "$OOO2_ID" "m and m['flags']")"
check_eq "an unthreaded auto-reply belongs to no incident" None "$(inbox_by_msgid "$OOO2_ID" "m and m['incident']")"
check_eq "auto-replies open no incident" "$INCIDENTS1" "$(incident_count)"
sleep 2    # a loop would queue an answer within a rescan
check_eq "auto-replies trigger no email (outbox count unchanged)" "$OUTBOX0" "$(outbox_count)"

# a delay notice (Action: delayed, 4.4.1) about a sent email is a report,
# not a bounce: attached to the incident, the email stays sent
DELAY_ID="delay-$TOK@mx.outside.test"
mailpy dsn "$T/delay.eml" to="$ROUTE_ADDR" subject="Delayed Mail (still being retried)" \
    message_id="$DELAY_ID" original="$E2_MID" recipient="$EXT1" action=delayed status=4.4.1 \
    text="Your message could not be delivered yet; we keep trying."
send_raw "$T/delay.eml" "<>" "$ROUTE_ADDR"
wait_until 60 parsed "$DELAY_ID" || not_ok "the delay notice is parsed" "$("$CM" inbox list | tail -3)"
check_contains "a delay notice is flagged as a delivery report" "bounce" \
    "$(inbox_by_msgid "$DELAY_ID" "m and m['flags']")"
check_eq "a delay notice is attached to $INC" "$INC" "$(inbox_by_msgid "$DELAY_ID" "m and m['incident']")"
check_eq "a delay notice (Action: delayed) leaves the email sent, not bounced" sent \
    "$(outbox_field "$E2" state)"

# mail from the route's own address never opens an incident
OWN_ID="own-$TOK@example.test"
mailpy build "$T/own.eml" from="$ROUTE_ADDR" to="$ROUTE_ADDR" subject="Note to self $TOK" \
    message_id="$OWN_ID" body="Sent from the route's own address.\n"
send_raw "$T/own.eml" "$ROUTE_ADDR" "$ROUTE_ADDR"
wait_until 60 parsed "$OWN_ID" || not_ok "the own-address message is parsed" "$("$CM" inbox list | tail -3)"
check_contains "mail from the route's own address is flagged" "own-address" \
    "$(inbox_by_msgid "$OWN_ID" "m and m['flags']")"
check_eq "mail from the route's own address opens no incident" None \
    "$(inbox_by_msgid "$OWN_ID" "m and m['incident']")"
check_eq "no incident was opened by automatic mail" "$INCIDENTS1" "$(incident_count)"

# a bounce: unknown@example.test is accepted by Postfix, then bounced by
# Dovecot's LMTP with a DSN to the route's address
run_cm incident email "$INC" --to "unknown@$CM_MAIL_DOMAIN" --subject "Bounce me $TOK" \
    --body "To nobody." --wait --wait-timeout 60
E3=$(printf '%s' "$OUT" | sed -n 's/^email \([0-9]*\) .*/\1/p' | head -1)
[ -n "$E3" ] || E3=$(outbox_json | json 'j["emails"][-1]["id"]')
if wait_until 60 outbox_state_is "$E3" bounced; then ok "a bounce for an unknown recipient marks the email bounced"
else not_ok "a bounce for an unknown recipient marks the email bounced" \
    "state: $(outbox_field "$E3" state)" "$("$CM" inbox list | tail -3)"; fi
check_contains "the bounced email shows the reported status 5.1.1" "5.1.1" "$(outbox_field "$E3" dsn_status)"
"$CM" outbox list --state bounced > "$T/bounced.txt" 2>&1
check_contains "outbox list --state bounced lists it" "Bounce me $TOK" "$(cat "$T/bounced.txt")"
check_eq "the delivery report is attached to $INC, flagged bounce" "$INC bounce" \
    "$("$CM" inbox list --json | json "' '.join([(m['incident'] or 'None')+' '+('bounce' if 'bounce' in m['flags'] else '-') for m in j['messages'] if 'bounce' in m['flags'] or 'multipart/report' in (m.get('subject') or '')][:1])")"
check_eq "the bounce opens no incident" "$INCIDENTS1" "$(incident_count)"
check_eq "the bounce triggers no email" $((OUTBOX0 + 1)) "$(outbox_count)"

# --- 3b. a delivery report about some of an email's recipients ---------
# One report, a block per recipient: P1 delivered, P2 failed (5.1.1), P3
# delayed. P2 moves from delivered to refused, the email stays sent and
# its last error names P2; the same report again changes nothing; P3
# fails; a second report for P2 changes nothing; once P1 fails too
# nobody is left and the email is bounced.
P1="p1-$TOK@outside.test"; P2="p2-$TOK@outside.test"; P3="p3-$TOK@outside.test"
run_cm incident email "$INC" --to "$P1" --cc "$P2" --cc "$P3" --subject "Three $TOK" \
    --body "To three." --wait --wait-timeout 60
E4=$(printf '%s' "$OUT" | sed -n 's/^queued email \([0-9]*\) .*/\1/p' | head -1)
lists4() { outbox_json | json "' '.join(['|'.join(sorted(e[k])) for e in j['emails'] if e['id']==$E4 for k in ('delivered','refused')])"; }
check_eq "an email to three recipients is sent to all three" "sent $P1|$P2|$P3 " \
    "$(outbox_field "$E4" state) $(lists4)"
E4_MID=$(outbox_field "$E4" message_id)
inbox_copies() { "$CM" inbox list --json | json "sum(1 for m in j['messages'] if (m.get('message_id') or '').strip('<>')=='$1' and m['state']=='parsed')"; }
copies_are() { [ "$(inbox_copies "$1")" = "$2" ]; }
PART_ID="part-$TOK@mx.outside.test"
mailpy dsn "$T/part.eml" to="$ROUTE_ADDR" subject="Delivery Status Notification (Failure)" \
    message_id="$PART_ID" original="$E4_MID" blocks="$P1|delivered|2.0.0;$P2|failed|5.1.1;$P3|delayed|4.4.1" \
    text="Delivery to one of the recipients failed."
send_raw "$T/part.eml" "<>" "$ROUTE_ADDR"
wait_until 60 parsed "$PART_ID" || not_ok "the partial report is parsed" "$("$CM" inbox list | tail -3)"
check_eq "a report failing one of three recipients leaves the email sent" sent "$(outbox_field "$E4" state)"
check_eq "... the failed recipient moves from delivered to refused" "$P1|$P3 $P2" "$(lists4)"
check_contains "... its last error names who bounced, with the status" "$P2 bounced (5.1.1)" \
    "$(outbox_field "$E4" last_error)"
check_eq "... its dsn_status is the failed recipient's" "5.1.1" "$(outbox_field "$E4" dsn_status)"
check_contains "incident show gives the email's last error" "$P2 bounced (5.1.1)" \
    "$("$CM" incident show "$INC" | grep -A12 "subject: *\[$INC\] Three $TOK" | grep 'last error:')"
ERR4=$(outbox_field "$E4" last_error)
# the same report delivered again changes nothing
send_raw "$T/part.eml" "<>" "$ROUTE_ADDR"
wait_until 60 copies_are "$PART_ID" 2 || not_ok "the same report again is parsed" "copies: $(inbox_copies "$PART_ID")"
check_eq "the same report twice changes nothing more" \
    "sent $P1|$P3 $P2 $ERR4" "$(outbox_field "$E4" state) $(lists4) $(outbox_field "$E4" last_error)"
# P3 fails, named by its Original-Recipient (in capitals; its
# Final-Recipient was rewritten on the way): P1 is left, still sent
P3_ID="p3-$TOK@mx.outside.test"
P3UP=$(printf '%s' "$P3" | tr a-z A-Z)
mailpy dsn "$T/p3.eml" to="$ROUTE_ADDR" subject="Undelivered Mail Returned to Sender" \
    message_id="$P3_ID" original="$E4_MID" blocks="$P3UP>p3-$TOK@mx.forward.test|failed|5.4.7" text="P3."
send_raw "$T/p3.eml" "<>" "$ROUTE_ADDR"
wait_until 60 parsed "$P3_ID" || not_ok "the report for P3 is parsed" "$("$CM" inbox list | tail -3)"
check_eq "a report naming P3 by its Original-Recipient refuses P3; P1 is left, the email sent" \
    "sent $P1 $P2|$P3" "$(outbox_field "$E4" state) $(lists4)"
ERR5=$(outbox_field "$E4" last_error)
check_eq "... its last error names both bounces" "$P2 bounced (5.1.1); $P3 bounced (5.4.7)" "$ERR5"
# a second report for P2, with one recipient left: it is not that one's
AGAIN_ID="again-$TOK@mx.outside.test"
mailpy dsn "$T/again.eml" to="$ROUTE_ADDR" subject="Undelivered Mail Returned to Sender" \
    message_id="$AGAIN_ID" original="$E4_MID" blocks="$P2|failed|5.1.1" text="Again."
send_raw "$T/again.eml" "<>" "$ROUTE_ADDR"
wait_until 60 parsed "$AGAIN_ID" || not_ok "the second report for P2 is parsed" "$("$CM" inbox list | tail -3)"
check_eq "a second report for P2 changes nothing (P1, the one left, is not taken for it)" \
    "sent $P1 $P2|$P3 $ERR5" "$(outbox_field "$E4" state) $(lists4) $(outbox_field "$E4" last_error)"
LAST_ID="last-$TOK@mx.outside.test"
mailpy dsn "$T/last.eml" to="$ROUTE_ADDR" subject="Undelivered Mail Returned to Sender" \
    message_id="$LAST_ID" original="$E4_MID" blocks="$P1|failed|5.2.2" text="The last one."
send_raw "$T/last.eml" "<>" "$ROUTE_ADDR"
wait_until 60 parsed "$LAST_ID" || not_ok "the last report is parsed" "$("$CM" inbox list | tail -3)"
check_eq "once every recipient bounced the email is bounced" bounced "$(outbox_field "$E4" state)"
check_eq "... nobody left delivered, all three refused" " $P1|$P2|$P3" "$(lists4)"
check_eq "... its last error names each" "$P2 bounced (5.1.1); $P3 bounced (5.4.7); $P1 bounced (5.2.2)" \
    "$(outbox_field "$E4" last_error)"
run_cm outbox list --state bounced
check_contains "outbox list --state bounced lists it" "Three $TOK" "$OUT"

# --- 6. CR/LF in a header value is refused, nothing queued --------------
OUTBOX1=$(outbox_count)
check_exit "CLI: a CR/LF in --subject exits 2" 2 incident email "$INC" --to "$EXT1" \
    --subject $'Hi\r\nBcc: evil@outside.test' --body x
check_exit "CLI: an LF in --to exits 2" 2 incident email "$INC" \
    --to $'a@outside.test\nBcc: evil@outside.test' --body x
check_exit "CLI: a CR in --cc exits 2" 2 incident email "$INC" --to "$EXT1" \
    --cc $'b@outside.test\rX: y' --body x
api_crlf() {   # api_crlf DESC JSON: expects 400
    printf '%s' "$2" > "$T/crlf.json"
    local code
    code=$(api_post "/v1/incidents/$INC/email" "$T/crlf.json")
    check_eq "API: $1 answers 400" 400 "$code"
}
api_crlf '"\r\n" in the subject' '{"to":["a@outside.test"],"subject":"Hi\r\nBcc: evil@outside.test","body":"x"}'
api_crlf '"\n" in the subject' '{"to":["a@outside.test"],"subject":"Hi\nX-Evil: 1","body":"x"}'
api_crlf '"\r\n" in a to address' '{"to":["a@outside.test\r\nBcc: evil@outside.test"],"body":"x"}'
api_crlf '"\r\n" in a cc address' '{"to":["a@outside.test"],"cc":["c@outside.test\r\n"],"body":"x"}'
api_crlf '"\r\n" in a bcc address' '{"to":["a@outside.test"],"bcc":["\r\nd@outside.test"],"body":"x"}'
api_crlf '"\r\n" in an attachment file name' '{"to":["a@outside.test"],"body":"x","attachments":[{"filename":"a\r\nb.txt","data_base64":"eA=="}]}'
# more recipients than the limit (100 in each of to, cc and bcc): refused
# naming the limit, never cut
MANY=()
for i in $(seq 1 101); do MANY+=(--to "m$i-$TOK@outside.test"); done
run_cm incident email "$INC" "${MANY[@]}" --body x
check_eq "CLI: 101 --to addresses exit 2" 2 "$RC"
check_contains "... printing the limit" "more than 100 to addresses (101 given): the limit is 100 for each of to, cc and bcc" "$OUT"
python3 -c 'import json, sys; t = sys.argv[1]; print(json.dumps({"to": ["t%d-%s@outside.test" % (i, t) for i in range(100)],
    "cc": ["c%d-%s@outside.test" % (i, t) for i in range(100)], "bcc": ["b%d-%s@outside.test" % (i, t) for i in range(101)],
    "body": "x"}))' "$TOK" > "$T/many.json"
check_eq "API: 100 to, 100 cc and 101 bcc addresses answer 400" 400 "$(api_post "/v1/incidents/$INC/email" "$T/many.json")"
check_contains "... naming the limit" "more than 100 bcc addresses (101 given): the limit is 100" "$(cat "$T/api.out")"
# a body or html over 4 MiB (the CLI's limit for its files): 400 naming it
for f in body html; do
    python3 -c 'import json, sys; t = sys.argv[1]; f = sys.argv[2]; big = "x" * (4 * 1024 * 1024 + 1)
print(json.dumps({"to": ["big-%s@outside.test" % t], "body": big if f == "body" else "x",
                  **({"html": big} if f == "html" else {})}))' "$TOK" "$f" > "$T/big.json"
    check_eq "API: a $f of 4 MiB and a byte answers 400" 400 "$(api_post "/v1/incidents/$INC/email" "$T/big.json")"
    check_eq "... naming $f" "$f" "$(json 'j.get("field")' < "$T/api.out" 2>/dev/null)"
done
check_eq "nothing was queued by the refused emails" "$OUTBOX1" "$(outbox_count)"
# control: the same request without the line break is accepted
printf '%s' '{"to":["ctl-'"$TOK"'@outside.test"],"subject":"Hi there","body":"x"}' > "$T/ok.json"
check_eq "API: the same email without CR/LF answers 201" 201 "$(api_post "/v1/incidents/$INC/email" "$T/ok.json")"
check_eq "and it is queued" $((OUTBOX1 + 1)) "$(outbox_count)"

# 7. a recipient on an internationalised domain (RFC 5890): sent to the
# domain's A-label, in the envelope and in To; a non-ASCII part before
# the @ (which needs SMTPUTF8) is refused, naming why, and nothing is queued.
IDN_TO="idn-$TOK@bücher.example"
IDN_ASCII="idn-$TOK@xn--bcher-kva.example"
run_cm incident email "$INC" --to "$IDN_TO" --subject "IDN $TOK" --body "x" --wait --wait-timeout 60
check_eq "incident email to $IDN_TO exits 0 (sent)" 0 "$RC"
E_IDN=$(outbox_json | json 'max(e["id"] for e in j["emails"])')
check_eq "... the outbox keeps the A-label" "$IDN_ASCII" "$(outbox_field "$E_IDN" to)"
E_IDN_MID=$(outbox_field "$E_IDN" message_id)
if wait_until 30 sink_has "$E_IDN_MID" "$T/idn.eml"; then ok "... it arrives in the sink"
else not_ok "... it arrives in the sink" "no <$E_IDN_MID>"; fi
mailpy inspect "$T/idn.eml" > "$T/idn.json" 2>/dev/null || echo '{}' > "$T/idn.json"
check_eq "... To is the A-label" "$IDN_ASCII" "$(json 'j["to"]' < "$T/idn.json")"
check_contains "... the envelope recipient is the A-label" "$IDN_ASCII" \
    "$(json '" ".join(j["envelope_to"])' < "$T/idn.json")"
N_OUT=$(outbox_count)
run_cm incident email "$INC" --to "jörg-$TOK@outside.test" --subject "EAI $TOK" --body "x"
check_eq "incident email to a non-ASCII local part fails with exit code 2" 2 "$RC"
check_contains "... naming SMTPUTF8" "needs SMTPUTF8" "$OUT"
check_eq "... and queues nothing" "$N_OUT" "$(outbox_count)"

cm_stop
