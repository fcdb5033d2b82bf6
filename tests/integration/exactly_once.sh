#!/usr/bin/env bash
# tests/integration/exactly_once.sh: 2,000 messages, exactly one incident
# each, while stages die (issue 3, "Proven by make test" 4; DESIGN.md
# invariants 1-3): the fetcher is killed with SIGKILL in the middle of the
# ingest (the parsers held meanwhile), then one parser in the middle of
# the parsing (let run in short slices, so work is pending whatever the
# machine's speed), then both parsers at once; the router restarts them. At the end: 2,000 incidents, each opened
# by its own message, every Message-ID stored once, nothing left `fetched`.
# Also the after-fetch actions: `seen` flags the messages \Seen, `move`
# moves them to the processed folder. Users: u06, u07.
. "$CM_TOP/tests/lib.sh"
export CASEMAIL_PARSERS=2
cm_start || exit 1

N=2000
T=$CM_WORK/$CM_TEST.d
mkdir -p "$T"
CORPUS=$CM_TOP/../shared/corpus/hunnysoft
[ -d "$CORPUS" ] || CORPUS=${CM_CORPUS:-}
[ -d "$CORPUS" ] || { not_ok "corpus found" "set CM_CORPUS"; exit 1; }
FILL=("$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR")

# imap USER REQUEST [FOLDER]: one IMAP command through curl (single-line answers).
imap() {
    curl -s --max-time 20 --cacert "$CM_CA_FILE" -u "$1@$CM_MAIL_DOMAIN:$1-pw-Secret1" \
        "imaps://localhost:$CM_IMAPS_PORT/${3:-}" -X "$2" | tr -d '\r'
}
# unseen USER: number of UNSEEN messages in INBOX.
unseen() { imap "$1" "SEARCH UNSEEN" INBOX | sed -n 's/^\* SEARCH//p' | wc -w; }
# messages USER FOLDER: STATUS MESSAGES of a folder.
messages() { imap "$1" "STATUS $2 (MESSAGES)" | sed -n 's/.*(MESSAGES \([0-9]*\)).*/\1/p'; }
stored() { sql "SELECT count(*) FROM messages WHERE route_id = (SELECT id FROM routes WHERE name = '$1')"; }
parsed() { sql "SELECT count(*) FROM messages WHERE state <> 'fetched' AND route_id = (SELECT id FROM routes WHERE name = '$1')"; }
# at_least LIMIT CMD...: polls (every 20 ms) until the number CMD prints reaches LIMIT.
at_least() {
    local limit=$1 end=$(( $(date +%s) + 120 )) v; shift
    while [ "$(date +%s)" -lt $end ]; do
        v=$("$@")
        [ "${v:-0}" -ge "$limit" ] && { echo "$v"; return 0; }
        sleep 0.02
    done
    echo "${v:-0}"; return 1
}
# restarted KIND OLD-PIDS COUNT: COUNT live stages of KIND, none of OLD-PIDS among them.
restarted() {
    local now p
    now=$(stage_pids "$1")
    [ "$(wc -w <<<"$now")" = "$3" ] || return 1
    for p in $2; do case " $now " in *" $p "*) return 1 ;; esac; done
}

# N messages now, and EXTRA more kept back for step 3 (same numbering)
EXTRA=300
python3 "$CM_TOP/tests/tools/mkmail.py" bulk "$((N + EXTRA))" "$T/bulk" --corpus "$CORPUS" --prefix eo >/dev/null
mkdir -p "$T/extra"
ls "$T/bulk" | sort | tail -n "$EXTRA" | while read -r f; do mv "$T/bulk/$f" "$T/extra/"; done
"${FILL[@]}" u06 INBOX -d "$T/bulk" >/dev/null
check_eq "the mailbox holds $N unseen messages before the start" "$N" "$(unseen u06)"
wait_until 20 eval '[ "$(stage_pids parser | wc -w)" = 2 ]'
check_eq "two parser stages are alive (CASEMAIL_PARSERS=2)" 2 "$(stage_pids parser | wc -w)"

