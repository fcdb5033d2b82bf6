#!/usr/bin/env bash
# tests/stack/courier.sh - a private Courier-IMAP server (Debian's
# courier-imap, a third IMAP implementation beside the stack's Dovecot and
# Cyrus) on loopback, serving one Maildir++ under DIR, run as the courier
# user that owns it.
# Debian's courier-imap conflicts with dovecot-imapd (both are "the" IMAP
# server of a system), so `make deps` installs only its libraries
# (courier-authlib, libcourier-unicode4, libgamin0, libidn12) as packages
# and unpacks courier-imap (imapd) and courier-base (couriertls,
# maildirmake) of the same version into var/deb.
# Courier's imapd run from a shell greets `* PREAUTH` and serves the
# Maildir it is given on stdin and stdout, as over an ssh or TLS tunnel:
# tests/tools/preauth_listener.py runs one per connection. Real logins
# would need Courier's authdaemond, whose socket is fixed at a system path.
#
# Usage: tests/stack/courier.sh DIR start IMAP_PORT [IMAPS_PORT CERT KEY]
#          plain IMAP on 127.0.0.1:IMAP_PORT and, with IMAPS_PORT, implicit
#          TLS (couriertls, with CERT and KEY) on it: both PREAUTH, the same
#          Maildir (DIR/Maildir: INBOX, and folders "INBOX.x" as DIR/Maildir/.x);
#          IDLE telling new mail at once (IMAP_ENHANCEDIDLE=1, gamin on
#          inotify) or, with CM_COURIER_ENHANCEDIDLE=0 as Debian ships it,
#          IDLE that looks at the folder every IMAP_IDLE_TIMEOUT (60) s
#          and when it ends. gam_server, which libgamin starts for the
#          courier user and its imapds share, ends on its own some seconds
#          after its last imapd.
#        tests/stack/courier.sh DIR deliver FOLDER FILE...   each message
#          file into FOLDER (INBOX, or INBOX.x: DIR/Maildir/.x, made if
#          missing) as a mail delivery agent does: into new/, LF line ends
#        tests/stack/courier.sh DIR stop              (its listeners, by pid)
# Started again on the same DIR, it keeps its mail. imapd's log lines are in
# DIR/log/imapd.log.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR start|deliver|stop ..." >&2; exit 2; }
D=$1
cmd=$2
shift 2
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEB=${CM_COURIER_DEB:-$top/var/deb}
IMAPD=$DEB/courier-imap/usr/bin/imapd
TLS=$DEB/courier-base/usr/bin/couriertls
RUNAS=courier
die() { printf 'courier: %s\n' "$*" >&2; exit 1; }
# ours FILE: the pid in FILE is a listener of this DIR, not a zombie
ours() {
    local p
    p=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] \
        && tr '\0' ' ' < "/proc/$p/cmdline" | grep -q "preauth_listener.py .*--dir $D/Maildir " \
        && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]
}
listen() {      # listen NAME PORT COMMAND...
    local name=$1 port=$2; shift 2
    rm -f "$D/run/$name.pid"
    nohup python3 "$top/tests/tools/preauth_listener.py" --port "$port" --dir "$D/Maildir" \
        --log "$D/log/imapd.log" --pidfile "$D/run/$name.pid" -- "$@" \
        >> "$D/log/listener.log" 2>&1 < /dev/null &
}

