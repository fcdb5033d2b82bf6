#!/usr/bin/env python3
"""tests/tools/mkmail.py: builds test messages with Python's `email` package.

Usage: mkmail.py KIND OUT [options]     writes one message (RFC 5322, CRLF) to OUT
  KIND: plain      a text message
        nested     a message with an attached .eml (message/rfc822) that has
                   its own attachment (inner-note.txt) - and that attached
                   message attaches one more message (depth 2)
        msg        a message with an Outlook .msg attachment (application/vnd.ms-outlook)
        smime      S/MIME encrypted (application/pkcs7-mime; smime-type=enveloped-data)
        pgp        PGP/MIME encrypted (multipart/encrypted)
        signed     S/MIME signed (multipart/signed, application/pkcs7-signature)
        autoreply  an out-of-office reply (Auto-Submitted: auto-replied)
        bounce     a delivery status report (multipart/report; report-type=delivery-status)
        tnef       Outlook "Rich Text" mail: its only part winmail.dat
                   (application/ms-tnef, tests/tools/mktnef.py) holding a PDF
                   with a long Unicode name, an .exe known by its 8.3 name and
                   the plain text body; the winmail.dat is also written to OUT.dat,
                   the PDF to OUT.pdf
        uueml      a gateway's forward: the reported message (with its own
                   attachment bank-details.txt, also written to OUT.att)
                   uuencoded as reported.eml in the text body
        tnefrtf    Outlook "Rich Text" mail whose winmail.dat has no plain
                   text body, only an RTF one (PR_RTF_COMPRESSED, LZFu) of
                   encapsulated HTML, one file and an attached Outlook
                   message (subject, sender, text, INVOICE.PDF); the
                   winmail.dat is also written to OUT.dat, the RTF to OUT.rtf
        big        a message with one attachment of --size bytes (random; the
                   attachment's bytes are also written to OUT.bin)
  options: --from ADDR --to ADDR --subject TEXT --message-id ID (without <>)
           --in-reply-to ID --references "ID ID..." --header "Name: value"
           --size BYTES --html (plain: HTML-only body) --body TEXT
           --attach FILE (plain: attach a file)
Usage: mkmail.py bulk N OUTDIR --corpus DIR [--prefix P] [--sent-header]
  writes N messages OUTDIR/NNNNNN.eml cycled from the files of DIR, each with
  a unique Message-ID <P.n@bench.test> (the original Message-ID replaced) and
  the subject suffixed with " #n". Fast: byte-level header rewrite.
"""
import argparse
import binascii
import email.policy
import mimetypes
import os
import sys
import time
from email.message import EmailMessage
from email.utils import format_datetime, localtime

POLICY = email.policy.SMTP  # CRLF line ends


def base(args, subject):
    m = EmailMessage(policy=POLICY)
    m["From"] = args.sender
    m["To"] = args.to
    m["Subject"] = args.subject or subject
    m["Date"] = format_datetime(localtime())
    m["Message-ID"] = "<%s>" % (args.message_id or "%s.%d.%d@mkmail.test" % (args.kind, os.getpid(), time.time_ns()))
    if args.in_reply_to:
        m["In-Reply-To"] = "<%s>" % args.in_reply_to
    if args.references:
        m["References"] = " ".join("<%s>" % r for r in args.references.split())
    for h in args.header:
        k, _, v = h.partition(":")
        m[k.strip()] = v.strip()
    return m


def inner_message(subject, attach_name, attach_bytes, deeper=None):
    m = EmailMessage(policy=POLICY)
    m["From"] = "Original Sender <original@phish.example>"
    m["To"] = "victim@example.test"
    m["Subject"] = subject
    m["Date"] = format_datetime(localtime())
    m["Message-ID"] = "<inner.%d.%s@phish.example>" % (time.time_ns(), attach_name)
    m.set_content("Please review the attached invoice.\n")
    m.add_attachment(attach_bytes, maintype="text", subtype="plain", filename=attach_name)
    if deeper is not None:
        m.add_attachment(deeper, filename="deeper.eml")
    return m


