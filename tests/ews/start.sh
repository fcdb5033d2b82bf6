#!/usr/bin/env bash
# tests/ews/start.sh - start the EWS / Microsoft sign-in stand-in (standin.py).
#
# Usage: tests/ews/start.sh DIR [CONFIG [EXTRA STANDIN ARGS...]]
#   DIR     a test stack folder: its TLS files DIR/tls/server.{crt,key} and
#           DIR/tls/ca.crt are used (made with tests/stack/lib.sh's cm_gen_certs
#           when missing, so the stack itself need not run).
#   CONFIG  JSON configuration (default tests/ews/config.json).
#   EXTRA   passed on, e.g. --server-version 2010sp2 --token-lifetime 5
# Environment: EWS_NAME (default "ews") names the instance, so several can run
#   in one DIR: state in DIR/$EWS_NAME/ (pid, ports.json, log), variables in
#   DIR/$EWS_NAME.env.
# Already running (pid alive and is our python): prints the env file, exits 0.
# DIR/$EWS_NAME.env (shell-sourceable):
#   EWS_PORT EWS_HTTP_PORT EWS_TOKEN_PORT EWS_CONTROL_PORT EWS_PID
#   EWS_URL (https .../EWS/Exchange.asmx) EWS_HTTP_URL (plain) TOKEN_URL (authority,
#   https://127.0.0.1:PORT; token endpoint = $TOKEN_URL/<tenant>/oauth2/v2.0/token)
#   INTROSPECT_URL (https, token port) INTROSPECT_HTTP_URL (plain, control port)
#   EWS_CONTROL_URL (http://127.0.0.1:PORT/_control) EWS_CA_FILE EWS_SERVER_VERSION
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
[ $# -ge 1 ] || { echo "usage: $0 DIR [CONFIG [ARGS...]]" >&2; exit 1; }
# shellcheck source=../stack/lib.sh
. "$top/tests/stack/lib.sh"
cm_setup_dir "$1"
shift
config=${1:-$here/config.json}
[ $# -ge 1 ] && shift
name=${EWS_NAME:-ews}
case "$name" in ''|*[!A-Za-z0-9_-]*) cm_die "bad EWS_NAME: $name" ;; esac
state=$D/$name
envf=$D/$name.env
mkdir -p "$D" "$state"
[ -f "$config" ] || cm_die "no config file $config"

# ews_is_standin PID: PID runs (not a zombie) and is python running standin.py
ews_is_standin() {
    local st
    st=$(cm_proc_state "$1")
    [ -n "$st" ] && [ "${st#* }" != "Z" ] || return 1
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "standin\.py"
}
ews_alive() {
    local pid
    pid=$(cm_read_pid "$state/pid")
    [ -n "$pid" ] && ews_is_standin "$pid"
}

if ews_alive && [ -f "$envf" ]; then
    cat "$envf"
    exit 0
fi
cm_gen_certs
rm -f "$state/ports.json" "$state/pid"
# the real interpreter (not a pyenv shim), so $! is the stand-in itself
py=$(python3 -c 'import sys; print(sys.executable)')
"$py" "$here/standin.py" --config "$config" \
    --cert "$D/tls/server.crt" --key "$D/tls/server.key" \
    --state-dir "$state" "$@" </dev/null >>"$state/standin.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    [ -s "$state/ports.json" ] && break
    ews_is_standin "$pid" || { tail -20 "$state/standin.log" >&2; cm_die "stand-in did not start"; }
    sleep 0.1
done
[ -s "$state/ports.json" ] || cm_die "stand-in wrote no ports.json (see $state/standin.log)"
python3 - "$state/ports.json" "$D" "$envf.tmp" <<'PY'
import json, sys
p = json.load(open(sys.argv[1])); d = sys.argv[2]
h = "127.0.0.1"
lines = [
    "# EWS stand-in %s (tests/ews/start.sh)" % d,
    "EWS_PID=%d" % p["pid"],
    "EWS_SERVER_VERSION=%s" % p["server_version"],
    "EWS_PORT=%s" % p.get("ews", ""),
    "EWS_HTTP_PORT=%s" % p.get("ews_http", ""),
    "EWS_TOKEN_PORT=%s" % p.get("token", ""),
    "EWS_CONTROL_PORT=%s" % p.get("control", ""),
    "EWS_URL=https://%s:%s/EWS/Exchange.asmx" % (h, p.get("ews", "")),
    "EWS_HTTP_URL=http://%s:%s/EWS/Exchange.asmx" % (h, p.get("ews_http", "")),
    "TOKEN_URL=https://%s:%s" % (h, p.get("token", "")),
    "INTROSPECT_URL=https://%s:%s/introspect" % (h, p.get("token", "")),
    "INTROSPECT_HTTP_URL=http://%s:%s/introspect" % (h, p.get("control", "")),
    "EWS_CONTROL_URL=http://%s:%s/_control" % (h, p.get("control", "")),
    "EWS_CA_FILE=%s/tls/ca.crt" % d,
]
open(sys.argv[3], "w").write("\n".join("export " + l if not l.startswith("#") else l for l in lines) + "\n")
PY
mv "$envf.tmp" "$envf"
cat "$envf"
