#!/usr/bin/env python3
"""tests/tools/mktnef.py: writes TNEF streams (winmail.dat) as [MS-OXTNEF]
describes them, an implementation apart from the parser's reader.

Usage: mktnef.py OUTDIR   writes the message-test cases: OUTDIR/NAME.tnef and
                          OUTDIR/NAME.expect (what the parser must make of a
                          message whose only part is NAME.tnef as winmail.dat:
                          "note<TAB>..." for the winmail.dat's note, "text<TAB>..."
                          for the message's text, then one "file<TAB>name<TAB>
                          type<TAB>size<TAB>sha256<TAB>note" line per file taken
                          out, in order, with "-" for no note)
As a module: tnef(files, body=None, codepage=1252, body_w=None) -> bytes
(body: attBody bytes; body_w: PR_BODY_W among the message's properties), where files are
dicts: data, title (8.3 name, bytes), long (str, PT_UNICODE long name),
long8 (bytes, PT_STRING8 long name), mime (MIME tag), embedded (bytes: an
attached Outlook message as its own stream), extra_props (bool: add a
multi-valued, a named (by string and by id), a binary and a time property).
"""
import hashlib
import os
import struct
import sys

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


def tnef(files, body=None, codepage=1252, body_w=None):
    out = struct.pack("<IH", SIGNATURE, 0x0001)
    out += attr(LVL_MESSAGE, ATT_TNEF_VERSION, struct.pack("<I", 0x00010000))
    out += attr(LVL_MESSAGE, ATT_OEM_CODEPAGE, struct.pack("<II", codepage, 0))
    out += attr(LVL_MESSAGE, ATT_MESSAGE_CLASS, b"IPM.Microsoft Mail.Note\0")
    if body is not None:
        out += attr(LVL_MESSAGE, ATT_BODY, body)
    # message properties: PR_SUBJECT (PT_UNICODE), PR_MESSAGE_FLAGS, and
    # PR_BODY_W when given
    items = [prop(PT_UNICODE, 0x0037, var([utf16z("Invoice")])),
             prop(PT_LONG, 0x0E07, struct.pack("<I", 1))]
    if body_w is not None:
        items.append(prop(PT_UNICODE, 0x1000, var([utf16z(body_w)])))
    out += attr(LVL_MESSAGE, ATT_MAPI_PROPS, props(items))
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


def cases():
    """(name, stream, expected lines)."""
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
        "file\tFwd: your mailbox.tnef\tapplication/vnd.ms-tnef\t%d\t%s\t"
        "an Outlook message attached in TNEF is not read; kept as its TNEF stream" % (len(inner), sha(inner)),
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
