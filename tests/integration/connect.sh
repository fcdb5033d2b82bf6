#!/usr/bin/env bash
# tests/integration/connect.sh: connection tests against the real Dovecot
# and Postfix of the test stack (issue 2, proof 2). Inbound passes for
# IMAP, IMAPS and IMAP+STARTTLS and fails with the right reason for a wrong
# password, a closed port, an untrusted certificate, STARTTLS not offered,
# an unknown host, a missing, read-only, sub- or shared folder; outbound
# passes for SMTP+STARTTLS+AUTH and SMTPS and fails for a wrong password
# and STARTTLS asked of a port without it. Both for saved routes (NAME)
# and unsaved ones (options). Users: alice, bob.
. tests/lib.sh
cm_start || exit 1

D=$CM_MAIL_DOMAIN
PREFIX="Failed to test Service connectivity:"
export ALICE_PW="alice-pw-Secret1" BAD_PW="not-alice-pw-9" BOB_PW="bob-pw-Secret1"

FREE_PORT=$(free_port)

# inbound DESC ARGS...: unsaved inbound test of alice with ARGS.
inbound() { run_cm route test-inbound --email "alice@$D" --username "alice@$D" "$@"; }
outbound() { run_cm route test-outbound --email "alice@$D" --username "alice@$D" "$@"; }
IMAPS=(--inbound-host localhost --inbound-protocol imaps --inbound-port "$CM_IMAPS_PORT" --ca-file "$CM_CA_FILE")

# passes DESC SUMMARY-PREFIX: last test exited 0 and printed the summary.
passes() {
    if [ "$RC" = 0 ]; then ok "$1: exit 0"; else not_ok "$1: exit 0" "exit $RC" "$OUT"; fi
    check_contains "$1: prints the summary" "$2" "$OUT"
    check_lacks "$1: no failure text" "Failed" "$OUT"
}
# fails DESC REASON...: last test exited 1 with the failure prefix and
# every REASON word.
fails() {
    local desc=$1; shift
    if [ "$RC" = 1 ]; then ok "$desc: exit 1"; else not_ok "$desc: exit 1" "exit $RC" "$OUT"; fi
    check_contains "$desc: failure prefix" "$PREFIX" "$OUT"
    local w
    for w in "$@"; do check_contains "$desc: reason says '$w'" "$w" "$OUT"; done
    check_lacks "$desc: not reported as OK" "connection OK" "$OUT"
}

# ---------------------------------------------------------------- inbound passes
inbound --password-env ALICE_PW --inbound-host localhost --inbound-protocol imap --inbound-port "$CM_IMAP_PORT"
passes "inbound imap (plain port)" "Inbound connection OK: imap://localhost:$CM_IMAP_PORT, folder INBOX"
inbound --password-env ALICE_PW "${IMAPS[@]}"
passes "inbound imaps" "Inbound connection OK: imaps://localhost:$CM_IMAPS_PORT, folder INBOX"
inbound --password-env ALICE_PW --inbound-host localhost --inbound-protocol imap+starttls \
    --inbound-port "$CM_IMAP_PORT" --ca-file "$CM_CA_FILE"
passes "inbound imap+starttls" "Inbound connection OK: imap+starttls://localhost:$CM_IMAP_PORT, folder INBOX"
inbound --password-env ALICE_PW "${IMAPS[@]}" --folder Archive
passes "inbound imaps, top-level folder Archive" "folder Archive"

# A move route's processed folder: the summary says whether it exists or
# the first move will make it (the test itself makes nothing).
inbound --password-env ALICE_PW "${IMAPS[@]}" --after-fetch move --processed-folder Processed
passes "inbound imaps, a processed folder that exists" "folder INBOX (" 
check_contains "... the summary says it exists" "processed folder Processed exists" "$OUT"
inbound --password-env ALICE_PW "${IMAPS[@]}" --after-fetch move --processed-folder "Done$$"
passes "inbound imaps, a processed folder not made yet" "folder INBOX ("
check_contains "... the summary says the first move makes it" "processed folder Done$$ does not exist yet: the first move will create it" "$OUT"
FOLDERS=$(curl -s --cacert "$CM_CA_FILE" -u "alice@$D:$ALICE_PW" "imaps://localhost:$CM_IMAPS_PORT/" -X 'LIST "" "*"')
check_contains "alice's folders are listed" "INBOX" "$FOLDERS"
check_lacks "... and the test did not make it" "Done$$" "$FOLDERS"
# A processed folder that exists only as the parent of another (Dovecot
# lists it \Noselect): it cannot take the moved mail, so the test fails.
curl -s --cacert "$CM_CA_FILE" -u "alice@$D:$ALICE_PW" "imaps://localhost:$CM_IMAPS_PORT/" \
    -X "CREATE Par$$/Child" >/dev/null
check_contains "Par$$ is listed \\Noselect" '\Noselect' \
    "$(curl -s --cacert "$CM_CA_FILE" -u "alice@$D:$ALICE_PW" "imaps://localhost:$CM_IMAPS_PORT/" -X "LIST \"\" Par$$")"
