#!/usr/bin/env python3
"""tests/tools/expect.py: what a message says, decoded by Python's own
`email` package (policy=default), independently of casemail's parser.

Usage: expect.py FILE...   prints one JSON object per line:
  {"file": base name, "message_id": "<...>" or null, "subject": decoded
   subject ("" when absent), "from": address of the first From mailbox
   ("" when absent), "attachments": [{"filename", "size", "content_type",
   "depth"}...]}
The message is read with CRLF line ends, as IMAP delivers it.
Attachments are the parts with a file name (Content-Disposition filename or
Content-Type name), walked depth-first through attached messages
(message/rfc822), with their decoded sizes. A part Python cannot decode is
reported with size -1. Never raises on a malformed message: the fields it
cannot read are reported as null.
"""
import email
import email.policy
import json
import os
import sys


def safe(fn, default=None):
    try:
        return fn()
    except Exception:
        return default


def attachments(msg, depth, out):
    if msg.is_multipart():
        for part in msg.iter_parts():
            attachments(part, depth, out)
        return
    ctype = msg.get_content_type()
    name = safe(msg.get_filename)
    if ctype == "message/rfc822":
        inner = safe(lambda: msg.get_payload(0))
        if name:
            out.append({"filename": name, "size": None, "content_type": ctype, "depth": depth})
        if inner is not None:
            attachments(inner, depth + 1, out)
        return
    if not name:
        return
    data = safe(lambda: msg.get_payload(decode=True))
    out.append({"filename": name, "size": len(data) if data is not None else -1,
                "content_type": ctype, "depth": depth})


def describe(path):
    with open(path, "rb") as f:
        raw = f.read()
    # As the message arrives over IMAP: lines end in CRLF (RFC 5322), so a
    # 7bit/8bit part's decoded bytes are those of the delivered message.
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    subject = safe(lambda: str(msg["subject"] or ""))
    sender = ""
    frm = safe(lambda: msg["from"])
    addrs = safe(lambda: frm.addresses) if frm is not None else ()
    if addrs:
        sender = addrs[0].addr_spec
    elif frm is None:
        sender = ""
    else:
        sender = None
    atts = []
    safe(lambda: attachments(msg, 0, atts))
    return {"file": os.path.basename(path), "message_id": safe(lambda: str(msg["message-id"] or "").strip()) or None,
            "subject": subject, "from": sender, "attachments": atts}


def main():
    for path in sys.argv[1:]:
        print(json.dumps(describe(path), ensure_ascii=False))


if __name__ == "__main__":
    main()
