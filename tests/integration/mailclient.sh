#!/usr/bin/env bash
# common/imap.c and common/smtp.c against the stack's Dovecot and Postfix
# (tests/unit/imap_smtp_live.c, as the user carol): connection errors by
# cause, search, fetch with peek, flags, moves, IDLE, batches on the body
# session without a new login, submission and delivery.
. "$(dirname "$0")/../lib.sh"
out=$CM_WORK/$CM_TEST.log
CM_USER=carol@$CM_MAIL_DOMAIN CM_PASS=carol-pw-Secret1 "$CM_BIN/casemail-mail-test" > "$out" 2>&1
rc=$?
sed -n -e 's/^ok   /ok - /p' -e 's/^FAIL /not ok - /p' "$out"
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out")
if [ -z "$summary" ]; then not_ok "the mail client test ran to its end" "exit $rc" "$(tail -3 "$out")"
elif [ "$rc" != 0 ] && ! grep -q '^FAIL ' "$out"; then not_ok "the mail client test exited 0" "exit $rc"; fi
