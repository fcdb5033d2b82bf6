#!/usr/bin/env bash
# tests/stack/cyrus.sh - a private Cyrus IMAP server (Debian's cyrus-imapd,
# a second IMAP implementation beside the stack's Dovecot) on loopback,
# with all its state under DIR, run as the cyrus user.
# Debian's cyrus-imapd conflicts with dovecot-imapd (both are "the" IMAP
# server of a system), so `make deps` installs cyrus-common (master, the
# databases' tools) as a package and unpacks the imapd and idled of the
# cyrus-imapd package of the same version into var/deb/cyrus-imapd.
#
# Usage: tests/stack/cyrus.sh DIR start IMAP_PORT IMAPS_PORT CERT KEY [PORT=CAP,CAP...]...
#          plain IMAP (STARTTLS offered) and implicit TLS on 127.0.0.1 with
#          CERT/KEY; users from a sasldb in DIR, each INBOX created at its
#          first login; new mail noticed at once by IDLE (idled). Each
#          PORT=CAPS adds plain IMAP on PORT that does not announce those
#          capabilities (Cyrus's suppress_capabilities): a server without
#          MOVE, UIDPLUS or IDLE, say. Each PORT@classic adds plain IMAP on
#          PORT in Cyrus's own default namespace: folders under "INBOX."
#          with "." between levels (the others show them as top-level
#          folders with "/"; the mail is the same).
#        tests/stack/cyrus.sh DIR user NAME PASSWORD   (before or after start)
#        tests/stack/cyrus.sh DIR stop                 (its master, by pid)
# Started again on the same DIR, it keeps its mail. Cyrus logs to syslog
# only, which these machines do not run: it says nothing here.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 DIR start|user|stop ..." >&2; exit 2; }
D=$1
cmd=$2
shift 2
BIN=/usr/lib/cyrus/bin
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
. "$top/tests/stack/lib.sh"
D=$(cm_abs "$D")
IMAPD_BIN=${CM_CYRUS_IMAPD_BIN:-$top/var/deb/cyrus-imapd/usr/lib/cyrus/bin}
die() { printf 'cyrus: %s\n' "$*" >&2; exit 1; }
pid_of() { cat "$D/run/master.pid" 2>/dev/null || true; }
# ours: the pid names a Cyrus master reading this DIR's configuration
ours() {
    local p=$1
    [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] \
        && tr '\0' ' ' < "/proc/$p/cmdline" | grep -q "^$BIN/master .*-C $D/imapd.conf" \
        && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]
}

