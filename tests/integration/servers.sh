#!/usr/bin/env bash
# IMAP servers set up unlike the stack's Dovecot: a second, private Dovecot
# (tests/stack/dovecot-alt.sh) with mbox storage and "." as the hierarchy
# separator, and men in the middle (tests/tools/mitm.py) for what Dovecot
# 2.3 cannot be made to do. Checked:
# - a password with spaces, quotes, a backslash, a brace and non-ASCII:
#   by SASL PLAIN, and by the LOGIN command of a server that offers no SASL
#   (mitm login-only), where it goes as a quoted string; a non-ASCII
#   password with neither, which libcurl's LOGIN sends bare: the reason;
# - a route folder and a processed folder with spaces, non-ASCII (modified
#   UTF-7 on the wire), quotes and a backslash on mbox, the processed one
#   made by the first move; new mail while the route runs;
# - UIDVALIDITY 2^32 - 1 and UIDs just below 2^32 - 1;
# - a server that speaks IMAP4rev2 only (mitm rev2): every SEARCH answered
#   by ESEARCH, on the route folder named "inbox" (INBOX in lower case);
# - a server that sends flag changes and EXISTS in the middle of answers
#   (mitm chatty), even before message bodies; one that sends no UIDNEXT
#   (mitm no-uidnext): --since still records its limit;
# - a third Dovecot (Maildir++) whose folders are under "INBOX.": a route
#   or processed folder named without it is refused by route test-inbound
#   and FAILED at the move, the reason offering the name under INBOX.;
#   one named under "inbox." (INBOX in lower case) is taken as under it;
# - a damaged ESEARCH answer (mitm bad-esearch): the search fails, naming
#   it, nothing taken; once the answers are whole, each message once.
. "$(dirname "$0")/../lib.sh"
cm_start || exit 1

DA=$CM_WORK/$CM_TEST.dovecot          # its own per run (make test runs each test twice)
"$CM_TOP/tests/stack/dovecot-alt.sh" "$DA" stop >/dev/null 2>&1
rm -rf "$DA"
mkdir -p "$DA"
chmod 755 "$DA"
NASTY='pä ss"w\{3}rd'
printf '%s\n' "carol $NASTY" "dave dave-Secret1" "erin erin-Secret1" \
    "frank pässwort" "gina gina-Secret1" "hank2 hank2-Secret1" "ivan ivan-Secret1" \
    "judy judy-Secret1" "kate kate-Secret1" >"$DA/users"
P=$(free_port)
alt() { "$CM_TOP/tests/stack/dovecot-alt.sh" "$DA" "$@"; }
DB=$CM_WORK/$CM_TEST.dovecot2        # a second one, folders under "INBOX."
"$CM_TOP/tests/stack/dovecot-alt.sh" "$DB" stop >/dev/null 2>&1
rm -rf "$DB"
mkdir -p "$DB"
chmod 755 "$DB"
echo "hank hank-Secret1" >"$DB/users"
alt2() { "$CM_TOP/tests/stack/dovecot-alt.sh" "$DB" "$@"; }
trap 'alt stop >/dev/null 2>&1; alt2 stop >/dev/null 2>&1; cm_stop' EXIT
if out=$(alt start "$P" mbox . 2>&1); then ok "a second Dovecot starts ($out)"
else not_ok "a second Dovecot starts" "$out"; exit 1; fi

