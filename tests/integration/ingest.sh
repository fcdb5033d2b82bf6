#!/usr/bin/env bash
# tests/integration/ingest.sh: mail in a running route's mailbox becomes
# incidents (issue 3, "Proven by make test" 1, 2, 3 and 5).
#  1. every message of the hunnysoft corpus -> an incident or a rejection
#     with a reason; subjects, senders, attachment names and sizes as
#     Python's email package reads them (tests/tools/corpus_check.py);
#  2. nested .eml with its own attachments, a marked .msg, S/MIME and
#     PGP/MIME encrypted mail rejected, signed mail accepted; a file
#     uuencoded in a text body is an attachment (a uuencoded .eml an
#     attached message with its own attachment), a calendar-only
#     invitation has a description; the files inside an Outlook
#     winmail.dat (TNEF) are attachments under it, as Debian's tnef
#     reads them, and one with only an RTF body has that body's text as
#     its description and the RTF as body.rtf;
#  3. replies by In-Reply-To, References only and subject tag only land on
#     their incident of a two-way route; an auto-reply and a bounce open none;
#  5. a 20 MB attachment comes back byte for byte; a message over the size
#     limit is rejected with a reason naming the limit.
# Users: u01..u05 (one route each).
. "$CM_TOP/tests/lib.sh"
cm_start || exit 1

T=$CM_WORK/$CM_TEST.d
mkdir -p "$T"
MK=(python3 "$CM_TOP/tests/tools/mkmail.py")
FILL=("$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR")
CORPUS=$CM_TOP/../shared/corpus/hunnysoft
[ -d "$CORPUS" ] || CORPUS=${CM_CORPUS:-}

# msgs ROUTE [WHERE]: number of the route's messages (matching WHERE).
msgs() { sql "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = '$1' AND (${2:-true})"; }
# settled ROUTE N: N messages stored and none still waiting for a parser.
settled() { [ "$(msgs "$1")" = "$2" ] && [ "$(msgs "$1" "m.state = 'fetched'")" = 0 ]; }
# by_mid MESSAGE-ID COLUMN: a column of the stored message (inbox list --json).
by_mid() {
    "$CM" inbox list --json | python3 -c '
import json, sys
mid, col = sys.argv[1], sys.argv[2]
rows = [m for m in json.load(sys.stdin)["messages"] if (m["message_id"] or "").strip("<>") == mid]
v = rows[0].get(col) if len(rows) == 1 else "<%d rows>" % len(rows)
print(",".join(v) if isinstance(v, list) else ("" if v is None else v))' "$1" "$2"
}
start_route() {
    "$CM" route start "$1" >/dev/null
    wait_until 30 status_is "$1" RUNNING || not_ok "route $1 RUNNING" "status: $(route_status "$1")"
}
# att_tree JSON EXPR: a line per attachment of an incident (incident show
# --json saved in JSON), EXPR a Python expression of a (the attachment)
# and parent (the file name of the one holding it, "-" for none).
att_tree() {
    python3 - "$@" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
atts = [a for t in j["timeline"] for a in t["attachments"]]
by_id = {a["id"]: a for a in atts}
for a in atts:
    parent = by_id.get(a["parent_id"], {}).get("filename", "-")
    print(eval(sys.argv[2]))
PY
}
# shown_tree: the attachment lines of incident show's output in OUT, in
# the order and at the indentation printed, each file's line cut after
# "#ID  NAME"; an attached message's subject and sender lines as they are
shown_tree() {
    printf '%s\n' "$OUT" | python3 -c '
import re, sys
on = False
for line in sys.stdin.read().split("\n"):
    if line == "attachments:":
        on = True
        continue
    on = on and line.startswith(" ")
    if on:
        m = re.match(r"( *#\S+  .*?)(  |$)", line)
        print(m.group(1) if m else line)'
}
# att_id JSON NAME: the id of the attachment named NAME (incident show
# --json saved in JSON)
att_id() { att_tree "$1" 'a["id"] if a["filename"] == sys.argv[3] else ""' "$2" | grep -v '^$'; }
# att_date JSON NAME: the Date header of the attached message NAME
att_date() { att_tree "$1" '(a.get("headers") or {}).get("date", "") if a["filename"] == sys.argv[3] else ""' "$2" | grep -v '^$'; }
# SHA-256 of a file, as the API gives it; empty when there is no file
sha() { sha256sum < "$1" 2>/dev/null | cut -d' ' -f1; }
incidents_of() { sql "SELECT count(*) FROM incidents i JOIN routes r ON r.id = i.route_id WHERE r.name = '$1'"; }

