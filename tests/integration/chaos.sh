#!/usr/bin/env bash
# Chaos (DESIGN invariant 3): while a mailbox of CHAOS_N messages is
# ingested and CHAOS_M incident emails are sent, a driver kills a random
# stage with kill -9 every few hundred milliseconds (the router restarts
# it) and restarts PostgreSQL, Dovecot and Postfix once each. At the end:
# incidents = N exactly, none missing, none duplicated; every email sent,
# none lost; duplicates delivered are counted (at-least-once sending).
# make test: N=2000, M=200; make chaos sets larger values. User u22.
. "$(dirname "$0")/../lib.sh"
N=${CHAOS_N:-2000}
M=${CHAOS_M:-200}
RUN=chaos$$
export CASEMAIL_RESTART_MAX_MS=1000 CASEMAIL_RETRY_MAX_MS=1000
export CASEMAIL_SEND_RETRY_BASE_MS=300 CASEMAIL_SEND_MAX_ATTEMPTS=100000
src=$CM_WORK/$RUN-mail
python3 - "$src" "$N" "$RUN" <<'PY'
import os, sys
d, n, run = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(d, exist_ok=True)
for i in range(n):
    with open(os.path.join(d, "%06d.eml" % i), "wb") as f:
        f.write(("From: Reporter %d <reporter%d@outside.test>\r\nTo: u22@example.test\r\n"
                 "Subject: %s message %d\r\nMessage-ID: <%s.%d@outside.test>\r\n"
                 "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n\r\nSuspicious activity %d.\r\n"
                 % (i, i, run, i, run, i, i)).encode())