inbound --password-env ALICE_PW "${IMAPS[@]}" --after-fetch move --processed-folder "Par$$"
fails "inbound imaps, a processed folder that cannot hold messages" \
    "processed folder Par$$ exists but cannot hold messages (\\Noselect)"

# The summary counts the folder's messages: three in a folder of bob's
# own (written straight into the Maildir; other tests' mailboxes untouched).
for i in 1 2 3; do
    printf 'From: x@outside.test\r\nTo: bob@%s\r\nSubject: count %s\r\n\r\nbody %s\r\n' "$D" "$i" "$i" \
        > "$CM_WORK/count$i.eml"
done
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" bob Count$$ "$CM_WORK"/count[123].eml >/dev/null
run_cm route test-inbound --email "bob@$D" --username "bob@$D" --password-env BOB_PW "${IMAPS[@]}" --folder Count$$
passes "inbound summary of a folder with 3 messages" "folder Count$$ (3 messages)"

# ---------------------------------------------------------------- inbound failures
inbound --password-env BAD_PW "${IMAPS[@]}"
fails "inbound, wrong password" "authentication"
check_lacks "wrong password: the password is not echoed" "$BAD_PW" "$OUT"

inbound --password-env ALICE_PW --inbound-host localhost --inbound-protocol imaps \
    --inbound-port "$FREE_PORT" --ca-file "$CM_CA_FILE"
fails "inbound, closed port" "refused" "$FREE_PORT"

inbound --password-env ALICE_PW --inbound-host "$CM_IMAPS_UNTRUSTED_HOST" --inbound-protocol imaps \
    --inbound-port "$CM_IMAPS_UNTRUSTED_PORT" --ca-file "$CM_CA_FILE"
fails "inbound, self-signed certificate" "certificate"

inbound --password-env ALICE_PW --inbound-host localhost --inbound-protocol imaps --inbound-port "$CM_IMAPS_PORT"
fails "inbound imaps without the test CA (system store)" "certificate"

inbound --password-env ALICE_PW --inbound-host localhost --inbound-protocol imap+starttls \
    --inbound-port "$CM_IMAP_PORT"
fails "inbound imap+starttls without the test CA" "certificate"

inbound --password-env ALICE_PW --inbound-host "$CM_IMAP_NOTLS_HOST" --inbound-protocol imap+starttls \
    --inbound-port "$CM_IMAP_NOTLS_PORT" --ca-file "$CM_CA_FILE"
fails "inbound imap+starttls where STARTTLS is not offered" "STARTTLS"

inbound --password-env ALICE_PW --inbound-host nonexistent.invalid --inbound-protocol imaps \
    --inbound-port "$CM_IMAPS_PORT" --ca-file "$CM_CA_FILE"
fails "inbound, unknown host" "not resolved" "nonexistent.invalid"

inbound --password-env ALICE_PW "${IMAPS[@]}" --folder NoSuchFolder
fails "inbound, missing folder" "NoSuchFolder" "does not exist"

inbound --password-env ALICE_PW "${IMAPS[@]}" --folder Readonly
fails "inbound, read-only folder" "Readonly" "read-only"

inbound --password-env ALICE_PW "${IMAPS[@]}" --folder Archive/2024
fails "inbound, subfolder" "Archive/2024" "subfolder"

inbound --password-env ALICE_PW "${IMAPS[@]}" --folder shared/bob/INBOX
fails "inbound, folder in the shared namespace" "shared/bob/INBOX" "shared"

# ---------------------------------------------------------------- outbound
outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtp+starttls \
    --outbound-port "$CM_SUBMISSION_PORT" --ca-file "$CM_CA_FILE"
passes "outbound smtp+starttls with AUTH" "Outbound connection OK: smtp+starttls://localhost:$CM_SUBMISSION_PORT"
outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtps \
    --outbound-port "$CM_SMTPS_PORT" --ca-file "$CM_CA_FILE"
passes "outbound smtps" "Outbound connection OK: smtps://localhost:$CM_SMTPS_PORT"

# A 4xx answer to AUTH is the server's trouble, not the password's (Postfix
# answers 454 when it has lost its connection to the authentication
# service, and connects again for the next client): the test tries once
# more on a new connection, and a 454 that stays is reported as temporary,
# with the server's words, not as a wrong password.
tempauth() {   # tempauth MODE: starts the stand-in, sets TA_PID and TA_PORT
    coproc TA { exec python3 "$CM_TOP/tests/tools/smtp_tempauth.py" "$1"; }
    read -r TA_PORT <&"${TA[0]}"
}
tempauth once
outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtp \
    --outbound-port "$TA_PORT"
passes "outbound, a 454 to the first AUTH, then 235" "Outbound connection OK: smtp://localhost:$TA_PORT"
kill "$TA_PID" 2>/dev/null; wait "$TA_PID" 2>/dev/null
tempauth always
outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtp \
    --outbound-port "$TA_PORT"
