#!/usr/bin/env bash
# A third IMAP server: Courier-IMAP (Debian's courier-imap 5.0), run
# privately on loopback by tests/stack/courier.sh. Courier serves
# Maildir++ with every folder of a user under "INBOX.", announces no MOVE,
# keeps UIDs in a file of its own (courierimapuiddb) and, run from a shell
# as here, greets `* PREAUTH`: the session is logged in before a word is
# said (IMAP over a tunnel). Mail is put in as a delivery agent does
# (files in Maildir new/, LF line ends) and by IMAP APPEND.
# And a fifth Courier as a mail host runs it, with logins (couriertcpd,
# imaplogin, authdaemond): test-inbound over STARTTLS with the right and a
# wrong password, and a route that logs in by SASL PLAIN and takes its mail.
# Checked: route test-inbound over implicit TLS (it says the server
# greeted PREAUTH and no credentials were sent), and over imap+starttls,
# which PREAUTH makes impossible (it fails, nothing sent; also with
# STARTTLS offered, by a man in the middle before the stack's Dovecot); a
# processed folder Done offered as INBOX.Done; INBOX.Parent, which only
# holds INBOX.Parent.Child, refused as \Noselect; folder names beyond
# ASCII; a route with default options takes every message once, the bytes
# stored equal to what Courier sends, and sends no LOGIN; new mail while it
# runs (IDLE); a route restart takes only what came meanwhile; the INBOX's
# courierimapuiddb removed (a new UIDVALIDITY), route stopped and running:
# nothing stored twice, the new mail in; `seen` (the flags Courier then
# shows) with Courier's IDLE as Debian ships it (it tells no new mail for
# 60 s: the route's poll interval finds it); `keep`; `--since` on a server
# that gives no UIDNEXT (internal dates are the files' times); and `move`
# to INBOX.Done without MOVE (COPY, \Deleted, UID EXPUNGE).
# About 30 s.
. "$(dirname "$0")/../lib.sh"
cm_start || exit 1

# five Maildirs, each served by its own Courier (a route's account is its
# own): the INBOX tests, `seen` (with IDLE as Debian ships it: it tells
# no new mail until it ends or 60 s pass), `move`, `keep` and `--since`,
# and one with logins
CO=$CM_WORK/$CM_TEST.courier     # its own per run (make test runs every test twice)
rm -rf "$CO" "$CO-seen" "$CO-move" "$CO-keep" "$CO-login"
read -r CP CPS CP2 CPS2 CP3 CPS3 CP4 CPS4 CPL < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
courier() { "$CM_TOP/tests/stack/courier.sh" "$@"; }
tls_files=("$CM_STACK_DIR/tls/server.crt" "$CM_STACK_DIR/tls/server.key")
trap 'courier "$CO" stop >/dev/null 2>&1; courier "$CO-seen" stop >/dev/null 2>&1;
      courier "$CO-move" stop >/dev/null 2>&1; courier "$CO-keep" stop >/dev/null 2>&1;
      courier "$CO-login" stop >/dev/null 2>&1; cm_stop' EXIT
if out=$(courier "$CO" start "$CP" "$CPS" "${tls_files[@]}" 2>&1 \
         && CM_COURIER_ENHANCEDIDLE=0 courier "$CO-seen" start "$CP2" "$CPS2" "${tls_files[@]}" 2>&1 \
         && courier "$CO-move" start "$CP3" "$CPS3" "${tls_files[@]}" 2>&1 \
         && courier "$CO-keep" start "$CP4" "$CPS4" "${tls_files[@]}" 2>&1); then
    ok "Courier-IMAP starts on loopback, four times ($(head -1 <<<"$out"))"
