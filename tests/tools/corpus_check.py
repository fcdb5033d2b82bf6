#!/usr/bin/env python3
"""tests/tools/corpus_check.py: compares what casemail stored for a folder of
message files with what Python's `email` package (tests/tools/expect.py)
reads in the same files.

Usage: corpus_check.py DIR ROUTE    (env: CASEMAIL_DB, CM = the casemail CLI)
Prints "ok - ..." / "not ok - ..." lines (with "# " details), one per
property, for tests/integration/ingest.sh.

Messages are paired with the database rows by the SHA-256 of their bytes with
line ends normalised (IMAP hands out CRLF; the files may use LF). The
incident side is read through `casemail incident show INC-n --json`.

Deliberate differences that are tolerated (see docs of parser/message.c):
- subjects are compared with runs of white space collapsed: casemail
  unfolds a folded header and joins encoded words into one space, Python
  keeps the folding white space ("und   die");
- where Python gives U+FFFD for raw 8-bit bytes in a header (no charset),
  casemail decodes them with its fallback charsets (UTF-8, windows-1252):
  each U+FFFD matches any one character;
- file names: as subjects, U+FFFD (raw 8-bit bytes) matches any one
  character; and they are compared after casemail's sanitising (base name only, no
  control or : * ? " < > | characters, no leading dots/blanks, no trailing
  dots/blanks): a file name is never a path on the analyst's disk;
- casemail lists parts that have no file name as well (inline images,
  nameless parts, with a generated name); only the parts Python names are
  required to be there, with the same decoded size.
"""
import collections
import hashlib
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import expect  # noqa: E402

FAILS = 0


def ok(desc):
    print("ok - " + desc)


def not_ok(desc, details):
    global FAILS
    FAILS += 1
    print("not ok - " + desc)
    for d in details[:25]:
        print("# " + d)
    if len(details) > 25:
        print("# ... %d more" % (len(details) - 25))


def check(desc, details):
    if details:
        not_ok(desc, details)
    else:
        ok(desc)


def norm_raw(data):
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def psql(query):
    out = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                          "-F", "\t", os.environ["CASEMAIL_DB"], "-c", query],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def squash(s):
    return re.sub(r"\s+", " ", s or "").strip()


def subject_matches(expected, actual):
    e, a = squash(expected), squash(actual)
    if "\ufffd" not in e:
        return e == a
    pattern = "".join("." if ch == "\ufffd" else re.escape(ch) for ch in e)
    return re.fullmatch(pattern, a, re.S) is not None


def sanitise(name):
    name = re.split(r"[/\\]", name)[-1]
    if len(name) >= 2 and name[0].isascii() and name[0].isalpha() and name[1] == ":":
        name = name[2:]
    name = "".join(ch for ch in name
                   if ord(ch) >= 0x20 and not (0x80 <= ord(ch) <= 0x9f) and ch not in ':*?"<>|')
    return name.lstrip(". ").rstrip(". ")