case "$cmd" in
start)
    [ $# -eq 1 ] || [ $# -eq 4 ] || die "start needs IMAP_PORT [IMAPS_PORT CERT KEY]"
    [ -x "$IMAPD" ] || die "no $IMAPD: unpack courier-imap (make deps)"
    getent passwd "$RUNAS" >/dev/null || die "no user $RUNAS: install courier-authlib (make deps)"
    ours "$D/run/imap.pid" && die "already running (pid $(cat "$D/run/imap.pid"))"
    mkdir -p "$D/run" "$D/log"
    chmod 755 "$D"
    if [ ! -d "$D/Maildir/cur" ]; then
        mkdir -p "$D/Maildir"/{cur,new,tmp}
        chmod 700 "$D/Maildir"
        chown -R "$RUNAS:" "$D/Maildir"
    fi
    touch "$D/log/imapd.log" && chown "$RUNAS:" "$D/log/imapd.log"
    # Debian's settings for imapd (the init script loads this file),
    # without the AUTH= capabilities: nobody logs in here
    set -a
    # shellcheck disable=SC1091
    . "$DEB/courier-imap/etc/courier/imapd"
    set +a
    export IMAP_CAPABILITY="IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"
    export IMAP_ENHANCEDIDLE=${CM_COURIER_ENHANCEDIDLE:-1}
    export IMAP_SHAREDINDEXFILE=$D/shared-index
    unset IMAP_CAPABILITY_TLS IMAP_CAPABILITY_TLS_ORIG IMAP_CAPABILITY_ORIG
    listen imap "$1" "$IMAPD" .
    ports=$1
    if [ $# -eq 4 ]; then
        [ -x "$TLS" ] || die "no $TLS: unpack courier-base (make deps)"
        cat "$3" "$4" > "$D/run/server.pem"
        chown "$RUNAS:" "$D/run/server.pem"
        chmod 600 "$D/run/server.pem"
        TLS_CERTFILE=$D/run/server.pem TLS_VERIFYPEER=NONE \
            listen imaps "$2" "$TLS" -server -tcpd "$IMAPD" .
        ports="$ports $2"
    fi
    # each listener writes its pid file once it listens (a connection
    # would start an imapd)
    for _ in $(seq 100); do
        if ours "$D/run/imap.pid" && { [ $# -eq 1 ] || ours "$D/run/imaps.pid"; }
        then echo "courier: imapd (PREAUTH) on 127.0.0.1 port(s) $ports, Maildir $D/Maildir"; exit 0; fi
        sleep 0.1
    done
    die "not listening on 127.0.0.1 ports $ports after 10 s: $(tail -3 "$D/log/listener.log" 2>/dev/null)"
    ;;
deliver)
    [ $# -ge 1 ] || die "deliver needs FOLDER FILE..."
    [ -d "$D/Maildir/new" ] || die "no Maildir in $D: start first"
    case "$1" in
    INBOX) M=$D/Maildir ;;
    INBOX.?*) M=$D/Maildir/.${1#INBOX.}
        if [ ! -d "$M/cur" ]; then
            # as maildirmake -f does: a folder of Maildir++ is marked so
            mkdir -p "$M"/{cur,new,tmp} && touch "$M/maildirfolder"
            chmod 700 "$M" && chown -R "$RUNAS:" "$M"
        fi ;;
    *) die "deliver: folder INBOX or INBOX.NAME, not $1" ;;
    esac
    shift
    n=0
    for f in "$@"; do
        n=$((n + 1))
        # a unique name as maildir(5) has it: time.M<usec>P<pid>_<n>.host,
        # written in tmp/ and renamed into new/; Maildir files end lines in LF
        name="$(date +%s).M$(date +%N | cut -c1-6)P$$_$n.casemail-test"
        tr -d '\r' < "$f" > "$M/tmp/$name"
        chown "$RUNAS:" "$M/tmp/$name"
        mv "$M/tmp/$name" "$M/new/$name"
    done
    ;;
stop)
    for name in imaps imap; do
        f=$D/run/$name.pid
        ours "$f" || continue
        p=$(cat "$f")
        kill -TERM "$p"
        for _ in $(seq 50); do ours "$f" || break; sleep 0.1; done
        ours "$f" && { kill -KILL -- "-$p" 2>/dev/null || true; }
        for _ in $(seq 50); do ours "$f" || break; sleep 0.1; done
        ours "$f" && die "listener $name (pid $p) still running after SIGKILL"
        rm -f "$f"
    done
    exit 0
    ;;
*) die "unknown command $cmd" ;;
esac
