#!/usr/bin/env bash
# A changed UIDVALIDITY does not re-ingest mail already stored (DESIGN
# invariant 2): the folder is rescanned and messages already stored are
# recognised by Message-ID and SHA-256; new mail is ingested. User u16.
# Then a folder searched in windows of UIDs (CASEMAIL_SEARCH_UIDS, made 7
# here for every part): long gaps, no open-ended search (user u13), and
# --since over windows, and a first pass cut short keeping its --since
# limit (user u14), and a server that refuses FETCH * (user u34).
. "$(dirname "$0")/../lib.sh"
export CASEMAIL_SEARCH_UIDS=7
cm_start || exit 1
src=$CM_WORK/uidv
mkdir -p "$src/a" "$src/b"
for i in 1 2 3 4 5; do
    printf 'From: r@outside.test\r\nTo: u16@example.test\r\nSubject: uidv %s\r\nMessage-ID: <uidv.%s@outside.test>\r\n\r\nbody %s\r\n' $i $i $i > "$src/a/$i.eml"
done
for i in 6 7; do
    printf 'From: r@outside.test\r\nTo: u16@example.test\r\nSubject: uidv %s\r\nMessage-ID: <uidv.%s@outside.test>\r\n\r\nbody %s\r\n' $i $i $i > "$src/b/$i.eml"
done
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u16 INBOX -d "$src/a" >/dev/null
route_add uv u16 --after-fetch keep >/dev/null
"$CM" route start uv >/dev/null
wait_until 30 sql_at_least 5 "SELECT count(*) FROM messages WHERE state <> 'fetched'"
uv1=$(sql "SELECT uidvalidity FROM route_cursors")
check_eq "5 messages ingested first" "5" "$(sql "SELECT count(*) FROM incidents")"

# the server forgets its UIDs: a new UIDVALIDITY, same messages
"$CM" route stop uv >/dev/null
sleep 2
box="$CM_STACK_DIR/mail/example.test/u16/Maildir/INBOX"
rm -f "$box"/dovecot-uidlist "$box"/dovecot.index* "$box"/dovecot-uidvalidity*
sleep 1.1      # UIDVALIDITY is a time in seconds: make sure it differs
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u16 INBOX -d "$src/b" >/dev/null
# a deferral a long pass left behind (route_cursors.ack_from), as if the
# route had been `seen` then: a `keep` route drops it at its login and
# marks nothing (else a route set back to `seen` would mark these)
sql "UPDATE route_cursors SET ack_from = 0" >/dev/null
"$CM" route start uv >/dev/null
wait_until 30 sql_at_least 7 "SELECT count(*) FROM messages WHERE state <> 'fetched'"
sleep 2        # anything duplicated would show up now
uv2=$(sql "SELECT uidvalidity FROM route_cursors")
[ -n "$uv1" ] && [ "$uv1" != "$uv2" ] && ok "the folder's UIDVALIDITY changed ($uv1 -> $uv2)" || not_ok "the folder's UIDVALIDITY changed" "$uv1 -> $uv2"
check_eq "the 2 new messages were ingested, the 5 old ones not again" "7" "$(sql "SELECT count(*) FROM messages")"
check_eq "each Message-ID once" "7" "$(sql "SELECT count(DISTINCT message_id) FROM messages")"
check_eq "7 incidents, none duplicated" "7" "$(sql "SELECT count(*) FROM incidents")"
grep -q "UIDVALIDITY of INBOX changed" "$CASEMAIL_HOME"/log/fetcher-*.log && ok "the fetcher logged the UIDVALIDITY change" || not_ok "the fetcher logged the UIDVALIDITY change"
check_contains "the fetcher counted the recognised duplicates" "duplicates=5" "$("$CM" stage list)"
check_eq "keep: the deferral left behind is dropped" "" "$(sql "SELECT ack_from FROM route_cursors")"
check_eq "keep: none of the 7 messages marked seen" 7 \
    "$(curl -s --max-time 20 --cacert "$CM_CA_FILE" -u "u16@$CM_MAIL_DOMAIN:u16-pw-Secret1" \
        "imaps://localhost:$CM_IMAPS_PORT/INBOX" -X "SEARCH UNSEEN" | tr -d '\r' | sed -n 's/^\* SEARCH//p' | wc -w)"