def main():
    src, route = sys.argv[1], sys.argv[2]
    cm = os.environ["CM"]
    files = sorted(f for f in os.listdir(src) if os.path.isfile(os.path.join(src, f)))
    expected = {}
    by_hash = collections.defaultdict(list)
    for f in files:
        path = os.path.join(src, f)
        with open(path, "rb") as fh:
            h = norm_raw(fh.read())
        expected[f] = expect.describe(path)
        by_hash[h].append(f)

    rows = psql("SELECT m.id, m.state, coalesce(m.reason, ''), coalesce(i.number::text, ''),"
                " encode(m.raw, 'hex') FROM messages m JOIN routes r ON r.id = m.route_id"
                " LEFT JOIN incidents i ON i.source_message = m.id"
                " WHERE r.name = '%s' ORDER BY m.id" % route.replace("'", "''"))
    rows_by_hash = collections.defaultdict(list)
    for mid, state, reason, number, rawhex in rows:
        raw = bytes.fromhex(rawhex)
        rows_by_hash[norm_raw(raw)].append({"id": mid, "state": state, "reason": reason,
                                            "number": number})

    # 1. every file is stored once, as a message of its own
    missing = []
    pairs = []   # (file, row)
    for h, fs in sorted(by_hash.items()):
        rs = rows_by_hash.get(h, [])
        if len(rs) != len(fs):
            missing.append("%s: %d stored message(s) for %d file(s)" % (",".join(fs), len(rs), len(fs)))
        pairs.extend(zip(fs, rs))
    extra = sum(len(rs) for h, rs in rows_by_hash.items() if h not in by_hash)
    if extra:
        missing.append("%d stored message(s) match no file" % extra)
    check("corpus: each of the %d files is stored exactly once, raw bytes kept" % len(files), missing)

    # 2. each is an incident (opened by it) or a rejection with a reason
    bad = []
    nincidents = nrejected = 0
    for f, r in pairs:
        if r["state"] == "parsed" and r["number"]:
            nincidents += 1
        elif r["state"] == "rejected" and r["reason"].strip():
            nrejected += 1
        else:
            bad.append("%s: state %s, incident %r, reason %r" % (f, r["state"], r["number"], r["reason"]))
    check("corpus: every message is an incident or a rejection with a reason"
          " (%d incidents, %d rejected)" % (nincidents, nrejected), bad)
    for f, r in pairs:
        if r["state"] == "rejected":
            print("# rejected %s: %s" % (f, r["reason"]))

    subj, senders, atts, unreadable = [], [], [], []
    natt = 0
    for f, r in pairs:
        if not r["number"]:
            continue
        e = expected[f]
        out = subprocess.run([cm, "incident", "show", "INC-" + r["number"], "--json"],
                             capture_output=True, text=True)
        if out.returncode != 0:
            unreadable.append("%s: incident show INC-%s: %s" % (f, r["number"], out.stdout + out.stderr))
            continue
        inc = json.loads(out.stdout)
        entry = next((t for t in inc["timeline"] if str(t.get("inbound_id")) == r["id"]), None)
        if entry is None:
            unreadable.append("%s: INC-%s has no timeline entry of message %s" % (f, r["number"], r["id"]))
            continue
        # subject: the title (no subject -> "(no subject)") and the timeline entry
        if e["subject"] is not None:
            want_title = e["subject"] if squash(e["subject"]) else "(no subject)"
            if not subject_matches(e["subject"], entry["subject"]) or not subject_matches(want_title, inc["title"]):
                subj.append("%s: python %r, casemail title %r, subject %r"
                            % (f, e["subject"], inc["title"], entry["subject"]))
        # sender: local part exactly, domain case-insensitively (casemail lowercases it)
        if e["from"] is not None:
            want = e["from"]
            got = entry["from"]
            wl, _, wd = want.rpartition("@")
            gl, _, gd = got.rpartition("@")
            if (wl, wd.lower()) != (gl, gd.lower()) or got not in inc["reporter"]:
                senders.append("%s: python %r, casemail from %r, reporter %r" % (f, want, got, inc["reporter"]))
        # attachments: every part Python names, with its decoded size
        have = collections.Counter((a["filename"], a["size"]) for a in entry["attachments"])
        for a in e["attachments"]:
            if a["content_type"] == "message/rfc822":
                name = sanitise(a["filename"])
                if not any(x["filename"] == name and x["nested"] for x in entry["attachments"]):
                    atts.append("%s: attached message %r not listed as nested" % (f, name))
                continue
            natt += 1
            name = sanitise(a["filename"])
            key = next((k for k in have if have[k] > 0 and k[1] == a["size"]
                        and subject_matches(name, k[0])), None)
            if key:
                have[key] -= 1
            else:
                atts.append("%s: python %r (%s bytes, depth %d) not among casemail's %s"
                            % (f, name, a["size"], a["depth"],
                               [(x["filename"], x["size"]) for x in entry["attachments"]]))
    check("corpus: every incident and its timeline entry can be read", unreadable)
    check("corpus: decoded subjects match Python's email package (%d incidents)" % nincidents, subj)
    check("corpus: senders match Python's email package", senders)
    check("corpus: attachment names and decoded sizes match Python's (%d attachments)" % natt, atts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
