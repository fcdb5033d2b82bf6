# shellcheck shell=bash
# tests/stack/lib.sh - shared functions of the private test stack scripts.
#
# Sourced by start.sh, stop.sh, ctl.sh, passwd.sh, fill.sh; not run directly.
# The stack lives in one folder DIR:
#   DIR/ports          chosen ports (shell-sourceable, written once, reused)
#   DIR/env            what tests source (CM_* variables)
#   DIR/tls/           test CA, server certificate, untrusted self-signed cert
#   DIR/pg/            PostgreSQL data dir, socket dir, log
#   DIR/dovecot/       dovecot.conf, passwd-file "users", global ACLs, run/state dirs, log
#   DIR/mail/          Maildirs: DIR/mail/example.test/USER/Maildir (owner cmvmail)
#   DIR/postfix/       conf/ (main.cf, master.cf, maps), queue/, data/, maillog
# Every daemon is stopped by the pid in its own pid file, after checking the
# process name; a zombie counts as stopped (PID 1 reaps slowly here).

CM_PGBIN=/usr/lib/postgresql/15/bin
CM_MAIL_DOMAIN=example.test
CM_VMAIL_USER=cmvmail
# Test users; each has password "<user>-pw-Secret1", login name user@example.test.
CM_USERS="alice bob carol dave erin sink u01 u02 u03 u04 u05 u06 u07 u08 u09 u10 u11 u12 u13 u14 u15 u16 u17 u18 u19 u20 u21 u22 u23 u24 u25 u26 u27 u28 u29 u30 u31 u32 u33 u34 u35"
# Folders every user gets (besides INBOX). "/" is the hierarchy separator.
CM_FOLDERS="Processed Sent Archive Archive/2024 Readonly"
# Port offsets from the base port. OAUTH is not served by the stack: it is
# where Dovecot's oauth2 passdb asks for token introspection
# (http://127.0.0.1:PORT_OAUTH/introspect), i.e. where a test runs the
# sign-in stand-in's control port (tests/ews/start.sh ... --control-port).
CM_PORT_NAMES="PG IMAP IMAPS IMAP_NOTLS IMAPS_UNTRUSTED LMTP AUTH SMTP SUBMISSION SMTPS SMTP_NOTLS OAUTH"
CM_PORT_SPAN=12

cm_log() { printf '%s\n' "$*" >&2; }
cm_die() { printf 'stack: %s\n' "$*" >&2; exit 1; }

# cm_abs DIR -> absolute path (DIR need not exist)
cm_abs() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

cm_is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as the postgres user when root, directly otherwise.
cm_as_pg() {
    if cm_is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# cm_reachable USER SRC COPY: prints SRC (a folder of var/deb), or, when
# root runs this and USER can't enter SRC (a checkout under /root, mode
# 0700), COPY: a copy of SRC that USER can read, made again only when SRC
# was unpacked again since. 1 (with a message) when it can't be made. A
# SRC that isn't there is printed as it is, for the caller to name.
cm_reachable() {
    if [ ! -e "$2" ] || ! cm_is_root || runuser -u "$1" -- test -x "$2"; then
        printf '%s\n' "$2"
        return 0
    fi
    local stamp
    # what SRC holds: each file's name, size, time and mode
    stamp=$(cd "$2" && find . -printf '%P %s %T@ %m\n' | sort | cksum) \
        || { cm_log "cannot read $2"; return 1; }
    if [ ! -d "$3" ] || [ "$(cat "$3.stamp" 2>/dev/null)" != "$stamp" ]; then
        rm -rf "$3" "$3.tmp.$$"
        if ! { mkdir -p "$(dirname "$3")" && cp -a "$2" "$3.tmp.$$" && chmod -R go+rX "$3.tmp.$$" && mv "$3.tmp.$$" "$3"; }; then
            rm -rf "$3.tmp.$$"
            cm_log "cannot copy $2 to $3"
            return 1
        fi
        printf '%s\n' "$stamp" > "$3.stamp"
    fi
    printf '%s\n' "$3"
}

# cm_stack_link DIR: as root, when the servers' users can't enter the
# folder DIR is to be made in (a checkout under /root, mode 0700), makes
# DIR a link to a folder of its own in /var/lib/casemail, where `casemail
# up` keeps its PostgreSQL then too. start.sh DIR then makes the folder.
cm_stack_link() {
    local dir shared
    dir=$(cm_abs "$1")
    dir=${dir%/}
    cm_is_root && ! runuser -u postgres -- test -x "$(dirname "$dir")" || return 0
    # the empty folder an earlier start.sh made before it found it out of reach
    if [ -d "$dir" ] && [ ! -L "$dir" ] && [ ! -e "$dir/ports" ]; then
        rmdir "$dir" 2>/dev/null || true
    fi
    if [ ! -e "$dir" ]; then
        shared=/var/lib/casemail/$(basename "$dir")-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)
        mkdir -p /var/lib/casemail
        chmod 755 /var/lib/casemail
        ln -sfn "$shared" "$dir"
    fi
}