# ---------------------------------------------------------------- 1. corpus
if [ -z "$CORPUS" ] || [ ! -d "$CORPUS" ]; then
    not_ok "corpus found" "neither $CM_TOP/../shared/corpus/hunnysoft nor CM_CORPUS is a folder"
else
    n=$(find "$CORPUS" -maxdepth 1 -type f | wc -l)
    route_add corpus u01 --kind ingest >/dev/null
    "${FILL[@]}" u01 INBOX -d "$CORPUS" >/dev/null
    # A parser's claim row goes in the same transaction as its batch: a
    # trigger run at each commit that settles a message notes it, with a
    # claim naming it whose messages are all settled (with no parser dying
    # here, there must be none).
    sql "CREATE TABLE outlived (message bigint, claim bigint);
         CREATE FUNCTION outlived() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN
             INSERT INTO outlived SELECT NEW.id, (SELECT p.id FROM parse_claims p
              WHERE NEW.id = ANY (p.message_ids) AND NOT EXISTS (SELECT 1 FROM messages m
                    WHERE m.id = ANY (p.message_ids) AND m.state = 'fetched') LIMIT 1);
             RETURN NULL; END \$\$;
         CREATE CONSTRAINT TRIGGER outlived AFTER UPDATE ON messages DEFERRABLE INITIALLY DEFERRED
             FOR EACH ROW WHEN (NEW.state <> 'fetched') EXECUTE FUNCTION outlived()" >/dev/null
    start_route corpus
    if wait_until 120 settled corpus "$n"; then ok "corpus: all $n messages fetched and parsed or rejected"
    else not_ok "corpus: all $n messages fetched and parsed or rejected" \
        "stored $(msgs corpus), still fetched $(msgs corpus "m.state = 'fetched'")"; fi
    check_eq "corpus: no parser's claim outlived its batch's commit" "$n settled, 0 claims" \
        "$(sql "SELECT count(DISTINCT message) || ' settled, ' || count(DISTINCT claim) || ' claims' FROM outlived")"
    sql "DROP TRIGGER outlived ON messages; DROP FUNCTION outlived(); DROP TABLE outlived" >/dev/null
    inc=$(incidents_of corpus)
    rej=$(msgs corpus "m.state = 'rejected'")
    check_eq "corpus: incidents + rejections = messages ($inc + $rej)" "$n" "$((inc + rej))"
    check_eq "corpus: every rejection has a reason" 0 "$(msgs corpus "m.state = 'rejected' AND coalesce(trim(m.reason), '') = ''")"
    CM=$CM python3 "$CM_TOP/tests/tools/corpus_check.py" "$CORPUS" corpus

    # route show: the counts
    counts=$("$CM" route show corpus --json | json '"%d %d %d %d" % tuple(j["counts"][k] for k in ("fetched", "parsed", "rejected", "pending"))')
    check_eq "route show --json: counts fetched/parsed/rejected/pending" "$n $((n - rej)) $rej 0" "$counts"
    run_cm route show corpus
    text=$(printf '%s\n' "$OUT" | tr -s ' ')
    check_contains "route show: fetched count" "fetched: $n" "$text"
    check_contains "route show: parsed count" "parsed: $((n - rej))" "$text"
    check_contains "route show: rejected count" "rejected: $rej" "$text"
    check_contains "route show: pending count" "pending: 0" "$text"
fi

