#!/usr/bin/env bash
# A changed UIDVALIDITY does not re-ingest mail already stored (DESIGN
# invariant 2): the folder is rescanned and messages already stored are
# recognised by Message-ID and SHA-256; new mail is ingested. User u16.
. "$(dirname "$0")/../lib.sh"
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
