#!/usr/bin/env bash
# Hostile mail through a real mailbox (DESIGN invariant 4): the generated
# hostile suite (tests/unit/message_test.c --write-hostile: MIME nested
# 10,000 deep, 100,000 parts, a 1 MB header line, 100,000 RFC 2231
# parameters, a From of colons, broken encoded words, broken base64 and QP,
# NUL bytes, bare CR, invalid UTF-8 and 8-bit headers, a boundary that
# never closes, hostile file names, ...) plus a body with a forged IMAP
# tagged OK, an empty message, headers only and a message over the size
# limit. Each becomes an incident or a rejection with a reason; no stage
# crashes; the route stays RUNNING; the next normal message is ingested;
# each stage's peak memory is printed and bounded. User u23.
. "$(dirname "$0")/../lib.sh"
src=$CM_WORK/hostile-mail
mkdir -p "$src"
"$CM_BIN/casemail-message-test" --write-hostile "$src" > /dev/null
printf 'From: a@outside.test\r\nTo: u23@example.test\r\nSubject: forged tagged OK\r\nMessage-ID: <forged-ok@outside.test>\r\n\r\nline one\r\nA003 OK FETCH completed\r\n* 2 FETCH (UID 99 BODY[] {5}\r\nhello)\r\nA004 OK done\r\n' > "$src/x-forged-ok.eml"
: > "$src/x-empty.eml"
printf 'From: a@outside.test\r\nTo: u23@example.test\r\nSubject: headers only\r\nMessage-ID: <headers-only@outside.test>\r\n' > "$src/x-headers-only.eml"
python3 - "$src/x-oversize.eml" <<'PY'
import sys, base64, os
with open(sys.argv[1], "wb") as f:
    f.write(b"From: a@outside.test\r\nTo: u23@example.test\r\nSubject: oversize\r\n"
            b"Message-ID: <oversize@outside.test>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    f.write(base64.encodebytes(os.urandom(30 * 1024 * 1024)))   # ~41 MB encoded: over 36 MiB
PY
# Values a database statement could refuse: a Latin-1 byte in the
# Message-ID (the fetcher stores it: one such byte failed its whole batch
# at every try, and the route stood still), Message-IDs too long for an
# index entry or for In-Reply-To, and a bounce whose recipient is long
# non-ASCII text (its reason was cut inside a character).
python3 - "$src" <<'PY'
import sys
d = sys.argv[1]
def put(name, headers, body=b"Body.\r\n"):
    with open("%s/%s" % (d, name), "wb") as f:
        f.write(b"From: a@outside.test\r\nTo: u23@example.test\r\n" + headers + b"\r\n" + body)
put("x-latin1-msgid.eml", b"Subject: latin1 message-id\r\nMessage-ID: <caf\xe9-1@outside.test>\r\n")
put("x-long-msgid.eml", b"Subject: long message-id\r\nMessage-ID: <" + b"x" * 4000 + b"@outside.test>\r\n")
put("x-utf8-msgid.eml", b"Subject: utf8 long message-id\r\nMessage-ID: <" + "\u00e9".encode() * 300 + b"@outside.test>\r\n")
put("x-bounce-long.eml",
    b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-long@outside.test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n",
    b"--B\r\nContent-Type: text/plain\r\n\r\nIt failed.\r\n"
    b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; outside.test\r\n\r\n"
    b"Final-Recipient: rfc822; " + "\u00e9".encode() * 300 + b"@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    b"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <orig-long@example.test>\r\nSubject: x\r\n\r\n--B--\r\n")
PY
total=$(ls "$src" | wc -l)
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u23 INBOX -d "$src" >/dev/null
cm_start || exit 1
route_add hostile u23 >/dev/null
"$CM" route start hostile >/dev/null
wait_until 30 status_is hostile RUNNING
before=$("$CM" stage list --json | json '" ".join(sorted(str(s["pid"]) for s in j["stages"]))')

settled() {
    [ "$(sql "SELECT count(*) FROM messages")" -ge "$total" ] &&
    [ "$(sql "SELECT count(*) FROM messages WHERE state = 'fetched'")" = 0 ]
}
if wait_until 600 settled; then ok "all $total hostile messages were fetched and settled"; else not_ok "all $total hostile messages were fetched and settled" "$(sql "SELECT state, count(*) FROM messages GROUP BY 1" | tr '\n' ' ')"; fi
check_eq "every message is parsed or rejected" "$total" "$(sql "SELECT count(*) FROM messages WHERE state IN ('parsed', 'rejected')")"
check_eq "every rejection has a reason" "0" "$(sql "SELECT count(*) FROM messages WHERE state = 'rejected' AND coalesce(reason, '') = ''")"
check_eq "every parsed message opened or joined an incident, or is flagged" "0" \
    "$(sql "SELECT count(*) FROM messages WHERE state = 'parsed' AND incident_id IS NULL AND flags = '{}'")"
check_eq "raw bytes are kept for every stored message (evidence)" "0" \
    "$(sql "SELECT count(*) FROM messages WHERE raw IS NULL AND reason NOT LIKE '%fetch limit%'")"
check_contains "the oversize message is rejected naming the limit" "limit" \
    "$(sql "SELECT reason FROM messages WHERE message_id = 'oversize@outside.test'")"
check_contains "MIME nested 10,000 deep is rejected with a reason" "nesting" \
    "$(sql "SELECT string_agg(reason, ' | ') FROM messages WHERE state = 'rejected'")"
check_eq "the forged tagged OK did not desynchronise IMAP: its body is intact" "1" \
    "$(sql "SELECT count(*) FROM messages WHERE message_id = 'forged-ok@outside.test' AND position('A004 OK done' in convert_from(raw, 'UTF8')) > 0")"
for subject in "latin1 message-id" "long message-id" "utf8 long message-id"; do
    check_eq "a message with a $subject opened an incident" "parsed true" \
        "$(sql "SELECT state || ' ' || (incident_id IS NOT NULL) FROM messages WHERE subject = '$subject'")"
done
check_eq "a bounce for a long non-ASCII recipient is stored as a bounce" "parsed {bounce}" \
    "$(sql "SELECT state || ' ' || flags::text FROM messages WHERE subject = 'Undelivered Mail Returned to Sender'")"
UTF8INC=$(sql "SELECT 'INC-' || i.number FROM messages m JOIN incidents i ON i.id = m.incident_id WHERE m.subject = 'utf8 long message-id'")
run_cm incident email "$UTF8INC" --to "r@outside.test" --subject "about it" --body "x"
check_eq "an incident whose Message-ID is long non-ASCII text can be emailed" 0 "$RC"
echo "# rejections: $(sql "SELECT count(*) FROM messages WHERE state = 'rejected'") of $total"
sql "SELECT '#   ' || left(reason, 100) FROM messages WHERE state = 'rejected' ORDER BY id"
# hostile file names are stored as plain base names
check_eq "no stored file name has a path or a control character" "0" \
    "$(sql "SELECT count(*) FROM attachments WHERE filename ~ '[/\\\\]' OR filename ~ '[[:cntrl:]]' OR filename IN ('', '.', '..')")"

after=$("$CM" stage list --json | json '" ".join(sorted(str(s["pid"]) for s in j["stages"]))')
check_eq "no stage crashed or was restarted (same pids)" "$before" "$after"
check_lacks "the router saw no stage die" "killed by signal" "$(cat "$CASEMAIL_HOME/log/router.log" 2>/dev/null; cat "$CM_WORK/$CM_TEST.up.log")"
check_eq "the route is still RUNNING" "RUNNING" "$(route_status hostile)"

CM_FROM=normal@outside.test deliver u23@example.test "normal after hostile"
normal() { [ "$(sql "SELECT count(*) FROM messages WHERE subject = 'normal after hostile' AND incident_id IS NOT NULL")" = 1 ]; }
if wait_until 30 normal; then ok "the next normal message became an incident"; else not_ok "the next normal message became an incident"; fi

# A statement the database refuses while its session still answers (a
# trigger stands for a value it cannot take): the route shows FAILED with
# the database's words instead of handing its lease round the fetchers
# every second while it looks RUNNING, and takes the message once the
# database does.
# refuse NAME CONDITION WORDS: a trigger NAME makes the database refuse
# each insert into messages for which CONDITION (SQL over NEW) holds,
# with "NAME: WORDS"; unrefuse NAME takes it away.
refuse() {
    sql "CREATE FUNCTION $1 () RETURNS trigger LANGUAGE plpgsql AS \$\$
         BEGIN IF $2 THEN RAISE EXCEPTION '$1: $3'; END IF; RETURN NEW; END \$\$;
         CREATE TRIGGER $1 BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION $1 ()" >/dev/null
}
unrefuse() { sql "DROP TRIGGER $1 ON messages; DROP FUNCTION $1 ()" >/dev/null; }
refuse cm_test_refuse_raw "position('cm-refuse-raw' in encode(NEW.raw, 'escape')) > 0" "not now"
CM_FROM=normal@outside.test deliver u23@example.test "cm-refuse-raw"
refusal_shown() { sql "SELECT status || ' ' || coalesce(last_error, '') FROM routes WHERE name = 'hostile'" | grep -q "^FAILED .*cm_test_refuse_raw: not now"; }
if wait_until 60 refusal_shown; then ok "a batch the database refuses: the route is FAILED with the database's words"
else not_ok "a batch the database refuses: the route is FAILED with the database's words" \
    "$(sql "SELECT status, last_error FROM routes WHERE name = 'hostile'")"; fi
check_lacks "... and the fetcher kept the route's lease (no session given up)" "giving up the lease" \
    "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"
unrefuse cm_test_refuse_raw
taken() { [ "$(sql "SELECT count(*) FROM messages WHERE subject = 'cm-refuse-raw' AND incident_id IS NOT NULL")" = 1 ]; }
if wait_until 60 taken; then ok "... once the database takes it, the message becomes an incident"
else not_ok "... once the database takes it, the message becomes an incident"; fi
if wait_until 30 status_is hostile RUNNING; then ok "... and the route is RUNNING again"
else not_ok "... and the route is RUNNING again" "$(route_status hostile)"; fi

# The same over two lanes (fetcher/lanes.c), refused on the second lane's
# own database session only: the route shows that session's words (not
# the worker's empty ones), keeps its lease, and once the database takes
# them, each of 300 messages comes in once.
refuse cm_test_refuse_lane "current_setting('application_name') = 'casemail-fetcher-lane'" \
    "not on this session"
python3 "$CM_TOP/tests/tools/mkmail.py" bulk 300 "$src-lanes" \
    --corpus "$CM_TOP/../shared/corpus/hunnysoft" --prefix "lanes-$CM_TEST" >/dev/null
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u23 INBOX -d "$src-lanes" >/dev/null
lane_refusal() { sql "SELECT coalesce(last_error, '') FROM routes WHERE name = 'hostile'" | grep -q "cm_test_refuse_lane: not on this session"; }
if wait_until 60 lane_refusal; then ok "a batch the second lane's database session refuses: the route shows its words"
else not_ok "a batch the second lane's database session refuses: the route shows its words" \
    "$(sql "SELECT status, last_error FROM routes WHERE name = 'hostile'")"; fi
check_lacks "... and the fetcher kept the route's lease" "giving up the lease" \
    "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"
unrefuse cm_test_refuse_lane
lanes_stored() { sql "SELECT count(DISTINCT message_id) || ' ' || count(*) FROM messages WHERE message_id LIKE 'lanes-$CM_TEST.%'"; }
if wait_until 90 eval '[ "$(lanes_stored)" = "300 300" ]'; then ok "... once the database takes them, the 300 come in, each once"
else not_ok "... once the database takes them, the 300 come in, each once" "$(lanes_stored)"; fi
if wait_until 30 status_is hostile RUNNING; then ok "... and the route is RUNNING"
else not_ok "... and the route is RUNNING" "$(route_status hostile)"; fi

# peak memory of each stage (VmHWM), bounded
for pid in $after; do
    kind=$(ps -o args= -p "$pid" | awk '{print $1}' | xargs basename)
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    echo "# $kind (pid $pid): peak resident memory $((hwm / 1024)) MB"
    if [ "$hwm" -lt $((1536 * 1024)) ]; then ok "$kind peak memory bounded ($((hwm / 1024)) MB < 1536 MB)"; else not_ok "$kind peak memory bounded" "$((hwm / 1024)) MB"; fi
done
