#!/usr/bin/env bash
# tests/stack/selftest.sh - start a test stack in a temporary folder, check
# every listener and feature the project's tests rely on, stop it and check
# that nothing is left running.
#
# Usage: tests/stack/selftest.sh [BASEPORT]
#   KEEP=1 keeps the folder afterwards (it is always kept after a failure).
# Prints "ok - ..." / "not ok - ..." per check and "N passed, N failed";
# exits 1 when a check failed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

T=$(mktemp -d /tmp/cmstack.XXXXXX)
passed=0
failed=0
stopped=no

finish() {
    local rc=$?
    if [ "$stopped" = no ]; then "$here/stop.sh" "$T" >/dev/null 2>&1 || true; fi
    if [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
        cm_unregister_ports
        rm -rf "$T"
    else
        echo "# stack folder kept: $T"
    fi
}
trap finish EXIT

ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: runs the command quietly, records the result.
check() {
    local desc=$1
    shift
    if "$@" >/dev/null 2>&1; then ok "$desc"; else notok "$desc"; fi
}

# outputs ERE COMMAND...: true when the command's output matches ERE.
outputs() {
    local re=$1 out
    shift
    out=$("$@" 2>&1) || true
    grep -Eq -- "$re" <<<"$out"
}
# fails COMMAND...: true when the command fails.
fails() { ! "$@"; }

now_ms() { date +%s%3N; }

# ------------------------------------------------------------------ start
t0=$(now_ms)
if ! "$here/start.sh" "$T" "$@"; then
    notok "start.sh $T"
    echo "0 passed, 1 failed"
    exit 1
fi
ok "start.sh in $(( $(now_ms) - t0 )) ms"
# shellcheck disable=SC1091
. "$T/env"
cm_load "$T"

pw() { printf '%s-pw-Secret1' "${1%%@*}"; }
addr() { cm_user_addr "$1"; }
CA=$CM_CA_FILE
H=127.0.0.1

# imap_starttls USER [curl args...]: IMAP on the plain port with STARTTLS required.
imap_starttls() {
    local u
    u=$(addr "$1")
    shift
    curl -s --max-time 10 --ssl-reqd --cacert "$CA" "imap://$H:$CM_IMAP_PORT/" --user "$u:$(pw "$u")" "$@"
}
# imaps USER PATH [curl args...]: IMAP over implicit TLS.
imaps() {
    local u path
    u=$(addr "$1")
    path=$2
    shift 2
    curl -s --max-time 10 --cacert "$CA" "imaps://$H:$CM_IMAPS_PORT/$path" --user "$u:$(pw "$u")" "$@"
}
# wait_search USER FOLDER CRITERIA: polls (<=15 s) until SEARCH finds a message.
wait_search() {
    local i out
    for i in $(seq 1 75); do
        out=$(imaps "$1" "$2" -X "SEARCH $3" 2>/dev/null || true)
        if grep -Eq '^\* SEARCH [0-9]' <<<"$out"; then return 0; fi
        sleep 0.2
    done
    return 1
}
token="st$$x$RANDOM"

# ------------------------------------------------------------- PostgreSQL
check "PostgreSQL: unix socket conninfo CM_DB as casemail" \
    outputs '^casemail casemail$' psql "$CM_DB" -XtAc "select current_user || ' ' || current_database()"
check "PostgreSQL: TCP 127.0.0.1:$CM_PG_PORT, fsync off" outputs '^off$' psql "$CM_DB_TCP" -XtAc "show fsync"

# ------------------------------------------------------------------- IMAP
check "IMAP STARTTLS login (port $CM_IMAP_PORT, CA verified)" outputs 'INBOX' imap_starttls alice
check "IMAPS login (port $CM_IMAPS_PORT, CA verified)" outputs 'INBOX' imaps bob ''
check "IMAP plain login without TLS on the plain port" \
    curl -s --max-time 5 "imap://$H:$CM_IMAP_PORT/" --user "alice@example.test:alice-pw-Secret1" -X NOOP
greeting() { timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"; IFS= read -r l <&3; printf "%s\n" "$l"' _ "$1" "$2"; }
g_plain=$(greeting "$H" "$CM_IMAP_PORT" || true)
g_notls=$(greeting "$CM_IMAP_NOTLS_HOST" "$CM_IMAP_NOTLS_PORT" || true)
check "IMAP plain port offers STARTTLS" grep -q STARTTLS <<<"$g_plain"
check "IMAP no-TLS listener $CM_IMAP_NOTLS_HOST:$CM_IMAP_NOTLS_PORT greets" grep -q '^\* OK' <<<"$g_notls"
check "IMAP no-TLS listener does not offer STARTTLS" fails grep -q STARTTLS <<<"$g_notls"
check "IMAP no-TLS listener: curl --ssl-reqd fails" fails \
    curl -s --max-time 5 --ssl-reqd "imap://$CM_IMAP_NOTLS_HOST:$CM_IMAP_NOTLS_PORT/" --user alice@example.test:alice-pw-Secret1 -X NOOP
check "IMAP no-TLS listener: plain login works" \
    curl -s --max-time 5 "imap://$CM_IMAP_NOTLS_HOST:$CM_IMAP_NOTLS_PORT/" --user alice@example.test:alice-pw-Secret1 -X NOOP
rc=0
curl -s --max-time 5 --cacert "$CA" "imaps://$CM_IMAPS_UNTRUSTED_HOST:$CM_IMAPS_UNTRUSTED_PORT/" \
    --user alice@example.test:alice-pw-Secret1 -X NOOP >/dev/null 2>&1 || rc=$?
check "IMAPS untrusted listener fails verification (curl rc=$rc, want 60)" [ "$rc" -eq 60 ]
check "IMAPS untrusted listener works without verification" \
    curl -sk --max-time 5 "imaps://$CM_IMAPS_UNTRUSTED_HOST:$CM_IMAPS_UNTRUSTED_PORT/" --user alice@example.test:alice-pw-Secret1 -X NOOP
check "IMAP wrong password refused" fails \
    curl -s --max-time 5 "imap://$H:$CM_IMAP_PORT/" --user alice@example.test:wrong -X NOOP
t0=$(now_ms)
curl -s --max-time 10 "imap://$H:$CM_IMAP_PORT/" --user alice@example.test:alice-pw-Secret1 -X NOOP >/dev/null 2>&1 || true
dt=$(( $(now_ms) - t0 ))
check "IMAP login right after a failed one is not delayed (${dt} ms)" [ "$dt" -lt 2000 ]

out=$(imaps alice '' -v -X 'SELECT Readonly' 2>&1 || true)
check "Readonly selects [READ-ONLY] for alice" grep -q 'OK \[READ-ONLY\]' <<<"$out"
out=$(imaps alice '' -X 'MYRIGHTS Readonly' 2>&1 || true)
check "Readonly rights for alice are lr" grep -qx '\* MYRIGHTS Readonly lr.\?' <<<"$out"
out=$(imaps alice '' -v -X 'SELECT INBOX' 2>&1 || true)
check "INBOX selects [READ-WRITE]" grep -q 'OK \[READ-WRITE\]' <<<"$out"
out=$(imaps alice '' -X NAMESPACE 2>&1 || true)
check "NAMESPACE has personal \"\" and shared \"shared/\" with separator /" \
    grep -q '^\* NAMESPACE (("" "/")) (("shared/" "/")) NIL' <<<"$out"
out=$(imaps alice '' -X 'LIST "" "*"' 2>&1 || true)
for f in INBOX Processed Sent Archive Archive/2024 Readonly; do
    check "folder $f exists" grep -Eq "^\* LIST \([^)]*\) \"/\" \"?$f\"?.?$" <<<"$out"
done
check "alice lists bob's shared INBOX as shared/bob" grep -Eq '^\* LIST \([^)]*\) "/" "?shared/bob"?.?$' <<<"$out"
out=$(imaps alice '' -v -X 'EXAMINE shared/bob/INBOX' 2>&1 || true)
check "alice can EXAMINE shared/bob/INBOX" grep -q 'OK \[READ-ONLY\] Examine completed' <<<"$out"

# ------------------------------------------------------------------- SMTP
swaks_q() { swaks --timeout 15 "$@" 2>&1; }
out=$(swaks_q --server $H --port "$CM_SUBMISSION_PORT" --tls --tls-verify --tls-ca-path "$CA" \
    --auth PLAIN --auth-user alice@example.test --auth-password alice-pw-Secret1 \
    --from alice@example.test --to alice@example.test --header "Subject: sub-$token" || true)
check "submission: STARTTLS + AUTH accepted" grep -q '250 2.0.0 Ok: queued' <<<"$out"
check "submission: mail arrives in alice's INBOX" wait_search alice INBOX "SUBJECT sub-$token"
out=$(swaks_q --server $H --port "$CM_SUBMISSION_PORT" --from alice@example.test --to alice@example.test || true)
check "submission: refuses mail before STARTTLS (530)" grep -q '^<\*\* 530' <<<"$out"
out=$(swaks_q --server $H --port "$CM_SUBMISSION_PORT" --tls --tls-verify --tls-ca-path "$CA" \
    --from alice@example.test --to alice@example.test || true)
check "submission: refuses mail without AUTH (5xx at RCPT)" grep -Eq '^<~\* 5[0-9][0-9]' <<<"$out"
out=$(swaks_q --server $H --port "$CM_SUBMISSION_PORT" --tls --tls-verify --tls-ca-path "$CA" \
    --auth PLAIN --auth-user alice@example.test --auth-password wrong --quit-after AUTH || true)
check "submission: wrong password refused (535)" grep -q '^<~\* 535' <<<"$out"

out=$(swaks_q --server $H --port "$CM_SMTP_PORT" --from alice@example.test \
    --to "someone@outside.test,bob@example.test" --header "Subject: out-$token" || true)
check "SMTP port: mail from 127.0.0.1 to an outside address accepted" grep -q '250 2.0.0 Ok: queued' <<<"$out"
check "outside address lands in sink's INBOX with X-Envelope-To" \
    wait_search sink INBOX "HEADER X-Envelope-To someone@outside.test SUBJECT out-$token"
check "inside recipient of the same mail gets it (bob)" wait_search bob INBOX "SUBJECT out-$token"
out=$(swaks_q --server $H --port "$CM_SMTP_PORT" --quit-after EHLO || true)
check "SMTP port offers STARTTLS" grep -q '250-STARTTLS' <<<"$out"
check "SMTP port offers no AUTH before TLS" fails grep -q '250.AUTH' <<<"$out"
out=$(swaks_q --server $H --port "$CM_SMTP_PORT" --tls --tls-verify --tls-ca-path "$CA" --quit-after EHLO || true)
check "SMTP port offers AUTH after STARTTLS" grep -q '250.AUTH PLAIN' <<<"$out"

out=$(swaks_q --server $H --port "$CM_SMTPS_PORT" --tlsc --tls-verify --tls-ca-path "$CA" \
    --auth PLAIN --auth-user carol@example.test --auth-password carol-pw-Secret1 \
    --from carol@example.test --to carol@example.test --header "Subject: smtps-$token" || true)
check "SMTPS: implicit TLS + AUTH accepted" grep -q '250 2.0.0 Ok: queued' <<<"$out"
check "SMTPS: mail arrives in carol's INBOX" wait_search carol INBOX "SUBJECT smtps-$token"

out=$(swaks_q --server $H --port "$CM_SMTP_NOTLS_PORT" --quit-after EHLO || true)
check "no-TLS SMTP port answers EHLO" grep -q '^<-  250 ' <<<"$out"
check "no-TLS SMTP port offers neither STARTTLS nor AUTH" fails grep -Eq '250.(STARTTLS|AUTH)' <<<"$out"
# (No "swaks --tls" against this port: swaks 20201014 then loops forever.)

out=$(swaks_q --server $H --port "$CM_SMTP_PORT" --from alice@example.test --to x@reject.test || true)
check "x@reject.test refused with 550 at RCPT" grep -q '^<\*\* 550' <<<"$out"
out=$(swaks_q --server $H --port "$CM_SMTP_PORT" --from dave@example.test --to unknown@example.test \
    --header "Subject: unk-$token" || true)
check "unknown@example.test accepted at SMTP time" grep -q '250 2.0.0 Ok: queued' <<<"$out"
check "unknown@example.test bounces: DSN arrives in dave's INBOX" \
    wait_search dave INBOX "FROM MAILER-DAEMON TEXT unk-$token"

# ------------------------------------------------------------------- fill
src=$T/fill-src
mkdir -p "$src"
for i in $(seq 1 2000); do
    printf 'From: f@outside.test\r\nTo: u01@example.test\r\nSubject: fill %d\r\nMessage-ID: <fill%d.%s@test>\r\n\r\nbody %d\r\n' \
        "$i" "$i" "$token" "$i" >"$src/m$i.eml"
done
t0=$(now_ms)
n=$("$here/fill.sh" "$T" u01 Archive/2024 -d "$src" || true)
dt=$(( $(now_ms) - t0 ))
check "fill.sh wrote 2000 files (${dt} ms)" [ "$n" = 2000 ]
out=$(imaps u01 '' -X 'STATUS Archive/2024 (MESSAGES UNSEEN)' || true)
check "Dovecot sees the 2000 filled messages" grep -q 'MESSAGES 2000 UNSEEN 2000' <<<"$out"
n=$("$here/fill.sh" "$T" u02 INBOX "$src/m1.eml" "$src/m2.eml" || true)
out=$(imaps u02 '' -X 'STATUS INBOX (MESSAGES)' || true)
check "fill.sh with file arguments into INBOX" grep -q 'MESSAGES 2)' <<<"$out"

# ----------------------------------------------------------------- passwd
check "passwd.sh alice -> new password" "$here/passwd.sh" "$T" alice 'Changed-pw-2'
check "alice logs in with the new password" \
    curl -s --max-time 5 "imap://$H:$CM_IMAP_PORT/" --user 'alice@example.test:Changed-pw-2' -X NOOP
check "alice's old password is refused" fails \
    curl -s --max-time 5 "imap://$H:$CM_IMAP_PORT/" --user alice@example.test:alice-pw-Secret1 -X NOOP
out=$(swaks_q --server $H --port "$CM_SUBMISSION_PORT" --tls --tls-verify --tls-ca-path "$CA" \
    --auth PLAIN --auth-user alice@example.test --auth-password 'Changed-pw-2' --quit-after AUTH || true)
check "SMTP AUTH uses the new password too" grep -q '^<~  235' <<<"$out"
check "passwd.sh alice -> back to alice-pw-Secret1" "$here/passwd.sh" "$T" alice@example.test alice-pw-Secret1

# -------------------------------------------------------------------- ctl
imap_ok() { curl -s --max-time 3 "imap://$H:$CM_IMAP_PORT/" --user alice@example.test:alice-pw-Secret1 -X NOOP; }
check "ctl.sh stop dovecot" "$here/ctl.sh" "$T" stop dovecot
check "ctl.sh status dovecot says stopped" outputs '^stopped$' "$here/ctl.sh" "$T" status dovecot
check "IMAP login fails while Dovecot is stopped" fails imap_ok
check "ctl.sh start dovecot" "$here/ctl.sh" "$T" start dovecot
check "IMAP login works again" imap_ok
check "mail kept across the Dovecot restart" wait_search alice INBOX "SUBJECT sub-$token"
check "ctl.sh stop postfix" "$here/ctl.sh" "$T" stop postfix
rc=0
swaks_q --server $H --port "$CM_SMTP_PORT" --quit-after CONNECT >/dev/null || rc=$?
check "SMTP refused while Postfix is stopped" [ "$rc" -ne 0 ]
check "ctl.sh start postfix" "$here/ctl.sh" "$T" start postfix
out=$(swaks_q --server $H --port "$CM_SMTP_PORT" --from erin@example.test --to erin@example.test \
    --header "Subject: again-$token" || true)
check "SMTP works again after restart" grep -q '250 2.0.0 Ok: queued' <<<"$out"
check "and delivers" wait_search erin INBOX "SUBJECT again-$token"
check "ctl.sh stop pg" "$here/ctl.sh" "$T" stop pg
check "PostgreSQL refuses while stopped" fails psql "$CM_DB" -XtAc "select 1"
check "ctl.sh start pg" "$here/ctl.sh" "$T" start pg
check "PostgreSQL answers again" psql "$CM_DB" -XtAc "select 1"

t0=$(now_ms)
out=$("$here/start.sh" "$T" 2>&1 || true)
dt=$(( $(now_ms) - t0 ))
check "start.sh on a running stack changes nothing (${dt} ms)" grep -q "pg $CM_PG_PORT, imap $CM_IMAP_PORT," <<<"$out"

# ------------------------------------------------------------------- stop
# Every process of the stack: the three masters and all their descendants.
tree() {
    local p kids
    for p in "$@"; do
        [ -n "$p" ] || continue
        echo "$p"
        kids=$(ps -o pid= --ppid "$p" 2>/dev/null || true)
        # shellcheck disable=SC2086
        [ -z "$kids" ] || tree $kids
    done
}
# shellcheck disable=SC2046
pids=$(tree $(cm_pg_pid) $(cm_dovecot_pid) $(cm_postfix_pid) | sort -u)
check "found the stack's processes ($(wc -w <<<"$pids"))" [ "$(wc -w <<<"$pids")" -ge 10 ]
t0=$(now_ms)
check "stop.sh" "$here/stop.sh" "$T"
stopped=yes
dt=$(( $(now_ms) - t0 ))
left=
for p in $pids; do
    st=$(cm_proc_state "$p")
    if [ -n "$st" ] && [ "${st#* }" != Z ]; then left="$left $p($st)"; fi
done
check "no process left running after stop.sh (${dt} ms)${left:+:$left}" [ -z "$left" ]
# shellcheck disable=SC2046
check "no port left listening" cm_wait_closed 1 $(seq "$BASEPORT" $((BASEPORT + CM_PORT_SPAN - 1)))
check "stop.sh again is fine" "$here/stop.sh" "$T"

# ------------------------------------------------------- restart with state
t0=$(now_ms)
check "start.sh restarts the stopped stack" "$here/start.sh" "$T"
stopped=no
dt=$(( $(now_ms) - t0 ))
ok "restart took ${dt} ms"
check "same ports after restart" grep -q "^export CM_IMAP_PORT=$CM_IMAP_PORT\$" "$T/env"
check "mail kept across the restart" wait_search alice INBOX "SUBJECT sub-$token"
check "filled mail kept across the restart" \
    outputs 'MESSAGES 2000' imaps u01 '' -X 'STATUS Archive/2024 (MESSAGES)'
check "database kept across the restart" psql "$CM_DB" -XtAc "select 1"
check "final stop.sh" "$here/stop.sh" "$T"
stopped=yes
# shellcheck disable=SC2046
check "no port left listening at the end" cm_wait_closed 1 $(seq "$BASEPORT" $((BASEPORT + CM_PORT_SPAN - 1)))

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