# ------------------------------------------------------- 2. special messages
"${MK[@]}" nested "$T/nested.eml" --message-id nested.1@reporter.test
"${MK[@]}" msg "$T/msg.eml" --message-id msg.1@reporter.test
"${MK[@]}" smime "$T/smime.eml" --message-id smime.1@reporter.test
"${MK[@]}" pgp "$T/pgp.eml" --message-id pgp.1@reporter.test
"${MK[@]}" signed "$T/signed.eml" --message-id signed.1@reporter.test
"${MK[@]}" uuencoded "$T/uu.eml" --message-id uu.1@reporter.test
"${MK[@]}" uueml "$T/uueml.eml" --message-id uueml.1@reporter.test
"${MK[@]}" invite "$T/invite.eml" --message-id invite.1@reporter.test
"${MK[@]}" tnef "$T/tnef.eml" --message-id tnef.1@reporter.test
"${MK[@]}" tnefrtf "$T/tnefrtf.eml" --message-id tnefrtf.1@reporter.test
route_add special u02 --kind ingest >/dev/null
"${FILL[@]}" u02 INBOX "$T"/{nested,msg,smime,pgp,signed,uu,uueml,invite,tnef,tnefrtf}.eml >/dev/null
start_route special
wait_until 60 settled special 10 || not_ok "special: 10 messages settled" "stored $(msgs special)"

# nested .eml: the attached message and its own attachments, to depth 2
inc=$(by_mid nested.1@reporter.test incident)
run_cm incident show "$inc" --json
printf '%s' "$OUT" > "$T/nested.json"
tree=$(att_tree "$T/nested.json" '"%s depth=%d nested=%s parent=%s %s" % (a["filename"], a["depth"],
    a["nested"], parent, (a.get("headers") or {}).get("subject", ""))')
check_contains "nested: the attached .eml is listed as a nested message" \
    "suspicious.eml depth=0 nested=True parent=- Invoice 4711 overdue" "$tree"
check_contains "nested: the attached message's own attachment is under it" \
    "inner-note.txt depth=1 nested=False parent=suspicious.eml" "$tree"
check_contains "nested: a message attached to the attached message (depth 2)" \
    "deeper.eml depth=1 nested=True parent=suspicious.eml Deepest message" "$tree"
check_contains "nested: its attachment at depth 2" "deepest.txt depth=2 nested=False parent=deeper.eml" "$tree"
run_cm incident show "$inc"
check_contains "nested: incident show lists the nested message" "suspicious.eml" "$OUT"
check_contains "nested: incident show lists its attachment" "inner-note.txt" "$OUT"
# ... as a tree: each file under the message holding it, a level (two
# spaces) deeper, just after that message's own subject, sender and date
from="from:    Original Sender <original@phish.example>"
check_eq "nested: incident show prints each file under the message holding it" \
"    #$(att_id "$T/nested.json" suspicious.eml)  suspicious.eml
      subject: Invoice 4711 overdue
      $from
      date:    $(att_date "$T/nested.json" suspicious.eml)
      #$(att_id "$T/nested.json" inner-note.txt)  inner-note.txt
      #$(att_id "$T/nested.json" deeper.eml)  deeper.eml
        subject: Deepest message
        $from
        date:    $(att_date "$T/nested.json" deeper.eml)
        #$(att_id "$T/nested.json" deepest.txt)  deepest.txt" "$(shown_tree)"

# MSG attachment: kept and marked
inc=$(by_mid msg.1@reporter.test incident)
note="MSG attachments are not supported; attach the message as EML"
run_cm incident show "$inc" --json
msgnote=$(printf '%s' "$OUT" | json '[a["note"] for t in j["timeline"] for a in t["attachments"] if a["filename"] == "suspicious.msg"]')
check_eq "msg: the .msg attachment is kept and marked" "['$note']" "$msgnote"
run_cm incident show "$inc"
check_contains "msg: incident show prints the note" "$note" "$OUT"

# encrypted: rejected with the reason; signed: accepted, signature kept
check_eq "smime: S/MIME enveloped-data rejected" "rejected" "$(by_mid smime.1@reporter.test state)"
check_eq "smime: reason" "encrypted email is not supported" "$(by_mid smime.1@reporter.test reason)"
check_eq "pgp: PGP/MIME multipart/encrypted rejected" "rejected" "$(by_mid pgp.1@reporter.test state)"
check_eq "pgp: reason" "encrypted email is not supported" "$(by_mid pgp.1@reporter.test reason)"
check_eq "encrypted: no incident for either" "" "$(by_mid smime.1@reporter.test incident)$(by_mid pgp.1@reporter.test incident)"
run_cm inbox list --route special --state rejected
check_contains "inbox list --state rejected shows the reason" "encrypted email is not supported" "$OUT"
check_eq "signed: multipart/signed accepted" "parsed" "$(by_mid signed.1@reporter.test state)"
inc=$(by_mid signed.1@reporter.test incident)
check_contains "signed: opens an incident" "INC-" "$inc"
run_cm incident show "$inc" --json
check_contains "signed: the signature is kept as an attachment" '"filename": "smime.p7s"' "$OUT"
check_contains "signed: flagged signed" '"signed"' "$OUT"

