#!/usr/bin/env python3
"""tests/tools/preauth_listener.py - serve a pre-authenticated IMAP server
on a loopback port, one server process per connection.

A server run from a shell (Courier's `imapd Maildir`, Dovecot's `imap`)
greets `* PREAUTH` and speaks IMAP on its stdin and stdout: the mode of IMAP
over a tunnel (ssh, a TLS wrapper). This listener accepts connections on
127.0.0.1:PORT and runs COMMAND... for each, with the connection as its
stdin and stdout, its stderr appended to --log, in --dir, as the user who
owns --dir (the server's own checks want that, and a test never serves mail
as root). The environment is passed on as it is.

Usage: preauth_listener.py --port PORT --dir DIR --log FILE --pidfile FILE
                           COMMAND [ARG...]
It stays in the foreground: the caller puts it in the background and stops
it by the pid in --pidfile (SIGTERM; the servers it started then get a
SIGTERM too, by their process group).
"""
import argparse
import os
import signal
import socket
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--pidfile", required=True)
    ap.add_argument("command", nargs="+")
    a = ap.parse_args()
    st = os.stat(a.dir)
    if st.st_uid == 0:
        sys.exit("preauth_listener: %s is owned by root: not serving it as root" % a.dir)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(16)
    # a session of its own: its children are in its process group
    if os.getpid() != os.getsid(0):
        try:
            os.setsid()
        except OSError:
            pass
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)     # children reaped for us

    def stop(_sig, _frm):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        finally:
            os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    with open(a.pidfile + ".tmp", "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(a.pidfile + ".tmp", a.pidfile)
    while True:
        try:
            conn, _ = srv.accept()
        except InterruptedError:
            continue
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                srv.close()
                log = os.open(a.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.dup2(conn.fileno(), 0)
                os.dup2(conn.fileno(), 1)
                os.dup2(log, 2)
                conn.close()
                os.close(log)
                os.setgroups([])
                os.setgid(st.st_gid)
                os.setuid(st.st_uid)
                os.chdir(a.dir)
                os.execv(a.command[0], a.command)
            except BaseException as e:     # noqa: BLE001 - say why, then go
                os.write(2, ("preauth_listener: %s\n" % e).encode())
            os._exit(127)
        conn.close()


if __name__ == "__main__":
    main()
