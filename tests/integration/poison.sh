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

# six messages in one fill, committed by the fetcher in one batch, so a
# parser's claim (up to 32) takes them together; the poison is the third
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
# deaths: parsers that ended on SIGKILL, less any the router killed itself
# for missing heartbeats (a slow machine), which are no poison's doing.
# The router logs a death when it reaps the child, on its next turn (up to
# a second after the poison was rejected): wait for it, then count.
rlog=$CASEMAIL_HOME/log/router.log
deaths() {
    local kills lost
    kills=$(grep -o "parser-[0-9]* (pid [0-9]*) killed by signal 9" "$rlog" | grep -o "pid [0-9]*" | sort -u)
    lost=$(grep -o "parser-[0-9]* (pid [0-9]*) stopped heartbeating" "$rlog" | grep -o "pid [0-9]*" | sort -u)
    comm -23 <(echo "$kills" | sed '/^$/d') <(echo "$lost" | sed '/^$/d') | wc -l
}
wait_until 15 eval '[ "$(deaths)" -ge 4 ]'
sleep 1     # a fifth death, had there been one, is logged by now too
check_eq "the parser died four times, and no more (each death seen by the router)" 4 "$(deaths)"
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
# a dead parser's claim whose messages were settled with no parser counting
# it (here: written by hand) is deleted by an idle parser within 10 s
sql "INSERT INTO parse_claims (message_ids) SELECT array_agg(id) FROM messages WHERE state = 'parsed'" >/dev/null
if wait_until 30 drained; then ok "an idle parser deletes a claim whose messages are all settled"
else not_ok "an idle parser deletes a claim whose messages are all settled" "$(sql "SELECT * FROM parse_claims" | tr '\n' ' ')"; fi

# Schema 5 carries the counts of schema 4 (and 6 to 8 follow) (parse_attempts, a row per
# message) over: a message that had killed parsers 4 times is rejected
# with the reason at once, one that had killed a parser once is parsed.
"$CM" down >/dev/null 2>&1
sql "DROP TABLE parse_claims;
     CREATE TABLE parse_attempts (message_id bigint PRIMARY KEY REFERENCES messages ON DELETE CASCADE,
                                  attempts integer NOT NULL DEFAULT 0);
     ALTER TABLE route_cursors DROP COLUMN since_top, DROP COLUMN ack_from, DROP COLUMN ack_gen;
     ALTER TABLE outbox DROP COLUMN delivered, DROP COLUMN refused, DROP COLUMN refusals;
     DELETE FROM schema_version WHERE version >= 5" >/dev/null
carried() {   # carried UID SUBJECT ATTEMPTS: a committed, unparsed message of route poison
    sql "WITH m AS (INSERT INTO messages (route_id, folder, uidvalidity, uid, message_id, raw_sha256, size, raw)
           SELECT id, 'INBOX', 1, $1, '<carried-$1.$$@outside.test>', md5('$1'), 100,
                  convert_to(E'From: r@outside.test\r\nSubject: $2\r\nMessage-ID: <carried-$1.$$@outside.test>\r\n\r\nBody.\r\n', 'UTF8')
           FROM routes WHERE name = 'poison' RETURNING id)
         INSERT INTO parse_attempts SELECT id, $3 FROM m" >/dev/null
}
carried 900001 "carried four" 4
carried 900002 "carried one" 1
carried 900003 "carried three $marker" 3     # kills the parser once more
before=$(deaths)
"$CM" up > "$CM_WORK/$CM_TEST.up2.log" 2>&1 || not_ok "casemail up migrates schema 4 to 9" "$(tail -3 "$CM_WORK/$CM_TEST.up2.log")"
check_eq "casemail up migrated the database to schema version 9" 9 "$(sql "SELECT max(version) FROM schema_version")"
check_eq "parse_attempts is gone" "" "$(sql "SELECT to_regclass('parse_attempts')")"
carried_done() { [ "$(sql "SELECT count(*) FROM messages WHERE uid > 900000 AND state <> 'fetched'")" = 3 ]; }
if wait_until 60 carried_done; then ok "the three carried messages are settled"
else not_ok "the three carried messages are settled" "$(sql "SELECT uid, state, reason FROM messages WHERE uid > 900000" | tr '\n' ' ')"; fi
check_eq "the one with 4 carried deaths is rejected with the reason" \
    "rejected|the parser stopped 4 times while working on this message; it is kept unparsed" \
    "$(sql "SELECT state, reason FROM messages WHERE uid = 900001")"
