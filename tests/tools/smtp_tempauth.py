#!/usr/bin/env python3
"""tests/tools/smtp_tempauth.py MODE: an SMTP server (RFC 5321, AUTH of
RFC 4954) on 127.0.0.1 whose AUTH fails with 454 as Postfix answers when
it has lost its connection to the authentication service: on the first
connection only (MODE once) or always (MODE always). MODE once-535 answers
the first connection's AUTH with 535 (bad credentials), later ones with
235: a client that tried a 5xx again would get in. Postfix does this only
when that connection breaks at the wrong moment, which a test cannot
arrange on demand; this stand-in follows the same exchange. Prints its
port, serves until killed."""
import socket
import sys
import threading

mode = sys.argv[1] if len(sys.argv) > 1 else "once"
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(8)
print(srv.getsockname()[1], flush=True)
TEMP = b"454 4.7.0 Temporary authentication failure: Connection lost to authentication server\r\n"
if mode == "once-535":
    TEMP = b"535 5.7.8 Error: authentication failed: authentication failure\r\n"


def serve(conn, first):
    f = conn.makefile("rwb", buffering=0)
    f.write(b"220 stand-in ESMTP\r\n")
    for raw in f:
        words = raw.decode("ascii", "replace").split()
        verb = words[0].upper() if words else ""
        if verb == "EHLO":
            f.write(b"250-stand-in\r\n250 AUTH PLAIN LOGIN\r\n")
        elif verb == "AUTH":
            if len(words) < 3:              # no initial response: ask for it
                f.write(b"334 \r\n")
                f.readline()
            ok = mode != "always" and not first
            f.write(b"235 2.7.0 Authentication successful\r\n" if ok else TEMP)
        elif verb == "QUIT":
            f.write(b"221 2.0.0 Bye\r\n")
            break
        else:
            f.write(b"250 2.0.0 Ok\r\n")
    conn.close()


count = 0
while True:
    c, _ = srv.accept()
    count += 1
    threading.Thread(target=serve, args=(c, count == 1), daemon=True).start()