# The parsers are held (SIGSTOP) while the fetcher stores: step 2 then
# finds every message waiting, however fast this machine parses.
pp=$(stage_pids parser)
kill -STOP $pp 2>/dev/null
route_add eo u06 --kind ingest >/dev/null
"$CM" route start eo >/dev/null

# 1. the fetcher, in the middle of the ingest
old=$(stage_pids fetcher)
at=$(at_least 300 stored eo)
kill -9 $old 2>/dev/null
if [ "$at" -lt "$N" ]; then ok "fetcher (pid $old) killed with SIGKILL mid-ingest, at $at of $N stored"
else not_ok "fetcher killed mid-ingest" "all $N were stored before the kill"; fi
if wait_until 30 restarted fetcher "$old" 1; then ok "the router restarts the fetcher"
else not_ok "the router restarts the fetcher" "fetchers: $(stage_pids fetcher)"; fi
# The pass over two lanes acknowledges at its end, so the killed fetcher
# left all it had committed unacknowledged; the new one acknowledges
# every one of them after its login (route_cursors.ack_from), not just
# the newest batch. (That all end \Seen is checked below.)
reack() {
    grep -ho "acknowledging [0-9]* messages a pass committed and left unacknowledged" \
        "$CASEMAIL_HOME"/log/fetcher-*.log | head -1 | cut -d' ' -f2
}
wait_until 30 eval '[ -n "$(reack)" ]'
if [ "$(reack)" -ge "$at" ] 2>/dev/null; then
    ok "after its login the new fetcher acknowledges the $(reack) messages the killed pass committed (at least $at)"
else not_ok "the new fetcher acknowledges what the killed pass committed" "log: '$(reack)', $at were stored"; fi

