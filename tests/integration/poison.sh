#!/usr/bin/env bash
# A poison message: one that kills the parser every time it is parsed (a
# preloaded wrapper of GMime, tests/tools/crashparse.c, sends SIGKILL to
# the parser on a marked Subject). Each claim is counted where the parser's
# death cannot undo it; after two deaths the messages of the batch are
# parsed one at a time, and after four the poison is rejected with the
# reason, its raw bytes kept. The other messages of its batch become
# incidents and the route goes on. User u25.
. "$(dirname "$0")/../lib.sh"
shim=$CM_WORK/crashparse-$$.so
if ! gcc -shared -fPIC -O2 -Wall -o "$shim" "$CM_TOP/tests/tools/crashparse.c" -ldl 2>"$CM_WORK/crashparse.log"; then
    not_ok "the parser-killing wrapper builds" "$(head -5 "$CM_WORK/crashparse.log")"
    exit 0
fi
marker="casemail-poison-$$"
export CM_CRASH_SUBJECT=$marker LD_PRELOAD=$shim CASEMAIL_RESTART_MAX_MS=500
# the sanitizer build: its runtime need not come first among the preloads
case " $(ldd "$CM_BIN/casemail-parser" 2>/dev/null) " in
    *libasan*) export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" ;;
esac
cm_start || exit 1
route_add poison u25 >/dev/null

# six messages in one fill, so the parsers claim them as one batch; the
# poison is the third
src=$CM_WORK/poison-$$
mkdir -p "$src"
for i in 1 2 3 4 5 6; do
    subject="ordinary report $i"
    [ $i = 3 ] && subject="report $i $marker"
    printf 'From: Reporter <reporter@outside.test>\r\nTo: u25@example.test\r\nSubject: %s\r\nMessage-ID: <poison-%s.%s@outside.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody %s.\r\n' \
        "$subject" "$$" "$i" "$i" > "$src/0$i.eml"
done
"$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u25 INBOX -d "$src" >/dev/null
"$CM" route start poison >/dev/null
settled() { [ "$(sql "SELECT count(*) FROM messages WHERE state <> 'fetched'")" = 6 ]; }
if wait_until 120 settled; then ok "all six messages are settled, the poison among them"
else not_ok "all six messages are settled" "$(sql "SELECT id, state, reason FROM messages ORDER BY id" | tr '\n' ' ')"; fi
check_eq "the five ordinary messages became incidents" \
    "ordinary report 1,ordinary report 2,ordinary report 4,ordinary report 5,ordinary report 6" \
    "$(sql "SELECT string_agg(title, ',' ORDER BY title) FROM incidents")"
check_eq "the poison is rejected with the reason, its raw bytes kept" \
    "rejected|the parser stopped 4 times while working on this message; it is kept unparsed" \
    "$(sql "SELECT state, reason FROM messages WHERE position('$marker' in convert_from(raw, 'UTF8')) > 0")"
out=$("$CM" inbox list --state rejected)
check_contains "inbox list shows the rejection and its reason" "the parser stopped 4 times" "$out"
kills=$(grep -c "parser-[0-9]* (pid [0-9]*).*\(signal 9\|killed\|SIGKILL\)" "$CASEMAIL_HOME/log/router.log")
check_eq "the parser died four times, and no more (each death seen by the router)" 4 "$kills"
# nothing is left of the counting once the messages are settled
drained() { [ "$(sql "SELECT count(*) FROM parse_claims")" = 0 ]; }
if wait_until 20 drained; then ok "no count of parser deaths is left behind"
else not_ok "no count of parser deaths is left behind" "$(sql "SELECT * FROM parse_claims" | tr '\n' ' ')"; fi
# the route goes on
deliver u25@example.test "after the poison"
if wait_until 30 sql_at_least 6 "SELECT count(*) FROM incidents"; then ok "mail after the poison becomes an incident"
else not_ok "mail after the poison becomes an incident" "$(sql "SELECT state, count(*) FROM messages GROUP BY 1" | tr '\n' ' ')"; fi
check_eq "the route is still RUNNING" RUNNING "$(route_status poison)"
rm -rf "$src"