# a scanner's mail: the file uuencoded in the text body is an attachment
# (the file's own bytes), and the description says where it was
inc=$(by_mid uu.1@reporter.test incident)
run_cm incident show "$inc" --json
check_eq "uuencode: the file in the text is an attachment with the file's SHA-256" \
    "scan-0042.pdf application/pdf $(sha "$T/uu.eml.bin")" \
    "$(printf '%s' "$OUT" | json '" ".join("%s %s %s" % (a["filename"], a["content_type"], a["sha256"]) for t in j["timeline"] for a in t["attachments"])')"
check_eq "uuencode: the description holds a marker, not the encoded lines" \
    "Scanned by the copier on floor 3.|[attachment: scan-0042.pdf]|Do not reply." \
    "$(printf '%s' "$OUT" | json '"|".join(l for l in j["description"].splitlines() if l.strip())')"

# a gateway's forward: the reported message uuencoded in the text is an
# attached message like a MIME .eml, its own attachment under it
inc=$(by_mid uueml.1@reporter.test incident)
run_cm incident show "$inc" --json
printf '%s' "$OUT" > "$T/uueml.json"
tree=$(att_tree "$T/uueml.json" '"%s depth=%d nested=%s parent=%s %s" % (a["filename"], a["depth"],
    a["nested"], parent, (a.get("headers") or {}).get("subject", ""))')
check_contains "uuencoded .eml: listed as a nested message with its subject" \
    "reported.eml depth=0 nested=True parent=- Urgent wire transfer" "$tree"
check_contains "uuencoded .eml: its own attachment is under it, with the file's SHA-256" \
    "bank-details.txt depth=1 nested=False parent=reported.eml $(sha "$T/uueml.eml.att")" \
    "$(att_tree "$T/uueml.json" '"%s depth=%d nested=%s parent=%s %s" % (a["filename"], a["depth"],
        a["nested"], parent, a["sha256"])')"
check_eq "uuencoded .eml: the description holds a marker, not the encoded lines" \
    "Reported by a user, forwarded by the gateway.|[attachment: reported.eml]|End of report." \
    "$(json '"|".join(l for l in j["description"].splitlines() if l.strip())' < "$T/uueml.json")"

# Outlook "Rich Text" mail: the files inside winmail.dat are attachments
# under it, with the names, sizes and SHA-256 Debian's tnef reads
inc=$(by_mid tnef.1@reporter.test incident)
run_cm incident show "$inc" --json
printf '%s' "$OUT" > "$T/tnef.json"
tree=$(att_tree "$T/tnef.json" '"%s|depth=%d|parent=%s|%s|%d|%s|%s" % (a["filename"], a["depth"],
    parent, a["content_type"], a["size"], a["sha256"], a["note"] or "-")')
dat_sha=$(sha "$T/tnef.eml.dat")
check_contains "tnef: winmail.dat kept, its note counts the files" \
    "winmail.dat|depth=0|parent=-|application/ms-tnef|$(stat -c %s "$T/tnef.eml.dat")|$dat_sha|TNEF (winmail.dat): 2 files taken out" "$tree"
if command -v tnef >/dev/null; then
    mkdir -p "$T/tnef.out"
    tnef -C "$T/tnef.out" "$T/tnef.eml.dat"
    check_eq "tnef: Debian's tnef reads the generator's stream (two files)" \
        "SETUP.EXE|Zahlungsavis – März.pdf" "$(tnef -t "$T/tnef.eml.dat" | cut -f1 | sort | paste -sd'|')"
    pdf=$T/tnef.out/$(cd "$T/tnef.out" && ls | grep -v -x SETUP.EXE | head -1)
    check_contains "tnef: the PDF by its long Unicode name and MIME tag, under winmail.dat, as tnef reads it" \
        "Zahlungsavis – März.pdf|depth=1|parent=winmail.dat|application/pdf|$(stat -c %s "$pdf")|$(sha "$pdf")|-" "$tree"
    check_contains "tnef: the .exe by its 8.3 name, typed by it, as tnef reads it" \
        "SETUP.EXE|depth=1|parent=winmail.dat|application/x-msdownload|$(stat -c %s "$T/tnef.out/SETUP.EXE")|$(sha "$T/tnef.out/SETUP.EXE")|-" "$tree"