# ---------------------------------------------------------------- windows
# 60 messages, UIDs 8 to 50 expunged, 3 more: 20 left with a gap of 43
# UIDs. The fetcher searches windows of 7 UIDs up to the last message's
# UID, doubling a window after an empty one: every message is found once,
# and no search is open-ended (an answer bounded by the window, not by the
# folder).
# two_parts USER WORD FIRST ALL: messages 1..ALL to USER, "Subject: WORD
# N", the first FIRST into $src/WORD.1, the rest into $src/WORD.2
two_parts() {
    mkdir -p "$src/$2.1" "$src/$2.2"
    local i d
    for i in $(seq -w 1 "$4"); do
        d=$src/$2.1; [ "$i" -gt "$3" ] && d=$src/$2.2
        printf 'From: r@outside.test\r\nTo: %s@example.test\r\nSubject: %s %s\r\nMessage-ID: <%s.%s@outside.test>\r\n\r\nbody %s\r\n' \
            "$1" "$2" $i "$2" $i $i > "$d/$i.eml"
    done
}
two_parts u13 window 60 63
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u13 INBOX -d "$src/window.1" >/dev/null
imap13() { curl -s --max-time 20 --cacert "$CM_CA_FILE" -u "u13@$CM_MAIL_DOMAIN:u13-pw-Secret1" \
               "imaps://localhost:$CM_IMAPS_PORT/INBOX" -X "$1" | tr -d '\r'; }
imap13 "UID STORE 8:50 +FLAGS.SILENT (\\Deleted)" >/dev/null
imap13 "EXPUNGE" >/dev/null
check_eq "the folder holds 17 messages after the expunge" "17" \
    "$(imap13 "SEARCH ALL" | sed -n 's/^\* SEARCH//p' | wc -w)"
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u13 INBOX -d "$src/window.2" >/dev/null
route_add win u13 --kind ingest --after-fetch keep --log-level verbose >/dev/null
"$CM" route start win >/dev/null
W="route_id = (SELECT id FROM routes WHERE name = 'win')"
wait_until 30 sql_at_least 20 "SELECT count(*) FROM messages WHERE $W AND state <> 'fetched'"
sleep 1
left=$(imap13 "FETCH 1:* (ENVELOPE)" | grep -o '"window [0-9]*"' | tr -dc '0-9\n' | sort | paste -sd ' ')
check_eq "the folder's 20 messages, each stored once" "20 $left" \
    "$(sql "SELECT count(*) || ' ' || string_agg(substr(subject, 8), ' ' ORDER BY subject) FROM messages WHERE $W")"
searches=$(grep -h " win trace: C: .* UID SEARCH UID" "$CASEMAIL_HOME"/log/fetcher-*.log \
           | grep -o 'UID SEARCH UID [0-9:*]*' | sed 's/UID SEARCH UID //')
check_lacks "no search is open-ended (UID n:*)" "*" "$searches"
widths=$(for r in $searches; do echo $(( ${r#*:} - ${r%:*} + 1 )); done | sort -n | uniq | paste -sd ' ')
case " $widths " in
    *" 7 14 "*) ok "windows of 7 UIDs, doubled across the gap (widths: $widths)" ;;
    *) not_ok "windows of 7 UIDs, doubled across the gap" "widths: $widths" ;;
esac
[ "$(echo "$widths" | awk '{print $NF}')" -le 448 ] && ok "no window over 64 x 7 UIDs" || not_ok "no window over 64 x 7 UIDs" "widths: $widths"

# A server that will not answer FETCH * (the last message's UID): the
# windows run up to the UIDNEXT the server gave at SELECT, the last one
# open-ended (mail may have come since). 30 messages of u34 through a
# man in the middle that answers FETCH * with NO; then 2 more.
two_parts u34 star 30 32
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u34 INBOX -d "$src/star.1" >/dev/null
FP=$(free_port)
mitm "127.0.0.1:$FP" "127.0.0.1:$CM_IMAP_PORT" refuse-fetch-star "$CM_WORK/uidv-star.log"
CM_PW=u34-pw-Secret1 "$CM" route add star --email u34@example.test --username u34@example.test \
    --password-env CM_PW --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$FP" \
    --outbound-host localhost --outbound-protocol smtps --outbound-port "$CM_SMTPS_PORT" \
    --ca-file "$CM_CA_FILE" --kind ingest --after-fetch keep --log-level verbose >/dev/null
"$CM" route start star >/dev/null
F="route_id = (SELECT id FROM routes WHERE name = 'star')"
wait_until 30 sql_at_least 30 "SELECT count(*) FROM messages WHERE $F AND state <> 'fetched'"
check_contains "the fetcher asked FETCH * and the proxy refused it" "FETCH * (UID)" "$(cat "$CM_WORK/uidv-star.log")"
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u34 INBOX -d "$src/star.2" >/dev/null
wait_until 30 sql_at_least 32 "SELECT count(*) FROM messages WHERE $F AND state <> 'fetched'"
check_eq "FETCH * refused: the folder's 32 messages, each stored once" \
    "32 $(seq -w 1 32 | paste -sd ' ')" \
    "$(sql "SELECT count(*) || ' ' || string_agg(substr(subject, 6), ' ' ORDER BY subject) FROM messages WHERE $F")"
searches=$(grep -h " star trace: C: .* UID SEARCH UID" "$CASEMAIL_HOME"/log/fetcher-*.log \
           | grep -o 'UID SEARCH UID [0-9:*]*' | sed 's/UID SEARCH UID //' | paste -sd ' ')
case " $searches " in
    *" 1:7 8:14 "*"29:* "*) ok "... searched in windows of 7 UIDs up to UIDNEXT, the last open-ended ($searches)" ;;
    *) not_ok "... searched in windows of 7 UIDs up to UIDNEXT, the last open-ended" "searches: $searches" ;;