check_eq "the one with 1 carried death is parsed into an incident" "parsed|carried one" \
    "$(sql "SELECT m.state, i.title FROM messages m JOIN incidents i ON i.id = m.incident_id WHERE m.uid = 900002")"
# a poison with 3 carried deaths needs only one more (4 without the carry)
check_eq "the poison with 3 carried deaths is rejected after one more" \
    "rejected|the parser stopped 4 times while working on this message; it is kept unparsed" \
    "$(sql "SELECT state, reason FROM messages WHERE uid = 900003")"
wait_until 15 eval '[ "$(deaths)" -gt "$before" ]'
sleep 1     # a second death, had there been one, is logged by now too
check_eq "the parser died once more for it, and no more" 1 "$(( $(deaths) - before ))"
if wait_until 20 drained; then ok "no carried count is left behind"
else not_ok "no carried count is left behind" "$(sql "SELECT * FROM parse_claims" | tr '\n' ' ')"; fi

# A parser that died on a message between another claim's snapshot and its
# lock: its try is committed, but the claim began before it, so the count
# the claim read lacks it. The wrapper counts that try right after the
# parser's claim has locked the poison (3 tries before): the parser must
# see 4 and reject it, not parse it and die a fifth time.
"$CM" down >/dev/null 2>&1
sql "WITH m AS (INSERT INTO messages (route_id, folder, uidvalidity, uid, message_id, raw_sha256, size, raw)
       SELECT id, 'INBOX', 1, 900004, '<late-$$@outside.test>', md5('late'), 100,
              convert_to(E'From: r@outside.test\r\nSubject: late try $marker\r\nMessage-ID: <late-$$@outside.test>\r\n\r\nBody.\r\n', 'UTF8')
       FROM routes WHERE name = 'poison' RETURNING id)
     INSERT INTO parse_claims (message_ids) SELECT ARRAY [m.id] FROM m, generate_series (1, 3)" >/dev/null
export CM_LATE_TRY_SUBJECT="late try $marker" CM_LATE_TRY_ONCE=$CM_WORK/$CM_TEST.late-try
rm -f "$CM_LATE_TRY_ONCE"
before=$(deaths)
"$CM" up > "$CM_WORK/$CM_TEST.up2b.log" 2>&1 || not_ok "casemail up for the late try" "$(tail -3 "$CM_WORK/$CM_TEST.up2b.log")"
late_done() { [ "$(sql "SELECT state FROM messages WHERE uid = 900004")" = rejected ]; }
wait_until 60 late_done
check_eq "the wrapper counted the late try (sanity)" "INSERT 0 1" "$(cat "$CM_LATE_TRY_ONCE" 2>/dev/null)"
check_eq "a try counted after the claim began is seen: rejected at 4, no more" \
    "rejected|the parser stopped 4 times while working on this message; it is kept unparsed" \
    "$(sql "SELECT state, reason FROM messages WHERE uid = 900004")"
sleep 1     # a death, had there been one, is logged by now
check_eq "no parser died on it" 0 "$(( $(deaths) - before ))"
unset CM_LATE_TRY_SUBJECT CM_LATE_TRY_ONCE

