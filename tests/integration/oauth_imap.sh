#!/usr/bin/env bash
# tests/integration/oauth_imap.sh: a non-Exchange route with auth oauth2
# (Microsoft 365 without EWS) against the test stack (issue 6, item 5):
# client-credentials tokens from the sign-in stand-in (tests/ews), SASL
# XOAUTH2/OAUTHBEARER to Dovecot (oauth2 passdb introspecting at the
# stand-in) and to Postfix submission (SMTP AUTH through Dovecot).
#   - test-inbound and test-outbound pass; start -> RUNNING;
#   - mail delivered to u20 becomes an incident;
#   - an incident email is sent with a bearer token and reaches the sink;
#   - a wrong client secret fails test-inbound with AADSTS7000215;
#   - every token expires: ingest goes on after a reconnect with a new token;
#   - no token and no client secret in any casemail log.
# Uses the user u20 (the stand-in's IMAP app introspects as u20@example.test).
. "$CM_TOP/tests/lib.sh"
export CASEMAIL_SEND_RETRY_BASE_MS=500

T=$CM_WORK/oauth
OAUTH_SECRET='Imap~App~Secret~3'
OAUTH_CLIENT=cccccccc-cccc-4ccc-cccc-cccccccccccc
OAUTH_TENANT=contoso.test
ROUTE=oa
ADDR=u20@$CM_MAIL_DOMAIN
TOK="oa$$x$RANDOM"

cleanup() {
    cm_stop
    "$CM_TOP/tests/ews/stop.sh" "$T" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# --- the stand-in: its control port (with /introspect) on CM_OAUTH_PORT,
# where the stack's Dovecot oauth2 passdb asks; the stack's certificates.
rm -rf "$T"
mkdir -p "$T"
cp -r "$CM_STACK_DIR/tls" "$T/tls"
if "$CM_TOP/tests/ews/start.sh" "$T" "$CM_TOP/tests/ews/config.json" \
        --control-port "$CM_OAUTH_PORT" > "$T/start.log" 2>&1; then
    ok "the sign-in stand-in starts (introspection on port $CM_OAUTH_PORT)"
else
    not_ok "the sign-in stand-in starts" "$(tail -5 "$T/start.log")"
    exit 1
fi
. "$T/ews.env"
ctl() { curl -s --max-time 10 -X "$1" "$EWS_CONTROL_URL/$2"; }
# sstat NAME: a counter group of the stand-in's stats, summed
sstat() { ctl GET stats | json "sum((j.get('$1') or {}).values())" 2>/dev/null; }

cm_start || exit 1

cat > "$T/mail.py" <<'PY'
import email, imaplib, os, ssl, sys
def imap(user):
    ctx = ssl.create_default_context(cafile=os.environ["CM_CA_FILE"])
    m = imaplib.IMAP4_SSL("localhost", int(os.environ["CM_IMAPS_PORT"]), ssl_context=ctx)
    m.login("%s@example.test" % user, "%s-pw-Secret1" % user)
    return m
cmd = sys.argv[1]
if cmd == "clear":                  # clear USER
    m = imap(sys.argv[2])
    if int(m.select("INBOX")[1][0]):
        m.store("1:*", "+FLAGS", "\\Deleted")
        m.expunge()
elif cmd == "sink":                 # sink SUBJECT-TOKEN: count of sink messages
    m = imap("sink")
    m.select("INBOX", readonly=True)
    typ, data = m.search(None, "SUBJECT", '"%s"' % sys.argv[2])
    n = len(data[0].split()) if typ == "OK" and data and data[0] else 0
    print(n)
    sys.exit(0 if n else 1)
PY
mailpy() { python3 "$T/mail.py" "$@"; }
mailpy clear u20 || not_ok "the u20 mailbox is emptied before the test"

# oauth_route_opts SECRET-VAR: the route's server and OAuth2 options
oauth_opts() {
    echo --email "$ADDR" --username "$ADDR" --auth oauth2 \
        --oauth-client-id "$OAUTH_CLIENT" --oauth-client-secret-env "$1" \
        --oauth-tenant-id "$OAUTH_TENANT" --oauth-authority "$TOKEN_URL" \
        --inbound-host localhost --inbound-protocol imaps --inbound-port "$CM_IMAPS_PORT" \
        --outbound-host localhost --outbound-protocol smtp+starttls \
        --outbound-port "$CM_SUBMISSION_PORT" --ca-file "$CM_CA_FILE"
}
export OA_SECRET=$OAUTH_SECRET OA_BAD='Wrong~Secret~9'
# shellcheck disable=SC2046
run_cm route add "$ROUTE" $(oauth_opts OA_SECRET)
check_eq "route $ROUTE (auth oauth2, IMAPS + submission) is added" 0 "$RC"
[ "$RC" = 0 ] || { printf '# %s\n' "$OUT"; exit 1; }

# --- tests of the connections ---------------------------------------------
run_cm route test-inbound "$ROUTE"
check_eq "test-inbound passes with a bearer token" 0 "$RC"
check_contains "test-inbound says Inbound connection OK" "Inbound connection OK" "$OUT"
run_cm route test-outbound "$ROUTE"
check_eq "test-outbound passes with a bearer token" 0 "$RC"
[ "$RC" = 0 ] || printf '# %s\n' "$OUT"
issued=$(sstat tokens_issued)
[ "${issued:-0}" -ge 2 ] && ok "the tests got tokens from the token endpoint ($issued)" \
    || not_ok "the tests got tokens from the token endpoint" "tokens_issued: $issued"
intro=$(sstat introspect)
[ "${intro:-0}" -ge 2 ] && ok "Dovecot introspected the tokens at the stand-in ($intro)" \
    || not_ok "Dovecot introspected the tokens at the stand-in" "introspect: $intro"

# shellcheck disable=SC2046
run_cm route test-inbound $(oauth_opts OA_BAD)
check_exit_ne() { if [ "$RC" != 0 ]; then ok "$1"; else not_ok "$1" "exit 0"; fi; }
check_exit_ne "test-inbound with a wrong client secret fails"
check_contains "the reason names the wrong client secret (AADSTS7000215)" "AADSTS7000215" "$OUT"
# shellcheck disable=SC2046
run_cm route test-outbound $(oauth_opts OA_BAD)
check_exit_ne "test-outbound with a wrong client secret fails"
check_contains "test-outbound's reason names AADSTS7000215" "AADSTS7000215" "$OUT"

# --- ingest ------------------------------------------------------------------
"$CM" route start "$ROUTE" >/dev/null
if wait_until 30 status_is "$ROUTE" RUNNING; then ok "route $ROUTE is RUNNING (IMAP login with XOAUTH2/OAUTHBEARER)"
else not_ok "route $ROUTE is RUNNING" "status: $(route_status "$ROUTE")" \
    "$("$CM" route show "$ROUTE" 2>&1 | tail -5)"; fi

inbox_by_msgid() {
    "$CM" inbox list --json | python3 -c "
import json,sys
j=json.load(sys.stdin); r=[m for m in j['messages'] if (m.get('message_id') or '').strip('<>')=='$1']
m=r[0] if r else None
print($2)"
}
has_incident() { case "$(inbox_by_msgid "$1" "m and m['incident']")" in INC-[0-9]*) return 0 ;; esac; return 1; }

