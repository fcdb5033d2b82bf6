#!/usr/bin/env python3
"""tests/tools/imapctl.py: a mailbox through plain IMAP, as a mail user
would change it, for tests against any IMAP server (Python's imaplib).

  imapctl.py [conn] append FOLDER FILE... [--date "01-Jan-2020 10:00:00 +0000"]
      APPEND each file (line ends made CRLF), creating FOLDER if missing;
      with --date as its internal date (what SEARCH SINCE reads). Prints
      the number appended.
  imapctl.py [conn] flags FOLDER     one line per message: UID and flags
  imapctl.py [conn] count FOLDER     the number of messages (0 if none)
  imapctl.py [conn] sha FOLDER       the SHA-256 of each message as the
                                     server sends it (BODY.PEEK[]), sorted
  imapctl.py [conn] expunge FOLDER UIDSET   \Deleted and EXPUNGE those UIDs
                                     (an IMAP set: 101:300); prints how many
  imapctl.py [conn] recreate FOLDER  DELETE and CREATE: a new UIDVALIDITY;
                                     prints the old and the new one
  conn: --host H (localhost) --port N [--tls] [--ca FILE] --user U
        --password-env VAR (neither needed by a server that greets PREAUTH:
        no login then)
"""
import argparse
import hashlib
import imaplib
import os
import re
import ssl
import sys


def connect(a):
    if a.tls:
        ctx = ssl.create_default_context(cafile=a.ca)
        m = imaplib.IMAP4_SSL(a.host, a.port, ssl_context=ctx, timeout=30)
    else:
        m = imaplib.IMAP4(a.host, a.port, timeout=30)
    if m.state == "AUTH":       # greeted PREAUTH: already logged in
        return m
    if not a.user or not a.password_env:
        sys.exit("imapctl: the server wants a login: --user and --password-env")
    m.login(a.user, os.environ[a.password_env])
    return m


def ok(typ, data, what):
    if typ != "OK":
        sys.exit("imapctl: %s: %s %r" % (what, typ, data))
    return data


def uidvalidity(m, folder):
    data = ok(*m.status(folder, "(UIDVALIDITY)"), "STATUS " + folder)
    return int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca")
    p.add_argument("--user")
    p.add_argument("--password-env")
    p.add_argument("command", choices=("append", "flags", "count", "sha", "expunge", "recreate"))
    p.add_argument("folder")
    p.add_argument("files", nargs="*")
    p.add_argument("--date")
    a = p.parse_args()
    m = connect(a)
    if a.command == "append":
        m.create(a.folder)      # NO when it exists: fine
        date = '"%s"' % a.date if a.date else None
        n = 0
        for f in a.files:
            with open(f, "rb") as fh:
                ok(*m.append(a.folder, None, date, fh.read()), "APPEND " + f)
            n += 1
        print(n)
    elif a.command == "flags":
        typ, _ = m.select(a.folder, readonly=True)
        if typ == "OK":
            typ, data = m.uid("FETCH", "1:*", "(FLAGS)")
            for item in data or []:
                if not item:
                    continue
                line = item.decode() if isinstance(item, bytes) else item[0].decode()
                uid = re.search(r"UID (\d+)", line)
                flags = re.search(r"FLAGS \(([^)]*)\)", line)
                if uid and flags:
                    print(uid.group(1), flags.group(1))
    elif a.command == "count":
        typ, data = m.status(a.folder, "(MESSAGES)")
        print(re.search(rb"MESSAGES (\d+)", data[0]).group(1).decode() if typ == "OK" else 0)
    elif a.command == "sha":
        typ, _ = m.select(a.folder, readonly=True)
        out = []
        if typ == "OK":
            typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
            out = sorted(hashlib.sha256(item[1]).hexdigest()
                         for item in data or [] if isinstance(item, tuple))
        print("\n".join(out))
    elif a.command == "expunge":
        ok(*m.select(a.folder), "SELECT " + a.folder)
        ok(*m.uid("STORE", a.files[0], "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
        data = ok(*m.expunge(), "EXPUNGE")
        print(len([x for x in data if x]))
    elif a.command == "recreate":
        old = uidvalidity(m, a.folder)
        ok(*m.delete(a.folder), "DELETE " + a.folder)
        ok(*m.create(a.folder), "CREATE " + a.folder)
        print(old, uidvalidity(m, a.folder))
    m.logout()


if __name__ == "__main__":
    main()