# The same late try on a message claimed with another one: found by the
# count after the lock, it makes the claim one of the first message only,
# so the poison then dies alone and no death is counted against the other
# (which a claim naming both would have been charged). A trigger keeps
# every claim written.
"$CM" down >/dev/null 2>&1
sql "CREATE TABLE cm_test_claims (ids bigint[]);
     CREATE FUNCTION cm_test_claims () RETURNS trigger LANGUAGE plpgsql AS \$\$
       BEGIN INSERT INTO cm_test_claims VALUES (NEW.message_ids); RETURN NULL; END \$\$;
     CREATE TRIGGER cm_test_claims AFTER INSERT ON parse_claims FOR EACH ROW EXECUTE FUNCTION cm_test_claims ();
     INSERT INTO messages (route_id, folder, uidvalidity, uid, message_id, raw_sha256, size, raw)
       SELECT id, 'INBOX', 1, 900005, '<narrow-a-$$@outside.test>', md5('na'), 100,
              convert_to(E'From: r@outside.test\r\nSubject: innocent\r\nMessage-ID: <narrow-a-$$@outside.test>\r\n\r\nBody.\r\n', 'UTF8')
       FROM routes WHERE name = 'poison'" >/dev/null
sql "WITH m AS (INSERT INTO messages (route_id, folder, uidvalidity, uid, message_id, raw_sha256, size, raw)
       SELECT id, 'INBOX', 1, 900006, '<narrow-b-$$@outside.test>', md5('nb'), 100,
              convert_to(E'From: r@outside.test\r\nSubject: narrow late $marker\r\nMessage-ID: <narrow-b-$$@outside.test>\r\n\r\nBody.\r\n', 'UTF8')
       FROM routes WHERE name = 'poison' RETURNING id)
     INSERT INTO parse_claims (message_ids) SELECT ARRAY [m.id] FROM m" >/dev/null
export CM_LATE_TRY_SUBJECT="narrow late $marker" CM_LATE_TRY_ONCE=$CM_WORK/$CM_TEST.narrow-try
rm -f "$CM_LATE_TRY_ONCE"
before=$(deaths)
"$CM" up > "$CM_WORK/$CM_TEST.up2c.log" 2>&1 || not_ok "casemail up for the narrowed claim" "$(tail -3 "$CM_WORK/$CM_TEST.up2c.log")"
narrow_done() { [ "$(sql "SELECT count(*) FROM messages WHERE uid IN (900005, 900006) AND state <> 'fetched'")" = 2 ]; }
wait_until 60 narrow_done
check_eq "the wrapper counted the late try on the second of two (sanity)" "INSERT 0 1" "$(cat "$CM_LATE_TRY_ONCE" 2>/dev/null)"
check_eq "the other message is parsed, the poison rejected at 4" \
    "900005|parsed| 900006|rejected|the parser stopped 4 times while working on this message; it is kept unparsed" \
    "$(sql "SELECT uid, state, reason FROM messages WHERE uid IN (900005, 900006) ORDER BY uid" | tr '\n' ' ' | sed 's/ $//')"
sleep 1     # a death, had there been one more, is logged by now
check_eq "the poison killed two parsers, alone" 2 "$(( $(deaths) - before ))"
check_eq "the claim that found the late try names the first message only" \
    "$(sql "SELECT '{' || id || '}' FROM messages WHERE uid = 900005")" \
    "$(sql "SELECT string_agg(c.ids::text, ' ') FROM cm_test_claims c, messages a WHERE a.uid = 900005 AND a.id = ANY (c.ids)")"
check_eq "no claim named the poison with another message" 0 \
    "$(sql "SELECT count(*) FROM cm_test_claims c, messages b WHERE b.uid = 900006 AND b.id = ANY (c.ids) AND cardinality (c.ids) > 1")"
sql "DROP TRIGGER cm_test_claims ON parse_claims; DROP FUNCTION cm_test_claims (); DROP TABLE cm_test_claims" >/dev/null
unset CM_LATE_TRY_SUBJECT CM_LATE_TRY_ONCE

# A stage whose main loop is stuck (the wrapper never returns on a marked
# Subject: a call caught in a loop) exits by itself after
# CASEMAIL_WATCHDOG_MS, with code 70, so that whatever runs it starts it
# again (in containers nothing else would). Each stall is a counted try:
# after four the message is rejected. The message is committed before the
# stack starts, so each parser stalls on it as it starts (its first claim
# is in its start), within the router's start grace (8 s with the tests'
# 300 ms heartbeats): no exit is the router's doing.
"$CM" down >/dev/null 2>&1
stall="casemail-stall-$$"
sql "INSERT INTO messages (route_id, folder, uidvalidity, uid, message_id, raw_sha256, size, raw)
     SELECT id, 'INBOX', 1, 900010, 'stall-$$@outside.test', md5('stall'), 100,
            convert_to(E'From: r@outside.test\r\nSubject: report $stall\r\nMessage-ID: <stall-$$@outside.test>\r\n\r\nBody.\r\n', 'UTF8')
     FROM routes WHERE name = 'poison'" >/dev/null