else not_ok "Courier-IMAP starts on loopback" "$out"; exit 1; fi
# imapctl PORT ARGS...: a Maildir as a mail client sees it, over TLS
imapctl() { local port=$1; shift; python3 "$CM_TOP/tests/tools/imapctl.py" --port "$port" --tls --ca "$CM_CA_FILE" "$@"; }
# co_route NAME PORT FOLDER [OPTIONS...]: an ingest route on Courier, over
# TLS, its username its name (PREAUTH: neither it nor the password is sent)
co_route() {
    local name=$1 port=$2 folder=$3; shift 3
    CM_PW="unused-Secret1" "$CM" route add "$name" --kind ingest --email "$name@courier.test" \
        --username "$name" --password-env CM_PW --folder "$folder" \
        --inbound-host localhost --inbound-protocol imaps --inbound-port "$port" \
        --outbound-host localhost --outbound-protocol smtp+starttls \
        --outbound-port "$CM_SUBMISSION_PORT" --ca-file "$CM_CA_FILE" "$@"
}
co_test() {     # co_test PROTOCOL PORT [OPTIONS...]: route test-inbound
    local proto=$1 port=$2; shift 2
    PW=unused-Secret1 run_cm route test-inbound --email t@courier.test --username courier \
        --password-env PW --inbound-host localhost --inbound-protocol "$proto" \
        --inbound-port "$port" --ca-file "$CM_CA_FILE" "$@"
}
settled() { sql "SELECT count(*) FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = '$1' AND m.state <> 'fetched'"; }
of_route() { sql "SELECT $2 FROM messages m JOIN routes r ON r.id = m.route_id WHERE r.name = '$1'"; }
once() { of_route "$1" "count(*) || ' ' || count(DISTINCT message_id) || ' ' || count(DISTINCT raw_sha256)"; }
src=$CM_WORK/courier-mail
mkbulk() { python3 "$CM_TOP/tests/tools/mkmail.py" bulk "$1" "$src/$2" --corpus "$CM_TOP/../shared/corpus/hunnysoft" --prefix "$2" >/dev/null; }
mkdir -p "$src"