src=$CM_WORK/$CM_TEST-mail
rm -rf "$src"
# mkbulk N NAME: N messages cycled from the corpus in $src/NAME
mkbulk() { python3 "$CM_TOP/tests/tools/mkmail.py" bulk "$1" "$src/$2" --corpus "$CM_TOP/../shared/corpus/hunnysoft" --prefix "$2-$CM_TEST" >/dev/null; }
# put USER FOLDER FILE...: each file into FOLDER as a delivery would
put() { local u=$1 f=$2 m; shift 2; for m in "$@"; do alt doveadm save -u "$u" -m "$f" <"$m" || return 1; done; }
count() { alt doveadm mailbox status -u "$1" messages "$2" 2>/dev/null | sed -n 's/.*messages=//p'; }
stored() { sql "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = '$1'"; }
settled() { sql "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = '$1' AND m.state <> 'fetched'"; }
# alt_route NAME USER PASSWORD PORT [OPTIONS...]: an ingest route on the second Dovecot
alt_route() {
    local name=$1 user=$2 pw=$3 port=$4; shift 4
    CM_PW=$pw "$CM" route add "$name" --kind ingest --email "$user@alt.test" --username "$user" \
        --password-env CM_PW --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$port" \
        --outbound-host localhost --outbound-protocol smtp+starttls \
        --outbound-port "$CM_SUBMISSION_PORT" --ca-file "$CM_CA_FILE" "$@" >/dev/null
}
fetcher_log() { grep -h "$1" "$CASEMAIL_HOME"/log/fetcher-*.log 2>/dev/null | tail -3; }
# comes_after ROUTE USER FOLDER N TOTAL DESC: N more messages put in FOLDER
# while the route runs: ok once it has TOTAL settled; then each once, and
# the route stopped
comes_after() {
    local r=$1 u=$2 f=$3 n=$4 total=$5 desc=$6
    mkbulk "$n" "$r-more"
    put "$u" "$f" "$src/$r-more"/*
    if wait_until 30 eval '[ "$(settled "$r")" -ge "$total" ]'; then ok "$desc"
    else not_ok "$desc" "settled $(settled "$r")" "$(fetcher_log "$r")"; fi
    check_eq "each once" "$total" "$(stored "$r")"
    route_stop "$r"
}

# ------------------------------------------- passwords
PW=$NASTY run_cm route test-inbound --email carol@alt.test --username carol --password-env PW \
    --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$P"
check_eq "a password with spaces, quotes, a backslash, a brace, non-ASCII: SASL PLAIN" 0 "$RC"
LP=$(free_port)
mitm "127.0.0.1:$LP" "127.0.0.1:$P" login-only "$CM_WORK/$CM_TEST.login.log"
PW=$NASTY run_cm route test-inbound --email carol@alt.test --username carol --password-env PW \
    --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$LP"
check_eq "the same password by LOGIN, where the server offers no SASL" 0 "$RC"
check_contains "sent as one quoted string" 'LOGIN carol "pä ss\"w\\{3}rd"' \
    "$(cat "$CM_WORK/$CM_TEST.login.log")"
PW=wrong-pw run_cm route test-inbound --email carol@alt.test --username carol --password-env PW \
    --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$LP"
check "a wrong password by LOGIN fails" test "$RC" -ne 0

# A non-ASCII password without a space or quote: libcurl's LOGIN sends it
# as a bare atom, which the server refuses; the reason says so.
PW=pässwort run_cm route test-inbound --email frank@alt.test --username frank --password-env PW \
    --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$P"
check_eq "a non-ASCII password alone works by SASL PLAIN" 0 "$RC"
PW=pässwort run_cm route test-inbound --email frank@alt.test --username frank --password-env PW \
    --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$LP"
why=$OUT
check "by LOGIN it fails" test "$RC" -ne 0
check_contains "naming why: the password goes unquoted where the server offers no SASL PLAIN" \
    "offers no SASL PLAIN or LOGIN, and libcurl's LOGIN command sends this non-ASCII password as a bare atom" "$why"

# ------------------------------------------- mbox, ".", odd folder names
IN='Berichte 2026 ü'
DONE='Erledigt "alt" \ é'
mkbulk 12 odd
alt doveadm mailbox create -u dave "$IN"
put dave "$IN" "$src"/odd/* && ok "12 messages in \"$IN\" (mbox)" || not_ok "12 messages in \"$IN\" (mbox)"
alt_route odd dave dave-Secret1 "$P" --folder "$IN" --after-fetch move --processed-folder "$DONE"
"$CM" route start odd >/dev/null
if wait_until 60 eval '[ "$(settled odd)" -ge 12 ] && [ "$(count dave "$IN")" = 0 ]'; then
    ok "the route takes the 12 and moves them into \"$DONE\", made by the first move"
else not_ok "the route takes the 12 and moves them into \"$DONE\", made by the first move" \
    "settled $(settled odd), left $(count dave "$IN"), status $(route_status odd)" "$(fetcher_log odd)"; fi
check_eq "the processed folder holds the 12" 12 "$(count dave "$DONE")"
mkbulk 3 late
put dave "$IN" "$src"/late/*
if wait_until 40 eval '[ "$(settled odd)" -ge 15 ] && [ "$(count dave "$DONE")" = 15 ]'; then
    ok "3 messages that come while the route runs are taken and moved"
else not_ok "3 messages that come while the route runs are taken and moved" \
    "settled $(settled odd), moved $(count dave "$DONE")" "$(fetcher_log odd)"; fi
check_eq "each once" "15 15" "$(sql "SELECT count(*) || ' ' || count(DISTINCT message_id) FROM messages m
    JOIN routes r ON r.id = m.route_id WHERE r.name = 'odd'")"
check_eq "the route is RUNNING" RUNNING "$(route_status odd)"
route_stop odd

# ------------------------------------------- UIDs at the top of 32 bits
# (mbox: Dovecot 2.3 itself fails when a UID would reach 2^32 - 1)
mkbulk 6 top
alt doveadm mailbox create -u erin Top
alt doveadm mailbox update -u erin --uid-validity 4294967295 --min-next-uid 4294967286 Top
put erin Top "$src"/top/*
check_eq "6 messages with UIDs 4294967286 to 4294967291, UIDVALIDITY 2^32 - 1" \
    "4294967291 4294967295" "$(alt doveadm fetch -u erin uid mailbox Top | sed -n 's/^uid: //p' | tail -1) $(
    alt doveadm mailbox status -u erin uidvalidity Top | sed -n 's/.*uidvalidity=//p')"
alt_route top erin erin-Secret1 "$P" --folder Top --after-fetch seen
"$CM" route start top >/dev/null
if wait_until 40 eval '[ "$(settled top)" -ge 6 ]'; then ok "the route takes the 6"
else not_ok "the route takes the 6" "settled $(settled top), status $(route_status top)" "$(fetcher_log top)"; fi
check_eq "its cursor: UIDVALIDITY 4294967295, the last UID 4294967291" "4294967295|4294967291" \
    "$(sql "SELECT c.uidvalidity || '|' || c.last_uid FROM route_cursors c JOIN routes r ON r.id = c.route_id WHERE r.name = 'top'")"
comes_after top erin Top 1 7 "and the one that comes after, UID 4294967292"

# ------------------------------------------- IMAP4rev2 only: ESEARCH
# via_mitm MODE NAME USER PASSWORD N [OPTIONS...]: N messages put in USER's
# INBOX and a route NAME on it through mitm.py MODE, started; true once
# the N are stored and settled
via_mitm() {
    local mode=$1 name=$2 user=$3 pw=$4 n=$5 port; shift 5
    mkbulk "$n" "$name"
    put "$user" INBOX "$src/$name"/*
    port=$(free_port)
    mitm "127.0.0.1:$port" "127.0.0.1:$P" "$mode" "$CM_WORK/$CM_TEST.$mode.log"
    alt_route "$name" "$user" "$pw" "$port" "$@"
    "$CM" route start "$name" >/dev/null
    wait_until 60 eval '[ "$(settled "$name")" -ge "$n" ]'
}
if via_mitm rev2 rev2 carol "$NASTY" 5 --folder inbox --after-fetch seen; then
    ok "a server that answers every SEARCH by ESEARCH (IMAP4rev2 only): the 5 come in"
else not_ok "a server that answers every SEARCH by ESEARCH (IMAP4rev2 only): the 5 come in" \
    "settled $(settled rev2), status $(route_status rev2)" "$(fetcher_log rev2)"; fi
check_eq "and are \\Seen on the server" 5 \
    "$(alt doveadm search -u carol mailbox INBOX SEEN | grep -c .)"
comes_after rev2 carol INBOX 2 7 "and the 2 that come after (ESEARCH from the cursor on)"

# ------------------------------------------- a limit of sessions per user
# A pass of more than 128 messages runs over two lanes (fetcher/lanes.c),
# each a control and a body connection. A server that allows a user 2
# connections at once refuses the second lane's control connection; one
# that allows 3, its body connection (the worker's own body connection
# logs in first, so it is never the one refused). Either way the route
# says so, in the server's words, and fetches over its one lane, each
# message once.
for limit in 2 3; do
    user=judy; [ "$limit" = 3 ] && user=kate
    export MITM_SESSIONS=$limit
    if via_mitm session-limit "lim$limit" "$user" "$user-Secret1" 300 --after-fetch seen; then
        ok "a server that allows $limit connections per user: the 300 come in over one lane"
    else not_ok "a server that allows $limit connections per user: the 300 come in over one lane" \
        "settled $(settled "lim$limit"), status $(route_status "lim$limit")" "$(fetcher_log "lim$limit")"; fi
    log=$(grep -h " lim$limit " "$CASEMAIL_HOME"/log/fetcher-*.log)
    check_contains "... the fetcher says the second lane could not log in" \
        "a second mailbox session could not log in (login refused by 127.0.0.1:" "$log"
    check_contains "... in the server's words" "NO [LIMIT] Maximum number of connections" "$log"
    check_eq "... each once, all \\Seen, the route RUNNING" "300 300 RUNNING" \
        "$(stored "lim$limit") $(alt doveadm search -u "$user" mailbox INBOX SEEN | grep -c .) $(route_status "lim$limit")"
    route_stop "lim$limit"
done
unset MITM_SESSIONS

# A damaged ESEARCH answer ("ALL 12,3:*": read up to the "*", UID 12
# alone, the cursor went past 3 to 11) fails the search, naming it;
# once the server answers whole sets, every message comes in once.
export MITM_DAMAGE=$CM_WORK/$CM_TEST.damage
touch "$MITM_DAMAGE"
mkbulk 6 damaged
put ivan INBOX "$src"/damaged/*
BP=$(free_port)
mitm "127.0.0.1:$BP" "127.0.0.1:$P" bad-esearch "$CM_WORK/$CM_TEST.bad-esearch.log"
alt_route damaged ivan ivan-Secret1 "$BP" --after-fetch keep
"$CM" route start damaged >/dev/null
last_error() { "$CM" route show "$1" --json | json "j['last_error']"; }
if wait_until 30 eval '[ -n "$(last_error damaged)" ] && status_is damaged FAILED'; then
    check_contains "a damaged ESEARCH set fails the search, the route showing it" \
        'UID SEARCH answer damaged (not one UID set): * ESEARCH (TAG "' "$(last_error damaged)"
else not_ok "a damaged ESEARCH set fails the search, the route showing it" \
    "status $(route_status damaged), stored $(stored damaged)" "$(fetcher_log damaged)"; fi
check_eq "nothing taken from it, the route FAILED" "0 FAILED" "$(stored damaged) $(route_status damaged)"
rm -f "$MITM_DAMAGE"
if wait_until 30 eval '[ "$(settled damaged)" -ge 6 ] && status_is damaged RUNNING'; then
    ok "once the server answers whole sets, the 6 come in and the route is RUNNING"
else not_ok "once the server answers whole sets, the 6 come in and the route is RUNNING" \
    "settled $(settled damaged), status $(route_status damaged)" "$(fetcher_log damaged)"; fi
check_eq "each once" 6 "$(stored damaged)"
route_stop damaged

# ------------------------------------------- no UIDNEXT at SELECT
# --since limits the mail in the folder at the first pass, up to a UID
# recorded with the cursor so that a pass cut short keeps the limit: with
# no UIDNEXT, the last message's UID.
ictl() { PW=$2 python3 "$CM_TOP/tests/tools/imapctl.py" --host 127.0.0.1 --port "$P" --user "$1" \
             --password-env PW "${@:3}"; }
mkbulk 2 old
mkbulk 3 new
ictl hank2 hank2-Secret1 append Since "$src"/old/* --date "15-Mar-2020 10:00:00 +0000" >/dev/null
ictl hank2 hank2-Secret1 append Since "$src"/new/* >/dev/null
NP=$(free_port)
mitm "127.0.0.1:$NP" "127.0.0.1:$P" no-uidnext "$CM_WORK/$CM_TEST.no-uidnext.log"
alt_route since hank2 hank2-Secret1 "$NP" --folder Since --since 2024-01-01 --after-fetch keep
"$CM" route start since >/dev/null
if wait_until 40 eval '[ "$(settled since)" -ge 3 ]'; then ok "no UIDNEXT, --since: the 3 new messages come in"
else not_ok "no UIDNEXT, --since: the 3 new messages come in" "settled $(settled since), status $(route_status since)" "$(fetcher_log since)"; fi
check_eq "the 2 of 2020 do not; the limit recorded is the last message's UID" "3|5" \
    "$(stored since)|$(sql "SELECT since_top FROM route_cursors c JOIN routes r ON r.id = c.route_id WHERE r.name = 'since'")"
route_stop since

# ------------------------------------------- news in the middle of answers
# Flag changes and EXISTS before tagged answers, and a flag change of
# another message before every second message body: libcurl can't parse
# that inside its FETCH and drops the body session, which logs in again.
if via_mitm chatty chatty gina gina-Secret1 10 --after-fetch seen; then
    ok "a server that sends flag news in the middle of answers: the 10 come in"
else not_ok "a server that sends flag news in the middle of answers: the 10 come in" \
    "settled $(settled chatty), status $(route_status chatty)" "$(fetcher_log chatty)"; fi
check_eq "each once, \\Seen on the server" "10 10" \
    "$(stored chatty) $(alt doveadm search -u gina mailbox INBOX SEEN | grep -c .)"
check_eq "the route is RUNNING" RUNNING "$(route_status chatty)"
route_stop chatty

# ------------------------------------------- folders under "INBOX."
# Courier-style and cPanel Dovecot: the personal namespace's prefix is
# "INBOX." ("." between levels, Maildir++). A folder named without it is
# no folder of the user's: the server refuses to make it.
P2=$(free_port)
if out=$(alt2 start "$P2" maildir . INBOX. 2>&1); then ok "a third Dovecot starts ($out)"
else not_ok "a third Dovecot starts" "$out"; exit 1; fi
mkbulk 4 pfx
alt2 doveadm mailbox create -u hank INBOX.Reports
for m in "$src"/pfx/*; do alt2 doveadm save -u hank -m INBOX.Reports <"$m"; done
PW=hank-Secret1 run_cm route test-inbound --email hank@alt.test --username hank --password-env PW \
    --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$P2" --folder Reports
check_contains "route test-inbound on Reports: no such folder, and its name under INBOX. is offered" \
    'folder Reports does not exist (the server'"'"'s own folders are under "INBOX.": INBOX.Reports?)' "$OUT"
# INBOX is any case (RFC 9051 5.1): "inbox.Reports" lies under "INBOX."
PW=hank-Secret1 run_cm route test-inbound --email hank@alt.test --username hank --password-env PW \
    --inbound-host 127.0.0.1 --inbound-protocol imap --inbound-port "$P2" --folder inbox.Reports \
    --after-fetch move --processed-folder inbox.Done
check_eq "route test-inbound on inbox.Reports, processed folder inbox.Done: no INBOX.inbox. offered" \
    "0" "$RC$([ "$RC" = 0 ] || printf ' %s' "$OUT")"
check_lacks "(and offers no INBOX.inbox.)" "INBOX.inbox." "$OUT"
alt_route pfx hank hank-Secret1 "$P2" --folder INBOX.Reports --after-fetch move --processed-folder Done
run_cm route test-inbound pfx
why=$OUT
check "route test-inbound of a route whose processed folder is Done fails" test "$RC" -ne 0
check_contains "saying the first move would not make it, and offering INBOX.Done" \
    "processed folder Done does not exist, and the first move would not make it (the server's own folders are under \"INBOX.\": INBOX.Done?)" "$why"
"$CM" route start pfx >/dev/null
if wait_until 40 eval '[ "$(settled pfx)" -ge 4 ] && status_is pfx FAILED'; then
    ok "started anyway: the 4 are stored, the move fails, the route is FAILED"
else not_ok "started anyway: the 4 are stored, the move fails, the route is FAILED" \
    "settled $(settled pfx), status $(route_status pfx)" "$(fetcher_log pfx)"; fi
check_contains "its error offers INBOX.Done" "INBOX.Done?)" "$("$CM" route show pfx --json | json "j['last_error']")"
"$CM" route set pfx --processed-folder INBOX.Done >/dev/null
pcount() { alt2 doveadm mailbox status -u hank messages "$1" 2>/dev/null | sed -n 's/.*messages=//p'; }
if wait_until 40 eval '[ "$(pcount INBOX.Done)" = 4 ] && status_is pfx RUNNING'; then
    ok "with INBOX.Done the 4 are moved there and the route is RUNNING"
else not_ok "with INBOX.Done the 4 are moved there and the route is RUNNING" \
    "in INBOX.Done $(pcount INBOX.Done), status $(route_status pfx)" "$(fetcher_log pfx)"; fi
check_eq "each once" 4 "$(stored pfx)"
route_stop pfx