export CM_CRASH_SUBJECT=$stall CM_CRASH_HOW=stall CASEMAIL_WATCHDOG_MS=3000 CASEMAIL_PARSERS=1
from=$(( $(wc -l < "$rlog") + 1 ))    # the router's log from here on
"$CM" up > "$CM_WORK/$CM_TEST.up3.log" 2>&1 || not_ok "casemail up with the stalling wrapper" "$(tail -3 "$CM_WORK/$CM_TEST.up3.log")"
stalled() { [ "$(sql "SELECT state FROM messages WHERE uid = 900010")" = rejected ]; }
if wait_until 90 stalled; then ok "a message that stalls the parser is rejected after four tries"
else not_ok "a message that stalls the parser is rejected after four tries" \
    "$(sql "SELECT state, reason FROM messages WHERE uid = 900010")"; fi
check_eq "its reason counts the four stops" \
    "the parser stopped 4 times while working on this message; it is kept unparsed" \
    "$(sql "SELECT reason FROM messages WHERE uid = 900010")"
wait_until 10 eval '[ "$(tail -n +$from "$rlog" | grep -c "parser-1 (pid [0-9]*) exited with 70")" -ge 4 ]'
check_eq "the parser exited by itself four times, code 70" 4 \
    "$(tail -n +$from "$rlog" | grep -c "parser-1 (pid [0-9]*) exited with 70")"
check_eq "the router killed none of them for silence" 0 \
    "$(tail -n +$from "$rlog" | grep -c "stopped heartbeating\|killed by signal")"
check_contains "the parser said why it exited" "main loop stuck for" "$(cat "$CASEMAIL_HOME"/log/parser-1.log)"

# A batch that takes longer than the watchdog, one message at a time well
# within it (the wrapper holds each marked message 400 ms: ten of them,
# claimed together, take 4 s against a 2 s watchdog and the router's 0.9 s
# of silence): the parser says it is alive between messages, so neither
# the watchdog nor the router takes it for stuck. The messages come after
# the router's start grace, into the running parser's main loop.
"$CM" down >/dev/null 2>&1
slow="casemail-slow-$$"
export CM_CRASH_SUBJECT=$slow CM_CRASH_HOW=slow CM_CRASH_SLOW_MS=400 CASEMAIL_WATCHDOG_MS=2000 CASEMAIL_PARSERS=1
export CM_CRASH_LOG=$CM_WORK/$CM_TEST.slow.log
: > "$CM_CRASH_LOG"
from=$(( $(wc -l < "$rlog") + 1 ))
stuck_before=$(cat "$CASEMAIL_HOME"/log/parser-*.log | grep -c "main loop stuck")
"$CM" up > "$CM_WORK/$CM_TEST.up4.log" 2>&1 || not_ok "casemail up with the slow wrapper" "$(tail -3 "$CM_WORK/$CM_TEST.up4.log")"
# past the router's start grace (10 heartbeats + 5 s from the spawn)
parser_up() { "$CM" stage list --json | json "min([s['uptime_s'] for s in j['stages'] if s['kind'] == 'parser'] or [0])"; }
wait_until 30 eval '[ "$(parser_up)" -ge 9 ]'
sql "INSERT INTO messages (route_id, folder, uidvalidity, uid, message_id, raw_sha256, size, raw)
     SELECT r.id, 'INBOX', 1, 900100 + n, 'slow-' || n || '-$$@outside.test', md5('slow' || n), 100,
            convert_to(E'From: r@outside.test\r\nSubject: report ' || n || ' $slow\r\nMessage-ID: <slow-' || n || '-$$@outside.test>\r\n\r\nBody.\r\n', 'UTF8')
     FROM routes r, generate_series(1, 10) n WHERE r.name = 'poison'" >/dev/null