else
    not_ok "tnef: Debian's tnef installed (make deps)" "no tnef in PATH"
fi
# incident show: the two files under winmail.dat, a level deeper, in id order
run_cm incident show "$inc"
check_eq "tnef: incident show prints the files under winmail.dat" \
"    #$(att_id "$T/tnef.json" winmail.dat)  winmail.dat
$(att_tree "$T/tnef.json" '"%d       #%d  %s" % (a["id"], a["id"], a["filename"]) if parent == "winmail.dat" else ""' \
    | grep -v '^$' | sort -n | sed 's/^[0-9]* //')" "$(shown_tree)"
aid=$(json '[a["id"] for t in j["timeline"] for a in t["attachments"] if a["filename"].endswith(".pdf")][0]' < "$T/tnef.json" 2>/dev/null)
rm -f "$T/tnef.pdf"
check_exit "tnef: attachment get ${aid:-?} -o FILE" 0 attachment get "${aid:-0}" -o "$T/tnef.pdf"
check_eq "tnef: attachment get returns the PDF's bytes" \
    "$(sha "$T/tnef.eml.pdf")" "$(sha "$T/tnef.pdf")"
check_eq "tnef: a message with no text of its own has the TNEF's text" \
    "Please find the payment advice attached.|Accounts" \
    "$(json '"|".join(l for l in j["description"].splitlines() if l.strip())' < "$T/tnef.json")"

# Outlook "Rich Text" mail with only an RTF body: its text is the
# description, the RTF is body.rtf under the winmail.dat, the bytes Debian's
# tnef saves as the body
inc=$(by_mid tnefrtf.1@reporter.test incident)
run_cm incident show "$inc" --json
printf '%s' "$OUT" > "$T/tnefrtf.json"
check_eq "tnef rtf: the RTF body's encapsulated HTML is the description" \
    "Your mailbox is over its quota.|Confirm your password by Friday – IT Servicés" \
    "$(json '"|".join(l for l in j["description"].splitlines() if l.strip())' < "$T/tnefrtf.json")"
tree=$(att_tree "$T/tnefrtf.json" '"%s|depth=%d|parent=%s|%s|%d|%s|%s" % (a["filename"], a["depth"],
    parent, a["content_type"], a["size"], a["sha256"], a["note"] or "-")')
check_contains "tnef rtf: the winmail.dat's note says the RTF body was read" \
    "winmail.dat|depth=0|parent=-|application/ms-tnef|$(stat -c %s "$T/tnefrtf.eml.dat")|$(sha "$T/tnefrtf.eml.dat")|TNEF (winmail.dat): 3 files taken out; RTF body read" "$tree"
# the Outlook message attached in it: a nested message with its own file
ntree=$(att_tree "$T/tnefrtf.json" '"%s depth=%d nested=%s parent=%s %s|%s|%s|%s" % (a["filename"], a["depth"],
    a["nested"], parent, (a.get("headers") or {}).get("subject", ""), (a.get("headers") or {}).get("from_name", ""),
    (a.get("headers") or {}).get("from", ""), " ".join((a.get("headers") or {}).get("text", "").split()))')
check_contains "tnef rtf: the attached Outlook message is a nested message under the winmail.dat" \
    "FW: parcel.tnef depth=1 nested=True parent=winmail.dat Your parcel is waiting|Parcel Service|notify@parcel.example|Pay the customs fee to release your parcel." "$ntree"
check_contains "tnef rtf: the attached Outlook message's file is under it" \
    "INVOICE.PDF depth=2 nested=False parent=FW: parcel.tnef" "$ntree"
if command -v tnef >/dev/null; then
    mkdir -p "$T/tnefrtf.out"
    tnef -C "$T/tnefrtf.out" --save-body=body --body-pref=R "$T/tnefrtf.eml.dat"
    check_contains "tnef rtf: body.rtf holds the bytes Debian's tnef saves as the RTF body" \
        "body.rtf|depth=1|parent=winmail.dat|application/rtf|$(stat -c %s "$T/tnefrtf.out/body.rtf")|$(sha "$T/tnefrtf.out/body.rtf")|-" "$tree"