# cm_setup_dir DIR: sets D and the path variables used everywhere. A DIR
# that is a symbolic link (make demo's, when its folder is out of the
# servers' reach) stands for the folder it names.
cm_setup_dir() {
    D=$(realpath -m -- "$(cm_abs "$1")")
    D=${D%/}
    CM_PORTS_FILE=$D/ports
    PG_DATA=$D/pg/data
    PG_RUN=$D/pg/run
    PG_LOG=$D/pg/postgres.log
    DC_DIR=$D/dovecot
    DC_CONF=$DC_DIR/dovecot.conf
    DC_USERS=$DC_DIR/users
    DC_RUN=$DC_DIR/run
    DC_LOG=$DC_DIR/dovecot.log
    PF_DIR=$D/postfix/conf          # config_directory (postfix -c)
    PF_QUEUE=$D/postfix/queue
    PF_DATA=$D/postfix/data
    PF_LOG=$D/postfix/maillog
    MAIL_ROOT=$D/mail
}

# cm_load DIR: like cm_setup_dir, and reads the stored ports (must exist).
cm_load() {
    cm_setup_dir "$1"
    [ -f "$CM_PORTS_FILE" ] || cm_die "$D has no stack (no $CM_PORTS_FILE); run start.sh first"
    # shellcheck disable=SC1090
    . "$CM_PORTS_FILE"
    cm_ports_upgrade
}

# cm_ports_upgrade: a ports file from before a port was added gets it
# (same offset from BASEPORT as a new stack would use).
cm_ports_upgrade() {
    if [ -z "${PORT_OAUTH:-}" ] && [ -n "${BASEPORT:-}" ]; then
        PORT_OAUTH=$((BASEPORT + 11))
        echo "PORT_OAUTH=$PORT_OAUTH" >>"$CM_PORTS_FILE"
    fi
}

# ---------------------------------------------------------------- processes

# cm_proc_state PID -> prints "COMM STATE" of a process, nothing if absent.
cm_proc_state() {
    local pid=$1 stat comm rest
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 0
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
    comm=${stat#*(}
    comm=${comm%)*}
    rest=${stat##*) }
    printf '%s %s\n' "$comm" "${rest%% *}"
}

# cm_alive PID COMM: true when PID runs (not a zombie) with that process name.
cm_alive() {
    local st
    st=$(cm_proc_state "$1")
    [ -n "$st" ] || return 1
    [ "${st% *}" = "$2" ] || return 1
    [ "${st#* }" != "Z" ]
}

# cm_read_pid FILE -> first line's first word of a pid file, or nothing.
cm_read_pid() {
    [ -r "$1" ] || return 0
    local pid
    read -r pid _ <"$1" || true
    case "$pid" in ''|*[!0-9]*) return 0 ;; esac
    printf '%s\n' "$pid"
}

# cm_wait_gone PID COMM SECONDS: waits until PID is gone, a zombie, or another program.
cm_wait_gone() {
    local pid=$1 comm=$2 n=$(( $3 * 10 ))
    while cm_alive "$pid" "$comm"; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}

# -------------------------------------------------------------------- ports

# cm_listening_ports -> one local TCP listening port per line
cm_listening_ports() {
    ss -Hltn 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' | sort -u
}

# cm_ports_free BASE: true when BASE .. BASE+SPAN-1 are all unused.
cm_ports_free() {
    local base=$1 used p
    used=$(cm_listening_ports)
    for ((p = base; p < base + CM_PORT_SPAN; p++)); do
        if grep -qx "$p" <<<"$used"; then return 1; fi
    done
}

# Port blocks in use are also registered (symlink BASE -> DIR) so that a
# stopped stack keeps its ports and parallel start.sh runs never share one.
CM_PORT_REG=${CM_PORT_REG:-/tmp/casemail-stack-ports}

