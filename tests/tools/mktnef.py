#!/usr/bin/env python3
"""tests/tools/mktnef.py: writes TNEF streams (winmail.dat) as [MS-OXTNEF]
describes them, an implementation apart from the parser's reader.

Usage: mktnef.py OUTDIR   writes the message-test cases: OUTDIR/NAME.tnef and
                          OUTDIR/NAME.expect (what the parser must make of a
                          message whose only part is NAME.tnef as winmail.dat:
                          "note<TAB>..." for the winmail.dat's note, "text<TAB>..."
                          for the message's text, then one "file<TAB>name<TAB>
                          type<TAB>size<TAB>sha256<TAB>note" line per file taken
                          out, in order, with "-" for no note; after a file that
                          is an attached Outlook message, "nested<TAB>subject<TAB>
                          from name<TAB>from address<TAB>files<TAB>text" for the
                          message read from it, optionally "nhead<TAB>to<TAB>to
                          addresses<TAB>cc<TAB>cc addresses<TAB>date<TAB>epoch" for
                          its recipients (addresses ","-joined) and date, and an
                          "nfile<TAB>..." line, as a "file" line, per file of its
                          own)
As a module: tnef(files, body=None, codepage=1252, body_w=None, rtf=None,
subject="Invoice", sender=None, recipients=None, display_to=None,
display_cc=None, submit_time=None, delivery_time=None, date_sent=None) -> bytes
(sender: (name, Exchange DN, SMTP address) as PR_SENDER_NAME_W,
PR_SENDER_EMAIL_ADDRESS, PR_SENDER_SMTP_ADDRESS; recipients: the rows of
attRecipTable, dicts: type (PR_RECIPIENT_TYPE), name (str, PT_UNICODE) or
name8 (bytes, PT_STRING8) as PR_DISPLAY_NAME, smtp (str, PR_SMTP_ADDRESS_W),
email (str, PR_EMAIL_ADDRESS, 8-bit); display_to, display_cc: PR_DISPLAY_TO
and PR_DISPLAY_CC, PT_UNICODE when str, PT_STRING8 when bytes; submit_time,
delivery_time: Unix times as PR_CLIENT_SUBMIT_TIME and
PR_MESSAGE_DELIVERY_TIME (FILETIME); date_sent: attDateSent's seven fields)
(body: attBody bytes; body_w: PR_BODY_W among the message's properties;
rtf: a PR_RTF_COMPRESSED value, from rtf_compressed(raw) ("LZFu", a greedy
compressor written from [MS-OXRTFCP]) or rtf_stored(raw) ("MELA")), where files are
dicts: data, title (8.3 name, bytes), long (str, PT_UNICODE long name),
long8 (bytes, PT_STRING8 long name), mime (MIME tag), embedded (bytes: an
attached Outlook message as its own stream), extra_props (bool: add a
multi-valued, a named (by string and by id), a binary and a time property).
"""
import calendar
import hashlib
import os
import struct
import sys
import time

SIGNATURE = 0x223E9F78
LVL_MESSAGE, LVL_ATTACHMENT = 1, 2
ATT_TNEF_VERSION = 0x00089006
ATT_OEM_CODEPAGE = 0x00069007
ATT_MESSAGE_CLASS = 0x00078008
ATT_BODY = 0x0006800C
ATT_ATTACH_REND_DATA = 0x00069002
ATT_ATTACH_TITLE = 0x00018010
ATT_ATTACH_DATA = 0x0006800F
ATT_ATTACHMENT = 0x00069005
ATT_MAPI_PROPS = 0x00069003
ATT_RECIP_TABLE = 0x00069004
ATT_DATE_SENT = 0x00038005

PT_LONG, PT_BOOLEAN, PT_SYSTIME = 0x0003, 0x000B, 0x0040
PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT = 0x001E, 0x001F, 0x0102, 0x000D
MV = 0x1000
IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")