else
    not_ok "tnef rtf: Debian's tnef installed (make deps)" "no tnef in PATH"
fi
check_eq "tnef rtf: and the bytes the generator compressed" "$(sha "$T/tnefrtf.eml.rtf")" \
    "$(json '[a["sha256"] for t in j["timeline"] for a in t["attachments"] if a["filename"] == "body.rtf"][0]' < "$T/tnefrtf.json" 2>/dev/null)"

# a calendar-only invitation: the event is the description, the .ics kept
inc=$(by_mid invite.1@reporter.test incident)
run_cm incident show "$inc"
check_contains "invite: the description names the meeting" "Meeting invitation: Password renewal" "$OUT"
check_contains "invite: ... its organizer" "Organizer: IT Helpdesk <helpdesk@phish.example>" "$OUT"
check_contains "invite: ... and its description, unfolded and unescaped" \
    "Your password expires today, renew it at https://phish.example/renew" "$OUT"
run_cm incident show "$inc" --json
check_contains "invite: the .ics stays an attachment" '"content_type": "text/calendar"' "$OUT"

# ---------------------------------------------------------- 3. threading
route_add tw u03 --kind two-way >/dev/null
start_route tw
"${MK[@]}" plain "$T/first.eml" --message-id first.1@reporter.test --subject "Phishing campaign against finance"
"${FILL[@]}" u03 INBOX "$T/first.eml" >/dev/null
wait_until 30 settled tw 1 || not_ok "threading: first message parsed"
INC=$(by_mid first.1@reporter.test incident)
check_contains "threading: the first message opens an incident" "INC-" "$INC"
INC=${INC:-(none)}
"${MK[@]}" plain "$T/r-irt.eml" --message-id reply.irt@reporter.test --in-reply-to first.1@reporter.test \
    --subject "more details" --body "Reply by In-Reply-To."
"${MK[@]}" plain "$T/r-refs.eml" --message-id reply.refs@reporter.test \
    --references "unknown.0@elsewhere.test first.1@reporter.test" --subject "other words" --body "Reply by References."
"${MK[@]}" plain "$T/r-tag.eml" --message-id reply.tag@reporter.test \
    --subject "RE: AW: something [$INC]" --body "Reply by subject tag."
"${MK[@]}" plain "$T/new.eml" --message-id unrelated.1@reporter.test --subject "A different report" \
    --references "unknown.1@elsewhere.test"
"${MK[@]}" autoreply "$T/auto.eml" --message-id auto.1@reporter.test
"${MK[@]}" bounce "$T/bounce.eml" --message-id bounce.1@example.test --to u03@example.test
"${FILL[@]}" u03 INBOX "$T"/{r-irt,r-refs,r-tag,new,auto,bounce}.eml >/dev/null
wait_until 30 settled tw 7 || not_ok "threading: 7 messages parsed" "stored $(msgs tw)"
check_eq "threading: reply by In-Reply-To lands on $INC" "$INC" "$(by_mid reply.irt@reporter.test incident)"
check_eq "threading: reply by References only lands on $INC" "$INC" "$(by_mid reply.refs@reporter.test incident)"
check_eq "threading: reply by subject tag only lands on $INC" "$INC" "$(by_mid reply.tag@reporter.test incident)"
run_cm incident show "$INC" --json
check_eq "threading: $INC's timeline holds the 4 messages" 4 "$(printf '%s' "$OUT" | json 'len(j["timeline"])')"
new=$(by_mid unrelated.1@reporter.test incident)
check "threading: an unrelated message opens its own incident ($new)" \
    test -n "$new" -a "$new" != "$INC"
check_eq "threading: the route has exactly 2 incidents" 2 "$(incidents_of tw)"
check_eq "auto-reply: parsed without an incident" "parsed|" \
    "$(by_mid auto.1@reporter.test state)|$(by_mid auto.1@reporter.test incident)"
check_contains "auto-reply: flagged" "auto-reply" "$(by_mid auto.1@reporter.test flags)"
check_eq "bounce: parsed without an incident" "parsed|" \
    "$(by_mid bounce.1@example.test state)|$(by_mid bounce.1@example.test incident)"