case "$cmd" in
start)
    [ $# -ge 4 ] || die "start needs IMAP_PORT IMAPS_PORT CERT KEY [PORT=CAPS...]"
    [ -x "$BIN/master" ] || die "no $BIN/master: install cyrus-common (make deps)"
    [ -x "$IMAPD_BIN/imapd" ] || die "no $IMAPD_BIN/imapd: unpack cyrus-imapd (make deps)"
    ours "$(pid_of)" && die "already running (pid $(pid_of))"
    mkdir -p "$D"/{conf,spool,sieve,run/socket,run/proc,run/lock}
    IMAPD_BIN=$(cm_reachable cyrus "$IMAPD_BIN" "$D/imapd-bin") || die "cannot copy imapd where user cyrus runs it"
    [ -x "$IMAPD_BIN/imapd" ] || die "no $IMAPD_BIN/imapd"
    rm -rf "$D"/run/proc/* "$D"/run/lock/* "$D"/run/socket/*
    cp "$3" "$D/server.crt"; cp "$4" "$D/server.key"
    cat > "$D/imapd.conf" <<EOF
configdirectory: $D/conf
partition-default: $D/spool
defaultpartition: default
proc_path: $D/run/proc
mboxname_lockpath: $D/run/lock
lmtpsocket: $D/run/socket/lmtp
idlesocket: $D/run/socket/idle
notifysocket: $D/run/socket/notify
sievedir: $D/sieve
servername: localhost
admins: cyradmin
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $D/sasldb2
sasl_mech_list: PLAIN LOGIN
altnamespace: yes
unixhierarchysep: yes
autocreate_quota: 0
autocreate_users: anyone
delete_mode: immediate
hashimapspool: false
tls_server_cert: $D/server.crt
tls_server_key: $D/server.key
syslog_prefix: casemail-test-cyrus
EOF
    imap_port=$1 imaps_port=$2
    shift 4
    extra=""
    ports="$imap_port $imaps_port"
    n=0
    for spec in "$@"; do
        n=$((n + 1))
        case "$spec" in
        [0-9]*@classic)
            sed -e 's/^altnamespace: yes/altnamespace: no/' \
                -e 's/^unixhierarchysep: yes/unixhierarchysep: no/' "$D/imapd.conf" > "$D/imapd-$n.conf"
            extra="$extra  imap$n cmd=\"$IMAPD_BIN/imapd -C $D/imapd-$n.conf\" listen=\"127.0.0.1:${spec%@*}\" prefork=0
"
            ports="$ports ${spec%@*}"
            continue ;;
        [0-9]*=*) ;;
        *) die "bad PORT=CAPS or PORT@classic: $spec" ;;
        esac
        caps=" $(tr ',' ' ' <<<"${spec#*=}") "
        {
            grep -v '^idlesocket:' "$D/imapd.conf"
            if [[ $caps == *" IDLE "* ]]; then
                # suppress_capabilities leaves IDLE: no idled and no
                # polling takes it away
                echo "idlesocket: $D/run/socket/no-idled"
                echo "imapidlepoll: 0"
                caps=${caps/ IDLE / }
            fi
            echo "suppress_capabilities:$caps"
        } > "$D/imapd-$n.conf"
        extra="$extra  imap$n cmd=\"$IMAPD_BIN/imapd -C $D/imapd-$n.conf\" listen=\"127.0.0.1:${spec%%=*}\" prefork=0
"
        ports="$ports ${spec%%=*}"
    done
    cat > "$D/cyrus.conf" <<EOF
START {
  recover cmd="ctl_cyrusdb -C $D/imapd.conf -r"
}
SERVICES {
  imap  cmd="$IMAPD_BIN/imapd -C $D/imapd.conf" listen="127.0.0.1:$imap_port" prefork=0
  imaps cmd="$IMAPD_BIN/imapd -s -C $D/imapd.conf" listen="127.0.0.1:$imaps_port" prefork=0
$extra}
EVENTS {
  checkpoint cmd="ctl_cyrusdb -C $D/imapd.conf -c" period=30
}
DAEMON {
  idled cmd="$IMAPD_BIN/idled -C $D/imapd.conf"
}
EOF
    touch "$D/sasldb2"
    chown -R cyrus:mail "$D"
    chmod 755 "$D"
    chmod 600 "$D/server.key"
    "$BIN/master" -C "$D/imapd.conf" -M "$D/cyrus.conf" -p "$D/run/master.pid" -d \
        || die "master did not start"
    for _ in $(seq 100); do
        if python3 -c "import socket, sys
for p in sys.argv[1:]: socket.create_connection(('127.0.0.1', int(p)), 1).close()" $ports 2>/dev/null
        then echo "cyrus: master pid $(pid_of), imap $imap_port, imaps $imaps_port"; exit 0; fi
        sleep 0.1
    done
    die "not listening on 127.0.0.1 ports $ports after 10 s"
    ;;
user)
    [ $# -eq 2 ] || die "user needs NAME PASSWORD"
    mkdir -p "$D"
    printf '%s' "$2" | saslpasswd2 -f "$D/sasldb2" -p -c -u localhost "$1" \
        || die "saslpasswd2 failed for $1"
    chown cyrus:mail "$D/sasldb2"
    chmod 640 "$D/sasldb2"
    ;;
stop)
    p=$(pid_of)
    ours "$p" || { echo "cyrus: not running"; exit 0; }
    kill -TERM "$p"
    for _ in $(seq 100); do ours "$p" || { rm -f "$D/run/master.pid"; exit 0; }; sleep 0.1; done
    # master runs in a session of its own (-d): its process group is
    # its pid, and holds only it and its services
    kill -KILL -- "-$p" 2>/dev/null
    for _ in $(seq 50); do ours "$p" || { rm -f "$D/run/master.pid"; exit 0; }; sleep 0.1; done
    die "master (pid $p) still running after SIGKILL"
    ;;
*) die "unknown command $cmd" ;;
esac