def build(args):
    k = args.kind
    if k == "plain":
        m = base(args, "A plain message")
        body = args.body or "Hello,\n\nthis is a test message.\n"
        if args.html:
            m.set_content("<html><body><p>%s</p></body></html>" % body, subtype="html")
        else:
            m.set_content(body)
        for f in args.attach:
            ctype = mimetypes.guess_type(f)[0] or "application/octet-stream"
            if ctype.startswith("message/"):
                ctype = "application/octet-stream"   # an .eml file as a file
            with open(f, "rb") as fh:
                m.add_attachment(fh.read(), maintype=ctype.split("/")[0], subtype=ctype.split("/")[1],
                                 filename=os.path.basename(f))
        return m
    if k == "nested":
        deepest = inner_message("Deepest message", "deepest.txt", b"the deepest attachment\n")
        inner = inner_message("Invoice 4711 overdue", "inner-note.txt", b"an attachment inside the attached mail\n",
                              deeper=deepest)
        m = base(args, "Fwd: suspicious mail with attached EML")
        m.set_content("Forwarding the suspicious mail as an attachment.\n")
        m.add_attachment(inner, filename="suspicious.eml")
        return m
    if k == "msg":
        m = base(args, "Suspicious mail attached as MSG")
        m.set_content("See the attached Outlook message.\n")
        m.add_attachment(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504, maintype="application",
                         subtype="vnd.ms-outlook", filename="suspicious.msg")
        return m
    if k == "smime":
        m = base(args, "Encrypted S/MIME report")
        m.set_content(b"0\x80\x06\t*\x86H\x86\xf7\r\x01\x07\x03\xa0\x80" + os.urandom(300),
                      maintype="application", subtype="pkcs7-mime", filename="smime.p7m",
                      params={"smime-type": "enveloped-data"}, disposition="attachment")
        return m
    if k == "pgp":
        m = base(args, "Encrypted PGP/MIME report")
        m.make_mixed()
        m.set_type("multipart/encrypted")
        m.set_param("protocol", "application/pgp-encrypted")
        ver = EmailMessage(policy=POLICY)
        ver.set_content(b"Version: 1\r\n", maintype="application", subtype="pgp-encrypted")
        ver.replace_header("Content-Transfer-Encoding", "7bit")
        ver.set_payload("Version: 1\r\n")
        data = EmailMessage(policy=POLICY)
        data.set_content(b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA1234567890ABCDEF\r\n=abcd\r\n-----END PGP MESSAGE-----\r\n",
                         maintype="application", subtype="octet-stream", filename="encrypted.asc",
                         disposition="inline")
        m.attach(ver)
        m.attach(data)
        return m
    if k == "signed":
        m = base(args, "Signed report of a phishing site")
        m.make_mixed()
        m.set_type("multipart/signed")
        m.set_param("protocol", "application/pkcs7-signature")
        m.set_param("micalg", "sha-256")
        body = EmailMessage(policy=POLICY)
        body.set_content("A signed report: the site phish.example steals passwords.\n")
        sig = EmailMessage(policy=POLICY)
        sig.set_content(b"0\x82\x01\x00" + os.urandom(256), maintype="application",
                        subtype="pkcs7-signature", filename="smime.p7s", disposition="attachment")
        m.attach(body)
        m.attach(sig)
        return m
    if k == "autoreply":
        m = base(args, "Automatic reply: out of office")
        m["Auto-Submitted"] = "auto-replied"
        m.set_content("I am out of the office until Monday.\n")
        return m
    if k == "bounce":
        # written as text: the email package cannot generate message/delivery-status
        mid = args.message_id or "bounce.%d@example.test" % time.time_ns()
        text = ("From: Mail Delivery System <MAILER-DAEMON@example.test>\r\n"
                "To: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s>\r\n")
        text = text % (args.to, args.subject or "Undelivered Mail Returned to Sender",
                       format_datetime(localtime()), mid)
        for h in args.header:
            text += h + "\r\n"
        text += ("MIME-Version: 1.0\r\n"
                 "Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUNDARY\"\r\n\r\n"
                 "--BOUNDARY\r\nContent-Type: text/plain\r\n\r\n"
                 "This is the mail system. Your message could not be delivered.\r\n\r\n"
                 "--BOUNDARY\r\nContent-Type: message/delivery-status\r\n\r\n"
                 "Reporting-MTA: dns; mx.example.test\r\n\r\n"
                 "Final-Recipient: rfc822; nobody@elsewhere.test\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
                 "--BOUNDARY\r\nContent-Type: text/rfc822-headers\r\n\r\n"
                 "From: %s\r\nTo: nobody@elsewhere.test\r\nSubject: lost\r\n"
                 "Message-ID: <never-sent.%d@example.test>\r\n\r\n--BOUNDARY--\r\n"
                 % (args.to, time.time_ns()))
        return text.encode()
    if k == "uuencoded":
        # a scanner's mail: the file uuencoded into the text body, no MIME
        data = os.urandom(3000)
        with open(args.out + ".bin", "wb") as fh:
            fh.write(data)
        lines = b"".join(binascii.b2a_uu(data[i:i + 45], backtick=True) for i in range(0, len(data), 45))
        m = base(args, "Scanned document")
        m.set_content("Scanned by the copier on floor 3.\n\nbegin 644 scan-0042.pdf\n"
                      + lines.decode() + "`\nend\n\nDo not reply.\n", cte="7bit")
        return m
    if k == "uueml":
        # a forwarding gateway's mail: the reported message uuencoded into
        # the text body, with its own (MIME) attachment
        note = b"IBAN DE00 1234 5678 9000 0000 00, by Friday\n"
        with open(args.out + ".att", "wb") as fh:
            fh.write(note)
        inner = inner_message("Urgent wire transfer", "bank-details.txt", note).as_bytes(policy=POLICY)
        lines = b"".join(binascii.b2a_uu(inner[i:i + 45], backtick=True) for i in range(0, len(inner), 45))
        m = base(args, "Fwd: Urgent wire transfer")
        m.set_content("Reported by a user, forwarded by the gateway.\n\nbegin 644 reported.eml\n"
                      + lines.decode() + "`\nend\n\nEnd of report.\n", cte="7bit")
        return m
    if k == "invite":
        # an Outlook invitation: text/calendar is the only part
        ics = ("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nPRODID:Microsoft Exchange Server 2010\r\n"
               "VERSION:2.0\r\nBEGIN:VEVENT\r\n"
               "ORGANIZER;CN=IT Helpdesk:mailto:helpdesk@phish.example\r\n"
               "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Victim:mailto:vic\r\n"
               " tim@example.test\r\n"
               "DESCRIPTION;LANGUAGE=en-US:Your password expires today\\, renew it at https://p\r\n"
               " hish.example/renew\\nThe IT team\r\n"
               "SUMMARY;LANGUAGE=en-US:Password renewal \u2013 mandatory\r\n"
               "DTSTART;TZID=W. Europe Standard Time:20240115T100000\r\n"
               "DTEND;TZID=W. Europe Standard Time:20240115T103000\r\n"
               "LOCATION;LANGUAGE=en-US:Microsoft Teams Meeting\r\n"
               "END:VEVENT\r\nEND:VCALENDAR\r\n")
        m = base(args, "Password renewal \u2013 mandatory")
        m.set_content(ics.encode(), maintype="text", subtype="calendar",
                      params={"method": "REQUEST", "charset": "utf-8"}, cte="base64")
        return m
    if k == "tnef":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import mktnef
        pdf = b"%PDF-1.7\n" + os.urandom(4000) + b"\n%%EOF\n"
        exe = b"MZ\x90\0" + os.urandom(2000)
        dat = mktnef.tnef([
            {"title": b"ZAHLUN~1.PDF", "long": "Zahlungsavis \u2013 M\u00e4rz.pdf",
             "mime": "application/pdf", "data": pdf, "extra_props": True},
            {"title": b"SETUP.EXE", "data": exe}],
            body=b"Please find the payment advice attached.\r\nAccounts\r\n")
        for ext, data in ((".dat", dat), (".pdf", pdf)):
            with open(args.out + ext, "wb") as fh:
                fh.write(data)
        m = base(args, "Payment advice")
        m.set_content(dat, maintype="application", subtype="ms-tnef", filename="winmail.dat")
        return m
    if k == "tnefrtf":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import mktnef
        rtf = (b"{\\rtf1\\ansi\\ansicpg1252\\fromhtml1 \\deff0{\\fonttbl{\\f0\\fswiss Arial;}}\r\n"
               b"{\\*\\htmltag19 <html>}{\\*\\htmltag50 <body>}{\\*\\htmltag64 <p>}\\htmlrtf {\\htmlrtf0 "
               b"Your mailbox is over its quota.\\htmlrtf }\\htmlrtf0 {\\*\\htmltag72 </p>}\\htmlrtf \\par\r\n"
               b"\\htmlrtf0 {\\*\\htmltag64 <p>}Confirm your password by Friday \\endash  IT Servic\\'e9s"
               b"{\\*\\htmltag72 </p>}{\\*\\htmltag58 </body>}{\\*\\htmltag27 </html>}}\r\n")
        inner = mktnef.tnef([{"title": b"INVOICE.PDF", "data": b"%PDF-1.4\n% customs\n"}],
                            body=b"Pay the customs fee to release your parcel.\r\n",
                            subject="Your parcel is waiting",
                            sender=("Parcel Service", "/O=EXCHANGE/OU=FIRST/CN=RECIPIENTS/CN=PARCEL",
                                    "notify@parcel.example"))
        dat = mktnef.tnef([{"title": b"QUOTA.HTM", "data": b"<p>quota</p>\n"},
                           {"long": "FW: parcel", "embedded": inner}],
                          rtf=mktnef.rtf_compressed(rtf))
        for ext, data in ((".dat", dat), (".rtf", rtf)):
            with open(args.out + ext, "wb") as fh:
                fh.write(data)
        m = base(args, "Mailbox quota")
        m.set_content(dat, maintype="application", subtype="ms-tnef", filename="winmail.dat")
        return m
    if k == "big":
        data = os.urandom(args.size)
        with open(args.out + ".bin", "wb") as fh:
            fh.write(data)
        m = base(args, "Large evidence file")
        m.set_content("The packet capture is attached.\n")
        m.add_attachment(data, maintype="application", subtype="octet-stream", filename="capture.pcap")
        return m
    sys.exit("mkmail: unknown kind " + k)