check_contains "bounce: flagged" "bounce" "$(by_mid bounce.1@example.test flags)"
run_cm inbox list --route tw
check_contains "inbox list shows the auto-reply" "Automatic reply" "$OUT"
# Replies in the same parser batch as the message they answer: the parser
# stores a batch at a time, yet a reply must find the incident that its
# original opens in that batch, and a reply to that reply too. The parsers
# are held until all four are stored; then one parser alone goes on, so
# one claim takes them together (two could share them out).
"${MK[@]}" plain "$T/b-first.eml" --message-id batch.first@reporter.test --subject "Batch original"
"${MK[@]}" plain "$T/b-irt.eml" --message-id batch.irt@reporter.test \
    --in-reply-to batch.first@reporter.test --subject "same batch, In-Reply-To"
"${MK[@]}" plain "$T/b-refs.eml" --message-id batch.refs@reporter.test \
    --references "batch.first@reporter.test" --subject "same batch, References"
"${MK[@]}" plain "$T/b-chain.eml" --message-id batch.chain@reporter.test \
    --in-reply-to batch.irt@reporter.test --subject "same batch, reply to the reply"
pp=$(stage_pids parser)
kill -STOP $pp 2>/dev/null
"${FILL[@]}" u03 INBOX "$T"/b-{first,irt,refs,chain}.eml >/dev/null
wait_until 30 eval '[ "$(msgs tw)" = 11 ]' || not_ok "same batch: 4 more messages stored" "stored $(msgs tw)"
check_eq "same batch: all four wait unparsed together" 4 "$(msgs tw "m.state = 'fetched'")"
first=${pp%% *}
kill -CONT "$first" 2>/dev/null
wait_until 30 settled tw 11 || not_ok "same batch: 4 more messages parsed"
kill -CONT $pp 2>/dev/null
BINC=$(by_mid batch.first@reporter.test incident)
check "same batch: the original opens its own incident ($BINC)" test -n "$BINC" -a "$BINC" != "$INC"
check_eq "same batch: the reply by In-Reply-To lands on it" "$BINC" "$(by_mid batch.irt@reporter.test incident)"
check_eq "same batch: the reply by References lands on it" "$BINC" "$(by_mid batch.refs@reporter.test incident)"
check_eq "same batch: the reply to the reply lands on it" "$BINC" "$(by_mid batch.chain@reporter.test incident)"
check_eq "same batch: the route has exactly 3 incidents" 3 "$(incidents_of tw)"

# ------------------------------------------------ 5. big and too big
# A 20 MB attachment is 27.4 MB once base64-encoded: within the default
# raw size limit (CASEMAIL_MAX_MESSAGE_BYTES, 36 MiB = 25 MB of content
# after base64, docs/OPERATIONS.md), with the defaults.
"${MK[@]}" big "$T/big.eml" --size 20000000 --message-id big.1@reporter.test
route_add big u04 --kind ingest >/dev/null
"${FILL[@]}" u04 INBOX "$T/big.eml" >/dev/null
start_route big
wait_until 120 settled big 1 || not_ok "big: the 20 MB message settled" "stored $(msgs big)"
check_eq "big: parsed" parsed "$(by_mid big.1@reporter.test state)"
inc=$(by_mid big.1@reporter.test incident)
run_cm incident show "$inc" --json
aid=$(printf '%s' "$OUT" | json '[a["id"] for t in j["timeline"] for a in t["attachments"] if a["filename"] == "capture.pcap"][0]' 2>/dev/null)
want=$(sha "$T/big.eml.bin")
check_eq "big: stored SHA-256 is the original's" "$want" \
    "$(printf '%s' "$OUT" | json '[a["sha256"] for t in j["timeline"] for a in t["attachments"] if a["filename"] == "capture.pcap"][0]' 2>/dev/null)"
rm -f "$T/got.bin"
check_exit "big: attachment get ${aid:-?} -o FILE" 0 attachment get "${aid:-0}" -o "$T/got.bin"
check_eq "big: the downloaded 20 MB file has the original's SHA-256" "$want" \
    "$(sha "$T/got.bin")"
check_eq "big: size" 20000000 "$(stat -c %s "$T/got.bin" 2>/dev/null)"

