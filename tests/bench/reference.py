#!/usr/bin/python3
"""reference.py HOST PORT USER PASSWORD CAFILE DSN default|compat32: make bench's yardstick.

The straightforward Python pipeline the ingest issue measures casemail
against ("imaplib, the email package and psycopg2 does about 300/s on
this hardware"), run on a mailbox filled as for part (a), over IMAP with
TLS, into its own database: each message fetched by UID (BODY.PEEK[]),
parsed with the email package (subject, sender, recipients, date,
Message-ID, the text body, every attachment with its decoded bytes and
SHA-256), and stored with its raw bytes, committed one by one. What it
cannot parse is stored as rejected with the exception's words, as a
pipeline that must not lose mail would. It stands for nothing casemail
does; it shows how fast this machine is at the time of the run, so that
casemail's rate can be read against the issue's 300 messages/s.

Prints one line: "N messages in S s = R messages/s (first fetch to last
commit), P parsed, J rejected; its own CPU X ms per message, the
machine's cores busy B%". Exit 1 on a failure of the servers."""
import email
import email.header
import email.policy
import hashlib
import resource
import imaplib
import ssl
import sys
import time

import psycopg2

SCHEMA = """
CREATE TABLE IF NOT EXISTS ref_messages (
    id bigserial PRIMARY KEY, uid bigint NOT NULL UNIQUE, raw bytea NOT NULL,
    state text NOT NULL, reason text, fetched_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS ref_incidents (
    id bigserial PRIMARY KEY, message bigint NOT NULL REFERENCES ref_messages,
    title text NOT NULL, reporter text NOT NULL, to_text text, cc_text text,
    date_text text, message_id text, description text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS ref_attachments (
    id bigserial PRIMARY KEY, incident bigint NOT NULL REFERENCES ref_incidents,
    filename text NOT NULL, content_type text NOT NULL, size bigint NOT NULL,
    sha256 text NOT NULL, data bytea NOT NULL);
"""


def clean(s):
    """s as PostgreSQL's text takes it: no NUL, no lone surrogate (the
    email package keeps undecodable bytes as such)"""
    return s.replace("\0", "").encode("utf-8", "replace").decode("utf-8")


def text(value):
    """a header's decoded text"""
    return clean(str(value or ""))


def busy():
    """(busy, all) jiffies of the whole machine, from /proc/stat"""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4], sum(v)     # idle and iowait are not busy


def cpu():
    """this process's CPU seconds, user and system"""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def parse_default(raw):
    """(fields, attachments) of one message, as an incident needs them:
    the email package's modern API (policy.default), which decodes
    headers, bodies and file names itself"""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(preferencelist=("plain", "html"))
    content = body.get_content() if body is not None else ""
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    fields = (text(msg["subject"]), text(msg["from"]), text(msg["to"]), text(msg["cc"]),
              text(msg["date"]), text(msg["message-id"]), clean(content))
    files = []
    for part in msg.iter_attachments():
        data = part.get_payload(decode=True) or b""
        files.append((text(part.get_filename()) or "attachment", part.get_content_type(),
                      len(data), hashlib.sha256(data).hexdigest(), data))
    return fields, files


def decoded(value):
    """an RFC 2047 header as text, with the legacy API"""
    return clean(str(email.header.make_header(email.header.decode_header(value or ""))))


def parse_compat32(raw):
    """the same with the legacy API (compat32, message_from_bytes's
    default): headers decoded by decode_header, the first text/plain
    part (else text/html) as the body, every other leaf with a file name
    or an attachment disposition as a file"""
    msg = email.message_from_bytes(raw)
    fields = [decoded(msg.get(k)) for k in ("subject", "from", "to", "cc")]
    fields += [clean(str(msg.get("date") or "")), clean(str(msg.get("message-id") or ""))]
    body, html, files = None, None, []
    for part in msg.walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True) or b""
        name = part.get_filename()
        ctype = part.get_content_type()
        if name or part.get_content_disposition() == "attachment" or not ctype.startswith("text/"):
            files.append((decoded(name) or "attachment", ctype, len(data),
                          hashlib.sha256(data).hexdigest(), data))
            continue
        charset = part.get_content_charset() or "us-ascii"
        try:
            content = data.decode(charset, "replace")
        except LookupError:
            content = data.decode("latin-1")
        if ctype == "text/plain" and body is None:
            body = content
        elif ctype == "text/html" and html is None:
            html = content
    fields.append(clean(body if body is not None else html or ""))
    return tuple(fields), files


PARSE = {"default": parse_default, "compat32": parse_compat32}


def main(argv):
    if len(argv) != 8 or argv[7] not in PARSE:
        print("usage: " + __doc__.splitlines()[0], file=sys.stderr)
        return 2
    host, port, user, password, cafile, dsn, api = argv[1:]
    parse = PARSE[api]
    db = psycopg2.connect(dsn)
    cur = db.cursor()
    cur.execute(SCHEMA)
    db.commit()
    imap = imaplib.IMAP4_SSL(host, int(port), ssl_context=ssl.create_default_context(cafile=cafile))
    imap.login(user, password)
    imap.select("INBOX", readonly=True)
    typ, data = imap.uid("SEARCH", None, "ALL")
    if typ != "OK":
        print("reference: UID SEARCH failed: %r" % data, file=sys.stderr)
        return 1
    uids = data[0].split()
    parsed = rejected = 0
    t0, c0, b0 = time.monotonic(), cpu(), busy()
    for uid in uids:
        typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
        if typ != "OK" or not data or not isinstance(data[0], tuple):
            print("reference: UID FETCH %s failed: %r" % (uid.decode(), data), file=sys.stderr)
            return 1
        raw = data[0][1]
        try:
            fields, files = parse(raw)
            reason = None
        except Exception as e:  # a message the email package cannot take
            reason = "%s: %s" % (type(e).__name__, e)
        cur.execute("INSERT INTO ref_messages (uid, raw, state, reason) VALUES (%s, %s, %s, %s)"
                    " RETURNING id", (int(uid), psycopg2.Binary(raw),
                                      "rejected" if reason else "parsed", reason))
        mid = cur.fetchone()[0]
        if reason:
            rejected += 1
        else:
            cur.execute("INSERT INTO ref_incidents (message, title, reporter, to_text, cc_text,"
                        " date_text, message_id, description) VALUES (%s, %s, %s, %s, %s, %s,"
                        " %s, %s) RETURNING id", (mid,) + fields)
            iid = cur.fetchone()[0]
            for f in files:
                cur.execute("INSERT INTO ref_attachments (incident, filename, content_type, size,"
                            " sha256, data) VALUES (%s, %s, %s, %s, %s, %s)",
                            (iid,) + f[:4] + (psycopg2.Binary(f[4]),))
            parsed += 1
        db.commit()
    span, c1, b1 = time.monotonic() - t0, cpu(), busy()
    imap.logout()
    n = len(uids)
    print("%d messages in %.2f s = %.0f messages/s (first fetch to last commit), %d parsed,"
          " %d rejected; its own CPU %.3f ms per message, the machine's cores busy %.0f%%"
          % (n, span, n / span if span > 0 else 0, parsed, rejected,
             (c1 - c0) * 1000 / max(n, 1), 100 * (b1[0] - b0[0]) / max(b1[1] - b0[1], 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
