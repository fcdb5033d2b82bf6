#!/usr/bin/env bash
# tests/demo.sh: `make demo`, the README's first command. Starts casemail on
# its embedded default (a private PostgreSQL under $CASEMAIL_HOME, default
# ./var), a local test mailbox (Dovecot + Postfix of tests/stack, in
# $CASEMAIL_HOME/demo-stack), delivers a handful of realistic messages to
# erin@example.test through Postfix, defines and starts the two-way route
# "demo" on that mailbox, waits until the messages are incidents and shows
# the EMAIL FEEDS list and the incidents.
# Re-running it works: the stack is reused (or started again), the route is
# kept (pointed at the stack's ports, its password sealed again), and a
# message already delivered (same Message-ID in the route's inbox) is not
# sent again, so no incident is created twice.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
CM=$top/bin/casemail
unset CASEMAIL_DB                        # the embedded default
export CASEMAIL_HOME=${CASEMAIL_HOME:-$top/var}
case "$CASEMAIL_HOME" in /*) ;; *) CASEMAIL_HOME=$top/$CASEMAIL_HOME ;; esac
STACK=$CASEMAIL_HOME/demo-stack
ROUTE=demo
USER_NAME=erin
say() { printf '\n== %s\n' "$*"; }

# The stack's PostgreSQL, Dovecot and Postfix run as their own users and
# must reach $STACK: the state folder gets mode 0711 (enter, not list);
# its secrets stay 0600 and its run/ and log/ folders 0700.
mkdir -p "$CASEMAIL_HOME"
chmod 711 "$CASEMAIL_HOME"
# A state folder the servers' users can't enter all the same (a checkout
# under /root, mode 0700) gets the stack in /var/lib/casemail, with $STACK
# a link to it.
# shellcheck source=stack/lib.sh
. "$top/tests/stack/lib.sh"
cm_stack_link "$STACK"

say "test mailbox (Dovecot + Postfix) in $STACK"
"$top/tests/stack/start.sh" "$STACK" >"$CASEMAIL_HOME/demo-stack.log" 2>&1 ||
    { tail -20 "$CASEMAIL_HOME/demo-stack.log"; echo "demo: the test mailbox did not start" >&2; exit 1; }
tail -1 "$CASEMAIL_HOME/demo-stack.log"
# shellcheck disable=SC1091
. "$STACK/env"
ADDR=$USER_NAME@$CM_MAIL_DOMAIN

say "casemail up"
"$CM" up

if "$CM" route show "$ROUTE" >/dev/null 2>&1; then
    # kept, but pointed at this test mailbox again (its ports) and its
    # password sealed again with this state folder's key: a checkout cloned
    # again at the same path finds the database of the one before it
    # (docs/CLI.md, up), sealed with the key of the old state folder
    CM_PW="$USER_NAME-pw-Secret1" "$CM" route set "$ROUTE" --password-env CM_PW \
        --inbound-port "$CM_IMAPS_PORT" --outbound-port "$CM_SUBMISSION_PORT" \
        --ca-file "$CM_CA_FILE" >/dev/null
    echo "route $ROUTE exists; kept, with this mailbox's ports and its password sealed again"
else
    CM_PW="$USER_NAME-pw-Secret1" "$CM" route add "$ROUTE" --kind two-way --email "$ADDR" \
        --username "$ADDR" --password-env CM_PW \
        --inbound-host localhost --inbound-protocol imaps --inbound-port "$CM_IMAPS_PORT" \
        --outbound-host localhost --outbound-protocol smtp+starttls \
        --outbound-port "$CM_SUBMISSION_PORT" --ca-file "$CM_CA_FILE"
fi
"$CM" route start "$ROUTE"

# json EXPR: a Python expression on JSON from stdin (as j).
json() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }
status() { "$CM" route show "$ROUTE" --json | json 'j["status"]'; }
# incident_of MESSAGE-ID: INC-n of the stored message, "-" when parsed
# without one, nothing while not stored or not parsed yet.
incident_of() {
    "$CM" inbox list --route "$ROUTE" --json | python3 -c '
import json, sys
for m in json.load(sys.stdin)["messages"]:
    if (m["message_id"] or "").strip("<>") == sys.argv[1] and m["state"] != "fetched":
        print(m["incident"] or "-"); break' "$1"
}
wait_for() {   # wait_for SECONDS CMD...
    local end=$(( $(date +%s) + $1 )); shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.3
    done
}
running() { [ "$(status)" = RUNNING ]; }
wait_for 60 running || { echo "demo: route $ROUTE is $(status): $("$CM" route show "$ROUTE" | grep last_error)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
MK=(python3 "$top/tests/tools/mkmail.py")
# send ID KIND [mkmail options]: builds a message and delivers it through
# Postfix (SMTP on loopback), unless the route already has that Message-ID.
send() {
    local id=$1 kind=$2; shift 2
    if [ -n "$(incident_of "$id")" ]; then
        echo "  already ingested: <$id>"
        return 0
    fi
    "${MK[@]}" "$kind" "$work/$id.eml" --message-id "$id" --to "SOC <$ADDR>" "$@"
    swaks --silent 2 -s 127.0.0.1 -p "$CM_SMTP_PORT" -t "$ADDR" \
        -f "$(sed -n 's/^From:.*<\(.*\)>.*/\1/p;s/^From: \([^<]*@[^ ]*\)$/\1/p' "$work/$id.eml" | head -1)" \
        --data "@$work/$id.eml" >/dev/null
    echo "  delivered <$id>: $(python3 -c 'import email,email.policy,sys; print(email.message_from_binary_file(open(sys.argv[1],"rb"),policy=email.policy.default)["subject"])' "$work/$id.eml")"
}
ingested() { [ -n "$(incident_of "$1")" ]; }