def bulk(argv):
    p = argparse.ArgumentParser(prog="mkmail.py bulk")
    p.add_argument("n", type=int)
    p.add_argument("outdir")
    p.add_argument("--corpus", required=True)
    p.add_argument("--prefix", default="bulk")
    a = p.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    srcs = []
    for f in sorted(os.listdir(a.corpus)):
        with open(os.path.join(a.corpus, f), "rb") as fh:
            raw = fh.read().replace(b"\r\n", b"\n")
        head, sep, body = raw.partition(b"\n\n")
        lines = []
        for line in head.split(b"\n"):
            # drop Message-ID (and its continuation lines)
            if lines and line[:1] in (b" ", b"\t") and lines[-1] is None:
                continue
            if line.lower().startswith(b"message-id:"):
                lines.append(None)
                continue
            lines.append(line)
        head = b"\n".join(x for x in lines if x is not None)
        srcs.append((head, sep or b"\n\n", body))
    for i in range(a.n):
        head, sep, body = srcs[i % len(srcs)]
        mid = b"Message-ID: <%s.%d@bench.test>" % (a.prefix.encode(), i)
        with open(os.path.join(a.outdir, "%06d.eml" % i), "wb") as fh:
            fh.write(mid + b"\n" + head + sep + body)
    print(a.n)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "bulk":
        return bulk(sys.argv[2:])
    p = argparse.ArgumentParser(prog="mkmail.py")
    p.add_argument("kind")
    p.add_argument("out")
    p.add_argument("--from", dest="sender", default="Reporter <reporter@outside.test>")
    p.add_argument("--to", default="soc@example.test")
    p.add_argument("--subject")
    p.add_argument("--message-id")
    p.add_argument("--in-reply-to")
    p.add_argument("--references")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--size", type=int, default=20 * 1000 * 1000)
    p.add_argument("--html", action="store_true")
    p.add_argument("--body")
    p.add_argument("--attach", action="append", default=[])
    args = p.parse_args()
    m = build(args)
    with open(args.out, "wb") as fh:
        fh.write(m if isinstance(m, bytes) else m.as_bytes(policy=POLICY))


if __name__ == "__main__":
    main()
