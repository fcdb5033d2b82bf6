#!/usr/bin/env bash
# tests/ews/stop.sh - stop the stand-in started by tests/ews/start.sh DIR.
# Usage: tests/ews/stop.sh DIR      (EWS_NAME as for start.sh)
# Sends SIGTERM to the pid in DIR/$EWS_NAME/pid after checking that it is
# python3 running standin.py; waits up to 5 s (a zombie counts as stopped).
# Exits 0 when nothing runs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 1; }
# shellcheck source=../stack/lib.sh
. "$top/tests/stack/lib.sh"
cm_setup_dir "$1"
name=${EWS_NAME:-ews}
state=$D/$name
pid=$(cm_read_pid "$state/pid")
[ -n "$pid" ] || exit 0
# ews_is_standin PID: PID runs (not a zombie) and is python running standin.py
ews_is_standin() {
    local st
    st=$(cm_proc_state "$1")
    [ -n "$st" ] && [ "${st#* }" != "Z" ] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "standin\.py"
}
# ews_wait_gone PID SECONDS
ews_wait_gone() {
    local n=$(( $2 * 10 ))
    while ews_is_standin "$1"; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.1
    done
}
if ews_is_standin "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! ews_wait_gone "$pid" 5; then
        kill -KILL "$pid" 2>/dev/null || true
        ews_wait_gone "$pid" 2 || cm_die "stand-in $pid does not stop"
    fi
fi
rm -f "$state/pid"
