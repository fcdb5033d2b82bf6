#!/usr/bin/env python3
"""tests/tools/mkuu.py: writes messages that carry files uuencoded in their
text body (Python's binascii, as `uuencode` writes them: backquote for zero,
a zero-length line before "end"), apart from the parser's decoder, and what
the parser must make of each.

Usage: mkuu.py OUTDIR   writes OUTDIR/NAME.eml and OUTDIR/NAME.expect, one
                        check a line, tab-separated, \\r \\n escaped:
  reason TEXT                      the message is rejected with TEXT
  levels N                         N attached messages, each the first of
                                   the one before
  PATH subject|from|text|signed V  a field of the message at PATH ("." the
                                   message, "0" its first attached message,
                                   "0.1" that one's second ...); signed 0|1
  PATH count A N                   A attachments, N attached messages
  PATH file I NAME TYPE SIZE SHA256 NESTED PARENT NOTE
                                   attachment I; NESTED the attached
                                   message's index or -1, PARENT the index
                                   of the attachment holding it or -1, NOTE
                                   "-" for none
The .p7m case signs with openssl (a throwaway key made for the run), so
it runs only where the openssl command is installed; its files are kept
in the tree (tests/unit/uu) and need not be made again.
"""
import binascii
import hashlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mktnef  # noqa: E402

CRLF = "\r\n"
SIGNED_READ = ("S/MIME opaque-signed: the signed content is read from it;"
               " the signature is not verified")
MSG_NOTE = "MSG attachments are not supported; attach the message as EML"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def uu(name, data):
    """A uuencode block of data called name, CRLF lines."""
    lines = [binascii.b2a_uu(data[i:i + 45], backtick=True).decode().rstrip("\n")
             for i in range(0, len(data), 45)]
    return CRLF.join(["begin 644 " + name] + lines + ["`", "end"]) + CRLF


def message(subject, sender, body, extra=""):
    """A plain text message (no MIME header: text/plain, us-ascii)."""
    return ("From: %s\r\nTo: soc@corp.test\r\nSubject: %s\r\n"
            "Date: Mon, 6 Jan 2025 10:00:00 +0000\r\n%s\r\n%s"
            % (sender, subject, extra, body)).encode()


def file_line(path, i, name, ctype, data, nested=-1, parent=-1, note="-"):
    return "\t".join([path, "file", str(i), name, ctype, str(len(data)), sha(data),
                      str(nested), str(parent), note])


def case_eml():
    """A forwarding gateway's mail: the reported message uuencoded in the
    text, with its own (MIME) attachment."""
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 3 + b"\n%%EOF\n"
    inner = ("From: Billing Dept <billing@phish.example>\r\nTo: victim@corp.test\r\n"
             "Subject: Invoice 4711 overdue\r\nDate: Fri, 3 Jan 2025 08:00:00 +0000\r\n"
             "Message-ID: <4711@phish.example>\r\nMIME-Version: 1.0\r\n"
             "Content-Type: multipart/mixed; boundary=\"INV\"\r\n\r\n"
             "--INV\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
             "Pay now at https://phish.example/pay\r\n"
             "--INV\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\n"
             "Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n"
             + binascii.b2a_base64(pdf).decode().replace("\n", "") + "\r\n--INV--\r\n").encode()
    head = "Reported by a user, forwarded by the mail gateway.\r\n\r\n"
    tail = "\r\nEnd of forward.\r\n"
    raw = message("Fwd: Invoice 4711 overdue", "Mail Gateway <gateway@corp.test>",
                  head + uu("invoice-4711.eml", inner) + tail)
    expect = [
        ".\tsubject\tFwd: Invoice 4711 overdue",
        ".\tfrom\tgateway@corp.test",
        ".\ttext\t" + head + "[attachment: invoice-4711.eml]\r\n" + tail,
        ".\tcount\t1\t1",
        file_line(".", 0, "invoice-4711.eml", "message/rfc822", inner, nested=0),
        "0\tsubject\tInvoice 4711 overdue",
        "0\tfrom\tbilling@phish.example",
        "0\ttext\tPay now at https://phish.example/pay",
        "0\tcount\t1\t0",
        file_line("0", 0, "invoice.pdf", "application/pdf", pdf),
    ]
    return raw, expect


def sign(content):
    """CMS SignedData (DER) holding content, as "openssl cms -sign
    -nodetach -binary" makes it, with a throwaway P-256 key."""
    with tempfile.TemporaryDirectory() as d:
        key, cert = os.path.join(d, "k.pem"), os.path.join(d, "c.pem")
        src, out = os.path.join(d, "content"), os.path.join(d, "signed.p7m")
        with open(src, "wb") as fh:
            fh.write(content)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=notary",
                        "-days", "1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "cms", "-sign", "-nodetach", "-binary", "-in", src,
                        "-signer", cert, "-inkey", key, "-outform", "DER", "-out", out],
                       check=True, capture_output=True)
        with open(out, "rb") as fh:
            return fh.read()