fails "outbound, 454 to every AUTH" "temporary authentication failure at localhost:$TA_PORT: 454 4.7.0 Temporary authentication failure"
check_lacks "outbound, 454 to every AUTH: not called a wrong password" "authentication failed for" "$OUT"
kill "$TA_PID" 2>/dev/null; wait "$TA_PID" 2>/dev/null
# a 5xx is the password's: no second try (the stand-in lets a second in)
tempauth once-535
outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtp \
    --outbound-port "$TA_PORT"
fails "outbound, a 535 to the first AUTH is not tried again" "authentication failed for"
check_lacks "outbound, a 535 to the first AUTH: not called temporary" "temporary" "$OUT"
kill "$TA_PID" 2>/dev/null; wait "$TA_PID" 2>/dev/null

outbound --password-env BAD_PW --outbound-host localhost --outbound-protocol smtp+starttls \
    --outbound-port "$CM_SUBMISSION_PORT" --ca-file "$CM_CA_FILE"
fails "outbound, wrong password" "authentication"
outbound --password-env BAD_PW --outbound-host localhost --outbound-protocol smtps \
    --outbound-port "$CM_SMTPS_PORT" --ca-file "$CM_CA_FILE"
fails "outbound smtps, wrong password" "authentication"

outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtp+starttls \
    --outbound-port "$CM_SMTP_NOTLS_PORT" --ca-file "$CM_CA_FILE"
fails "outbound smtp+starttls where STARTTLS is not offered" "STARTTLS"

outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtps \
    --outbound-port "$CM_SMTPS_PORT"
fails "outbound smtps without the test CA" "certificate"

outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtps \
    --outbound-port "$FREE_PORT" --ca-file "$CM_CA_FILE"
fails "outbound, closed port" "refused"

# The unsaved test needs only its own side; a bad field is still exit 2.
outbound --password-env ALICE_PW --outbound-host localhost --outbound-protocol smtps --outbound-port 0
check_eq "unsaved test with port 0 exits 2" 2 "$RC"
run_cm route test-inbound
check_eq "test-inbound with neither NAME nor options exits 2" 2 "$RC"

# ---------------------------------------------------------------- saved routes (NAME)
route_add conn-a alice >/dev/null 2>&1
check_eq "saved route conn-a exists" 1 "$(sql "SELECT count(*) FROM routes WHERE name = 'conn-a'")"
run_cm route test-inbound conn-a
passes "saved route: inbound test" "Inbound connection OK: imaps://localhost:$CM_IMAPS_PORT, folder INBOX"
run_cm route test-outbound conn-a
passes "saved route: outbound test" "Outbound connection OK: smtp+starttls://localhost:$CM_SUBMISSION_PORT"
run_cm route test-inbound conn-a --folder INBOX
check_eq "NAME and options together exit 2" 2 "$RC"

"$CM" route set conn-a --password-env BAD_PW >/dev/null 2>&1
run_cm route test-inbound conn-a
fails "saved route with a wrong password: inbound" "authentication"
run_cm route test-outbound conn-a
fails "saved route with a wrong password: outbound" "authentication"
"$CM" route set conn-a --password-env ALICE_PW >/dev/null 2>&1

"$CM" route set conn-a --folder Readonly >/dev/null 2>&1
run_cm route test-inbound conn-a
fails "saved route on a read-only folder" "read-only"
"$CM" route set conn-a --folder Archive/2024 >/dev/null 2>&1
run_cm route test-inbound conn-a
fails "saved route on a subfolder" "subfolder"
"$CM" route set conn-a --folder shared/bob/INBOX >/dev/null 2>&1
run_cm route test-inbound conn-a
fails "saved route on a shared folder" "shared"
"$CM" route set conn-a --folder INBOX --inbound-protocol imap+starttls \
    --inbound-host "$CM_IMAP_NOTLS_HOST" --inbound-port "$CM_IMAP_NOTLS_PORT" >/dev/null 2>&1
run_cm route test-inbound conn-a
fails "saved route with STARTTLS not offered" "STARTTLS"
"$CM" route set conn-a --inbound-protocol imaps --inbound-host localhost --inbound-port "$CM_IMAPS_PORT" \
    --outbound-port "$CM_SMTP_NOTLS_PORT" >/dev/null 2>&1
run_cm route test-inbound conn-a
passes "saved route back on IMAPS" "Inbound connection OK"
run_cm route test-outbound conn-a
fails "saved route, outbound STARTTLS not offered" "STARTTLS"

run_cm route test-inbound no-such-route
check_eq "test-inbound of an unknown route exits 2" 2 "$RC"
check_contains "... naming it" "no-such-route" "$OUT"

# Testing changes nothing: no route appeared, and the saved one is STOPPED.
check_eq "unsaved tests saved no route" 1 "$(sql "SELECT count(*) FROM routes")"
check_eq "testing does not start the route" STOPPED "$(route_status conn-a)"
