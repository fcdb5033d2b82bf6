#!/usr/bin/env bash
# tests/stack/dovecot-alt.sh - a second, private Dovecot on loopback, set up
# unlike the stack's (tests/stack/lib.sh): another mail storage and another
# hierarchy separator, plain IMAP only, all its state under DIR.
#
# Usage: tests/stack/dovecot-alt.sh DIR start PORT STORAGE SEPARATOR [PREFIX]
#          PREFIX: the personal namespace's (default none), e.g. "INBOX."
#          as Courier-style and cPanel servers have it. STORAGE: mbox (one file a folder, INBOX in ~/mail/inbox), sdbox,
#          mdbox or maildir (Maildir++: folders ".Name" in ~/Maildir).
#          Users from DIR/users, one "NAME PASSWORD" a line (a password
#          may hold spaces, quotes, backslashes, braces, non-ASCII; no
#          colon: Dovecot's passwd-file splits there).
#        tests/stack/dovecot-alt.sh DIR doveadm ARGS...   (its doveadm)
#        tests/stack/dovecot-alt.sh DIR stop              (its master, by pid)
# The mail user is the stack's (tests/stack/lib.sh), made if missing.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR start|doveadm|stop ..." >&2; exit 2; }
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/stack/lib.sh
. "$top/tests/stack/lib.sh"
D=$(cm_abs "$1")
cmd=$2
shift 2
conf=$D/dovecot.conf
pid_of() { cm_read_pid "$D/run/master.pid"; }

case $cmd in
start)
    [ $# -eq 3 ] || [ $# -eq 4 ] || cm_die "usage: $0 DIR start PORT STORAGE SEPARATOR [PREFIX]"
    port=$1 storage=$2 sep=$3 prefix=${4:-}
    case $storage in
    mbox)    loc='mbox:~/mail:INBOX=~/mail/inbox' ;;
    sdbox)   loc='sdbox:~/dbox' ;;
    mdbox)   loc='mdbox:~/mdbox' ;;
    maildir) loc='maildir:~/Maildir' ;;
    *) cm_die "unknown storage $storage" ;;
    esac
    cm_ensure_vmail_user
    uid=$(id -u "$CM_VMAIL_USER")
    gid=$(id -g "$CM_VMAIL_USER")
    mkdir -p "$D/run" "$D/state" "$D/mail"
    if cm_is_root; then chown "$CM_VMAIL_USER:$CM_VMAIL_USER" "$D/mail"; fi
    [ -f "$D/users" ] || cm_die "no $D/users"
    while read -r name pw; do
        printf '%s:{PLAIN}%s::::::\n' "$name" "$pw"
    done <"$D/users" >"$D/passwd"
    cat >"$conf" <<CONF
# A second Dovecot of a casemail test in $D (tests/stack/dovecot-alt.sh).
instance_name = casemail-alt-$port
protocols = imap
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
log_path = $D/log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = $uid
last_valid_uid = $uid
mail_uid = $uid
mail_gid = $gid
mail_location = $loc
mail_fsync = never
passdb {
  driver = passwd-file
  args = scheme=PLAIN $D/passwd
}
userdb {
  driver = passwd-file
  args = $D/passwd
  default_fields = uid=$uid gid=$gid home=$D/mail/%n
}
namespace inbox {
  inbox = yes
  separator = $sep
  prefix = $prefix
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
$(cm_dovecot_test_services)
CONF
    rm -f "$D/run/master.pid"
    dovecot -c "$conf" 2>>"$D/log" || { cm_tail_log "$D/log"; cm_die "Dovecot did not start"; }
    cm_wait_listen 20 "$port" || { cm_tail_log "$D/log"; cm_die "Dovecot does not listen"; }
    echo "Dovecot ($storage, separator $sep${prefix:+, folders under $prefix}) on 127.0.0.1:$port"
    ;;
doveadm)
    doveadm -c "$conf" "$@"
    ;;
stop)
    p=$(pid_of)
    cm_alive "$p" dovecot || exit 0
    kill -TERM "$p"
    cm_wait_gone "$p" dovecot 20 || cm_die "Dovecot pid $p still running"
    ;;
*) cm_die "unknown command $cmd" ;;
esac