def case_p7m():
    """A signed contract (a .p7m holding a PDF) uuencoded in the text."""
    pdf = b"%PDF-1.7\n" + b"contract of sale, signed\n" * 20 + b"%%EOF\n"
    p7m = sign(pdf)
    head = "The notary's signed contract:\r\n"
    tail = "Regards\r\n"
    raw = message("Signed contract", "Notary <notary@corp.test>",
                  head + uu("contract.pdf.p7m", p7m) + tail)
    expect = [
        ".\ttext\t" + head + "[attachment: contract.pdf.p7m]\r\n" + tail,
        ".\tsigned\t1",
        ".\tcount\t2\t0",
        file_line(".", 0, "contract.pdf", "application/pdf", pdf),
        file_line(".", 1, "contract.pdf.p7m", "application/pkcs7-mime", p7m, note=SIGNED_READ),
    ]
    return raw, expect


def case_entity():
    """An opaque-signed message body (smime.p7m holding a MIME entity)
    uuencoded in the text: its text joins the body after the text that
    held it, as a signed part after a text part would."""
    entity = (b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
              b"Signed alert: block https://evil.example/x\r\n")
    p7m = sign(entity)
    head = "A signed alert follows.\r\n"
    tail = "End.\r\n"
    raw = message("Signed alert", "CERT <cert@corp.test>", head + uu("smime.p7m", p7m) + tail)
    expect = [
        ".\ttext\t" + head + "[attachment: smime.p7m]\r\n" + tail
        + "\nSigned alert: block https://evil.example/x\r\n",
        ".\tsigned\t1",
        ".\tcount\t1\t0",
        file_line(".", 0, "smime.p7m", "application/pkcs7-mime", p7m, note=SIGNED_READ),
    ]
    return raw, expect


def case_legacy():
    """An .msg, a winmail.dat and an .eml that is no message, uuencoded."""
    msg = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    doc = b"quarterly figures\r\n" * 10
    dat = mktnef.tnef([{"data": doc, "title": b"FIGURES.TXT", "long": "figures Q4.txt",
                        "mime": "text/plain"}])
    junk = b"\x00\x01\x02 not a message at all\n"
    head = "Old client, three files:\r\n"
    raw = message("Files from the old client", "Old Client <old@corp.test>",
                  head + uu("suspicious.msg", msg) + uu("winmail.dat", dat)
                  + uu("notes.eml", junk))
    expect = [
        ".\ttext\t" + head + "[attachment: suspicious.msg]\r\n[attachment: winmail.dat]\r\n"
        "[attachment: notes.eml]\r\n",
        ".\tcount\t4\t0",
        file_line(".", 0, "suspicious.msg", "application/octet-stream", msg, note=MSG_NOTE),
        file_line(".", 1, "winmail.dat", "application/octet-stream", dat,
                  note="TNEF (winmail.dat): 1 file taken out"),
        file_line(".", 2, "figures Q4.txt", "text/plain", doc, parent=1),
        file_line(".", 3, "notes.eml", "message/rfc822", junk,
                  note="attached message not read: not an email message: no header fields"),
    ]
    return raw, expect


def chain(levels):
    """levels messages, each uuencoded in the text of the next."""
    cur = message("innermost", "a@b.test", "hi\r\n")
    for level in range(levels):
        cur = message("level %d" % level, "a@b.test", "level %d\r\n" % level + uu("m.eml", cur))
    return cur


def cases():
    yield ("eml",) + case_eml()
    yield ("p7m",) + case_p7m()
    yield ("entity",) + case_entity()
    yield ("legacy",) + case_legacy()
    # as an .eml attached in MIME, each level is two (the text part, the
    # file in it): 15 levels are read within the default depth limit of
    # 32, the 16th goes over it
    yield "chain15", chain(15), ["levels\t15"]
    yield "chain16", chain(16), ["reason\tMIME nesting deeper than 32 levels"]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: mkuu.py OUTDIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, raw, expect in cases():
        with open(os.path.join(sys.argv[1], name + ".eml"), "wb") as fh:
            fh.write(raw)
        with open(os.path.join(sys.argv[1], name + ".expect"), "w", encoding="utf-8", newline="") as fh:
            fh.write("".join(line.replace("\r", "\\r").replace("\n", "\\n") + "\n" for line in expect))


if __name__ == "__main__":
    main()