# ------------------------------------------- route test-inbound, PREAUTH
co_test imaps "$CPS"
check_eq "route test-inbound reaches Courier over TLS" 0 "$RC"
check_contains "... and says it greeted PREAUTH, no credentials sent" "PREAUTH" "$OUT"
co_test imap+starttls "$CP"
check_eq "over imap+starttls it fails: no STARTTLS after PREAUTH, nothing in clear" 1 "$RC"
check_contains "... saying why" "PREAUTH" "$OUT"
# STARTTLS offered after a PREAUTH greeting (a man in the middle before
# the stack's Dovecot makes its greeting PREAUTH): no TLS can be started
# in a logged-in session; the test fails and sends nothing, password least
MP=$(free_port)
mitm "127.0.0.1:$MP" "127.0.0.1:$CM_IMAP_PORT" preauth "$CM_WORK/courier-mitm.log"
co_test imap+starttls "$MP"
check_eq "a server that greets PREAUTH and offers STARTTLS: imap+starttls fails" 1 "$RC"
check_contains "... saying PREAUTH is why, not that STARTTLS was not offered" "greeted PREAUTH" "$OUT"
check_lacks "... the password never sent" "unused-Secret1" "$(cat "$CM_WORK/courier-mitm.log")"
mitm_stop
co_test imaps "$CPS" --folder Reports
check_eq "a route folder Reports fails the test" 1 "$RC"
check_contains "... offering INBOX.Reports" 'folder Reports does not exist (the server'"'"'s own folders are under "INBOX.": INBOX.Reports?)' "$OUT"
co_test imaps "$CPS" --after-fetch move --processed-folder Done
check_eq "a processed folder Done fails the test" 1 "$RC"
check_contains "... offering INBOX.Done" "INBOX.Done" "$OUT"
# Maildir++ holds INBOX.Parent.Child in .Parent.Child: INBOX.Parent is
# listed, \Noselect, as the folder that holds it
mkbulk 1 nested
courier "$CO" deliver INBOX.Parent.Child "$src"/nested/*
co_test imaps "$CPS" --folder INBOX.Parent
check_eq "a route folder INBOX.Parent that only holds a folder fails the test" 1 "$RC"
check_contains "... saying it cannot hold messages (not that it does not exist)" \
    "folder INBOX.Parent exists but cannot hold messages (\Noselect)" "$OUT"

# folder names beyond ASCII: Courier keeps them in UTF-8 on disk and
# lists them in modified UTF-7 ("INBOX.&ANw-n&AO8-code &ANg-rdner")
mkbulk 2 utf
courier "$CO" deliver "INBOX.Ünïcode Ørdner" "$src"/utf/*
co_test imaps "$CPS" --folder "INBOX.Ünïcode Ørdner" --after-fetch move --processed-folder "INBOX.Fertig ✓"
check_eq "a route folder and a processed folder beyond ASCII pass the test" 0 "$RC"
check_contains "... the folder found with its 2 messages" "folder INBOX.Ünïcode Ørdner (2 messages)" "$OUT"

# ------------------------------------------- Courier with logins
# couriertcpd, imaplogin and authdaemond with a user "dana": STARTTLS
# offered, AUTH=PLAIN after it. Courier answers a wrong password after
# 5 s: "NO Login failed."
CL_PW='dana-co "Secret 1"'
if out=$(courier "$CO-login" login "$CPL" "${tls_files[@]}" dana "$CL_PW" 2>&1); then
    ok "Courier-IMAP with logins starts on loopback ($out)"
else not_ok "Courier-IMAP with logins starts on loopback" "$out"; fi
cl_test() {     # cl_test PASSWORD: route test-inbound over imap+starttls
    PW=$1 run_cm route test-inbound --email dana@courier.test --username dana \
        --password-env PW --inbound-host localhost --inbound-protocol imap+starttls \
        --inbound-port "$CPL" --ca-file "$CM_CA_FILE"
}
cl_test "$CL_PW"
check_eq "route test-inbound logs in to Courier over STARTTLS" 0 "$RC"
check_lacks "... no PREAUTH said of it" "PREAUTH" "$OUT"
cl_test "dana-co wrong"
check_eq "a wrong password fails the test" 1 "$RC"
check_contains "... as a failed login" "authentication failed for dana" "$OUT"
mkbulk 3 login
courier "$CO-login" deliver INBOX "$src"/login/*
CM_PW=$CL_PW "$CM" route add col --kind ingest --email dana@courier.test --username dana \
    --password-env CM_PW --inbound-host localhost --inbound-protocol imap+starttls \
    --inbound-port "$CPL" --outbound-host localhost --outbound-protocol smtp+starttls \
    --outbound-port "$CM_SUBMISSION_PORT" --ca-file "$CM_CA_FILE" --log-level verbose >/dev/null
"$CM" route start col >/dev/null
wait_until 40 eval '[ "$(settled col)" -ge 3 ]'
check_eq "a route that logs in takes its 3, each once" "3 3 3" "$(once col)"
# the flags as dana's own client sees them (plain IMAP, LOGIN)
cl_seen() { PW=$CL_PW python3 "$CM_TOP/tests/tools/imapctl.py" --port "$CPL" --user dana \
                --password-env PW flags INBOX | grep -c '\\Seen'; }
wait_until 20 eval '[ "$(cl_seen)" = 3 ]'
check_eq "... and Courier shows them \\Seen" 3 "$(cl_seen)"
check_contains "it logged in by SASL PLAIN after STARTTLS" "AUTHENTICATE PLAIN" \
    "$(grep -h " col trace: C: " "$CASEMAIL_HOME"/log/fetcher-*.log)"
check_eq "RUNNING" RUNNING "$(route_status col)"
route_stop col

# ------------------------------------------- default options: INBOX
mkbulk 12 inbox
courier "$CO" deliver INBOX "$src"/inbox/000000.eml "$src"/inbox/00000[1-9].eml
check_eq "2 more by IMAP APPEND" 2 "$(imapctl "$CPS" append INBOX "$src"/inbox/00001[01].eml)"
co_route coa "$CPS" INBOX --log-level verbose >/dev/null
"$CM" route start coa >/dev/null
if wait_until 60 eval '[ "$(settled coa)" -ge 12 ]'; then ok "the route on Courier's INBOX takes the 12 messages"
else not_ok "the route on Courier's INBOX takes the 12 messages" "settled $(settled coa), status $(route_status coa)" \
    "$(grep -h " coa " "$CASEMAIL_HOME"/log/fetcher-*.log | tail -5)"; fi
sleep 1
check_eq "each once, each an incident or a rejection with a reason" "12 12 12 12" \
    "$(once coa) $(of_route coa "count(*) FILTER (WHERE incident_id IS NOT NULL OR (state = 'rejected' AND reason <> ''))")"
served=$(imapctl "$CPS" sha INBOX)
check_eq "the bytes stored are the bytes Courier sends (CRLF from LF files), for each" "12|$served" \
    "$(grep -c . <<<"$served")|$(of_route coa raw_sha256 | sort)"
check_eq "the route is RUNNING" RUNNING "$(route_status coa)"
coa_log=$(grep -h " coa " "$CASEMAIL_HOME"/log/fetcher-*.log)
check_contains "its sessions saw the PREAUTH greeting" "(PREAUTH: no credentials sent)" "$coa_log"
check_contains "... and the log an operator reads says so" "folder INBOX (the server greeted PREAUTH: no username or password sent)" \
    "$(grep -h " coa info: logged in" "$CASEMAIL_HOME"/log/fetcher-*.log)"
check_lacks "... and sent no LOGIN" " LOGIN " "$coa_log"
check_lacks "... and no AUTHENTICATE" " AUTHENTICATE " "$coa_log"

# ------------------------------------------- new mail while running
mkbulk 3 idle
courier "$CO" deliver INBOX "$src"/idle/*
if wait_until 30 eval '[ "$(settled coa)" -ge 15 ]'; then ok "3 messages delivered while the route runs come in"
else not_ok "3 messages delivered while the route runs come in" "settled $(settled coa)"; fi

# ------------------------------------------- a restart
route_stop coa
mkbulk 2 restart
courier "$CO" deliver INBOX "$src"/restart/*
"$CM" route start coa >/dev/null
if wait_until 30 eval '[ "$(settled coa)" -ge 17 ]'; then ok "restarted, the route takes the 2 delivered while it was stopped"
else not_ok "restarted, the route takes the 2 delivered while it was stopped" "settled $(settled coa)"; fi
sleep 2     # one taken twice would show by now
check_eq "nothing taken twice: 17 messages, 17 Message-IDs, 17 contents" "17 17 17" "$(once coa)"

# ------------------------------------------- a new UIDVALIDITY
# Courier keeps the UIDs it gave, and the folder's UIDVALIDITY, in
# courierimapuiddb; without it, it numbers the folder again from 1
uv_old=$(sql "SELECT c.uidvalidity FROM route_cursors c JOIN routes r ON r.id = c.route_id WHERE r.name = 'coa'")
route_stop coa
rm -f "$CO/Maildir/courierimapuiddb"
mkbulk 2 uv
courier "$CO" deliver INBOX "$src"/uv/*
"$CM" route start coa >/dev/null
if wait_until 40 eval '[ "$(settled coa)" -ge 19 ]'; then ok "after a new UIDVALIDITY the 2 new messages come in"
else not_ok "after a new UIDVALIDITY the 2 new messages come in" "settled $(settled coa), status $(route_status coa)"; fi
sleep 2
check_eq "nothing stored twice: 19 messages, 19 Message-IDs, 19 contents" "19 19 19" "$(once coa)"
uv_new=$(sql "SELECT c.uidvalidity FROM route_cursors c JOIN routes r ON r.id = c.route_id WHERE r.name = 'coa'")
if [ -n "$uv_new" ] && [ "$uv_new" != "$uv_old" ]; then ok "the route's cursor has the new UIDVALIDITY ($uv_old, then $uv_new)"
else not_ok "the route's cursor has the new UIDVALIDITY" "$uv_old then $uv_new"; fi
check_contains "the fetcher logged the change" "UIDVALIDITY of INBOX changed" "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"
check_eq "RUNNING" RUNNING "$(route_status coa)"
# and again under the running route, its session open in IDLE
rm -f "$CO/Maildir/courierimapuiddb"
mkbulk 2 uv2
courier "$CO" deliver INBOX "$src"/uv2/*
if wait_until 40 eval '[ "$(settled coa)" -ge 21 ]'; then ok "courierimapuiddb removed under the running route: the 2 new come in"
else not_ok "courierimapuiddb removed under the running route: the 2 new come in" "settled $(settled coa), status $(route_status coa)"; fi
sleep 2
check_eq "nothing stored twice: 21 messages, 21 Message-IDs, 21 contents, RUNNING" "21 21 21 RUNNING" "$(once coa) $(route_status coa)"
route_stop coa

# ------------------------------------------- --after-fetch seen, Debian's IDLE
mkbulk 4 seen
mkbulk 2 seen2
courier "$CO-seen" deliver INBOX.Seen "$src"/seen/*
co_route cos "$CPS2" INBOX.Seen --after-fetch seen --poll-interval 2 >/dev/null
"$CM" route start cos >/dev/null
wait_until 40 eval '[ "$(settled cos)" -ge 4 ]'
check_eq "a route on INBOX.Seen takes its 4" "4 4 4" "$(once cos)"
seen_flags() { imapctl "$CPS2" flags "$1" | grep -c '\\Seen'; }
wait_until 20 eval '[ "$(seen_flags INBOX.Seen)" = 4 ]'
check_eq "--after-fetch seen: Courier shows all 4 \\Seen, still in INBOX.Seen" "4 4" \
    "$(seen_flags INBOX.Seen) $(imapctl "$CPS2" count INBOX.Seen)"
check_eq "... and in the Maildir, each file in cur/ with S in its info" "4 0" \
    "$(find "$CO-seen/Maildir/.Seen/cur" -type f -name '*:2,*S*' | wc -l) $(find "$CO-seen/Maildir/.Seen/new" -type f | wc -l)"
# this Courier's IDLE says nothing of new mail for 60 s: the route ends
# its IDLE at its poll interval (2 s), and Courier looks again then
sleep 1
courier "$CO-seen" deliver INBOX.Seen "$src"/seen2/*
if wait_until 20 eval '[ "$(settled cos)" -ge 6 ]'; then ok "2 delivered while it runs, with IDLE that tells nothing, come in"
else not_ok "2 delivered while it runs, with IDLE that tells nothing, come in" "settled $(settled cos)"; fi
wait_until 10 eval '[ "$(seen_flags INBOX.Seen)" = 6 ]'
check_eq "each once, all 6 \\Seen" "6 6 6 6" "$(once cos) $(seen_flags INBOX.Seen)"
route_stop cos

# ------------------------------------------- --after-fetch keep
mkbulk 3 keep
courier "$CO-keep" deliver INBOX "$src"/keep/*
co_route cok "$CPS4" INBOX --after-fetch keep >/dev/null
"$CM" route start cok >/dev/null
wait_until 40 eval '[ "$(settled cok)" -ge 3 ]'
check_eq "a route with keep takes its 3" "3 3 3" "$(once cok)"
sleep 1     # a flag set late would show by now
check_eq "--after-fetch keep: none \\Seen, all 3 in INBOX" "0 3" \
    "$(imapctl "$CPS4" flags INBOX | grep -c '\\Seen') $(imapctl "$CPS4" count INBOX)"
check_eq "... and in the Maildir no file has S in its info" 0 \
    "$(find "$CO-keep/Maildir/cur" "$CO-keep/Maildir/new" -type f -name '*:2,*S*' | wc -l)"
route_stop cok

# ------------------------------------------- --since, a server without UIDNEXT
# Courier's SELECT gives no UIDNEXT, and a message's internal date is its
# file's time: 2 files of 2020 and 3 of today in INBOX.Since
mkbulk 2 old
mkbulk 3 recent
courier "$CO-keep" deliver INBOX.Since "$src"/old/*
touch -d 2020-03-15T10:00:00Z "$CO-keep"/Maildir/.Since/new/*
courier "$CO-keep" deliver INBOX.Since "$src"/recent/*
co_route cov "$CPS4" INBOX.Since --since 2024-01-01 --after-fetch move --processed-folder INBOX.Done >/dev/null
"$CM" route start cov >/dev/null
wait_until 40 eval '[ "$(settled cov)" -ge 3 ] && [ "$(imapctl "$CPS4" count INBOX.Done)" = 3 ]'
sleep 1     # an old message taken late would show by now
check_eq "--since: the 3 of today in and moved, the 2 of 2020 left" "3 3 2" \
    "$(settled cov) $(imapctl "$CPS4" count INBOX.Done) $(imapctl "$CPS4" count INBOX.Since)"
mkbulk 1 recent2
courier "$CO-keep" deliver INBOX.Since "$src"/recent2/*
wait_until 30 eval '[ "$(imapctl "$CPS4" count INBOX.Done)" = 4 ]'
check_eq "one more while it runs: in and moved, the 2 of 2020 still left, RUNNING" "4 4 2 RUNNING" \
    "$(settled cov) $(imapctl "$CPS4" count INBOX.Done) $(imapctl "$CPS4" count INBOX.Since) $(route_status cov)"
route_stop cov

# ------------------------------------------- --after-fetch move, no MOVE
mkbulk 5 move
courier "$CO-move" deliver INBOX.Reports "$src"/move/*
co_route com "$CPS3" INBOX.Reports --after-fetch move --processed-folder INBOX.Done >/dev/null
"$CM" route start com >/dev/null
wait_until 40 eval '[ "$(settled com)" -ge 5 ] && [ "$(imapctl "$CPS3" count INBOX.Done)" = 5 ]'
check_eq "a route on INBOX.Reports takes its 5 and moves them to INBOX.Done, made for it" "5 5 0" \
    "$(settled com) $(imapctl "$CPS3" count INBOX.Done) $(imapctl "$CPS3" count INBOX.Reports)"
check_eq "... in the Maildir: 5 files in .Done, none left in .Reports" "5 0" \
    "$(find "$CO-move/Maildir/.Done/cur" "$CO-move/Maildir/.Done/new" -type f | wc -l) $(find "$CO-move/Maildir/.Reports/cur" "$CO-move/Maildir/.Reports/new" -type f | wc -l)"
mkbulk 2 move2
courier "$CO-move" deliver INBOX.Reports "$src"/move2/*
wait_until 30 eval '[ "$(imapctl "$CPS3" count INBOX.Done)" = 7 ]'
check_eq "2 more while it runs: taken and moved too, each once" "7 7 7|7 0" \
    "$(once com)|$(imapctl "$CPS3" count INBOX.Done) $(imapctl "$CPS3" count INBOX.Reports)"
check_eq "RUNNING" RUNNING "$(route_status com)"
route_stop com
exit 0
