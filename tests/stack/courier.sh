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
# tests/tools/preauth_listener.py runs one per connection (start). Or it
# runs as a mail host has it, with logins (login, below).
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
#        tests/stack/courier.sh DIR login IMAP_PORT CERT KEY NAME PASSWORD
#          Courier as a mail host runs it instead, on plain IMAP with
#          STARTTLS offered (CERT/KEY): couriertcpd, imaplogin and
#          authdaemond with a userdb of one user, NAME with PASSWORD,
#          whose mail is DIR/Maildir (served as the courier user).
#          authdaemond's socket and configuration are at paths fixed in
#          its build (/run/courier, /etc/courier): it and couriertcpd run
#          in a mount namespace of their own where DIR/auth/run and
#          DIR/auth/etc are mounted on those, so the system's own are
#          neither read nor changed (/run/courier is made, empty, if it
#          is missing: the mount needs it).
#        tests/stack/courier.sh DIR deliver FOLDER FILE...   each message
#          file into FOLDER (INBOX, or INBOX.x: DIR/Maildir/.x, made if
#          missing) as a mail delivery agent does: into new/, LF line ends
#        tests/stack/courier.sh DIR stop              (its listeners, by pid)
# Started again on the same DIR, it keeps its mail. imapd's log lines are in
# DIR/log/imapd.log.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR start|login|deliver|stop ..." >&2; exit 2; }
D=$1
cmd=$2
shift 2
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
. "$top/tests/stack/lib.sh"
D=$(cm_abs "$D")
RUNAS=courier
DEB=${CM_COURIER_DEB:-$top/var/deb}
# deb: the unpacked packages where RUNAS can run them (a copy in DIR when
# the checkout is out of its reach)
deb() {
    DEB=$(cm_reachable "$RUNAS" "$DEB" "$D/deb") || die "cannot copy $DEB where user $RUNAS runs it"
    IMAPD=$DEB/courier-imap/usr/bin/imapd
    TLS=$DEB/courier-base/usr/bin/couriertls
}
die() { printf 'courier: %s\n' "$*" >&2; exit 1; }
# alive PID NAME: PID runs NAME and is not a zombie
alive() {
    [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] \
        && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
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

# imapd's settings as Debian's init script loads them, with the
# capabilities of a server nobody logs in to (AUTH= comes with login)
imapd_env() {
    set -a
    # shellcheck disable=SC1091
    . "$DEB/courier-imap/etc/courier/imapd"
    set +a
    export IMAP_CAPABILITY="IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE"
    export IMAP_ENHANCEDIDLE=${CM_COURIER_ENHANCEDIDLE:-1}
    export IMAP_SHAREDINDEXFILE=$D/shared-index
    unset IMAP_CAPABILITY_TLS IMAP_CAPABILITY_TLS_ORIG IMAP_CAPABILITY_ORIG
}
maildir() {
    mkdir -p "$D/run" "$D/log"
    chmod 755 "$D"
    if [ ! -d "$D/Maildir/cur" ]; then
        mkdir -p "$D/Maildir"/{cur,new,tmp}
        chmod 700 "$D/Maildir"
        chown -R "$RUNAS:" "$D/Maildir"
    fi
    touch "$D/log/imapd.log" && chown "$RUNAS:" "$D/log/imapd.log"
}

case "$cmd" in
login)
    [ $# -eq 5 ] || die "login needs IMAP_PORT CERT KEY NAME PASSWORD"
    deb
    AUTHD=/usr/lib/courier/courier-authlib/authdaemond
    TCPD=$DEB/courier-base/usr/sbin/couriertcpd
    LOGIN=$DEB/courier-imap/usr/lib/courier/courier/imaplogin
    [ -x "$AUTHD" ] && command -v makeuserdb >/dev/null \
        || die "no authdaemond or makeuserdb: install courier-authdaemon courier-authlib-userdb (make deps)"
    [ -x "$TCPD" ] && [ -x "$LOGIN" ] || die "no couriertcpd or imaplogin: unpack courier-base and courier-imap (make deps)"
    alive "$(cat "$D/run/tcpd.pid" 2>/dev/null)" couriertcpd && die "already running"
    maildir
    rm -rf "$D/auth"
    mkdir -p "$D/auth/etc" "$D/auth/run/authdaemon"
    chown "$RUNAS:" "$D/auth/run/authdaemon"
    printf '%s\n' 'authmodulelist="authuserdb"' daemons=2 authdaemonvar=/run/courier/authdaemon \
        DEBUG_LOGIN=0 'DEFAULTOPTIONS=""' 'LOGGEROPTS=""' > "$D/auth/etc/authdaemonrc"
    cat "$2" "$3" > "$D/run/server.pem"
    chown "$RUNAS:" "$D/run/server.pem"
    chmod 600 "$D/run/server.pem"
    imapd_env
    export IMAP_CAPABILITY_TLS="$IMAP_CAPABILITY AUTH=PLAIN"
    export IMAP_STARTTLS=YES IMAP_TLS_REQUIRED=0 COURIERTLS=$TLS TLS_CERTFILE=$D/run/server.pem \
        TLS_VERIFYPEER=NONE
    [ -d /run/courier ] || mkdir -p /run/courier
    rm -f "$D/run/tcpd.pid"
    CO_D=$D CO_PORT=$1 CO_NAME=$4 CO_PW=$5 CO_TCPD=$TCPD CO_LOGIN=$LOGIN CO_IMAPD=$IMAPD \
        CO_AUTHD=$AUTHD CO_UID=$(id -u "$RUNAS") CO_GID=$(id -g "$RUNAS") \
        unshare -m --propagation private bash -c '
        set -e
        mount --bind "$CO_D/auth/etc" /etc/courier
        mount --bind "$CO_D/auth/run" /run/courier
        userdb "$CO_NAME" set home="$CO_D" mail="$CO_D/Maildir" uid="$CO_UID" gid="$CO_GID"
        printf "%s\n" "$CO_PW" | userdbpw -md5 | userdb "$CO_NAME" set systempw
        makeuserdb
        courierlogger -pid=/run/courier/authdaemon/pid -start "$CO_AUTHD"
        "$CO_TCPD" -address=127.0.0.1 -pid="$CO_D/run/tcpd.pid" -nodnslookup -noidentlookup \
            -stderr="$CO_D/log/imapd.log" "$CO_PORT" "$CO_LOGIN" "$CO_IMAPD" Maildir
    ' >> "$D/log/listener.log" 2>&1 || die "authdaemond or couriertcpd did not start: $(tail -3 "$D/log/listener.log")"
    for _ in $(seq 100); do
        if alive "$(cat "$D/run/tcpd.pid" 2>/dev/null)" couriertcpd \
            && [ -S "$D/auth/run/authdaemon/socket" ]; then
            echo "courier: couriertcpd pid $(cat "$D/run/tcpd.pid") on 127.0.0.1 port $1, login $4"; exit 0
        fi
        sleep 0.1
    done
    die "couriertcpd not running after 10 s: $(tail -3 "$D/log/imapd.log")"
    ;;
start)
    [ $# -eq 1 ] || [ $# -eq 4 ] || die "start needs IMAP_PORT [IMAPS_PORT CERT KEY]"
    deb
    [ -x "$IMAPD" ] || die "no $IMAPD: unpack courier-imap (make deps)"
    getent passwd "$RUNAS" >/dev/null || die "no user $RUNAS: install courier-authlib (make deps)"
    ours "$D/run/imap.pid" && die "already running (pid $(cat "$D/run/imap.pid"))"
    maildir
    imapd_env
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
    # a login server: couriertcpd, then authdaemond's courierlogger
    for f in "$D/run/tcpd.pid:couriertcpd" "$D/auth/run/authdaemon/pid:courierlogger"; do
        p=$(cat "${f%:*}" 2>/dev/null) || continue
        alive "$p" "${f#*:}" || continue
        kill -TERM "$p"
        for _ in $(seq 50); do alive "$p" "${f#*:}" || break; sleep 0.1; done
        alive "$p" "${f#*:}" && { kill -KILL "$p" 2>/dev/null || true; }
        for _ in $(seq 50); do alive "$p" "${f#*:}" || break; sleep 0.1; done
        alive "$p" "${f#*:}" && die "${f#*:} (pid $p) still running after SIGKILL"
        rm -f "${f%:*}"
    done
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