# cm_port_block_taken BASE: true when a registered live stack overlaps the block.
cm_port_block_taken() {
    local base=$1 link b d
    for link in "$CM_PORT_REG"/[0-9]*; do
        [ -L "$link" ] || continue
        b=${link##*/}
        d=$(readlink "$link") || continue
        if [ "$d" != "$D" ] && ! grep -qx "BASEPORT=$b" "$d/ports" 2>/dev/null; then
            rm -f "$link"   # stale: that stack folder is gone or moved
            continue
        fi
        [ "$d" = "$D" ] && continue
        if [ "$base" -lt $((b + CM_PORT_SPAN)) ] && [ "$b" -lt $((base + CM_PORT_SPAN)) ]; then
            return 0
        fi
    done
    return 1
}

# cm_choose_ports [BASE]: picks (or checks) a free block, registers it and
# writes DIR/ports, all under a lock shared by every stack on the machine.
cm_choose_ports() {
    local want=${1:-}
    mkdir -p "$CM_PORT_REG"
    (
        flock -w 30 9 || cm_die "cannot lock $CM_PORT_REG/.lock"
        if [ -n "$want" ]; then
            case "$want" in *[!0-9]*) cm_die "bad BASEPORT: $want" ;; esac
            if cm_port_block_taken "$want" || ! cm_ports_free "$want"; then
                cm_die "ports $want..$((want + CM_PORT_SPAN - 1)) are not all free"
            fi
            base=$want
        else
            base=$((20000 + ($$ % 200) * 20))
            tries=0
            while cm_port_block_taken "$base" || ! cm_ports_free "$base"; do
                tries=$((tries + 1))
                [ "$tries" -lt 200 ] || cm_die "no free block of $CM_PORT_SPAN ports found"
                base=$((base + 20))
                [ "$base" -lt 24000 ] || base=20000
            done
        fi
        cm_write_ports "$base"
        ln -sfn "$D" "$CM_PORT_REG/$base"
    ) 9>"$CM_PORT_REG/.lock"
}

# cm_unregister_ports: forgets this stack's block (when its folder is removed).
cm_unregister_ports() {
    local link="$CM_PORT_REG/${BASEPORT:-none}"
    if [ -L "$link" ] && [ "$(readlink "$link")" = "$D" ]; then rm -f "$link"; fi
}

# cm_write_ports BASE: stores PORT_<NAME> variables in DIR/ports.
cm_write_ports() {
    local base=$1 i=0 name
    {
        echo "# ports of the test stack in $D (written once by start.sh, reused)"
        echo "BASEPORT=$base"
        for name in $CM_PORT_NAMES; do
            echo "PORT_$name=$((base + i))"
            i=$((i + 1))
        done
    } >"$CM_PORTS_FILE.tmp"
    mv "$CM_PORTS_FILE.tmp" "$CM_PORTS_FILE"
}

# cm_wait_listen SECONDS PORT...: waits until every port listens.
cm_wait_listen() {
    local n=$(( $1 * 10 )) p missing used
    shift
    while :; do
        used=$(cm_listening_ports)
        missing=
        for p in "$@"; do
            grep -qx "$p" <<<"$used" || missing="$missing $p"
        done
        [ -z "$missing" ] && return 0
        n=$((n - 1))
        [ "$n" -gt 0 ] || { cm_log "ports not listening:$missing"; return 1; }
        sleep 0.1
    done
}

# cm_wait_closed SECONDS PORT...: waits until no port listens any more.
cm_wait_closed() {
    local n=$(( $1 * 10 )) p busy used
    shift
    while :; do
        used=$(cm_listening_ports)
        busy=
        for p in "$@"; do
            grep -qx "$p" <<<"$used" && busy="$busy $p"
        done
        [ -z "$busy" ] && return 0
        n=$((n - 1))
        [ "$n" -gt 0 ] || { cm_log "ports still listening:$busy"; return 1; }
        sleep 0.1
    done
}

cm_tail_log() {
    local f=$1
    cm_log "---- last lines of $f ----"
    if [ -r "$f" ]; then tail -n 30 "$f" >&2; else cm_log "(no such file)"; fi
    cm_log "----"
}

# ------------------------------------------------------------ service state

cm_pg_pid() { cm_read_pid "$PG_DATA/postmaster.pid"; }
cm_dovecot_pid() { cm_read_pid "$DC_RUN/master.pid"; }
cm_postfix_pid() { cm_read_pid "$PF_QUEUE/pid/master.pid"; }

cm_pg_running() { cm_alive "$(cm_pg_pid)" postgres; }
cm_dovecot_running() { cm_alive "$(cm_dovecot_pid)" dovecot; }
cm_postfix_running() { cm_alive "$(cm_postfix_pid)" master; }

# ----------------------------------------------------------------- accounts

cm_ensure_vmail_user() {
    cm_is_root || return 0
    if ! getent passwd "$CM_VMAIL_USER" >/dev/null; then
        # Another stack may create it at the same moment: accept that.
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$CM_VMAIL_USER" 2>/dev/null ||
            getent passwd "$CM_VMAIL_USER" >/dev/null ||
            cm_die "cannot create system user $CM_VMAIL_USER"
    fi
}

# cm_maildir USER [FOLDER] -> path of that Maildir folder (LAYOUT=fs, INBOX
# in Maildir/INBOX, "/" separates levels: Archive/2024 -> Maildir/Archive/2024).
cm_maildir() {
    local user=${1%%@*} folder=${2:-INBOX}
    case "$folder" in INBOX|inbox|Inbox) folder=INBOX ;; esac
    printf '%s/%s\n' "$MAIL_ROOT/$CM_MAIL_DOMAIN/$user/Maildir" "$folder"
}