say "delivering mail to $ADDR through Postfix (port $CM_SMTP_PORT)"
# 1. a phishing report, the suspicious mail attached as .eml, plus a screenshot
cat >"$work/Your password expires today.eml" <<'MAIL'
From: "IT Service Desk" <it-servicedesk@rnicrosoft-support.example>
To: dana.fields@example.test
Subject: Action required: your password expires today
Date: Mon, 13 May 2024 08:12:44 +0000
Message-ID: <a81f3c2e.4471@rnicrosoft-support.example>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<p>Your Microsoft 365 password expires <b>today</b>.</p>
<p><a href="https://rnicrosoft-support.example/keep-password">Keep my current password</a></p>
MAIL
printf '\x89PNG\r\n\x1a\n(screenshot placeholder)\n' >"$work/screenshot.png"
send demo-phish-1@outside.test plain --from "Dana Fields <dana.fields@outside.test>" \
    --subject "Phishing: fake Microsoft 365 password expiry mail" \
    --body "Hi SOC, I received the attached mail this morning. The link goes to rnicrosoft-support.example. I did not click it. Screenshot attached. -- Dana" \
    --attach "$work/Your password expires today.eml" --attach "$work/screenshot.png"
# 2. a suspicious sign-in alert
send demo-login-1@outside.test plain --from "Identity Protection <alerts@idp.outside.test>" \
    --subject "Suspicious sign-in for j.smith@example.test from 203.0.113.45 (unfamiliar location)" \
    --body "Risk level: high. User: j.smith@example.test. IP 203.0.113.45, Lagos NG, 2024-05-13 07:58 UTC. Sign-in was successful; MFA satisfied by SMS."
# 3. an HTML-only vendor advisory
send demo-advisory-1@outside.test plain --html --from "Acme Security Advisories <advisories@acme.outside.test>" \
    --subject "ACME-SA-2024-017: critical update for the Acme VPN appliance (CVE-2024-0001)" \
    --body "A critical vulnerability allows unauthenticated remote code execution. Upgrade to firmware 9.4.2 now."
# 4. a reply to the phishing report, matched by its subject tag only
wait_for 60 ingested demo-phish-1@outside.test || { echo "demo: the phishing report was not ingested" >&2; exit 1; }
PHISH=$(incident_of demo-phish-1@outside.test)
send demo-phish-2@outside.test plain --from "Dana Fields <dana.fields@outside.test>" \
    --subject "RE: [$PHISH] Phishing: fake Microsoft 365 password expiry mail" \
    --body "Two colleagues in finance received the same mail. One of them clicked the link."

say "waiting until the mail is incidents"
all_in() {
    local id
    for id in demo-phish-1 demo-login-1 demo-advisory-1 demo-phish-2; do
        ingested "$id@outside.test" || return 1
    done
}
wait_for 90 all_in || { echo "demo: not every message was ingested in time; see casemail inbox list" >&2; exit 1; }

say "casemail route list   (EMAIL FEEDS)"
"$CM" route list
say "casemail incident list"
"$CM" incident list
cat <<EOF2

Look around:
  export CASEMAIL_HOME=$CASEMAIL_HOME
  bin/casemail incident show $PHISH        (the phishing report, its attachments and the reply)
  bin/casemail inbox list
  bin/casemail route show $ROUTE
Send more mail to $ADDR: swaks -s 127.0.0.1 -p $CM_SMTP_PORT -t $ADDR
Stop everything:
  CASEMAIL_HOME=$CASEMAIL_HOME bin/casemail down
  tests/stack/stop.sh $STACK
EOF2
