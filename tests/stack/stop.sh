#!/usr/bin/env bash
# tests/stack/stop.sh - stop the test stack started by start.sh in DIR.
#
# Usage: tests/stack/stop.sh DIR
# Stops Postfix, Dovecot and PostgreSQL of that DIR only (by the pids in
# their own pid files, after checking the process name), waits until they are
# gone or zombies. State is kept: start.sh DIR starts it again.
# Exits 0 when already stopped or when DIR holds no stack.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ $# -eq 1 ] || cm_die "usage: $0 DIR"
cm_setup_dir "$1"
[ -f "$CM_PORTS_FILE" ] || exit 0
cm_load "$D"
cm_stop_postfix
cm_stop_dovecot
cm_stop_pg