# cm_make_folder USER FOLDER: creates cur/new/tmp (and parents) owned by the mail user.
cm_make_folder() {
    local dir home
    dir=$(cm_maildir "$1" "$2")
    home=$MAIL_ROOT/$CM_MAIL_DOMAIN/${1%%@*}
    if [ ! -d "$dir/cur" ] || [ ! -d "$dir/new" ] || [ ! -d "$dir/tmp" ]; then
        mkdir -p "$dir/cur" "$dir/new" "$dir/tmp"
        if cm_is_root; then chown -R "$CM_VMAIL_USER:$CM_VMAIL_USER" "$home"; fi
    fi
}

# ------------------------------------------------------------- certificates

# cm_gen_certs: test CA + server cert (localhost, 127.0.0.1) + untrusted self-signed cert.
cm_gen_certs() {
    local t=$D/tls
    [ -s "$t/server.crt" ] && [ -s "$t/untrusted.crt" ] && return 0
    mkdir -p "$t"
    (
        cd "$t"
        umask 022
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.crt -days 3650 -subj "/O=casemail tests/CN=casemail test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj "/O=casemail tests/CN=localhost" 2>/dev/null
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=DNS:localhost,IP:127.0.0.1" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -days 3650 -extfile server.ext -out server.crt 2>/dev/null
        # Untrusted: self-signed, right names (so only the trust check fails).
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout untrusted.key -out untrusted.crt -days 3650 \
            -subj "/O=casemail untrusted/CN=localhost" \
            -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.3" 2>/dev/null
        rm -f server.csr server.ext
        chmod 644 ./*.crt
        chmod 600 ./*.key
    ) || cm_die "certificate generation failed"
}

# --------------------------------------------------------------- PostgreSQL

cm_gen_pg() {
    [ -s "$PG_DATA/PG_VERSION" ] && return 0
    mkdir -p "$D/pg" "$PG_RUN"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    if cm_is_root; then chown -R postgres:postgres "$D/pg"; fi
    chmod 700 "$PG_DATA"
    cm_as_pg "$CM_PGBIN/initdb" -D "$PG_DATA" -A trust -U postgres -E UTF8 --no-locale \
        >"$D/pg/initdb.log" 2>&1 || { cm_tail_log "$D/pg/initdb.log"; cm_die "initdb failed"; }
    cat >>"$PG_DATA/postgresql.conf" <<CONF

# casemail test stack
listen_addresses = '127.0.0.1'
port = $PORT_PG
unix_socket_directories = '$PG_RUN'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
log_min_messages = warning
CONF
    # CM_PG_STATEMENTS=1: per-statement figures (pg_stat_statements) for
    # finding where the database's time goes; off by default, it has a cost.
    if [ "${CM_PG_STATEMENTS:-0}" = 1 ]; then
        printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n" \
            >>"$PG_DATA/postgresql.conf"
    fi
    touch "$D/pg/.needs-db"
}

cm_start_pg() {
    cm_pg_running && return 0
    cm_gen_pg
    mkdir -p "$PG_RUN"
    if cm_is_root; then chown postgres:postgres "$PG_RUN" "$D/pg"; touch "$PG_LOG"; chown postgres:postgres "$PG_LOG"; fi
    # After a crash (kill -9) the old postmaster may linger as a zombie, which
    # postgres takes for a running server: drop its stale lock files.
    local pid
    pid=$(cm_pg_pid)
    if [ -n "$pid" ] && ! cm_alive "$pid" postgres; then
        rm -f "$PG_DATA/postmaster.pid" "$PG_RUN/.s.PGSQL.$PORT_PG.lock" "$PG_RUN/.s.PGSQL.$PORT_PG"
    fi
    cm_as_pg "$CM_PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t 20 -s start >/dev/null 2>&1 ||
        { cm_tail_log "$PG_LOG"; cm_die "PostgreSQL did not start"; }
    if [ -e "$D/pg/.needs-db" ]; then
        psql -X -q -h "$PG_RUN" -p "$PORT_PG" -U postgres -d postgres -v ON_ERROR_STOP=1 \
            -c "CREATE ROLE casemail SUPERUSER LOGIN" \
            -c "CREATE DATABASE casemail OWNER casemail" >/dev/null ||
            cm_die "creating role/database casemail failed"
        rm -f "$D/pg/.needs-db"
    fi
}

cm_stop_pg() {
    local pid
    pid=$(cm_pg_pid)
    cm_alive "$pid" postgres || return 0
    cm_as_pg "$CM_PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 20 -s stop >/dev/null 2>&1 || true
    if ! cm_wait_gone "$pid" postgres 5; then
        # pg_ctl could not do it: SIGINT is PostgreSQL's own "fast shutdown".
        cm_alive "$pid" postgres && kill -INT "$pid" 2>/dev/null || true
        cm_wait_gone "$pid" postgres 15 || cm_log "PostgreSQL pid $pid still running"
    fi
}

# ------------------------------------------------------------------ Dovecot

# Users file: passwd-file format, login name is the full address.
cm_gen_users() {
    [ -s "$DC_USERS" ] && return 0
    local u
    for u in $CM_USERS; do
        printf '%s@%s:{PLAIN}%s-pw-Secret1::::::\n' "$u" "$CM_MAIL_DOMAIN" "$u"
    done >"$DC_USERS.tmp"
    cm_install_users_file "$DC_USERS.tmp"
}

# cm_install_users_file TMPFILE: atomically replaces the users file.
cm_install_users_file() {
    chmod 640 "$1"
    if cm_is_root; then chown root:dovecot "$1"; fi
    mv -f "$1" "$DC_USERS"
}

cm_gen_maildirs() {
    local u f dirs=() new=()
    mkdir -p "$MAIL_ROOT/$CM_MAIL_DOMAIN"
    if cm_is_root; then chown "$CM_VMAIL_USER:$CM_VMAIL_USER" "$MAIL_ROOT" "$MAIL_ROOT/$CM_MAIL_DOMAIN"; fi
    for u in $CM_USERS; do
        [ -d "$(cm_maildir "$u")/cur" ] && continue
        new+=("$MAIL_ROOT/$CM_MAIL_DOMAIN/$u")
        for f in INBOX $CM_FOLDERS; do
            f=$(cm_maildir "$u" "$f")
            dirs+=("$f/cur" "$f/new" "$f/tmp")
        done
    done
    [ ${#new[@]} -gt 0 ] || return 0
    mkdir -p "${dirs[@]}"
    if cm_is_root; then chown -R "$CM_VMAIL_USER:$CM_VMAIL_USER" "${new[@]}"; fi
}

# cm_dovecot_test_services: the service blocks every test Dovecot needs: no
# slow-down after failed logins (see STACK-NOTES), stats open to the mail
# processes.
cm_dovecot_test_services() {
    cat <<'CONF'
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
CONF
}

cm_gen_dovecot() {
    local uid gid
    mkdir -p "$DC_DIR" "$DC_RUN" "$DC_DIR/state" "$DC_DIR/shared"
    # The shared-mailbox dict is written by mail processes (mail user).
    if cm_is_root; then chown "$CM_VMAIL_USER:$CM_VMAIL_USER" "$DC_DIR/shared"; fi
    cm_gen_users
    cm_gen_maildirs
    uid=$(id -u "$CM_VMAIL_USER")
    gid=$(id -g "$CM_VMAIL_USER")
    # Global ACLs (vfile global file: "mailbox identifier rights").
    # Readonly is read-only (lookup+read) for its owner, i.e. for every user.
    cat >"$DC_DIR/global-acl" <<ACL
Readonly owner lr
ACL
    cat >"$DC_DIR/oauth2.conf" <<OAUTH
# Dovecot oauth2 passdb of the test stack (tests/ews/README.md, Token endpoint).
introspection_mode = post
introspection_url = http://127.0.0.1:$PORT_OAUTH/introspect
username_attribute = username
username_format = %Lu
active_attribute = active
active_value = true
force_introspection = yes
OAUTH
    cat >"$DC_CONF.tmp" <<CONF
# Dovecot config of the casemail test stack in $D (generated by tests/stack).
instance_name = casemail-test-$BASEPORT
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $DC_RUN
state_dir = $DC_DIR/state
log_path = $DC_LOG
shutdown_clients = yes
hostname = localhost

ssl = yes
ssl_cert = <$D/tls/server.crt
ssl_key = <$D/tls/server.key
ssl_min_protocol = TLSv1.2

# Plain logins are allowed on the plain listeners: the tests check clients.
disable_plaintext_auth = no
# xoauth2/oauthbearer: bearer tokens checked by the oauth2 passdb below.
auth_mechanisms = plain login xoauth2 oauthbearer
auth_username_format = %Lu
# No slow-down after failed logins (see STACK-NOTES).
auth_failure_delay = 0

first_valid_uid = $uid
last_valid_uid = $uid
first_valid_gid = $gid
mail_uid = $uid
mail_gid = $gid
mail_home = $MAIL_ROOT/%d/%n
# INBOX in its own folder: the Maildir root is no mailbox (else a shared
# user's INBOX is listed as "shared/bob" instead of "shared/bob/INBOX").
mail_location = maildir:~/Maildir:LAYOUT=fs:INBOX=~/Maildir/INBOX
# test servers: no fsync (as PostgreSQL's fsync=off above); speed, not durability
mail_fsync = never
mail_plugins = \$mail_plugins acl
lmtp_save_to_detail_mailbox = no
postmaster_address = postmaster@$CM_MAIL_DOMAIN

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu $DC_USERS
}
# OAuth2 bearer tokens (XOAUTH2, OAUTHBEARER; also SMTP AUTH through Postfix),
# introspected at the sign-in stand-in a test runs on port $PORT_OAUTH.
# Only for those mechanisms, so password logins never wait on it.
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DC_DIR/oauth2.conf
}
userdb {
  driver = passwd-file
  args = username_format=%Lu $DC_USERS
  default_fields = uid=$uid gid=$gid home=$MAIL_ROOT/%d/%n
}

namespace inbox {
  type = private
  inbox = yes
  separator = /
  prefix =
  mailbox Processed {
    auto = subscribe
  }
  mailbox Sent {
    auto = subscribe
    special_use = \\Sent
  }
  mailbox Archive {
    auto = subscribe
    special_use = \\Archive
  }
  mailbox Archive/2024 {
    auto = subscribe
  }
  mailbox Readonly {
    auto = subscribe
  }
}
# Other users' mailboxes shared through ACLs: shared/bob/INBOX.
namespace shared {
  type = shared
  separator = /
  prefix = shared/%%n/
  location = maildir:%%h/Maildir:LAYOUT=fs:INBOX=%%h/Maildir/INBOX:INDEXPVT=~/shared-pvt/%%n
  subscriptions = no
  list = children
}

plugin {
  acl = vfile:$DC_DIR/global-acl
  acl_shared_dict = file:$DC_DIR/shared/shared-mailboxes.db
}

protocol imap {
  mail_plugins = \$mail_plugins imap_acl
}
protocol lmtp {
  mail_plugins = \$mail_plugins
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT_IMAP
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $PORT_IMAPS
    ssl = yes
  }
  # Plain IMAP that does not offer STARTTLS (see "local 127.0.0.2" below).
  inet_listener imap_notls {
    address = 127.0.0.2
    port = $PORT_IMAP_NOTLS
  }
  # Implicit TLS with a self-signed certificate no client trusts.
  inet_listener imaps_untrusted {
    address = 127.0.0.3
    port = $PORT_IMAPS_UNTRUSTED
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $PORT_LMTP
  }
}
service auth {
  # Postfix SMTP AUTH (smtpd_sasl_type = dovecot)
  inet_listener sasl {
    address = 127.0.0.1
    port = $PORT_AUTH
  }
}
$(cm_dovecot_test_services)

local 127.0.0.2 {
  ssl = no
}
local 127.0.0.3 {
  ssl_cert = <$D/tls/untrusted.crt
  ssl_key = <$D/tls/untrusted.key
}
CONF
    mv -f "$DC_CONF.tmp" "$DC_CONF"
}

cm_dovecot_ports() { echo "$PORT_IMAP $PORT_IMAPS $PORT_IMAP_NOTLS $PORT_IMAPS_UNTRUSTED $PORT_LMTP $PORT_AUTH"; }

cm_start_dovecot() {
    cm_dovecot_running && return 0
    cm_ensure_vmail_user
    cm_gen_dovecot
    # shellcheck disable=SC2046
    cm_wait_closed 10 $(cm_dovecot_ports) || cm_die "Dovecot ports busy"
    # A zombie of a killed master would pass Dovecot's own "already running" check.
    rm -f "$DC_RUN/master.pid"
    dovecot -c "$DC_CONF" 2>>"$DC_LOG" || { cm_tail_log "$DC_LOG"; cm_die "Dovecot did not start"; }
    # shellcheck disable=SC2046
    cm_wait_listen 20 $(cm_dovecot_ports) || { cm_tail_log "$DC_LOG"; cm_die "Dovecot does not listen"; }
    if [ ! -e "$DC_DIR/state/.shared-acl-done" ]; then
        # bob shares his INBOX with alice (lookup+read): alice sees shared/bob/INBOX.
        doveadm -c "$DC_CONF" acl set -u "bob@$CM_MAIL_DOMAIN" INBOX \
            "user=alice@$CM_MAIL_DOMAIN" lookup read >>"$DC_LOG" 2>&1 ||
            { cm_tail_log "$DC_LOG"; cm_die "doveadm acl set failed"; }
        touch "$DC_DIR/state/.shared-acl-done"
    fi
}

cm_stop_dovecot() {
    local pid
    pid=$(cm_dovecot_pid)
    if cm_alive "$pid" dovecot; then
        kill -TERM "$pid" 2>/dev/null || true
        cm_wait_gone "$pid" dovecot 20 || cm_log "Dovecot pid $pid still running"
    fi
    # Children may hold the listening sockets a moment longer.
    # shellcheck disable=SC2046
    cm_wait_closed 10 $(cm_dovecot_ports) || true
}

# ------------------------------------------------------------------ Postfix

cm_gen_postfix() {
    mkdir -p "$PF_DIR" "$PF_QUEUE" "$PF_DATA"
    if cm_is_root; then chown postfix:postfix "$PF_DATA"; fi
    # Every recipient of @example.test is accepted; Dovecot's LMTP decides
    # whether the user exists (unknown users bounce to the sender).
    cat >"$PF_DIR/vmailbox.regexp" <<'MAP'
/@example\.test$/ OK
MAP
    # Every address outside example.test is delivered to the sink mailbox.
    cat >"$PF_DIR/valias.regexp" <<'MAP'
!/@example\.test$/ sink@example.test
MAP
    # RCPT checks: reject.test refuses permanently; every other envelope
    # recipient (Bcc included) is recorded in an X-Envelope-To header.
    cat >"$PF_DIR/rcpt_access.regexp" <<'MAP'
/@reject\.test$/ 550 5.1.1 Recipient rejected by the casemail test stack
/^(.+)$/ PREPEND X-Envelope-To: $1
MAP
    cat >"$PF_DIR/main.cf" <<CONF
# Postfix main.cf of the casemail test stack in $D (generated by tests/stack).
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF_DATA
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-cm$BASEPORT
maillog_file = $PF_LOG
maillog_file_prefixes = $D

myhostname = localhost
mydomain = test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
biff = no
append_dot_mydomain = no
smtpd_banner = \$myhostname ESMTP casemail test stack

# No DNS anywhere: all mail ends in Dovecot over LMTP.
smtp_host_lookup = native
lmtp_host_lookup = native
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
virtual_mailbox_domains = $CM_MAIL_DOMAIN
virtual_mailbox_maps = regexp:$PF_DIR/vmailbox.regexp
virtual_alias_maps = regexp:$PF_DIR/valias.regexp
# The catch-all regexp must not make every domain a virtual alias domain.
virtual_alias_domains =
virtual_transport = lmtp:inet:127.0.0.1:$PORT_LMTP
default_transport = error:outside mail is not delivered by the test stack
relay_transport = error:outside mail is not delivered by the test stack

message_size_limit = 52428800
mailbox_size_limit = 0
# Retry soon when Dovecot was stopped by a fault test.
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 30s
delay_warning_time = 0
smtpd_client_connection_count_limit = 0

smtpd_tls_chain_files = $D/tls/server.key, $D/tls/server.crt
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 0
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:$PORT_AUTH
broken_sasl_auth_clients = no
smtp_tls_security_level = none
lmtp_tls_security_level = none

cm_rcpt_checks = check_recipient_access regexp:$PF_DIR/rcpt_access.regexp
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = \$cm_rcpt_checks
# Used by the submission and smtps listeners (AUTH required).
cm_auth_relay = permit_sasl_authenticated, reject
cm_auth_recipient = \$cm_rcpt_checks, permit_sasl_authenticated, reject
CONF
    cat >"$PF_DIR/master.cf" <<CONF
# Postfix master.cf of the casemail test stack (no chroot anywhere).
# service type  private unpriv  chroot  wakeup  maxproc command
# (a) SMTP: STARTTLS offered, AUTH only after TLS, relays for 127.0.0.0/8.
127.0.0.1:$PORT_SMTP inet n - n - - smtpd
# (b) submission: TLS required (STARTTLS), AUTH required.
127.0.0.1:$PORT_SUBMISSION inet n - n - - smtpd
  -o syslog_name=postfix-cm$BASEPORT/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=\$cm_auth_relay
  -o smtpd_recipient_restrictions=\$cm_auth_recipient
# (c) smtps: implicit TLS, AUTH required.
127.0.0.1:$PORT_SMTPS inet n - n - - smtpd
  -o syslog_name=postfix-cm$BASEPORT/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_relay_restrictions=\$cm_auth_relay
  -o smtpd_recipient_restrictions=\$cm_auth_recipient
# (d) no TLS: STARTTLS not offered, AUTH not offered; relays for 127.0.0.0/8.
127.0.0.1:$PORT_SMTP_NOTLS inet n - n - - smtpd
  -o syslog_name=postfix-cm$BASEPORT/notls
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=no
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
}

cm_postfix_ports() { echo "$PORT_SMTP $PORT_SUBMISSION $PORT_SMTPS $PORT_SMTP_NOTLS"; }

cm_start_postfix() {
    cm_postfix_running && return 0
    cm_gen_postfix
    # shellcheck disable=SC2046
    cm_wait_closed 10 $(cm_postfix_ports) || cm_die "Postfix ports busy"
    # "postfix check" creates the queue folders (0.4 s); quick-start then skips
    # postfix-script's slow permission scan (2-3 s) that "start" would run.
    postfix -c "$PF_DIR" check >>"$D/postfix/start.log" 2>&1 ||
        { cm_tail_log "$D/postfix/start.log"; cm_tail_log "$PF_LOG"; cm_die "postfix check failed"; }
    touch "$PF_QUEUE/quick-start"
    postfix -c "$PF_DIR" start >>"$D/postfix/start.log" 2>&1 ||
        { cm_tail_log "$D/postfix/start.log"; cm_tail_log "$PF_LOG"; cm_die "Postfix did not start"; }
    # shellcheck disable=SC2046
    cm_wait_listen 20 $(cm_postfix_ports) ||
        { cm_tail_log "$D/postfix/start.log"; cm_tail_log "$PF_LOG"; cm_die "Postfix does not listen"; }
}

cm_stop_postfix() {
    local pid
    pid=$(cm_postfix_pid)
    if cm_alive "$pid" master; then
        postfix -c "$PF_DIR" stop >>"$D/postfix/start.log" 2>&1 || true
        if ! cm_wait_gone "$pid" master 15; then
            # postfix stop failed to reach it: stop the master by its own pid.
            cm_alive "$pid" master && kill -TERM "$pid" 2>/dev/null || true
            cm_wait_gone "$pid" master 5 || cm_log "Postfix master pid $pid still running"
        fi
    fi
    # shellcheck disable=SC2046
    cm_wait_closed 10 $(cm_postfix_ports) || true
}

# ---------------------------------------------------------------------- env

cm_write_env() {
    cat >"$D/env.tmp" <<ENV
# Test stack in $D - source this file. Written by tests/stack/start.sh.
export CM_STACK_DIR='$D'
export CM_CA_FILE='$D/tls/ca.crt'
export CM_HOST=127.0.0.1
export CM_PG_HOST='$PG_RUN'
export CM_PG_PORT=$PORT_PG
export CM_DB='host=$PG_RUN port=$PORT_PG dbname=casemail user=casemail'
export CM_DB_TCP='host=127.0.0.1 port=$PORT_PG dbname=casemail user=casemail'
export CM_IMAP_PORT=$PORT_IMAP
export CM_IMAPS_PORT=$PORT_IMAPS
export CM_IMAP_NOTLS_HOST=127.0.0.2
export CM_IMAP_NOTLS_PORT=$PORT_IMAP_NOTLS
export CM_IMAPS_UNTRUSTED_HOST=127.0.0.3
export CM_IMAPS_UNTRUSTED_PORT=$PORT_IMAPS_UNTRUSTED
export CM_LMTP_PORT=$PORT_LMTP
export CM_SMTP_PORT=$PORT_SMTP
export CM_SUBMISSION_PORT=$PORT_SUBMISSION
export CM_SMTPS_PORT=$PORT_SMTPS
export CM_SMTP_NOTLS_PORT=$PORT_SMTP_NOTLS
export CM_OAUTH_PORT=$PORT_OAUTH
export CM_MAIL_DOMAIN=$CM_MAIL_DOMAIN
export CM_USERS='$CM_USERS'
export CM_DOVECOT_CONF='$DC_CONF'
export CM_DOVECOT_LOG='$DC_LOG'
export CM_POSTFIX_DIR='$PF_DIR'
export CM_POSTFIX_QUEUE='$PF_QUEUE'
export CM_POSTFIX_LOG='$PF_LOG'
export CM_PG_LOG='$PG_LOG'
ENV
    mv -f "$D/env.tmp" "$D/env"
}

cm_summary() {
    printf 'stack %s: pg %s, imap %s, imaps %s, imap-notls 127.0.0.2:%s, imaps-untrusted 127.0.0.3:%s, lmtp %s, smtp %s, submission %s, smtps %s, smtp-notls %s (source %s/env)\n' \
        "$D" "$PORT_PG" "$PORT_IMAP" "$PORT_IMAPS" "$PORT_IMAP_NOTLS" "$PORT_IMAPS_UNTRUSTED" \
        "$PORT_LMTP" "$PORT_SMTP" "$PORT_SUBMISSION" "$PORT_SMTPS" "$PORT_SMTP_NOTLS" "$D"
}

# cm_user_addr USER -> full login address (alice -> alice@example.test)
cm_user_addr() {
    case "$1" in
        *@*) printf '%s\n' "$1" | tr '[:upper:]' '[:lower:]' ;;
        *) printf '%s@%s\n' "$1" "$CM_MAIL_DOMAIN" | tr '[:upper:]' '[:lower:]' ;;
    esac
}

# cm_imap_login_ok USER PASSWORD: one IMAP login (plain port, 3 s max).
cm_imap_login_ok() {
    curl -s --max-time 3 "imap://127.0.0.1:$PORT_IMAP/" --user "$1:$2" -X NOOP >/dev/null 2>&1
}
