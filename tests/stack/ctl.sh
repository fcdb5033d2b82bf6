#!/usr/bin/env bash
# tests/stack/ctl.sh - stop or start one service of the test stack in DIR
# (for fault tests), keeping its ports and state.
#
# Usage: tests/stack/ctl.sh DIR stop|start|status pg|dovecot|postfix
# status prints "running" or "stopped" (exit 0 / 3).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -eq 3 ] || cm_die "usage: $0 DIR stop|start|status pg|dovecot|postfix"
cm_load "$1"
action=$2
svc=$3
case "$svc" in pg|dovecot|postfix) ;; *) cm_die "unknown service: $svc (pg|dovecot|postfix)" ;; esac
case "$action" in
    start)
        [ "$svc" = pg ] || cm_gen_certs
        "cm_start_$svc"
        # Postfix's smtpd processes keep their connection to Dovecot's
        # authentication service: after a Dovecot restart each would
        # answer its next AUTH "454 Connection lost to authentication
        # server" once. A reload replaces them, as an operator would.
        if [ "$svc" = dovecot ] && cm_postfix_running; then
            postfix -c "$PF_DIR" reload >>"$D/postfix/start.log" 2>&1 || true
        fi
        ;;
    stop) "cm_stop_$svc" ;;
    status)
        if "cm_${svc}_running"; then echo running; else echo stopped; exit 3; fi
        ;;
    *) cm_die "unknown action: $action (stop|start|status)" ;;
esac
