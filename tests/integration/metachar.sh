#!/usr/bin/env bash
# SQL, shell and HTML metacharacters in route fields, email headers and
# file names are stored and shown verbatim and harm nothing; `attachment
# get` writes only the file it was asked to write. User u19 (mailbox), u18.
. "$(dirname "$0")/../lib.sh"
cm_start || exit 1
EVIL="x'; DROP TABLE routes; -- <script>alert(1)</script> \$(touch $CM_WORK/pwned) \`touch $CM_WORK/pwned2\` & | ;"
# route fields
CM_PW=u18-pw-Secret1 "$CM" route add meta --email "o'brien+tag@example.test" \
    --username "$EVIL" --password-env CM_PW --folder "$EVIL" \
    --inbound-host localhost --inbound-protocol imaps --inbound-port "$CM_IMAPS_PORT" \
    --outbound-host localhost --outbound-protocol smtps --outbound-port "$CM_SMTPS_PORT" >/dev/null
check_eq "a route with metacharacters was saved" "0" "$?"
got=$("$CM" route show meta --json | json 'j["username"] + "|" + j["folder"] + "|" + j["email"]')
check_eq "route fields are stored and shown verbatim" "$EVIL|$EVIL|o'brien+tag@example.test" "$got"
check_eq "the routes table is intact" "1" "$(sql "SELECT count(*) FROM routes")"
run_cm route test-inbound meta
check_contains "a test with such a folder fails cleanly" "Failed to test Service connectivity" "$OUT"

# email headers and file names
route_add mail u19 >/dev/null
"$CM" route start mail >/dev/null
python3 - "$CM_WORK/evil.eml" "$EVIL" <<'PY'
import sys
from email.message import EmailMessage
from email import policy
evil = sys.argv[2]
m = EmailMessage(policy=policy.SMTP)
m["From"] = '"%s" <evil@outside.test>' % evil.replace('"', "'")
m["To"] = "u19@example.test"
m["Subject"] = evil
m["Message-ID"] = "<evil@outside.test>"
m.set_content("body " + evil)
m.add_attachment(b"one", maintype="text", subtype="plain", filename="$(touch pwned3).txt")
m.add_attachment(b"<b>two</b>", maintype="text", subtype="html", filename="<img src=x onerror=alert(1)>.html")
m.add_attachment(b"three", maintype="application", subtype="pdf", filename="; rm -rf ~ #'.pdf")
open(sys.argv[1], "wb").write(m.as_bytes())
PY
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u19 INBOX "$CM_WORK/evil.eml" >/dev/null
wait_until 30 sql_at_least 1 "SELECT count(*) FROM incidents"
check_eq "the incident title is the subject, verbatim" "$EVIL" "$(sql "SELECT title FROM incidents")"
check_contains "the description keeps the body verbatim" "body $EVIL" "$(sql "SELECT description FROM incidents")"
names=$(sql "SELECT filename FROM attachments ORDER BY id")
check_eq "file names are kept verbatim (no path in them)" "\$(touch pwned3).txt
<img src=x onerror=alert(1)>.html
; rm -rf ~ #'.pdf" "$names"
show=$("$CM" incident show INC-1)
check_contains "incident show prints the title verbatim" "$EVIL" "$show"
check_contains "incident show prints the file name verbatim" "<img src=x onerror=alert(1)>.html" "$show"
out=$CM_WORK/getdir
mkdir -p "$out"
ID=$(sql "SELECT id FROM attachments WHERE filename LIKE '<img%'")
( cd "$out" && "$CM" attachment get "$ID" -o only-this-file )
check_eq "attachment get wrote only the file it was asked for" "only-this-file" "$(ls -A "$out")"
check_eq "the file holds the attachment's bytes" "<b>two</b>" "$(cat "$out/only-this-file")"
for f in pwned pwned2 pwned3; do
    [ ! -e "$CM_WORK/$f" ] && [ ! -e "$out/$f" ] && [ ! -e "$CASEMAIL_HOME/$f" ] && ok "no command ran from the input ($f)" || not_ok "no command ran from the input ($f)"
done
check_eq "all tables intact" "1 1" "$(sql "SELECT count(*) FROM incidents") $(sql "SELECT count(*) FROM messages")"
# outbound: a subject with metacharacters goes out verbatim
run_cm incident email INC-1 --to meta-check@outside.test --subject "re: $EVIL" --body "$EVIL" --wait
check_eq "an email with metacharacters is sent" "0" "$RC"
got=$(sql "SELECT subject FROM outbox")
check_eq "its subject is kept verbatim (tag added once)" "[INC-1] re: $EVIL" "$got"
# a recipient list over the cap is refused, nothing queued
URL=$(cat "$CASEMAIL_HOME/run/api.url"); TOKEN=$(cat "$CASEMAIL_HOME/api.token")
many=$(python3 -c 'import json; print(json.dumps({"to": ["r%d@outside.test" % i for i in range(101)], "body": "x"}))')
before=$(sql "SELECT count(*) FROM outbox")
code=$(curl -s -o "$CM_WORK/many.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
       -X POST "$URL/v1/incidents/INC-1/email" -d "$many")
check_eq "101 recipients in one field are refused (400)" "400" "$code"
check_contains "the refusal names the cap" "more than 100 to addresses" "$(cat "$CM_WORK/many.json")"
check_eq "nothing was queued" "$before" "$(sql "SELECT count(*) FROM outbox")"
