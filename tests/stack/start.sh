#!/usr/bin/env bash
# tests/stack/start.sh - start a private test stack (PostgreSQL 15, Dovecot,
# Postfix, test CA) on loopback high ports, with all state under DIR.
#
# Usage: tests/stack/start.sh DIR [BASEPORT]
#   DIR       folder of the stack; created if missing. Its parents must be
#             traversable by the postgres, dovecot and postfix users (/tmp is).
#   BASEPORT  first of 12 consecutive ports (default: $BASEPORT, or a free
#             block near 20000 + ($$ % 200) * 20). Ports are stored in DIR/ports
#             and reused on every later start.
#
# Already running: changes nothing, prints the summary, exits 0.
# State present but stopped: starts again with the same ports and data.
# Afterwards: `. DIR/env` gives CM_* variables (see lib.sh cm_write_env).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -ge 1 ] && [ $# -le 2 ] || cm_die "usage: $0 DIR [BASEPORT]"
cm_setup_dir "$1"
want_base=${2:-${BASEPORT:-}}

mkdir -p "$D"
chmod 755 "$D"
# Unix socket paths are limited to 107 bytes.
[ ${#D} -le 60 ] || cm_die "DIR path too long for unix sockets (max 60 chars): $D"
if cm_is_root && ! runuser -u postgres -- test -x "$D"; then
    cm_die "$D is not reachable by user postgres (check the parent folders' modes)"
fi

if [ -f "$CM_PORTS_FILE" ]; then
    # shellcheck disable=SC1090
    . "$CM_PORTS_FILE"
    cm_ports_upgrade
    if [ -n "$want_base" ] && [ "$want_base" != "$BASEPORT" ]; then
        cm_log "note: $D already uses base port $BASEPORT; ignoring $want_base"
    fi
    mkdir -p "$CM_PORT_REG"
    [ -L "$CM_PORT_REG/$BASEPORT" ] || ln -sfn "$D" "$CM_PORT_REG/$BASEPORT"
    if cm_pg_running && cm_dovecot_running && cm_postfix_running && [ -f "$D/env" ]; then
        cm_summary
        exit 0
    fi
else
    cm_choose_ports "$want_base"
    # shellcheck disable=SC1090
    . "$CM_PORTS_FILE"
fi

cm_ensure_vmail_user
cm_gen_certs
cm_start_pg
cm_start_dovecot
cm_start_postfix
cm_write_env
cm_summary