slow_done() { [ "$(sql "SELECT count(*) FROM messages WHERE uid > 900100 AND uid <= 900110 AND state <> 'fetched'")" = 10 ]; }
wait_until 60 slow_done
check_eq "the wrapper held each of the ten 400 ms" 10 "$(grep -c slow "$CM_CRASH_LOG")"
check_eq "ten slow messages, claimed and committed as one batch, each an incident" "10 10 1" \
    "$(sql "SELECT count(*) FILTER (WHERE state = 'parsed') || ' ' || count(incident_id) || ' ' || count(DISTINCT parsed_at)
            FROM messages WHERE uid > 900100 AND uid <= 900110")"
check_eq "the parser was neither killed nor exited during the 4 s batch" 0 \
    "$(tail -n +$from "$rlog" | grep -c "parser-1 (pid [0-9]*) \(exited\|stopped heartbeating\|killed\)")"
check_eq "its watchdog did not fire" "$stuck_before" \
    "$(cat "$CASEMAIL_HOME"/log/parser-*.log | grep -c "main loop stuck")"

# A message the database refuses at every try (a trigger stands for a
# value the store statement cannot take), in a batch of five: the other
# four become incidents, and it is rejected with the database's words,
# not as a message that stopped the parser.
"$CM" down >/dev/null 2>&1
unset CM_CRASH_SUBJECT CM_CRASH_HOW CM_CRASH_LOG
refuse="casemail-refuse-$$"
sql "CREATE FUNCTION cm_test_refuse () RETURNS trigger LANGUAGE plpgsql AS \$\$
     BEGIN IF NEW.subject LIKE '%$refuse%' THEN
       RAISE EXCEPTION 'cm_test_refuse: this value cannot be stored'; END IF;
     RETURN NEW; END \$\$;
     CREATE TRIGGER cm_test_refuse BEFORE INSERT ON timeline FOR EACH ROW EXECUTE FUNCTION cm_test_refuse ();
     INSERT INTO messages (route_id, folder, uidvalidity, uid, message_id, raw_sha256, size, raw)
     SELECT r.id, 'INBOX', 1, 900200 + n, 'refuse-' || n || '-$$@outside.test', md5('refuse' || n), 100,
            convert_to(E'From: r@outside.test\r\nSubject: report ' || n || CASE WHEN n = 3 THEN ' $refuse' ELSE '' END
                       || E'\r\nMessage-ID: <refuse-' || n || E'-$$@outside.test>\r\n\r\nBody.\r\n', 'UTF8')
     FROM routes r, generate_series(1, 5) n WHERE r.name = 'poison'" >/dev/null
"$CM" up > "$CM_WORK/$CM_TEST.up5.log" 2>&1 || not_ok "casemail up after the trigger" "$(tail -3 "$CM_WORK/$CM_TEST.up5.log")"
refused_done() { [ "$(sql "SELECT count(*) FROM messages WHERE uid > 900200 AND uid <= 900205 AND state <> 'fetched'")" = 5 ]; }
if wait_until 60 refused_done; then ok "a batch with a message the database refuses is settled"
else not_ok "a batch with a message the database refuses is settled" "$(sql "SELECT uid, state FROM messages WHERE uid > 900200" | tr '\n' ' ')"; fi
check_eq "... its other four messages are incidents" 4 \
    "$(sql "SELECT count(incident_id) FROM messages WHERE uid > 900200 AND uid <= 900205 AND state = 'parsed'")"
check_eq "... the refused one is rejected with the database's words" \
    "rejected|the database refused to store this message 4 times; it is kept unparsed: ERROR:  cm_test_refuse: this value cannot be stored" \
    "$(sql "SELECT state, split_part(reason, E'\n', 1) FROM messages WHERE uid = 900203")"
sql "DROP TRIGGER cm_test_refuse ON timeline; DROP FUNCTION cm_test_refuse ()" >/dev/null