PY
# The mail arrives in waves over about ten seconds while the driver kills,
# so the chaos overlaps the work however fast the pipeline is.
WAVES=30
for f in "$src"/*.eml; do
    i=${f##*/}; i=$((10#${i%.eml} % WAVES))
    mkdir -p "$src/wave$i"; mv "$f" "$src/wave$i/"
done
cm_start || exit 1
route_add chaos u22 >/dev/null
"$CM" route start chaos >/dev/null
(
    for i in $(seq 0 $((WAVES - 1))); do
        "$CM_TOP/tests/stack/fill.sh" "$CM_STACK_DIR" u22 INBOX -d "$src/wave$i" >/dev/null
        sleep 0.5
    done
) &
feeder=$!

# the driver: random kill -9 of a stage, and one restart of each server
stopfile=$CM_WORK/$RUN.stop
kills=$CM_WORK/$RUN.kills
: > "$kills"
# It goes on past the end of the work until it has killed MIN_KILLS stages
# (at most 60 s more), so a fast pipeline still meets that many kills; the
# checks below run after it stops.
MIN_KILLS=10
(
    t0=$(date +%s)
    done_pg=0 done_dc=0 done_pf=0 stop_at=0
    while :; do
        if [ -e "$stopfile" ]; then
            [ $stop_at = 0 ] && stop_at=$(date +%s)
            [ "$(wc -l < "$kills")" -ge $MIN_KILLS ] && break
            [ $(( $(date +%s) - stop_at )) -ge 60 ] && break
        fi
        sleep "0.$(( RANDOM % 4 + 2 ))"
        pids=($(stage_pids))
        if [ ${#pids[@]} -gt 0 ]; then
            p=${pids[$(( RANDOM % ${#pids[@]} ))]}
            # only our router's children (the stages of this install)
            if [ "$(ps -o ppid= -p "$p" 2>/dev/null | tr -d ' ')" = "$(cat "$CASEMAIL_HOME/run/router.pid")" ]; then
                kill -9 "$p" 2>/dev/null && echo "$p" >> "$kills"
            fi
        fi
        el=$(( $(date +%s) - t0 ))
        if [ $done_pg = 0 ] && [ $el -ge 2 ]; then
            "$CM_TOP/tests/stack/ctl.sh" "$CM_STACK_DIR" stop pg >/dev/null 2>&1; sleep 1
            "$CM_TOP/tests/stack/ctl.sh" "$CM_STACK_DIR" start pg >/dev/null 2>&1; done_pg=1
            echo "# PostgreSQL restarted at ${el}s"
        elif [ $done_dc = 0 ] && [ $el -ge 5 ]; then
            "$CM_TOP/tests/stack/ctl.sh" "$CM_STACK_DIR" stop dovecot >/dev/null 2>&1; sleep 1
            "$CM_TOP/tests/stack/ctl.sh" "$CM_STACK_DIR" start dovecot >/dev/null 2>&1; done_dc=1
            echo "# Dovecot restarted at ${el}s"
        elif [ $done_pf = 0 ] && [ $el -ge 8 ]; then
            "$CM_TOP/tests/stack/ctl.sh" "$CM_STACK_DIR" stop postfix >/dev/null 2>&1; sleep 1
            "$CM_TOP/tests/stack/ctl.sh" "$CM_STACK_DIR" start postfix >/dev/null 2>&1; done_pf=1
            echo "# Postfix restarted at ${el}s"
        fi
    done
) &
driver=$!
trap 'touch "$stopfile"; kill $feeder 2>/dev/null; wait $driver 2>/dev/null; cm_stop' EXIT

# queue M emails, one per incident, as soon as M incidents exist
URL=$(cat "$CASEMAIL_HOME/run/api.url"); TOKEN=$(cat "$CASEMAIL_HOME/api.token")
wait_until 300 sql_at_least "$M" "SELECT count(*) FROM incidents"
queued=0
# incident numbers come from a sequence: a transaction rolled back by a
# kill leaves a gap, so take the numbers that exist
nums=""
wait_until 60 eval 'nums=$(sql "SELECT number FROM incidents ORDER BY number LIMIT $M") && [ "$(echo $nums | wc -w)" -ge "$M" ]'
i=0
for num in $nums; do
    i=$((i + 1))
    body="{\"to\":[\"chaos-$i@outside.test\"],\"subject\":\"$RUN mail $i\",\"body\":\"chaos mail $i\"}"
    for try in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -H "Authorization: Bearer $TOKEN" \
               -X POST "$URL/v1/incidents/INC-$num/email" -d "$body")
        [ "$code" = 201 ] && { queued=$((queued + 1)); break; }
        sleep 0.3
    done
done
check_eq "all $M incident emails queued" "$M" "$queued"

done_all() {
    [ "$(sql "SELECT count(*) FROM messages WHERE route_id IS NOT NULL")" -ge "$N" ] &&
    [ "$(sql "SELECT count(*) FROM messages WHERE state = 'fetched'")" = 0 ] &&
    [ "$(sql "SELECT count(*) FROM outbox WHERE state <> 'sent'")" = 0 ]
}
if wait_until 900 done_all; then ok "ingest and sending finished under chaos"; else not_ok "ingest and sending finished under chaos" "messages $(sql "SELECT state, count(*) FROM messages GROUP BY 1" | tr '\n' ' ') outbox $(sql "SELECT state, count(*) FROM outbox GROUP BY 1" | tr '\n' ' ')"; fi
inflight=$(wc -l < "$kills")
touch "$stopfile"
wait $driver
echo "# stages killed with kill -9: $(wc -l < "$kills"), $inflight of them while the work was in flight"
[ "$(wc -l < "$kills")" -ge $MIN_KILLS ] && ok "the driver killed stages ($(wc -l < "$kills") kills, $inflight during the work)" || not_ok "the driver killed stages" "only $(wc -l < "$kills")"

check_eq "incidents = N exactly" "$N" "$(sql "SELECT count(*) FROM incidents")"
check_eq "every message opened its own incident (distinct sources)" "$N" "$(sql "SELECT count(DISTINCT source_message) FROM incidents")"
check_eq "each Message-ID stored exactly once" "$N" "$(sql "SELECT count(DISTINCT message_id) FROM messages WHERE message_id LIKE '$RUN.%'")"
check_eq "no message stored twice" "0" "$(sql "SELECT count(*) FROM (SELECT message_id FROM messages GROUP BY 1 HAVING count(*) > 1) d")"
check_eq "none missing: every generated message has an incident" "$N" "$(sql "SELECT count(*) FROM messages m JOIN incidents i ON i.source_message = m.id WHERE m.message_id LIKE '$RUN.%'")"
check_eq "every email sent" "$M" "$(sql "SELECT count(*) FROM outbox WHERE state = 'sent' AND subject LIKE '%$RUN mail %'")"

# what reached the sink: each email at least once, duplicates counted.
# sink_ids prints "DISTINCT DUPLICATES ARRIVALS" of this run's emails.
# The wait is for distinct Message-IDs: duplicates can make the arrivals
# reach M while one email still waits in Postfix's queue (restarted above).
sink_ids() {
    python3 - "$CM_CA_FILE" "$CM_IMAPS_PORT" "$RUN" <<'PY'
import imaplib, ssl, sys, re, collections
ctx = ssl.create_default_context(cafile=sys.argv[1])
m = imaplib.IMAP4_SSL("localhost", int(sys.argv[2]), ssl_context=ctx)
m.login("sink@example.test", "sink-pw-Secret1")
m.select("INBOX", readonly=True)
typ, data = m.uid("SEARCH", None, "SUBJECT", '"%s mail"' % sys.argv[3])
uids = data[0].split()
ids = collections.Counter()
for i in range(0, len(uids), 200):
    typ, got = m.uid("FETCH", b",".join(uids[i:i+200]), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    for part in got:
        if isinstance(part, tuple):
            mid = re.search(rb"<([^>]+)>", part[1])
            if mid: ids[mid.group(1)] += 1
print(len(ids), sum(c - 1 for c in ids.values()), len(uids))
PY
}
all_arrived() { local d; d=$(sink_ids 2>/dev/null) && [ "${d%% *}" -ge "$M" ]; }
wait_until 120 all_arrived
dups=$(sink_ids)
arrived=${dups##* }; dups=${dups% *}
distinct=${dups% *}; twice=${dups#* }
check_eq "every email arrived (distinct Message-IDs in the sink)" "$M" "$distinct"
echo "# emails delivered twice (at-least-once, same Message-ID): $twice of $M; arrivals $arrived"
echo "# chaos figures: N=$N M=$M kills=$(wc -l < "$kills") duplicates_delivered=$twice"
if wait_until 60 status_is chaos RUNNING; then ok "the route is RUNNING after the chaos"; else not_ok "the route is RUNNING after the chaos" "$(route_status chaos)"; fi