esac

# ---------------------------------------------------------------- --since
# --since limits the whole first pass, window after window, not only its
# first search. UIDs 1-8 and 21-30 were received today, 9-20 in 2020 (a
# Maildir file's time is its received date): a route started with --since
# 2024-01-01 takes those 18. The first search stops at 7 UIDs (the
# window's size); a second search without the date would take 9-20.
box14="$CM_STACK_DIR/mail/example.test/u14/Maildir"
mkdir -p "$src/s"
imap14() {   # imap14 FOLDER REQUEST
    curl -s --max-time 20 --cacert "$CM_CA_FILE" -u "u14@$CM_MAIL_DOMAIN:u14-pw-Secret1" \
        "imaps://localhost:$CM_IMAPS_PORT/$1" -X "$2" | tr -d '\r'
}
# fill14 FOLDER PREFIX FIRST LAST [old]: messages FIRST..LAST, Subject
# "PREFIX N" (received in 2020 with "old"); prints the new files' names
fill14() {
    local folder=$1 prefix=$2 before
    rm -f "$src/s"/*.eml
    for i in $(seq -w "$3" "$4"); do
        printf 'From: r@outside.test\r\nTo: u14@example.test\r\nSubject: %s %s\r\nMessage-ID: <%s.%s@outside.test>\r\n\r\nbody %s\r\n' \
            "$prefix" $i "$prefix" $i $i > "$src/s/$i.eml"
    done
    before=$(ls "$box14/$folder/cur" 2>/dev/null | sort)
    "$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u14 "$folder" -d "$src/s" >/dev/null
    comm -13 <(echo "$before") <(ls "$box14/$folder/cur" | sort) | while read -r f; do
        [ "${5:-}" = old ] && touch -d "2020-03-01 12:00:00" "$box14/$folder/cur/$f"
        echo "$f"
    done
    imap14 "$folder" NOOP >/dev/null      # the server gives them their UIDs now, in this order
}
fill14 INBOX since 01 08 >/dev/null; fill14 INBOX since 09 20 old >/dev/null; fill14 INBOX since 21 30 >/dev/null
check_eq "the folder's UIDs 9-20 are the old ones" "9 10 11 12 13 14 15 16 17 18 19 20" \
    "$(imap14 INBOX "UID SEARCH BEFORE 1-Jan-2024" | sed -n 's/^\* SEARCH //p')"
route_add since u14 --kind ingest --after-fetch keep --since 2024-01-01 >/dev/null
"$CM" route start since >/dev/null
S="route_id = (SELECT id FROM routes WHERE name = 'since')"
wait_until 30 sql_at_least 18 "SELECT count(*) FROM messages WHERE $S AND state <> 'fetched'"
sleep 2        # anything older would show up now
check_eq "--since over windows: the 18 received since, none of the 12 older" \
    "18 01 02 03 04 05 06 07 08 21 22 23 24 25 26 27 28 29 30" \
    "$(sql "SELECT count(*) || ' ' || string_agg(substr(subject, 7), ' ' ORDER BY subject) FROM messages WHERE $S")"

# A first pass cut short keeps its --since limit. Folder Cut of u14: UIDs
# 1-8 received today, 9-20 in 2020, 21-30 today. UID 8's file is made
# unreadable to the server, so the pass stops there with UIDs 1-7 committed
# (the search's window is 7); the route shows FAILED. Once the file can be
# read again the fetcher goes on from UID 8 with the same limit: 9-20 stay
# out. Then mail that comes later is taken, and so is old mail moved in
# later (it keeps its 2020 date but gets a new UID).
fill14 Cut cut 01 07 >/dev/null
bad=$(fill14 Cut cut 08 08)
fill14 Cut cut 09 20 old >/dev/null
fill14 Cut cut 21 30 >/dev/null
check_eq "folder Cut: UIDs 9-20 are the old ones" "9 10 11 12 13 14 15 16 17 18 19 20" \
    "$(imap14 Cut "UID SEARCH BEFORE 1-Jan-2024" | sed -n 's/^\* SEARCH //p')"
chmod 000 "$box14/Cut/cur/$bad"
route_stop since     # one route per mailbox account
"$CM" route rm since >/dev/null || not_ok "route since removed"
route_add cut u14 --kind ingest --folder Cut --after-fetch keep --since 2024-01-01 >/dev/null
"$CM" route start cut >/dev/null
C="route_id = (SELECT id FROM routes WHERE name = 'cut')"
if wait_until 30 status_is cut FAILED; then ok "an unreadable message stops the first pass: the route shows FAILED"
else not_ok "an unreadable message stops the first pass" "status: $(route_status cut)"; fi
check_eq "the pass stopped after UIDs 1-7, committed with the cursor" "7|7|30" \
    "$(sql "SELECT (SELECT count(*) FROM messages WHERE $C), last_uid, since_top FROM route_cursors WHERE $C")"
# Each try fetches UID 8 and fails: a body session libcurl had to open
# again is read-write, where a fetch sets \Seen even when it fails. The
# message is not committed, so it must not be left marked read.
route_stop cut
wait_until 20 lease_free cut || not_ok "route cut's worker stopped" "its lease is still held"
FLAGS8=$(imap14 Cut "UID FETCH 8 (FLAGS)")
check_contains "UID 8's flags can be read" "FLAGS (" "$FLAGS8"
check_lacks "UID 8, never committed, is not marked read" "Seen" "$FLAGS8"
chmod 644 "$box14/Cut/cur/${bad%%:*}"*
"$CM" route start cut >/dev/null
if wait_until 60 sql_at_least 18 "SELECT count(*) FROM messages WHERE $C AND state <> 'fetched'"; then
    ok "the fetcher goes on once the message can be read"
else not_ok "the fetcher goes on once the message can be read" "status: $(route_status cut)"; fi
wait_until 20 status_is cut RUNNING
sleep 2        # anything older would show up now
check_eq "--since holds after the cut: the 18 received since, none of the 12 older" \
    "18 01 02 03 04 05 06 07 08 21 22 23 24 25 26 27 28 29 30" \
    "$(sql "SELECT count(*) || ' ' || string_agg(substr(subject, 5), ' ' ORDER BY subject) FROM messages WHERE $C")"
check_eq "the cursor is at the folder's last UID" 30 "$(sql "SELECT last_uid FROM route_cursors WHERE $C")"
route_stop cut     # so the date is set before any search
fill14 Cut cut 31 31 >/dev/null
fill14 Cut cut 32 32 old >/dev/null
check_eq "folder Cut: UID 32 is an old one too" "9 10 11 12 13 14 15 16 17 18 19 20 32" \
    "$(imap14 Cut "UID SEARCH BEFORE 1-Jan-2024" | sed -n 's/^\* SEARCH //p')"
"$CM" route start cut >/dev/null
if wait_until 30 sql_at_least 20 "SELECT count(*) FROM messages WHERE $C AND state <> 'fetched'"; then
    ok "mail that comes after the first pass is taken, an old date too (moved in)"
else not_ok "mail that comes after the first pass is taken, an old date too" \
    "$(sql "SELECT string_agg(substr(subject, 5), ' ' ORDER BY subject) FROM messages WHERE $C")"; fi
check_eq "messages 31 and 32 are in, still none of 9-20" "20 31 32" \
    "$(sql "SELECT count(*) || ' ' || string_agg(substr(subject, 5), ' ' ORDER BY subject) FILTER (WHERE subject > 'cut 30') FROM messages WHERE $C")"

# A folder empty at the first start records a limit of nothing: mail that
# comes while the route is stopped is taken at the next start whatever its
# date (unrecorded, the next start would have limited it). Route cut moves
# to folder Empty of u14, a new cursor.
route_stop cut
rm -rf "$src/s" && mkdir -p "$src/s"
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u14 Empty -d "$src/s" >/dev/null
"$CM" route set cut --folder Empty >/dev/null || not_ok "route cut moves to folder Empty"
"$CM" route start cut >/dev/null
wait_until 30 status_is cut RUNNING
E="route_id = (SELECT id FROM routes WHERE name = 'cut') AND folder = 'Empty'"
wait_until 10 eval '[ -n "$(sql "SELECT 1 FROM route_cursors WHERE $E")" ]'
check_eq "an empty folder's first start records a limit of nothing" "0|0" \
    "$(sql "SELECT last_uid, since_top FROM route_cursors WHERE $E")"
route_stop cut
fill14 Empty empty 01 01 old >/dev/null
check_eq "folder Empty: its one message is an old one" "1" \
    "$(imap14 Empty "UID SEARCH BEFORE 1-Jan-2024" | sed -n 's/^\* SEARCH //p')"
"$CM" route start cut >/dev/null
if wait_until 30 sql_at_least 1 "SELECT count(*) FROM messages WHERE $E AND state <> 'fetched'"; then
    ok "mail that came after an empty first start is taken, an old date too"
else not_ok "mail that came after an empty first start is taken, an old date too" \
    "cursor: $(sql "SELECT last_uid, since_top FROM route_cursors WHERE $E")"; fi