# The size limit is the parser's (CASEMAIL_MAX_MESSAGE_BYTES): restart with 2 MB.
"$CM" down >/dev/null 2>&1
CASEMAIL_MAX_MESSAGE_BYTES=2000000 "$CM" up >/dev/null 2>&1 || not_ok "casemail up with a 2 MB limit"
"${MK[@]}" big "$T/toobig.eml" --size 3000000 --message-id toobig.1@reporter.test
"${MK[@]}" plain "$T/after.eml" --message-id after.1@reporter.test --subject "after the big one"
route_add limit u05 --kind ingest >/dev/null
"${FILL[@]}" u05 INBOX "$T/toobig.eml" >/dev/null
"${FILL[@]}" u05 INBOX "$T/after.eml" >/dev/null
start_route limit
wait_until 60 settled limit 2 || not_ok "limit: both messages settled" "stored $(msgs limit)"
check_eq "limit: the 4 MB message (3 MB attachment) is rejected" rejected "$(by_mid toobig.1@reporter.test state)"
reason=$(by_mid toobig.1@reporter.test reason)
check_contains "limit: the reason names the limit" "over the 2000000-byte limit" "$reason"
check_eq "limit: its raw bytes are kept" "$(stat -c %s "$T/toobig.eml")" \
    "$(sql "SELECT octet_length(raw) FROM messages WHERE message_id = 'toobig.1@reporter.test'" | head -1)"
check_eq "limit: the route goes on with the next message" parsed "$(by_mid after.1@reporter.test state)"
check_eq "limit: the route is still RUNNING" RUNNING "$(route_status limit)"

# ------------------------------------------------ 6. claims by bytes
# A parser takes at most CASEMAIL_PARSE_BATCH_BYTES of raw mail in one
# claim (at least one message): a burst of big messages is parsed a few at
# a time, not 32 at once. Restart with 1,000,000 bytes; four messages of
# about 550 KB and four small ones arrive together. A trigger notes each
# claim's messages.
route_stop limit
"$CM" down >/dev/null 2>&1
CASEMAIL_PARSE_BATCH_BYTES=1000000 "$CM" up >/dev/null 2>&1 || not_ok "casemail up with 1,000,000-byte claims"
sql "CREATE TABLE claimed (ids bigint[]);
     CREATE FUNCTION claimed() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN
         INSERT INTO claimed VALUES (NEW.message_ids); RETURN NULL; END \$\$;
     CREATE TRIGGER claimed AFTER INSERT ON parse_claims FOR EACH ROW EXECUTE FUNCTION claimed()" >/dev/null
mkdir -p "$T/burst"
for i in 1 2 3 4; do
    "${MK[@]}" big "$T/burst/big$i.eml" --size 400000 --message-id "burst.big$i@reporter.test" >/dev/null
    "${MK[@]}" plain "$T/burst/small$i.eml" --message-id "burst.small$i@reporter.test" >/dev/null
done
rm -f "$T"/burst/*.bin
"${FILL[@]}" u05 INBOX -d "$T/burst" >/dev/null
start_route limit
wait_until 60 settled limit 10 || not_ok "burst: all 8 messages settled" "stored $(msgs limit)"
B="m.message_id LIKE 'burst.%'"
check_eq "burst: 8 messages parsed" 8 "$(msgs limit "$B AND m.state = 'parsed'")"
claims=$(sql "SELECT count(*), count(*) FILTER (WHERE n > 1 AND bytes > 1000000), max(bytes) FILTER (WHERE n = 1)
              FROM (SELECT c.ids, count(*) AS n, sum(m.size) AS bytes FROM claimed c
                    JOIN messages m ON m.id = ANY (c.ids) WHERE $B GROUP BY c.ids) x")
case "$claims" in
    *"|0|"*) ok "burst: no claim took more than 1,000,000 bytes but for a single message ($claims: claims, over, biggest single)" ;;
    *) not_ok "burst: no claim took more than 1,000,000 bytes but for a single message" "claims, over, biggest single: $claims" \
           "$(sql "SELECT c.ids, sum(m.size) FROM claimed c JOIN messages m ON m.id = ANY (c.ids) GROUP BY c.ids")" ;;
esac
check_eq "burst: a big message is claimed alone at least 3 times" 1 \
    "$(sql "SELECT (count(*) >= 3)::int FROM claimed c JOIN messages m ON m.id = c.ids [1]
            WHERE array_length(c.ids, 1) = 1 AND m.message_id LIKE 'burst.big%'")"