def attr(level, ident, data):
    return (struct.pack("<BII", level, ident, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def pad(b):
    return b + b"\0" * (-len(b) % 4)


def var(values):
    """A count, then each value's size, bytes and padding."""
    out = struct.pack("<I", len(values))
    for v in values:
        out += struct.pack("<I", len(v)) + pad(v)
    return out


def prop(ptype, pid, value, name=None):
    """One property: tag, the name of a named one, its value(s)."""
    out = struct.pack("<I", pid << 16 | ptype)
    if name is not None:
        guid, kind, nm = name
        out += guid + struct.pack("<I", kind)
        if kind == 0:
            out += struct.pack("<I", nm)
        else:
            s = nm.encode("utf-16-le") + b"\0\0"
            out += struct.pack("<I", len(s)) + pad(s)
    return out + value


def props(items):
    return struct.pack("<I", len(items)) + b"".join(items)


def utf16z(s):
    return s.encode("utf-16-le") + b"\0\0"


# [MS-OXRTFCP] 2.1.2.1: the dictionary's first 207 bytes
RTF_PREBUF = (b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss "
              b"\\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier"
              b"{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx")
assert len(RTF_PREBUF) == 207


def rtf_crc(data):
    """[MS-OXRTFCP] 3.1.3.2: CRC-32's table, started at 0, not inverted."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc


def rtf_compressed(raw):
    """raw as "LZFu": the longest match (2 to 17 bytes) in the 4096-byte
    dictionary at each position, a match may run into the bytes it
    writes; the reference at the write position ends it."""
    size = 4096
    d = bytearray(size)
    d[:207] = RTF_PREBUF
    wpos, written = 207, 207
    tokens = []                 # (True, 2-byte reference) or (False, byte)
    i = 0
    while i < len(raw):
        best_len, best_off = 0, 0
        for off in range(size):
            if off == wpos or (written < size and off >= written):
                continue
            n = 0
            while n < 17 and i + n < len(raw):
                at = (off + n) % size
                rel = (at - wpos) % size
                # bytes this match writes are the input's own
                c = raw[i + rel] if rel < n else d[at]
                if rel >= n and written < size and at >= written:
                    break
                if c != raw[i + n]:
                    break
                n += 1
            if n > best_len:
                best_len, best_off = n, off
                if n == 17:
                    break
        n = best_len if best_len >= 2 else 1
        if best_len >= 2:
            tokens.append((True, struct.pack(">H", best_off << 4 | (best_len - 2))))
        else:
            tokens.append((False, raw[i:i + 1]))
        for k in range(n):
            d[wpos] = raw[i + k]
            wpos = (wpos + 1) % size
            written = min(written + 1, size)
        i += n
    tokens.append((True, struct.pack(">H", wpos << 4)))
    out = bytearray()
    for g in range(0, len(tokens), 8):
        group = tokens[g:g + 8]
        out.append(sum(1 << k for k, (ref, _) in enumerate(group) if ref))
        for _, b in group:
            out += b
    return struct.pack("<III", len(out) + 12, len(raw), 0x75465A4C) + struct.pack("<I", rtf_crc(out)) + bytes(out)


def rtf_stored(raw):
    """raw as "MELA": stored as it is, its CRC 0."""
    return struct.pack("<IIII", len(raw) + 12, len(raw), 0x414C454D, 0) + raw


def text(pid, value):
    """A text property, Unicode for str, 8-bit for bytes."""
    if isinstance(value, str):
        return prop(PT_UNICODE, pid, var([utf16z(value)]))
    return prop(PT_STRING8, pid, var([value + b"\0"]))


def filetime(unix):
    """A PT_SYSTIME value: 100 ns since 1601-01-01 UTC."""
    return struct.pack("<Q", (unix + 11644473600) * 10000000)


def recip_table(rows):
    """attRecipTable: a row count, then each row a property list."""
    out = struct.pack("<I", len(rows))
    for r in rows:
        items = [prop(PT_LONG, 0x0C15, struct.pack("<I", r["type"]))]
        if "name" in r:
            items.append(text(0x3001, r["name"]))
        if "name8" in r:
            items.append(text(0x3001, r["name8"]))
        if "email" in r:
            items.append(text(0x3003, r["email"].encode()))
        if "smtp" in r:
            items.append(text(0x39FE, r["smtp"]))
        out += props(items)
    return out


def tnef(files, body=None, codepage=1252, body_w=None, rtf=None, subject="Invoice", sender=None,
         recipients=None, display_to=None, display_cc=None, submit_time=None, delivery_time=None,
         date_sent=None):
    out = struct.pack("<IH", SIGNATURE, 0x0001)
    out += attr(LVL_MESSAGE, ATT_TNEF_VERSION, struct.pack("<I", 0x00010000))
    out += attr(LVL_MESSAGE, ATT_OEM_CODEPAGE, struct.pack("<II", codepage, 0))
    out += attr(LVL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\0")
    if body is not None:
        out += attr(LVL_MESSAGE, ATT_BODY, body)
    if date_sent is not None:
        out += attr(LVL_MESSAGE, ATT_DATE_SENT, struct.pack("<7H", *date_sent))
    # message properties: PR_SUBJECT (PT_UNICODE), PR_MESSAGE_FLAGS, and
    # PR_BODY_W when given
    items = [prop(PT_UNICODE, 0x0037, var([utf16z(subject)])),
             prop(PT_LONG, 0x0E07, struct.pack("<I", 1))]
    if sender is not None:
        items += [prop(PT_UNICODE, 0x0C1A, var([utf16z(sender[0])])),
                  prop(PT_STRING8, 0x0C1F, var([sender[1].encode() + b"\0"])),
                  prop(PT_STRING8, 0x5D01, var([sender[2].encode() + b"\0"]))]
    if display_to is not None:
        items.append(text(0x0E04, display_to))
    if display_cc is not None:
        items.append(text(0x0E03, display_cc))
    if submit_time is not None:
        items.append(prop(PT_SYSTIME, 0x0039, filetime(submit_time)))
    if delivery_time is not None:
        items.append(prop(PT_SYSTIME, 0x0E06, filetime(delivery_time)))
    if body_w is not None:
        items.append(prop(PT_UNICODE, 0x1000, var([utf16z(body_w)])))
    if rtf is not None:
        items.append(prop(PT_BINARY, 0x1009, var([rtf])))
    out += attr(LVL_MESSAGE, ATT_MAPI_PROPS, props(items))
    if recipients is not None:
        out += attr(LVL_MESSAGE, ATT_RECIP_TABLE, recip_table(recipients))
    for f in files:
        out += attr(LVL_ATTACHMENT, ATT_ATTACH_REND_DATA,
                    struct.pack("<HiIIH", 1, -1, 0, 0, 1))
        if "title" in f:
            out += attr(LVL_ATTACHMENT, ATT_ATTACH_TITLE, f["title"] + b"\0")
        if "data" in f:
            out += attr(LVL_ATTACHMENT, ATT_ATTACH_DATA, f["data"])
        items = []
        if f.get("extra_props"):
            guid = bytes(range(16))
            items += [
                prop(PT_LONG | MV, 0x1003, struct.pack("<III", 2, 7, 9)),
                prop(PT_STRING8 | MV, 0x1004, var([b"one\0", b"three\0"])),
                prop(PT_BOOLEAN, 0x8001, struct.pack("<I", 1), (guid, 0, 0x8233)),
                prop(PT_UNICODE, 0x8002, var([utf16z("x-value")]), (guid, 1, "X-Key")),
                prop(PT_BINARY, 0x3702, var([b"\x01\x02\x03"])),       # PR_ATTACH_ENCODING
                prop(PT_SYSTIME, 0x3007, struct.pack("<Q", 0x01D3C2F0B3AB8000)),
            ]
        if "embedded" in f:
            items += [prop(PT_LONG, 0x3705, struct.pack("<I", 5)),
                      prop(PT_OBJECT, 0x3701, var([IID_IMESSAGE + f["embedded"]]))]
        else:
            items.append(prop(PT_LONG, 0x3705, struct.pack("<I", 1)))
        if "long" in f:
            items.append(prop(PT_UNICODE, 0x3707, var([utf16z(f["long"])])))
        if "long8" in f:
            items.append(prop(PT_STRING8, 0x3707, var([f["long8"] + b"\0"])))
        if "mime" in f:
            items.append(prop(PT_STRING8, 0x370E, var([f["mime"].encode() + b"\0"])))
        out += attr(LVL_ATTACHMENT, ATT_ATTACHMENT, props(items))
    return out


def sha(b):
    return hashlib.sha256(b).hexdigest()


def date_header(unix, zone="+0000"):
    """A Date header's text (RFC 5322, a two-digit day) of a Unix time."""
    return time.strftime("%a, %d %b %Y %H:%M:%S ", time.gmtime(unix)) + zone


def attached_line(name, stream, taken):
    """The "file" line of an attached Outlook message read as one, its
    stream's note saying what was taken out."""
    return ("file\t%s.tnef\tapplication/vnd.ms-tnef\t%d\t%s\tan Outlook message attached in TNEF,"
            " read as an attached message; TNEF (attached Outlook message): %s"
            % (name, len(stream), sha(stream), taken))


def nhead(to, to_addrs, cc, cc_addrs, date="", epoch=0):
    return "nhead\t%s\t%s\t%s\t%s\t%s\t%d" % (to, ",".join(to_addrs), cc, ",".join(cc_addrs),
                                                  date, epoch)


def cases():
    """(name, stream, expected lines)."""
    # the compressor gives the bytes of [MS-OXRTFCP]'s two examples
    assert rtf_compressed(b"{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n") == bytes.fromhex(
        "2d0000002b0000004c5a4675f1c5c7a703000a007263706731323542320af320"
        "68656c090020627705b06c647d0a800fa0")
    assert rtf_compressed(b"{\\rtf1 WXYZWXYZWXYZWXYZWXYZ}") == bytes.fromhex(
        "1a0000001c0000004c5a4675e2d44b5141000420575859 5a0d6e7d010eb0".replace(" ", ""))
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 12 + b"\n%%EOF\n"
    exe = b"MZ\x90\0" + os.urandom(0) + bytes(range(255, -1, -1)) * 4
    docm = b"PK\x03\x04" + b"macro" * 300
    inner = tnef([{"title": b"NOTE.TXT", "data": b"inner\n"}], body=b"Forwarded\r\n")
    out = []
    s = tnef([
        {"title": b"RECHNU~1.PDF", "long": "Rechnung M\u00e4rz \u2013 \u0421\u0447\u0451\u0442.pdf",
         "mime": "application/pdf", "data": pdf, "extra_props": True},
        {"title": b"FACTUR~1.EXE", "long8": b"Factura-\xf1o.pdf.exe", "data": exe},
        {"title": b"ORDER.DOCM", "data": docm},
        {"long": "Fwd: your mailbox", "embedded": inner},
    ], body=b"Dear customer,\r\nplease find the invoice attached.\r\n")
    out.append(("outlook", s, [
        "note\tTNEF (winmail.dat): 4 files taken out",
        "text\tDear customer,\r\nplease find the invoice attached.\r\n",
        "file\tRechnung M\u00e4rz \u2013 \u0421\u0447\u0451\u0442.pdf\tapplication/pdf\t%d\t%s\t-" % (len(pdf), sha(pdf)),
        "file\tFactura-\u00f1o.pdf.exe\tapplication/x-msdownload\t%d\t%s\t-" % (len(exe), sha(exe)),
        "file\tORDER.DOCM\tapplication/octet-stream\t%d\t%s\t-" % (len(docm), sha(docm)),
        attached_line("Fwd: your mailbox", inner, "1 file taken out"),
        "nested\tInvoice\t\t\t1\tForwarded\r\n",
        nhead("", [], "", []),
        "nfile\tNOTE.TXT\ttext/plain\t6\t%s\t-" % sha(b"inner\n"),
    ]))
    # an attached Outlook message with a sender, an RTF body only, a file
    # and an Outlook message of its own, which is damaged
    deeper = b"\x78\x9f\x3e\x22\x01\x00\x01"
    note_rtf = b"{\\rtf1\\ansi\\ansicpg1252 Your account will be closed. Sign in at once.\\par}"
    zip_ = b"PK\3\4" + b"z" * 40
    inner = tnef([{"title": b"VERIFY.ZIP", "data": zip_},
                  {"long": "Re: account", "embedded": deeper}],
                 rtf=rtf_compressed(note_rtf), subject="Konto gesperrt \u2013 dringend",
                 sender=("Service Desk", "/O=EXCHANGE/OU=FIRST/CN=RECIPIENTS/CN=SERVICE",
                         "service@Desk.Example"))
    s = tnef([{"long": "FW: Konto gesperrt", "embedded": inner}], body=b"See the attached mail.\r\n")
    out.append(("embedded", s, [
        "note\tTNEF (winmail.dat): 1 file taken out",
        "text\tSee the attached mail.\r\n",
        attached_line("FW: Konto gesperrt", inner, "3 files taken out; RTF body read"),
        "nested\tKonto gesperrt \u2013 dringend\tService Desk\tservice@desk.example\t3\t"
        "Your account will be closed. Sign in at once.\n",
        "nfile\tVERIFY.ZIP\tapplication/zip\t%d\t%s\t-" % (len(zip_), sha(zip_)),
        "nfile\tRe: account.tnef\tapplication/vnd.ms-tnef\t%d\t%s\t"
        "an Outlook message attached in TNEF, not read: an attribute cut short at byte 6; "
        "kept as its TNEF stream" % (len(deeper), sha(deeper)),
        "nfile\tbody.rtf\tapplication/rtf\t%d\t%s\t-" % (len(note_rtf), sha(note_rtf)),
    ]))
    # an attached Outlook message's recipients, from its recipient table
    # (its display strings then not needed), and its date, the submit time
    # over the delivery time: as an attached .eml's headers are listed
    submit = calendar.timegm((2024, 3, 5, 14, 30, 15))
    inner = tnef([{"title": b"AGENDA.TXT", "data": b"agenda\n"}], body=b"See you there.\r\n",
                 subject="Meeting", recipients=[
                     {"type": 0x80000001, "name": "Ann M\u00fcller", "smtp": "Ann@Example.ORG"},
                     {"type": 1, "name8": b"Doe, John",
                      "email": "/O=EXAMPLE/OU=FIRST/CN=RECIPIENTS/CN=JDOE"},
                     {"type": 2, "name8": b"Bj\xf6rn \"Bear\" Berg", "email": "bjorn@example.net"},
                     {"type": 3, "name": "Hidden", "smtp": "bcc@example.org"},
                     {"type": 2, "smtp": "list@example.org"}],
                 display_to="Ann M\u00fcller; Doe, John", display_cc="Bj\u00f6rn; list",
                 submit_time=submit, delivery_time=submit + 300)
    s = tnef([{"long": "Meeting", "embedded": inner}])
    out.append(("recipients", s, [
        "note\tTNEF (winmail.dat): 1 file taken out",
        attached_line("Meeting", inner, "1 file taken out"),
        "nested\tMeeting\t\t\t1\tSee you there.\r\n",
        nhead("Ann M\u00fcller <Ann@example.org>, \"Doe, John\"", ["Ann@example.org"],
              "\"Bj\u00f6rn 'Bear' Berg\" <bjorn@example.net>, list@example.org",
              ["bjorn@example.net", "list@example.org"], date_header(submit), submit),
        "nfile\tAGENDA.TXT\ttext/plain\t7\t%s\t-" % sha(b"agenda\n"),
    ]))
    # no recipient table: the names of the display strings (Unicode and
    # 8-bit), no addresses; no date property: attDateSent, UTC with the
    # sender's zone unknown
    sent = (2023, 12, 24, 18, 5, 9, 0)
    inner = tnef([], body=b"Merry Christmas\r\n", subject="Greetings",
                 display_to="Carol Chen; Support, Team", display_cc=b"R\xe9ception",
                 date_sent=sent)
    s = tnef([{"long": "Greetings", "embedded": inner}])
    out.append(("displayto", s, [
        "note\tTNEF (winmail.dat): 1 file taken out",
        attached_line("Greetings", inner, "0 files taken out"),
        "nested\tGreetings\t\t\t0\tMerry Christmas\r\n",
        nhead("Carol Chen, \"Support, Team\"", [], "R\u00e9ception", [],
              date_header(calendar.timegm(sent[:6]), "-0000"), calendar.timegm(sent[:6])),
    ]))
    # a wrong checksum on the file's data: read anyway, counted
    s = bytearray(tnef([{"title": b"A.TXT", "data": b"abc"}]))
    i = s.find(b"abc")
    s[i + 3] ^= 0xFF
    out.append(("checksum", bytes(s), [
        "note\tTNEF (winmail.dat): 1 file taken out; 1 attribute checksum wrong",
        "file\tA.TXT\ttext/plain\t3\t%s\t-" % sha(b"abc")]))
    # cut inside the second file's data: the first stands
    s = tnef([{"title": b"FIRST.TXT", "data": b"first"}, {"title": b"SECOND.TXT", "data": b"x" * 100}])
    cut = s.rfind(b"x" * 100) + 50
    out.append(("truncated", s[:cut], [
        "note\tTNEF (winmail.dat): 1 file taken out; reading stopped: an attribute longer "
        "than the stream at byte %d" % (s.rfind(b"x" * 100) - 9),
        "file\tFIRST.TXT\ttext/plain\t5\t%s\t-" % sha(b"first")]))
    # a link: an attachment without bytes
    s = tnef([{"title": b"LINK.URL"}, {"title": b"B.BIN", "data": b"\0\1"}])
    out.append(("nodata", s, [
        "note\tTNEF (winmail.dat): 1 file taken out; 1 attachment without bytes left out",
        "file\tB.BIN\tapplication/octet-stream\t2\t%s\t-" % sha(b"\0\1")]))
    # no attBody: the text is PR_BODY_W of the message's properties
    s = tnef([{"title": b"Z.ZIP", "data": b"PK\5\6" + b"\0" * 18}], body_w="Gr\u00fc\u00dfe aus K\u00f6ln\r\n")
    out.append(("mapibody", s, [
        "note\tTNEF (winmail.dat): 1 file taken out",
        "text\tGr\u00fc\u00dfe aus K\u00f6ln\r\n",
        "file\tZ.ZIP\tapplication/zip\t22\t%s\t-" % sha(b"PK\5\6" + b"\0" * 18)]))
    # the RTF body (PR_RTF_COMPRESSED) alone, no attBody or PR_BODY: its
    # text is the message's, the RTF a file under the winmail.dat
    rtf = (b"{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fswiss Arial;}{\\f1\\fnil Symbol;}}\r\n"
           b"{\\colortbl;\\red255\\green0\\blue0;}\r\n{\\stylesheet{\\s0 Normal;}}\r\n"
           b"{\\*\\generator Riched20 10.0.19041}{\\info{\\author Mallory}{\\title Invoice}}\r\n"
           b"\\viewkind4\\uc1\\pard\\f0\\fs20 Gr\\'fc\\'dfe aus K\\'f6ln \\endash  Rechnung \\{2\\}\\par\r\n"
           b"Betrag: 1.250,00 \\u8364?\\par\r\n"
           b"{\\pict\\wmetafile8 0102ff}Pfad C:\\\\Temp\\line\r\n"
           b"\\u-10179?\\u-8704? Ende\\par\r\n}\r\n")
    doc = b"%PDF-1.4\n" + b"rtf" * 100
    s = tnef([{"title": b"RTF.PDF", "data": doc}], rtf=rtf_compressed(rtf))
    out.append(("rtfbody", s, [
        "note\tTNEF (winmail.dat): 2 files taken out; RTF body read",
        "text\tGr\u00fc\u00dfe aus K\u00f6ln \u2013 Rechnung {2}\nBetrag: 1.250,00 \u20ac\n"
        "Pfad C:\\Temp\n\U0001F600 Ende\n",
        "file\tRTF.PDF\tapplication/pdf\t%d\t%s\t-" % (len(doc), sha(doc)),
        "file\tbody.rtf\tapplication/rtf\t%d\t%s\t-" % (len(rtf), sha(rtf))]))
    # Outlook's encapsulated HTML ([MS-OXRTFEX]): the htmltag groups and the
    # text outside \htmlrtf, rendered as HTML-only mail is
    html = (b"{\\rtf1\\ansi\\ansicpg1252\\fromhtml1 \\fbidis \\deff0{\\fonttbl\r\n"
            b"{\\f0\\fswiss\\fcharset0 Arial;}\r\n{\\f1\\fmodern Courier New;}}\r\n"
            b"{\\colortbl\\red0\\green0\\blue0;\\red0\\green0\\blue255;}\r\n"
            b"\\uc1\\pard\\plain\\deftab360 \\f0\\fs24 \r\n"
            b"{\\*\\htmltag19 <html>}\r\n{\\*\\htmltag34 <head>}\r\n{\\*\\htmltag161 <style>}\r\n"
            b"{\\*\\htmltag241 p \\{ margin: 0 \\}}\r\n{\\*\\htmltag169 </style>}\r\n"
            b"{\\*\\htmltag41 </head>}\r\n{\\*\\htmltag50 <body>}\r\n"
            b"{\\*\\htmltag64 <p>}\\htmlrtf {\\htmlrtf0 Your mailbox is full.\\htmlrtf }\\htmlrtf0 \r\n"
            b"{\\*\\htmltag72 </p>}\\htmlrtf \\par\r\n\\htmlrtf0 \r\n"
            b"{\\*\\htmltag64 <p>}\\htmlrtf {\\htmlrtf0 Log in at "
            b"{\\*\\htmltag84 <a href=\"https://login.example.test/\">}\\htmlrtf "
            b"{\\field{\\*\\fldinst{HYPERLINK \"https://login.example.test/\"}}"
            b"{\\fldrslt\\cf1\\ul \\htmlrtf0 the portal\\htmlrtf }}\\htmlrtf0 "
            b"{\\*\\htmltag92 </a>} \\'96 caf\\'e9 {\\*\\htmltag84 &amp;} more\\htmlrtf }\\htmlrtf0 \r\n"
            b"{\\*\\htmltag72 </p>}\r\n{\\*\\htmltag58 </body>}\r\n{\\*\\htmltag27 </html>}}\r\n")
    s = tnef([{"title": b"A.TXT", "data": b"abc"}], rtf=rtf_compressed(html))
    out.append(("rtfhtml", s, [
        "note\tTNEF (winmail.dat): 2 files taken out; RTF body read",
        "text\tYour mailbox is full.\n\nLog in at the portal \u2013 caf\u00e9 & more",
        "file\tA.TXT\ttext/plain\t3\t%s\t-" % sha(b"abc"),
        "file\tbody.rtf\tapplication/rtf\t%d\t%s\t-" % (len(html), sha(html))]))
    # plain text in RTF (\fromtext), stored ("MELA"), in the code page \ansicpg names
    text = (b"{\\rtf1\\ansi\\ansicpg1251\\fromtext \\fbidis \\deff0{\\fonttbl{\\f0\\fswiss\\fcharset204 Arial;}}\r\n"
            b"{\\*\\htmltag1 }\\htmlrtf {\\htmlrtf0 \\'cf\\'f0\\'e8\\'e2\\'e5\\'f2\\par\r\n"
            b"Second line\\par\r\n}\\htmlrtf0 }")
    s = tnef([{"title": b"A.TXT", "data": b"abc"}], rtf=rtf_stored(text))
    out.append(("rtfstored", s, [
        "note\tTNEF (winmail.dat): 2 files taken out; RTF body read",
        "text\t\u041f\u0440\u0438\u0432\u0435\u0442\nSecond line\n",
        "file\tA.TXT\ttext/plain\t3\t%s\t-" % sha(b"abc"),
        "file\tbody.rtf\tapplication/rtf\t%d\t%s\t-" % (len(text), sha(text))]))
    # attBody and an RTF body: the plain text is the message's, the RTF a file
    s = tnef([], body=b"Plain wins\r\n", rtf=rtf_compressed(rtf))
    out.append(("rtfboth", s, [
        "note\tTNEF (winmail.dat): 1 file taken out; RTF body read",
        "text\tPlain wins\r\n",
        "file\tbody.rtf\tapplication/rtf\t%d\t%s\t-" % (len(rtf), sha(rtf))]))
    # a wrong CRC: counted, the RTF read anyway
    c = bytearray(rtf_compressed(rtf))
    c[12] ^= 0xFF
    s = tnef([{"title": b"A.TXT", "data": b"abc"}], rtf=bytes(c))
    out.append(("rtfcrc", s, [
        "note\tTNEF (winmail.dat): 2 files taken out; RTF body read, its CRC wrong",
        "text\tGr\u00fc\u00dfe aus K\u00f6ln \u2013 Rechnung {2}\nBetrag: 1.250,00 \u20ac\n"
        "Pfad C:\\Temp\n\U0001F600 Ende\n",
        "file\tA.TXT\ttext/plain\t3\t%s\t-" % sha(b"abc"),
        "file\tbody.rtf\tapplication/rtf\t%d\t%s\t-" % (len(rtf), sha(rtf))]))
    # damage: a reference to a part of the dictionary never written; the
    # files stand, the note says why there is no RTF body
    bad = b"\x01" + struct.pack(">H", 300 << 4)
    bad = struct.pack("<IIII", len(bad) + 12, 10, 0x75465A4C, rtf_crc(bad)) + bad
    s = tnef([{"title": b"A.TXT", "data": b"abc"}], rtf=bad)
    out.append(("rtfdamaged", s, [
        "note\tTNEF (winmail.dat): 1 file taken out; RTF body not read: a reference to what was never written",
        "text\t",
        "file\tA.TXT\ttext/plain\t3\t%s\t-" % sha(b"abc")]))
    # an RTF body past the 4096-byte dictionary: references after it has
    # wrapped, to bytes written over the initial dictionary
    lines = [("Line %d of the report: host%03d.example.test flagged %d times, rule %s"
              % (k, (k * 37) % 1000, (k * 7919) % 97, "ABCDEFGHIJ"[k % 10] * (1 + k % 5)))
             for k in range(80)]
    big = (b"{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fswiss Arial;}}\\pard\\f0 "
           + b"\\par\r\n".join(l.encode() for l in lines) + b"\\par\r\n}")
    assert len(big) > 5000
    s = tnef([], rtf=rtf_compressed(big))
    out.append(("rtfwrap", s, [
        "note\tTNEF (winmail.dat): 1 file taken out; RTF body read",
        "text\t" + "\n".join(lines) + "\n",
        "file\tbody.rtf\tapplication/rtf\t%d\t%s\t-" % (len(big), sha(big))]))
    # a PNG sent as winmail.dat
    out.append(("png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", [
        "note\tTNEF (winmail.dat) kept as is: not TNEF: bad signature"]))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, stream, expect in cases():
        with open(os.path.join(sys.argv[1], name + ".tnef"), "wb") as fh:
            fh.write(stream)
        with open(os.path.join(sys.argv[1], name + ".expect"), "w", encoding="utf-8", newline="") as fh:
            fh.write("".join(line.replace("\r", "\\r").replace("\n", "\\n") + "\n" for line in expect))


if __name__ == "__main__":
    main()