M1="m1-$TOK@outside.test"
deliver "$ADDR" "OAuth route report one $TOK" --header "Message-Id: <$M1>"
if wait_until 30 has_incident "$M1"; then ok "mail delivered to u20 becomes an incident"
else not_ok "mail delivered to u20 becomes an incident" "$("$CM" inbox list 2>&1 | tail -3)"; fi
INC=$(inbox_by_msgid "$M1" "m and m['incident']")

# --- sending -----------------------------------------------------------------
N=${INC#INC-}
run_cm incident email "$INC" --to "ext-$TOK@outside.test" --subject "[INC-$N] OAuth send $TOK" \
    --body "Sent with a bearer token." --wait --wait-timeout 60
check_eq "incident email over the oauth2 route is sent (exit 0)" 0 "$RC"
[ "$RC" = 0 ] || printf '# %s\n' "$OUT"
if wait_until 30 mailpy sink "OAuth send $TOK"; then ok "the email arrives in the sink mailbox"
else not_ok "the email arrives in the sink mailbox" "no sink message with subject token $TOK"; fi
if grep -E "sasl_method=(XOAUTH2|OAUTHBEARER), sasl_username=$ADDR" "$CM_POSTFIX_LOG" >/dev/null 2>&1; then
    ok "Postfix logged SMTP AUTH XOAUTH2/OAUTHBEARER as $ADDR"
else
    not_ok "Postfix logged SMTP AUTH XOAUTH2/OAUTHBEARER as $ADDR" "$(grep -i sasl_method "$CM_POSTFIX_LOG" | tail -3)"
fi

# --- the tokens expire: the next login gets a new one -------------------------
before=$(sstat tokens_issued)
ctl POST expire-tokens >/dev/null
# the open IMAP session stays logged in; a reconnect must log in again
# (Dovecot kicks the user's sessions, as an admin revoking a session would)
doveadm -c "$CM_DOVECOT_CONF" kick "$ADDR" >/dev/null 2>&1 || true
M2="m2-$TOK@outside.test"
deliver "$ADDR" "OAuth route report two $TOK" --header "Message-Id: <$M2>"
if wait_until 60 has_incident "$M2"; then ok "after the tokens expired, ingest goes on (the new mail becomes an incident)"
else not_ok "after the tokens expired, ingest goes on" "$("$CM" route show "$ROUTE" 2>&1 | tail -5)"; fi
after=$(sstat tokens_issued)
[ "${after:-0}" -gt "${before:-0}" ] && ok "the fetcher signed in again with a fresh token ($before -> $after tokens)" \
    || not_ok "the fetcher signed in again with a fresh token" "tokens issued: $before -> $after"
check_eq "route $ROUTE is RUNNING after the reconnect" RUNNING "$(route_status "$ROUTE")"

# a second send after the expiry gets a fresh token too
run_cm incident email "$INC" --to "ext-$TOK@outside.test" --subject "[INC-$N] OAuth send two $TOK" \
    --body "Sent with a fresh bearer token." --wait --wait-timeout 60
check_eq "an incident email after the expiry is sent" 0 "$RC"

# --- no secret in the logs -----------------------------------------------------
logs=$(find "$CASEMAIL_HOME" -name '*.log' 2>/dev/null; echo "$CM_WORK/$CM_TEST.up.log")
hits=$(printf '%s\n' "$logs" | xargs -r grep -l -F -- "$OAUTH_SECRET" 2>/dev/null)
[ -z "$hits" ] && ok "no client secret in the casemail logs" || not_ok "no client secret in the casemail logs" $hits
# tokens are JWT-shaped: look for any eyJ... header.payload in the logs
hits=$(printf '%s\n' "$logs" | xargs -r grep -l -E 'eyJ[A-Za-z0-9_-]{10,}\.eyJ' 2>/dev/null)
[ -z "$hits" ] && ok "no bearer token in the casemail logs" || not_ok "no bearer token in the casemail logs" $hits
