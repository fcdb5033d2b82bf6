#!/usr/bin/env bash
# tests/stack/passwd.sh - change a test user's password in the stack's
# Dovecot passwd-file, then wait (up to ~10 s) until an IMAP login with the
# new password works (Dovecot re-reads the file at most once a second).
#
# Usage: tests/stack/passwd.sh DIR USER NEWPASSWORD
#   USER  "alice" or "alice@example.test" (logins use the full address)
# The password is stored as {PLAIN}; it may not contain ':' or a newline.
# When Dovecot is stopped the file is changed and the login is not checked.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -eq 3 ] || cm_die "usage: $0 DIR USER NEWPASSWORD"
cm_load "$1"
user=$(cm_user_addr "$2")
pass=$3
case "$pass" in *:*|*$'\n'*|'') cm_die "password must be non-empty without ':' or newline" ;; esac
grep -q "^$user:" "$DC_USERS" || cm_die "no such user in $DC_USERS: $user"

old_mtime=$(stat -c %Y "$DC_USERS")
awk -F: -v OFS=: -v u="$user" -v p="{PLAIN}$pass" '$1 == u { $2 = p } { print }' \
    "$DC_USERS" >"$DC_USERS.tmp"
# Dovecot notices a change by mtime (and size): never reuse the old mtime.
now=$(date +%s)
[ "$now" -gt "$old_mtime" ] || now=$((old_mtime + 1))
touch -d "@$now" "$DC_USERS.tmp"
cm_install_users_file "$DC_USERS.tmp"

cm_dovecot_running || { cm_log "note: Dovecot is stopped; password changed in the file only"; exit 0; }
for _ in $(seq 1 50); do
    cm_imap_login_ok "$user" "$pass" && exit 0
    sleep 0.2
done
cm_tail_log "$DC_LOG"
cm_die "login with the new password of $user does not work"