# 2. one parser, in the middle of the parsing: all N stored, the other
# parser still held, the victim runs in slices of 10 ms (stopped between
# them, wherever it is: inside a claim's transaction or not) until a third
# is parsed, then is killed with SIGKILL as it stands
at_least "$N" stored eo >/dev/null
victim=${pp%% *}
others=${pp#"$victim"}
at=0
for _ in $(seq 1 3000); do
    kill -CONT "$victim" 2>/dev/null; sleep 0.01; kill -STOP "$victim" 2>/dev/null
    at=$(parsed eo)
    [ "${at:-0}" -ge $((N / 3)) ] && break
done
kill -9 "$victim" 2>/dev/null
kill -CONT $others 2>/dev/null
if [ "${at:-0}" -gt 0 ] && [ "$at" -lt "$N" ]; then
    ok "parser (pid $victim) killed with SIGKILL mid-parse, at $at of $N parsed"
else not_ok "parser killed mid-parse" "$at of $N parsed at the kill"; fi
wait_until 30 restarted parser "$victim" 2 || not_ok "the router restarts the parser" "parsers: $(stage_pids parser)"

# 3. both parsers at once, with work pending whatever the speed: freeze
# them (possibly inside a transaction), let EXTRA more messages arrive,
# then kill both
pp=$(stage_pids parser)
kill -STOP $pp 2>/dev/null
"${FILL[@]}" u06 INBOX -d "$T/extra" >/dev/null
N=$((N + EXTRA))
wait_until 60 eval '[ "$(stored eo)" -gt $((N - EXTRA)) ]'
at=$(parsed eo)
kill -9 $pp 2>/dev/null
if [ "$at" -lt "$N" ]; then ok "both parsers ($pp) killed at once, at $at of $N parsed"
else not_ok "both parsers killed mid-parse" "all $N were parsed before the kill"; fi
if wait_until 30 restarted parser "$pp" 2; then ok "the router restarts both parsers"
else not_ok "the router restarts both parsers" "parsers: $(stage_pids parser)"; fi

done_all() { [ "$(stored eo)" = "$N" ] && [ "$(parsed eo)" = "$N" ]; }
wait_until 180 done_all || not_ok "all $N messages stored and parsed" "stored $(stored eo), parsed $(parsed eo)"

R="route_id = (SELECT id FROM routes WHERE name = 'eo')"
check_eq "no message left fetched" 0 "$(sql "SELECT count(*) FROM messages WHERE $R AND state = 'fetched'")"
check_eq "no message rejected" 0 "$(sql "SELECT count(*) FROM messages WHERE $R AND state = 'rejected'")"
check_eq "exactly $N messages stored" "$N" "$(stored eo)"
check_eq "each Message-ID stored exactly once" "$N $N" \
    "$(sql "SELECT count(DISTINCT message_id) || ' ' || count(*) FROM messages WHERE $R")"
check_eq "none missing: Message-IDs eo.0 .. eo.$((N - 1))" "$N" \
    "$(sql "SELECT count(*) FROM generate_series(0, $N - 1) g JOIN messages m ON m.$R
            AND m.message_id = 'eo.' || g || '@bench.test'")"
check_eq "exactly $N incidents" "$N" "$(sql "SELECT count(*) FROM incidents WHERE $R")"
check_eq "each incident opened by its own message" "$N" \
    "$(sql "SELECT count(DISTINCT source_message) FROM incidents WHERE $R")"
check_eq "each message points at the incident it opened" "$N" \
    "$(sql "SELECT count(*) FROM messages m JOIN incidents i ON i.id = m.incident_id AND i.source_message = m.id WHERE m.$R")"
check_eq "one timeline entry per message" "$N $N" \
    "$(sql "SELECT count(DISTINCT t.inbound_id) || ' ' || count(*) FROM timeline t JOIN incidents i ON i.id = t.incident_id WHERE i.$R")"
check_eq "two parser stages alive at the end" 2 "$(stage_pids parser | wc -w)"
# the first pass (and the one after the fetcher's restart) ran over two
# mailbox sessions (fetcher/lanes.c), whose batches commit in any order:
# the cursor still ends at the folder's last UID, past nothing uncommitted
check_contains "the fetcher fetched over two mailbox sessions" \
    "messages over 2 mailbox sessions" "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"
check_eq "the route's cursor is the last stored UID" \
    "$(sql "SELECT max(uid) FROM messages WHERE $R")" \
    "$(sql "SELECT last_uid FROM route_cursors WHERE $R")"
check_eq "route eo is RUNNING" RUNNING "$(route_status eo)"

# after-fetch seen (the default): no message left unseen in the mailbox
wait_until 30 eval '[ "$(unseen u06)" = 0 ]'
check_eq "after-fetch seen: SEARCH UNSEEN finds none of the $N" 0 "$(unseen u06)"
check_eq "after-fetch seen: the messages stay in INBOX" "$N" "$(messages u06 INBOX)"

# after-fetch move: INBOX emptied into Processed. 600 messages: a pass
# over two lanes, all moved at its end
M=600
mkdir -p "$T/move"
cp "$T"/bulk/001[0-5]??.eml "$T/move/"
"${FILL[@]}" u07 INBOX -d "$T/move" >/dev/null
check_eq "move: INBOX holds $M before the start" "$M" "$(messages u07 INBOX)"
route_add mv u07 --kind ingest --after-fetch move --processed-folder Processed >/dev/null
"$CM" route start mv >/dev/null
moved() { [ "$(messages u07 INBOX)" = 0 ] && [ "$(messages u07 Processed)" = "$M" ]; }
wait_until 60 moved
check_eq "after-fetch move: INBOX is empty" 0 "$(messages u07 INBOX)"
check_eq "after-fetch move: Processed holds the $M messages" "$M" "$(messages u07 Processed)"
check_eq "after-fetch move: all $M stored once" "$M $M" \
    "$(sql "SELECT count(DISTINCT message_id) || ' ' || count(*) FROM messages WHERE route_id = (SELECT id FROM routes WHERE name = 'mv')")"
check_contains "after-fetch move: the $M came in one pass over two lanes" \
    " mv info: fetching $M messages over 2 mailbox sessions" "$(cat "$CASEMAIL_HOME"/log/fetcher-*.log)"
ack_from() { sql "SELECT ack_from FROM route_cursors WHERE route_id = (SELECT id FROM routes WHERE name = '$1')"; }
wait_until 10 eval '[ -z "$(ack_from mv)" ]'
check_eq "after-fetch move: once moved, nothing is recorded as unacknowledged" "" "$(ack_from mv)"
# The same messages put back into INBOX (copied from Processed): each is
# the copy of a message stored before (same Message-ID and bytes), so no
# row is added, which the acknowledgement after a login would not know
# of; in the pass over two lanes each batch of copies is moved at once.
imap u07 "UID COPY 1:* INBOX" Processed >/dev/null
wait_until 60 eval '[ "$(messages u07 INBOX)" = 0 ] && [ "$(messages u07 Processed)" = $((2 * M)) ]'
check_eq "copies put back: INBOX empty again, Processed holds both sets" "0 $((2 * M))" \
    "$(messages u07 INBOX) $(messages u07 Processed)"
check_eq "copies put back: nothing stored twice" "$M" "$(stored mv)"
check_eq "copies put back: they came in a pass over two lanes too" 2 \
    "$(grep -c " mv info: fetching $M messages over 2 mailbox sessions" "$CASEMAIL_HOME"/log/fetcher-*.log | awk -F: '{s += $NF} END {print s}')"

# A route saved, before route add and set refused it, to move its mail
# into its own folder: a moved message would come back as new mail for
# ever. The fetcher does not run it: FAILED with the reason, nothing
# fetched, nothing moved, until route set names another folder. (Route mv
# again: a mailbox account belongs to one route.)
"$CM" route stop mv >/dev/null
mkdir -p "$T/loop"
cp "$T"/bulk/0000[5-6]?.eml "$T/loop/"
"${FILL[@]}" u07 INBOX -d "$T/loop" >/dev/null
sql "UPDATE routes SET config = jsonb_set(config, '{processed_folder}', '\"inbox\"') WHERE name = 'mv'" >/dev/null
"$CM" route start mv >/dev/null
wait_until 30 status_is mv FAILED
check_eq "a saved route that moves into its own folder is FAILED at its start" FAILED "$(route_status mv)"
check_contains "... the reason names the processed folder" "processed_folder 'inbox' is the route's folder" \
    "$("$CM" route show mv)"
check_eq "... nothing more was fetched" "$M" "$(stored mv)"
check_eq "... nothing was moved: INBOX still holds the 20" 20 "$(messages u07 INBOX)"
"$CM" route set mv --processed-folder Done >/dev/null
wait_until 60 eval '[ "$(messages u07 Done)" = 20 ] && [ "$(stored mv)" = $((M + 20)) ]'
check_eq "once route set names another folder, the route is RUNNING" RUNNING "$(route_status mv)"
check_eq "... and the 20 messages are stored and moved" "$((M + 20)) 20 0" \
    "$(stored mv) $(messages u07 Done) $(messages u07 INBOX)"

# A message committed late with a lower id than the parsers' last claims
# (concurrent fetch transactions commit out of id order), while the
# parsers are busy: claims start after a parser's last claim, yet it must
# be claimed. The parsers are held while L messages are stored, so they
# have work left when the low-id message arrives.
L=1000
python3 "$CM_TOP/tests/tools/mkmail.py" bulk "$L" "$T/late" --corpus "$CORPUS" --prefix late >/dev/null
pp=$(stage_pids parser)
kill -STOP $pp 2>/dev/null
"${FILL[@]}" u06 INBOX -d "$T/late" >/dev/null
at_least $((N + L)) stored eo >/dev/null
# One session watches every 10 ms for the parsers' first claims (their
# hint is then past id 0), commits the low-id message at once and says how
# many messages were still waiting at that moment.
kill -CONT $pp 2>/dev/null
watch=$(sql "DO \$\$
DECLARE w bigint;
BEGIN
    FOR i IN 1..6000 LOOP
        EXIT WHEN (SELECT count(*) FROM messages WHERE $R AND state <> 'fetched') > $N;
        IF i = 6000 THEN
            RAISE EXCEPTION 'the parsers claimed nothing in 60 s';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    INSERT INTO messages (id, route_id, folder, uidvalidity, uid, message_id, raw_sha256, size, raw)
        SELECT 0, route_id, folder, uidvalidity, 0, 'late-low-id@bench.test', 'late', size, raw
        FROM messages WHERE $R ORDER BY id LIMIT 1;
    w := (SELECT count(*) FROM messages WHERE $R AND state = 'fetched' AND id > 0);
    RAISE NOTICE 'waiting=%', w;
END \$\$" 2>&1)
waiting=$(sed -n 's/.*waiting=\([0-9]*\).*/\1/p' <<<"$watch")
if [ "${waiting:-0}" -gt 0 ]; then ok "the low-id message was committed while the parsers had $waiting messages left"
else not_ok "the low-id message was committed while the parsers were busy" "${waiting:+they had finished}${waiting:-$watch}"; fi
wait_until 60 eval '[ "$(parsed eo)" = "$((N + L + 1))" ]'
check_eq "a message committed late with a lower id than the last claims is parsed" parsed \
    "$(sql "SELECT state FROM messages WHERE id = 0")"
check_eq "and every one of the $L newer messages too" "$((N + L + 1))" "$(parsed eo)"

# Lists come a page (1,000) at a time, so the router never holds more:
# the CLI walks every page, in order, each item once (the message with
# id 0 too).
total=$(sql "SELECT count(*) FROM messages")
check_eq "inbox list --json: all $total messages over the pages, in id order, each once" \
    "$(sql "SELECT string_agg(id::text, ' ' ORDER BY id) FROM messages")" \
    "$("$CM" inbox list --json | json '" ".join(str(m["id"]) for m in j["messages"])')"
check_eq "inbox list --route eo --state parsed: every one, as a table" \
    "$(sql "SELECT string_agg(id::text, ' ' ORDER BY id) FROM messages WHERE $R AND state = 'parsed'")" \
    "$("$CM" inbox list --route eo --state parsed | awk 'NR > 1 {print $1}' | paste -sd ' ')"
check_eq "incident list: every incident, in number order, under one header" \
    "NUMBER $(sql "SELECT string_agg('INC-' || number, ' ' ORDER BY number) FROM incidents")" \
    "$("$CM" incident list | awk '{print $1}' | paste -sd ' ')"
check_eq "incident list --json: the same" \
    "$(sql "SELECT string_agg('INC-' || number, ' ' ORDER BY number) FROM incidents")" \
    "$("$CM" incident list --json | json '" ".join(i["number"] for i in j["incidents"])')"
URL=$(cat "$CASEMAIL_HOME/run/api.url"); TOKEN=$(cat "$CASEMAIL_HOME/api.token")
page() { curl -sS -H "Authorization: Bearer $TOKEN" "$URL/v1/inbox?$1" | json "$2"; }
first=$(sql "SELECT string_agg(id::text, ' ' ORDER BY id) FROM (SELECT id FROM messages ORDER BY id LIMIT 1000) x")
check_eq "GET /v1/inbox: the first 1,000 messages, and the key of the last as next" \
    "$first ${first##* }" "$(page "" '" ".join(str(m["id"]) for m in j["messages"]) + " " + str(j["next"])')"
check_eq "?limit=7&after=NEXT: the 7 after it" \
    "$(sql "SELECT string_agg(id::text, ' ' ORDER BY id) FROM (SELECT id FROM messages WHERE id > ${first##* } ORDER BY id LIMIT 7) x")" \
    "$(page "limit=7&after=${first##* }" '" ".join(str(m["id"]) for m in j["messages"])')"
last=$(sql "SELECT max(id) FROM messages")
check_eq "the last page says there is no next" "1 None" \
    "$(page "limit=5&after=$((last - 1))" 'len(j["messages"]), j["next"]' | tr -d ',')"
